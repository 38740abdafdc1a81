"""Import masks saved by the reference code (Chen et al. 2020, VITA-Group/BERT-Tickets) as 1-bit masks.

The reference scripts (``LT_glue.py``, ``LT_squad.py``, ``LT_pretrain.py``,
``oneshot.py``) prune with ``torch.nn.utils.prune`` and save
``torch.save(mask_dict, "mask.pt")``, where ``mask_dict`` holds every entry
of the model's ``state_dict()`` whose name contains ``mask``: one float32
0/1 tensor per pruned matrix, named like
``bert.encoder.layer.0.attention.self.query.weight_mask`` (73 matrices for
bert-base, pooler included; ``module.``-prefixed when the model was wrapped
in ``DataParallel``).  :func:`import_reference_mask` reads such a file with
``torch.load(..., weights_only=True)`` (the restricted unpickler: a file that
would run code or build other objects is refused, never executed), maps the
names to this project's base-model-relative names
(``encoder.layer.0.attention.self.query.weight``), checks every value is 0
or 1 and that the mask fits the given architecture, and returns a
:class:`~tickets_core.pruning.masks.Mask`.  Saved with :meth:`Mask.save` it is a
mask file like any other: ``transfer`` (and the weight ablations) take it as
``mask_path``; the analysis reads it with ``Mask.load``.

Command line::

    python -m tickets_core.interop.importers mask.pt out.safetensors --model bert-base-uncased

Every defect is one line (exit status 2) and nothing is written.
"""

from __future__ import annotations

import argparse
import pickle
import types
import warnings
from pathlib import Path

import torch

from ..core.config import ModelConfig
from ..core.errors import run_cli
from ..pruning.masks import Mask, MaskFileError, MaskFitError

__all__ = ["import_reference_mask", "reference_name", "architecture", "main"]

_SUFFIX = "_mask"


def _read(path: Path) -> dict:
    """The file's dict of tensors, read with the restricted unpickler; anything else is one line."""
    if not path.is_file():
        raise MaskFileError(f"mask file {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch's UserWarnings (e.g. on pickle protocol 4) would add lines
            warnings.simplefilter("ignore")
            try:
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - protocol 4 (pickle_protocol=4): opcodes torch's reader lacks
                if "Unsupported operand" not in str(e):
                    raise
                obj = torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_restricted)
    except Exception as e:  # the restricted unpickler fails on garbage in many ways; each is one line here
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "unsupported" in ln.lower()),
                   f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__)
        raise MaskFileError(f"{path}: torch.load(weights_only=True) refused it, so it is not a plain dict of "
                            f"tensors ({why})") from None
    if not isinstance(obj, dict) or not obj:
        raise MaskFileError(f"{path} holds a {type(obj).__name__}{' (empty)' if isinstance(obj, dict) else ''}, "
                            "not a dict of mask tensors")
    bad = next((k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise MaskFileError(f"{path}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor: "
                            "not a dict of mask tensors")
    return obj


class _RestrictedUnpickler(pickle.Unpickler):
    """Python's unpickler (every protocol) that builds only what a dict of tensors needs: any other global is
    refused, so a file that would run code is never executed (the weights_only idea, for protocol 4 files)."""

    ALLOWED = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
               ("collections", "OrderedDict"), ("torch", "Size")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"Unsupported global: {module}.{name} (only tensors are read)")
        return super().find_class(module, name)


_restricted = types.SimpleNamespace(Unpickler=_RestrictedUnpickler, __name__="restricted_pickle",
                                    load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load())


def reference_name(key: str, prefix: str) -> str | None:
    """``[module.]<prefix>.<name>.weight_mask`` -> ``<name>.weight`` (None for a key that is no mask)."""
    key = key.removeprefix("module.")
    if not key.endswith(_SUFFIX):
        return None
    key = key[: -len(_SUFFIX)]
    return key[len(prefix) + 1:] if key.startswith(prefix + ".") else key


def architecture(model: str | ModelConfig) -> torch.nn.Module:
    """The base model (encoder, with its pooler) of ``model``, on the meta device: shapes only, no weights."""
    import transformers

    from ..models.build import load_config

    cfg = model if isinstance(model, ModelConfig) else ModelConfig(name_or_path=model)
    config = load_config(cfg)
    with torch.device("meta"):
        return transformers.AutoModel.from_config(config)


def import_reference_mask(path: str | Path, model: str | ModelConfig | torch.nn.Module) -> Mask:
    """The reference code's ``mask.pt`` at ``path`` as a :class:`Mask` fitted to ``model``'s architecture.

    ``model`` is an alias, hub id or folder (only its config is read) or a
    built model.  A file that is not a dict of 0/1 tensors, or whose names
    or shapes do not fit the architecture, raises a one-line
    :class:`MaskFileError` / :class:`MaskFitError`.
    """
    path = Path(path)
    entries = _read(path)
    net = model if isinstance(model, torch.nn.Module) else architecture(model)
    prefix = getattr(net, "base_model_prefix", "") or ""
    out = Mask()
    for key, value in entries.items():
        name = reference_name(key, prefix)
        if name is None:
            continue
        if name in out:
            raise MaskFileError(f"{path}: two entries map to {name!r}")
        if value.is_complex() or not bool(((value == 0) | (value == 1)).all()):
            raise MaskFileError(f"{path}: entry {key!r} holds values other than 0 and 1")
        out[name] = value.detach().to("cpu") != 0
    if not out:
        raise MaskFileError(f"{path} has no '*{_SUFFIX}' entries (a state dict of weights, not of masks?)")
    try:
        out.check_fits(net)
    except MaskFitError as e:
        raise MaskFitError(f"{path} does not fit {type(net).__name__}: {e}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tickets_core.interop.importers", description=__doc__.splitlines()[0])
    ap.add_argument("mask_pt", help="the reference code's mask file (torch.save of a dict of 0/1 tensors)")
    ap.add_argument("out", help="where to write the 1-bit mask (safetensors)")
    ap.add_argument("--model", default="bert-base-uncased",
                    help="the architecture the mask belongs to: alias, hub id or folder (default bert-base-uncased)")
    a = ap.parse_args(argv)

    def convert() -> str:
        mask = import_reference_mask(a.mask_pt, a.model)
        mask.save(a.out)
        return f"wrote {a.out}: {len(mask)} matrices, {mask.numel:,} weights, sparsity {mask.sparsity:.4f}"

    return run_cli(convert, catch=(ValueError, OSError))  # MaskFileError, MaskFitError and ConfigError included


if __name__ == "__main__":
    raise SystemExit(main())
