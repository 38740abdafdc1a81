"""Pruning strategies (pure functions in a registry); level sparsities come from ``PruneConfig.sparsity``.

A strategy maps ``(weights, current mask, target sparsity)`` to a new mask
whose sparsity over all the mask's weights is exactly
``round(target * numel)`` pruned weights (per matrix for the layer-wise
strategies).  Already-pruned weights stay pruned; the strategy chooses the
additional weights to remove among the surviving ones.

Ranking finds the k-th smallest score among the surviving weights (linear time, no full
sort); ties at the threshold are broken by position (matrices in mask order, entries in
row-major order: earlier ones are pruned first), so the result is deterministic.  Scores
are computed on the weights' device: on the CPU the k-th value comes from numpy's
introselect (``numpy.partition``), elsewhere (a GPU) from ``torch.topk`` on that device
(a multi-block radix select on CUDA), so nothing is copied to the host but the new mask.
The k-th value is unique whichever way it is found, and the tie rule is applied
afterwards, so both give the same mask.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.config import PruneConfig
from ..core.errors import ConfigError
from ..core.registry import Registry
from ..core.seeds import level_seed
from ..core.strategies import STRATEGY_SPECS
from . import units
from .masks import Mask
from ..models.prunable import base_model

Weights = dict[str, torch.Tensor]
Strategy = Callable[..., Mask]


class PruningError(ConfigError):
    """Bad pruning input: unknown strategy, sparsity out of range, mismatched weights (one line)."""


# ---------------------------------------------------------------------------
# Sparsity checks
# ---------------------------------------------------------------------------


def _check_sparsity(s: float) -> None:
    if not 0.0 <= s < 1.0:
        raise PruningError(f"target sparsity must be in [0, 1), got {s}")


def _count(sparsity: float, numel: int) -> int:
    """Number of pruned weights for ``sparsity`` of ``numel`` weights (rounded to nearest)."""
    return int(round(sparsity * numel))


# ---------------------------------------------------------------------------
# Core selection
# ---------------------------------------------------------------------------


def _check_inputs(weights: Weights, current: Mask) -> None:
    if set(weights) != set(current):
        missing = sorted(set(current) ^ set(weights))[0]
        raise PruningError(f"weights and mask disagree on matrix {missing!r}")
    for k, w in weights.items():
        if tuple(w.shape) != tuple(current[k].shape):
            raise PruningError(f"weight {k!r} has shape {tuple(w.shape)} but its mask has {tuple(current[k].shape)}")


def _kth_smallest(alive: torch.Tensor, k: int, method: str = "auto") -> float:
    """The ``k``-th smallest (1-based) value of the flat float tensor ``alive`` (overwritten on the CPU).

    ``method``: 'numpy' (in-place introselect; the CPU default, several times
    faster there than ``torch.kthvalue``), 'torch' (``torch.topk`` of the k
    smallest on the tensor's device; the default off the CPU), or 'auto'.
    """
    if method == "auto":
        method = "numpy" if alive.device.type == "cpu" else "torch"
    if method == "numpy":
        a = alive.numpy()
        a.partition(k - 1)
        return float(a[k - 1])
    return float(torch.topk(alive, k, largest=False, sorted=False).values.max())


def _prune_lowest(scores: torch.Tensor, keep: torch.Tensor, n_prune: int, method: str = "auto") -> torch.Tensor:
    """Flat keep-vector with the ``n_prune`` lowest-scoring kept entries removed (ties: lowest index).

    ``scores`` is a flat float32 tensor on any device; ``keep`` a flat bool
    tensor on the same device.  Returns a new bool tensor on that device.
    """
    keep = keep.clone()
    if n_prune <= 0:
        return keep
    # The k-th smallest surviving score, on a copy in which pruned entries are +inf: one pass,
    # no gather of the survivors (the gather alone cost 2.5 s at bert-base scale on the CPU).
    threshold = _kth_smallest(scores.masked_fill(~keep, float("inf")), n_prune, method)
    below = (scores < threshold) & keep
    ties = ((scores == threshold) & keep).nonzero().squeeze(1)
    keep &= ~below
    keep[ties[: n_prune - int(torch.count_nonzero(below))]] = False
    return keep


def _flat_scores(score: Callable[[str], torch.Tensor], current: Mask, names: list[str]) -> torch.Tensor:
    """Concatenate the score matrices of ``names`` into one new flat float32 tensor on their device."""
    first = score(names[0]) if names else torch.empty(0)
    out = torch.empty(sum(current[k].numel() for k in names), dtype=torch.float32, device=first.device)
    i = 0
    for j, k in enumerate(names):
        n = current[k].numel()
        out[i:i + n].copy_((first if j == 0 else score(k)).detach().reshape(-1))
        i += n
    return out


def _select_global(score: Callable[[str], torch.Tensor], current: Mask, target: float) -> Mask:
    names = list(current)
    scores = _flat_scores(score, current, names)
    # The current mask goes to the scores' device matrix by matrix (no 85M-entry concatenation on the host).
    flat_keep = torch.cat([current[k].reshape(-1).to(scores.device) for k in names])
    n_prune = _count(target, flat_keep.numel()) - (flat_keep.numel() - int(torch.count_nonzero(flat_keep)))
    if n_prune < 0:
        raise PruningError(f"target sparsity {target} is below the mask's current sparsity {current.sparsity:.6f}")
    new = _prune_lowest(scores, flat_keep, n_prune).cpu()
    out, i = Mask(), 0
    for k in names:
        n = current[k].numel()
        out[k] = new[i:i + n].reshape(current[k].shape)
        i += n
    return out


def _select_layerwise(score: Callable[[str], torch.Tensor], current: Mask, sparsities: dict[str, float]) -> Mask:
    out = Mask()
    for k, m in current.items():
        keep = m.reshape(-1)
        n_prune = _count(sparsities[k], keep.numel()) - (keep.numel() - int(torch.count_nonzero(keep)))
        if n_prune < 0:
            raise PruningError(f"target sparsity {sparsities[k]} of {k!r} is below its current sparsity")
        scores = _flat_scores(score, current, [k])
        out[k] = _prune_lowest(scores, keep.to(scores.device), n_prune).cpu().reshape(m.shape)
    return out


def _layer_targets(current: Mask, target: float, layer_sparsities: dict[str, float] | None) -> dict[str, float]:
    if layer_sparsities is None:
        return {k: target for k in current}
    missing = set(current) - set(layer_sparsities)
    if missing:
        raise PruningError(f"layer_sparsities has no entry for {sorted(missing)[0]!r}")
    for k, s in layer_sparsities.items():
        # One matrix may be pruned completely (global magnitude pruning does that to a
        # small-magnitude pooler), so per-matrix targets may reach 1; the total may not.
        if not 0.0 <= s <= 1.0:
            raise PruningError(f"layer sparsity of {k!r} must be in [0, 1], got {s}")
    return {k: float(layer_sparsities[k]) for k in current}


def _magnitude(weights: Weights) -> Callable[[str], torch.Tensor]:
    """|w| per matrix on the weights' device, computed on demand so that no second full copy of the weights is held."""
    return lambda name: weights[name].detach().abs().float()


def _random_scores(current: Mask, generator: torch.Generator | None) -> Callable[[str], torch.Tensor]:
    """Uniform random scores, drawn in mask order from ``generator`` (reproducible)."""
    scores = {k: torch.rand(m.shape, generator=generator) for k, m in current.items()}
    return scores.__getitem__


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------


def magnitude_global(weights: Weights, current: Mask, target_sparsity: float, *,
                     generator: torch.Generator | None = None, layer_sparsities=None) -> Mask:
    """Remove the smallest-|w| surviving weights across all matrices (the paper's IMP)."""
    _check_sparsity(target_sparsity)
    _check_inputs(weights, current)
    return _select_global(_magnitude(weights), current, target_sparsity)


def magnitude_layerwise(weights: Weights, current: Mask, target_sparsity: float, *,
                        generator: torch.Generator | None = None, layer_sparsities=None) -> Mask:
    """Remove the smallest-|w| surviving weights within each matrix (each reaches the target)."""
    _check_sparsity(target_sparsity)
    _check_inputs(weights, current)
    targets = _layer_targets(current, target_sparsity, layer_sparsities)
    return _select_layerwise(_magnitude(weights), current, targets)


def random_global(weights: Weights, current: Mask, target_sparsity: float, *,
                  generator: torch.Generator | None = None, layer_sparsities=None) -> Mask:
    """Remove surviving weights uniformly at random across all matrices."""
    _check_sparsity(target_sparsity)
    _check_inputs(weights, current)
    return _select_global(_random_scores(current, generator), current, target_sparsity)


def random_layerwise(weights: Weights, current: Mask, target_sparsity: float, *,
                     generator: torch.Generator | None = None, layer_sparsities: dict[str, float] | None = None) -> Mask:
    """Random mask with given per-matrix sparsities (e.g. an IMP mask's), else ``target_sparsity`` each."""
    _check_sparsity(target_sparsity)
    _check_inputs(weights, current)
    targets = _layer_targets(current, target_sparsity, layer_sparsities)
    return _select_layerwise(_random_scores(current, generator), current, targets)


#: What each strategy of :data:`~tickets_core.core.strategies.STRATEGY_SPECS` computes, by name.
STRATEGIES: Registry[Strategy] = Registry("pruning strategy", param="strategy", error=PruningError)
for _fn in (magnitude_global, magnitude_layerwise, random_global, random_layerwise):
    STRATEGIES.register(_fn.__name__, _fn)

#: The strategy registered as ``name``; an unknown name is a one-line :class:`PruningError`.
get_strategy = STRATEGIES.lookup


def level_generator(seed: int, level: int) -> torch.Generator:
    """The CPU generator random strategies use at ``level`` of a run seeded ``seed``."""
    return torch.Generator().manual_seed(level_seed(seed, level))


def prune(model: nn.Module, current_mask: Mask, cfg: PruneConfig, level: int, seed: int = 0,
          layer_sparsities: dict[str, float] | None = None, *, batches=None, loss=None) -> Mask:
    """The mask of ``level``: ``cfg.strategy`` applied to ``model``'s weights at ``cfg.schedule``'s sparsity.

    Structured strategies also get the model's head/neuron layout and ``cfg.min_heads_per_layer``; one that
    needs data (``structured_importance``) scores the units on ``batches`` (an iterable of training batches,
    read only then) with ``loss(model, batch)``.
    """
    strategy = get_strategy(cfg.strategy)
    target = cfg.sparsity(level)  # the config checked the whole schedule when it was built
    params = dict(base_model(model).named_parameters())
    missing = [k for k in current_mask if k not in params]
    if missing:
        raise PruningError(f"mask entry {missing[0]!r} is not a parameter of the model")
    weights = {k: params[k].detach() for k in current_mask}
    extra = {}
    spec = STRATEGY_SPECS.lookup(cfg.strategy)
    if spec.structured:
        lay = units.layout(model)
        extra = {"layout": lay, "min_heads_per_layer": cfg.min_heads_per_layer}
        if spec.needs_data:
            if batches is None or loss is None:
                raise PruningError(f"strategy {cfg.strategy!r} scores units on training batches: pass batches and "
                                   "loss to prune()")
            extra["scores"] = units.importance_scores(model, lay, batches, loss)
    return strategy(weights, current_mask, target, generator=level_generator(seed, level),
                    layer_sparsities=layer_sparsities, **extra)


# ---------------------------------------------------------------------------
# Structured: whole attention heads and FFN neurons (pruning/units.py)
# ---------------------------------------------------------------------------


def _structured(weights: Weights, current: Mask, target: float, layout, min_heads_per_layer: int,
                scores, layer_sparsities) -> Mask:
    _check_sparsity(target)
    _check_inputs(weights, current)
    if layout is None:
        raise PruningError("structured strategies need the model's unit layout (layout=units.layout(model))")
    keep = units.kept_counts(layer_sparsities, layout) if layer_sparsities is not None else None
    return units.prune_units(current, layout, target, scores, min_heads_per_layer=min_heads_per_layer, keep=keep)


def structured_magnitude(weights: Weights, current: Mask, target_sparsity: float, *, generator=None,
                         layer_sparsities=None, layout=None, min_heads_per_layer: int = 1) -> Mask:
    """Remove the heads and FFN neurons with the smallest weight norm, each kind ranked across layers."""
    scores = units.magnitude_scores(weights, layout) if layout is not None else None
    return _structured(weights, current, target_sparsity, layout, min_heads_per_layer, scores, layer_sparsities)


def structured_importance(weights: Weights, current: Mask, target_sparsity: float, *, generator=None,
                          layer_sparsities=None, layout=None, min_heads_per_layer: int = 1, scores=None) -> Mask:
    """Remove the heads and neurons of lowest importance ``scores`` (:func:`units.importance_scores`)."""
    if scores is None:
        raise PruningError("structured_importance needs importance scores (units.importance_scores)")
    return _structured(weights, current, target_sparsity, layout, min_heads_per_layer, scores, layer_sparsities)


def structured_random(weights: Weights, current: Mask, target_sparsity: float, *, generator=None,
                      layer_sparsities=None, layout=None, min_heads_per_layer: int = 1) -> Mask:
    """Remove heads and neurons at random: the level's counts, or with ``layer_sparsities`` (a structured mask's)
    exactly that mask's heads and neurons per layer (the random baseline of a structured ticket)."""
    scores = units.random_scores(layout, generator) if layout is not None else None
    return _structured(weights, current, target_sparsity, layout, min_heads_per_layer, scores, layer_sparsities)


for _fn in (structured_magnitude, structured_importance, structured_random):
    STRATEGIES.register(_fn.__name__, _fn)


# ---------------------------------------------------------------------------
# Semi-structured 2:4 sparsity
# ---------------------------------------------------------------------------


def fits_2to4(shape) -> bool:
    """True for the shapes 2:4 semi-structured sparsity applies to: matrices with rows a multiple of 4 long."""
    return len(shape) == 2 and shape[1] % 4 == 0


def magnitude_2to4(weights: Weights, current: Mask, target_sparsity: float, *,
                   generator: torch.Generator | None = None, layer_sparsities=None) -> Mask:
    """Remove the 2 smallest-|w| of every 4 consecutive weights of each row (2:4 semi-structured sparsity).

    The pattern GPU sparse kernels accelerate (``torch.sparse.to_sparse_semi_structured``); exactly 50%
    of every matrix.  Already-pruned weights count among a group's pruned two; ties go by position
    (earlier first).  ``target_sparsity`` must be 0 (the mask unchanged) or 0.5.
    """
    _check_sparsity(target_sparsity)
    _check_inputs(weights, current)
    if target_sparsity == 0.0:
        return current.copy()
    if abs(target_sparsity - 0.5) > 1e-9:
        raise PruningError(f"magnitude_2to4 prunes exactly 50% (2 of every 4 weights), not {target_sparsity}")
    out = Mask()
    for k, m in current.items():
        w = weights[k]
        if not fits_2to4(w.shape):
            raise PruningError(f"magnitude_2to4 needs matrices with rows a multiple of 4 long; {k!r} is "
                               f"{tuple(w.shape)}")
        groups = m.reshape(-1, 4)
        score = w.detach().abs().float().cpu().reshape(-1, 4).masked_fill(~groups, -1.0)  # pruned ones first
        drop = torch.zeros_like(groups).scatter_(1, score.argsort(dim=1, stable=True)[:, :2], True)
        out[k] = (groups & ~drop).reshape(m.shape)
    return out


STRATEGIES.register("magnitude_2to4", magnitude_2to4)
