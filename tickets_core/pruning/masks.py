"""The :class:`Mask` type: parameter name -> bool tensor (True = weight kept).

Names are relative to the base model (see :mod:`tickets_core.models.prunable`), so
one mask applies to every head type of an architecture.  Pooler entries are
optional on both sides: applying a mask with pooler entries to a model
without a pooler (MLM, QA, RoBERTa classifiers) drops those entries, and a
model whose pooler is missing from the mask keeps a dense pooler.

On disk a mask is a safetensors file with one uint8 tensor per matrix holding
the bits packed eight to a byte (``numpy.packbits`` order), and the shapes in
the metadata: a bert-base mask takes about 10.7 MB instead of the 342 MB of
float masks.  Files are written atomically and validated on load.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.components import describe, is_pooler
from ..core.errors import ConfigError, one_line
from ..core.fsio import atomic_write_bytes
from ..models.prunable import base_model, prunable_parameters

FORMAT = "tickets_core.mask"
VERSION = "1"


class MaskFileError(ConfigError):
    """A mask file is missing, truncated, corrupted or not a mask file (one-line message)."""


class MaskFitError(ConfigError):
    """A mask's names or shapes do not fit a model (one-line message)."""


class Mask(MutableMapping):
    """Parameter name -> bool tensor on the CPU; refuses any other key or value type."""

    def __init__(self, entries: Mapping[str, torch.Tensor] | None = None) -> None:
        self._d: dict[str, torch.Tensor] = {}
        for k, v in (entries or {}).items():
            self[k] = v

    # -- mapping protocol ---------------------------------------------------

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        if not isinstance(name, str):
            raise ConfigError(f"mask keys must be parameter names (str), got {type(name).__name__}")
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"mask entry {name!r} must be a tensor, got {type(value).__name__}")
        if value.dtype != torch.bool:
            raise ConfigError(f"mask entry {name!r} must be a bool tensor, got {value.dtype}")
        self._d[name] = value.detach().to("cpu")

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._d[name]

    def __delitem__(self, name: str) -> None:
        del self._d[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Mask({len(self)} matrices, {self.numel} weights, sparsity {self.sparsity:.4f})"

    def copy(self) -> "Mask":
        """A deep copy (new tensors)."""
        return Mask({k: v.clone() for k, v in self.items()})

    # -- construction -------------------------------------------------------

    @classmethod
    def ones_like(cls, model: nn.Module, include_pooler: bool = True) -> "Mask":
        """The dense mask over ``model``'s prunable weights."""
        return cls({k: torch.ones(p.shape, dtype=torch.bool) for k, p in prunable_parameters(model, include_pooler).items()})

    # -- statistics ---------------------------------------------------------

    @property
    def numel(self) -> int:
        return sum(v.numel() for v in self._d.values())

    @property
    def nonzero(self) -> int:
        return sum(int(torch.count_nonzero(v)) for v in self._d.values())

    @property
    def sparsity(self) -> float:
        """Fraction of masked (pruned) weights; 0.0 for an empty mask."""
        n = self.numel
        return 1.0 - self.nonzero / n if n else 0.0

    @property
    def density(self) -> float:
        return 1.0 - self.sparsity

    def layer_sparsities(self) -> dict[str, float]:
        """Per-matrix sparsity."""
        return {k: 1.0 - int(torch.count_nonzero(v)) / v.numel() for k, v in self.items()}

    def report(self) -> dict:
        """The ``sparsity.json`` record: totals and per-matrix numbers with layer/component."""
        matrices = {}
        for k, v in self.items():
            layer, component = describe(k)
            nz = int(torch.count_nonzero(v))
            matrices[k] = {"numel": v.numel(), "nonzero": nz, "sparsity": 1.0 - nz / v.numel(),
                           "layer": layer, "component": component}
        return {"total": {"numel": self.numel, "nonzero": self.nonzero, "sparsity": self.sparsity},
                "matrices": matrices}

    def paired(self, other: "Mask") -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(self[k], other[k])`` for each name ``k``; :class:`MaskFitError` unless names and shapes agree."""
        if set(self) != set(other):
            raise MaskFitError("masks to compare must have the same names")
        pairs = []
        for k, v in self.items():
            w = other[k]
            if w.shape != v.shape:
                raise MaskFitError(f"mask entry {k!r} has shape {tuple(v.shape)} vs {tuple(w.shape)}")
            pairs.append((v, w))
        return pairs

    def common(self, other: "Mask") -> tuple["Mask", "Mask"]:
        """Both masks restricted to the matrices they share, to compare masks of models with and without a
        pooler (a BERT classifier's masks have a pooler entry, its MLM and QA models' do not).  Only pooler entries
        may be missing from one side; any other difference is a :class:`MaskFitError`."""
        alone = sorted(k for k in set(self) ^ set(other) if not is_pooler(k))
        if alone:
            raise MaskFitError(f"masks to compare must have the same names (a pooler may be missing from one); "
                               f"{alone[0]!r} is in one mask only")
        return Mask({k: v for k, v in self.items() if k in other}), Mask({k: v for k, v in other.items() if k in self})

    def overlap(self, other: "Mask") -> float:
        """Intersection over union of the kept weights, over the matrices both masks have (:meth:`common`: a
        pooler entry only one mask has is left out)."""
        inter = union = 0
        mine, theirs = self.common(other)
        for v, w in mine.paired(theirs):
            inter += int(torch.count_nonzero(v & w))
            union += int(torch.count_nonzero(v | w))
        return inter / union if union else 1.0

    # -- fitting to a model -------------------------------------------------

    def check_fits(self, model: nn.Module) -> None:
        """Raise :class:`MaskFitError` naming the first name or shape that does not fit ``model``.

        Pooler entries may be absent on either side; every other prunable
        matrix of the model must be in the mask and every mask entry must be a
        parameter of the base model with the same shape.
        """
        params = dict(base_model(model).named_parameters())
        for k, v in self.items():
            if k not in params:
                if is_pooler(k):
                    continue
                raise MaskFitError(f"mask entry {k!r} is not a parameter of {type(model).__name__}'s base model")
            if tuple(params[k].shape) != tuple(v.shape):
                raise MaskFitError(f"mask entry {k!r} has shape {tuple(v.shape)} but the model's is {tuple(params[k].shape)}")
        for k in prunable_parameters(model):
            if k not in self and not is_pooler(k):
                raise MaskFitError(f"mask has no entry for the model's prunable weight {k!r}")

    def fitted(self, model: nn.Module, include_pooler: bool = True) -> "Mask":
        """This mask adapted to ``model``: pooler entries it lacks are dropped, a missing pooler stays dense."""
        self.check_fits(model)
        params = dict(base_model(model).named_parameters())
        out = Mask({k: v for k, v in self.items() if k in params})
        for k, p in prunable_parameters(model, include_pooler).items():
            if k not in out:  # only the pooler can be missing after check_fits
                out[k] = torch.ones(p.shape, dtype=torch.bool)
        return out

    def bind(self, model: nn.Module) -> "BoundMask":
        """Pair each mask entry with the model's parameter, for fast in-place masking."""
        return BoundMask(self.fitted(model), model)

    # -- files --------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialise to safetensors bytes (bit-packed uint8, shapes in metadata)."""
        from safetensors.torch import save

        tensors = {k: torch.from_numpy(np.packbits(v.reshape(-1).numpy())) for k, v in self.items()}
        shapes = {k: list(v.shape) for k, v in self.items()}
        return save(tensors, metadata={"format": FORMAT, "version": VERSION, "shapes": json.dumps(shapes)})

    def save(self, path: str | Path) -> Path:
        """Write the mask atomically (temporary file + rename)."""
        return atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> "Mask":
        """Read a mask written by :meth:`save`; any defect raises a one-line :class:`MaskFileError`."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise MaskFileError(f"mask file {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                packed = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise MaskFileError(f"mask file {path} is corrupted or not a safetensors file ({one_line(e)})") from None
        if meta.get("format") != FORMAT:
            raise MaskFileError(f"{path} is not a tickets_core mask file (no '{FORMAT}' metadata)")
        if meta.get("version") != VERSION:
            raise MaskFileError(f"mask file {path} has unsupported version {meta.get('version')!r}")
        try:
            shapes = json.loads(meta["shapes"])
            assert isinstance(shapes, dict)
        except (KeyError, ValueError, AssertionError):
            raise MaskFileError(f"mask file {path} has unreadable shape metadata") from None
        if set(shapes) != set(packed):
            raise MaskFileError(f"mask file {path}: tensors and shape metadata name different matrices")
        out = cls()
        for k in shapes:  # metadata order = save order
            shape, bits = tuple(int(s) for s in shapes[k]), packed[k]
            n = math.prod(shape)
            if bits.dtype != torch.uint8 or bits.dim() != 1 or bits.numel() != (n + 7) // 8:
                raise MaskFileError(f"mask file {path}: entry {k!r} does not hold {n} packed bits")
            out[k] = torch.from_numpy(np.unpackbits(bits.numpy(), count=n).astype(bool)).reshape(shape)
        return out


class BoundMask:
    """A mask bound to a model's parameters: ``apply_`` zeroes pruned weights, ``mask_grads_`` their grads.

    Each pair caches the *pruned* positions on the parameter's device; when
    the model moves (``model.to(...)``) the cache follows on the next call.
    By default zeroing uses one ``masked_fill_`` per matrix, so pruned
    entries become exactly 0 even if they held inf/NaN.

    ``multi_tensor=True`` (the GPU fast path) multiplies every matrix by a
    cached float keep-mask (1 kept, 0 pruned; in the parameter's dtype) with
    one ``torch._foreach_mul_``: a few kernel launches for all matrices
    instead of one per matrix.  Kept values are unchanged bit for bit
    (x * 1 = x) and finite pruned values become zero (a negative one -0.0,
    which equals 0); a pruned entry holding inf/NaN would stay NaN.  Such a
    value can only come from a NaN gradient, which through the loss poisons
    every weight anyway; ``fine_tune`` still ends a fast-path level with one
    exact ``apply_()``.  The float masks take 4 bytes per prunable weight on
    the device (342 MB at bert-base).
    """

    def __init__(self, mask: Mask, model: nn.Module) -> None:
        params = dict(base_model(model).named_parameters())
        self.mask = mask
        self._pairs: list[tuple[nn.Parameter, torch.Tensor]] = [
            (params[k], (~v).to(params[k].device)) for k, v in mask.items() if not bool(v.all())
        ]
        self._keep: list[torch.Tensor] | None = None  # float keep-masks for multi_tensor, built on first use

    def _current(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """The pairs, each pruned-position mask on its parameter's device (a move drops the float keep-masks)."""
        for i, (p, pruned) in enumerate(self._pairs):
            if pruned.device != p.device:
                self._pairs[i] = (p, pruned.to(p.device))
                self._keep = None
        return self._pairs

    def _float_keep(self) -> list[torch.Tensor]:
        """The cached float keep-masks (callers check ``self._pairs`` is non-empty).

        Per call only the first matrix's device and dtype are compared (a step of the fast path calls this
        twice); a model moved or cast as a whole (``model.to(...)``) fails that check and every mask is
        rebuilt.
        """
        keep = self._keep
        if keep is not None:
            p = self._pairs[0][0]
            if keep[0].device == p.device and keep[0].dtype == p.dtype:
                return keep
        self._keep = keep = [(~pruned).to(p.dtype) for p, pruned in self._current()]
        return keep

    @torch.no_grad()
    def apply_(self, multi_tensor: bool = False) -> None:
        """Set every pruned weight to exactly zero, in place."""
        if multi_tensor:
            if self._pairs:
                keep = self._float_keep()
                torch._foreach_mul_([p for p, _ in self._pairs], keep)
            return
        for p, pruned in self._current():
            p.masked_fill_(pruned, 0.0)

    @torch.no_grad()
    def mask_grads_(self, multi_tensor: bool = False) -> None:
        """Zero the gradients of pruned weights (call after backward, before the optimizer step)."""
        if multi_tensor:
            if self._pairs:
                keep = self._float_keep()
                sel = [(p.grad, k) for (p, _), k in zip(self._pairs, keep) if p.grad is not None]
                if sel:
                    torch._foreach_mul_([g for g, _ in sel], [k for _, k in sel])
            return
        for p, pruned in self._current():
            if p.grad is not None:
                p.grad.masked_fill_(pruned, 0.0)
