"""Shrunk models as Hugging Face folders (the shrinking itself: :mod:`tickets_core.pruning.shrink`).

Saving (:func:`save_shrunk`): transformers 5 dropped ``prune_heads`` and ``config.pruned_heads``, so no
stock config can describe per-layer head counts.  The folder therefore records which heads were removed in
``config.pruned_heads`` ({layer: [head, ...]}, the semantics of transformers 4's ``prune_heads``) and the
shapes of every shrunk linear layer in ``config.tickets_linear_shapes``, and ships ``tickets_shrunk.py``, 20
lines that build the stock class and then give those layers their shapes; ``config.auto_map`` points the
Auto class at it, so ``AutoModelFor<head>.from_pretrained(path, trust_remote_code=True)`` loads it with
plain ``transformers`` (no tickets_core).  A model with every head kept and ``ffn="pad"`` needs none of
that: its folder is a stock one with a smaller ``intermediate_size``.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from ..core.errors import ConfigError
from ..core.fsio import atomic_folder, atomic_write_text, require_new_folder
from ..pruning.shrink import _FFN_ATTR, expand_into, shrink, shrinkable

__all__ = ["CODE_FILE", "expand_into", "save_shrunk", "shrink", "shrinkable", "write_shrunk"]

CODE_FILE = "tickets_shrunk.py"
_AUTO = (("ForSequenceClassification", "AutoModelForSequenceClassification"),
         ("ForQuestionAnswering", "AutoModelForQuestionAnswering"), ("ForMaskedLM", "AutoModelForMaskedLM"),
         ("Model", "AutoModel"))

_CODE = '''"""Written by tickets_core.interop.shrink: the stock {cls} with the linear layers listed in
config.tickets_linear_shapes given their shrunk shapes (pruned attention heads and FFN neurons removed)."""

import transformers
from torch import nn


class Shrunk{cls}(transformers.{cls}):
    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        for name, (out_features, in_features, bias) in config.tickets_linear_shapes.items():
            parent, _, attr = name.rpartition(".")
            owner = self.get_submodule(parent)
            old = getattr(owner, attr)
            setattr(owner, attr, nn.Linear(in_features, out_features, bias=bias,
                                           device=old.weight.device, dtype=old.weight.dtype))
'''


def _needs_code(model: nn.Module) -> bool:
    """Whether a stock config rebuilds the shrunk model's shapes (it does when every layer has every head and
    one FFN width, the config's)."""
    cfg = model.config
    width = getattr(cfg, _FFN_ATTR.get(cfg.model_type, "intermediate_size"))
    for name, (out_features, in_features, _) in getattr(cfg, "tickets_linear_shapes", {}).items():
        if width not in (out_features, in_features):
            return True
    return bool(getattr(cfg, "pruned_heads", None))



def write_shrunk(model: nn.Module, folder: Path) -> bool:
    """Write a model returned by :func:`shrink` into the existing folder ``folder`` (config, weights and, when
    a stock config cannot describe it, :data:`CODE_FILE` with ``config.auto_map``); True when that code was
    needed (then loading needs ``trust_remote_code=True``)."""
    cls = type(model).__name__
    config = copy.deepcopy(model.config)
    code = _needs_code(model)
    if code:
        auto = next((a for suffix, a in _AUTO if cls.endswith(suffix)), None)
        if auto is None:
            raise ConfigError(f"cannot name the Auto class of {cls}: shrunk models can be saved as "
                              f"{', '.join(a for _, a in _AUTO)}")
        config.auto_map = {auto: f"{CODE_FILE[:-3]}.Shrunk{cls}"}
    else:
        config.tickets_linear_shapes = {}
    saved_config, model.config = model.config, config
    try:
        from ..models.build import _quiet

        with _quiet():  # no "Writing model shards" bar
            model.save_pretrained(folder, safe_serialization=True)
    finally:
        model.config = saved_config
    if code:
        atomic_write_text(Path(folder) / CODE_FILE, _CODE.format(cls=cls))
    return code


def save_shrunk(model: nn.Module, out_dir: str | Path, tokenizer=None) -> Path:
    """Write a model returned by :func:`shrink` as a Hugging Face folder (atomically; ``out_dir`` must be new).

    The folder loads with ``AutoModelFor<head>.from_pretrained(out_dir, trust_remote_code=True)``; a model with
    every head kept and ``ffn="pad"`` is a stock folder (no code, no flag needed).
    """
    out = require_new_folder(out_dir)
    with atomic_folder(out) as tmp:
        write_shrunk(model, tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return out
