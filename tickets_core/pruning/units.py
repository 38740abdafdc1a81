"""Structured units of an encoder: attention heads and FFN neurons, as slices of the ordinary weight mask.

A *head* ``h`` of layer ``l`` is rows ``h*d .. (h+1)*d`` of that layer's
query, key and value weights and the same columns of the attention-output
weight (``d`` = head size); an FFN *neuron* ``j`` is row ``j`` of the
intermediate weight and column ``j`` of the FFN output weight.  A structured
mask is a plain :class:`~tickets_core.pruning.masks.Mask` whose head and
neuron slices are each all kept or all pruned, so rewinding, transfer, the
file format and every analysis work unchanged.  A pruned unit contributes
exactly 0 to the layer's output whatever its biases hold (its output columns
are zero), which is what lets :mod:`tickets_core.interop.shrink` remove it.

Scores (one per unit, higher = more worth keeping):

* magnitude: the L2 norm of the unit's weights (all four slices of a head,
  both slices of a neuron);
* importance (Michel et al., NeurIPS 2019): ``E_x |dL(x)/d xi|`` of a gate
  ``xi`` (= 1) on the head's output / the neuron's activation, summed per
  example over the training batches given, then normalised by its L2 norm
  within each layer (Michel et al. found the per-layer normalisation matters
  for global ranking).  The gate gradient is read with hooks: for a head it is
  ``sum_t <context_h(t), dL/dcontext_h(t)>``, no gate module is added.

Selection (:func:`prune_units`): a level with target ``t`` prunes
``round(t * heads)`` heads and ``round(t * neurons)`` neurons in total (heads
and neurons ranked separately, each globally across layers: their scores
are not comparable); units pruned already stay pruned; ties go by position
(earlier layer, lower index first); a head is skipped when pruning it would
leave its layer fewer than ``min_heads_per_layer`` heads.  The random
baseline draws the same counts at random, or (``layer_counts``) exactly a
given mask's per-layer counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from ..core.errors import ConfigError
from ..models.components import describe
from ..models.prunable import prunable_parameters
from .masks import Mask


class UnitError(ConfigError):
    """A model or mask without the head/neuron structure, or a unit count that cannot be reached (one line)."""


_PARTS = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


@dataclass(frozen=True)
class LayerUnits:
    """One encoder layer's mask names and unit counts."""

    layer: int
    query: str
    key: str
    value: str
    attn_out: str
    ffn_in: str
    ffn_out: str
    heads: int
    head_size: int
    neurons: int

    def head_slices(self, h: int) -> list[tuple[str, tuple]]:
        """``(mask name, index)`` of the four slices of head ``h``."""
        rows = slice(h * self.head_size, (h + 1) * self.head_size)
        return [(self.query, (rows,)), (self.key, (rows,)), (self.value, (rows,)), (self.attn_out, (slice(None), rows))]


Layout = list[LayerUnits]


def num_heads(model: nn.Module) -> int:
    """Attention heads per layer from the model's config (``num_attention_heads``, DistilBERT's ``n_heads``)."""
    cfg = getattr(model, "config", None)
    for attr in ("num_attention_heads", "n_heads"):
        n = getattr(cfg, attr, None)
        if isinstance(n, int) and n > 0:
            return n
    raise UnitError(f"{type(model).__name__} has no config.num_attention_heads: structured pruning needs it")


def layout_from_shapes(shapes: dict[str, tuple], heads: int) -> Layout:
    """The units of the prunable matrices ``shapes`` (name -> shape, names as in a mask), ``heads`` per layer."""
    found: dict[int, dict[str, str]] = {}
    for name in shapes:
        layer, component = describe(name)
        if layer is not None and component in _PARTS:
            found.setdefault(layer, {})[component] = name
    if not found:
        raise UnitError("no attention/FFN matrices found: structured strategies need a BERT-family encoder")
    out = []
    for layer in sorted(found):
        names = found[layer]
        missing = [p for p in _PARTS if p not in names]
        if missing:
            raise UnitError(f"layer {layer} has no {missing[0]} matrix: structured strategies need all of {_PARTS}")
        width = shapes[names["query"]][0]
        if width % heads:
            raise UnitError(f"layer {layer}: query has {width} rows, not a multiple of {heads} heads")
        out.append(LayerUnits(layer=layer, heads=heads, head_size=width // heads,
                              neurons=shapes[names["ffn_in"]][0], **names))
    return out


def layout(model: nn.Module) -> Layout:
    """The heads and neurons of ``model``'s prunable matrices."""
    shapes = {k: tuple(p.shape) for k, p in prunable_parameters(model).items()}
    return layout_from_shapes(shapes, num_heads(model))


# ---------------------------------------------------------------------------
# Reading and writing units in a mask
# ---------------------------------------------------------------------------


def _check_mask(mask: Mask, lay: Layout) -> None:
    for lu in lay:
        for part in _PARTS:
            if getattr(lu, part) not in mask:
                raise UnitError(f"mask has no entry {getattr(lu, part)!r} of layer {lu.layer}")


def heads_alive(mask: Mask, lay: Layout) -> torch.Tensor:
    """``(layers, heads)`` bool: a head is alive while any weight of its four slices is kept."""
    _check_mask(mask, lay)
    out = torch.zeros(len(lay), lay[0].heads, dtype=torch.bool)
    for i, lu in enumerate(lay):
        for h in range(lu.heads):
            out[i, h] = any(bool(mask[n][idx].any()) for n, idx in lu.head_slices(h))
    return out


def neurons_alive(mask: Mask, lay: Layout) -> list[torch.Tensor]:
    """Per layer, ``(neurons,)`` bool: a neuron is alive while its intermediate row or output column has a kept weight."""
    _check_mask(mask, lay)
    return [mask[lu.ffn_in].any(dim=1) | mask[lu.ffn_out].any(dim=0) for lu in lay]


def is_structured(mask: Mask, lay: Layout) -> bool:
    """True when every head and neuron slice of ``mask`` is all kept or all pruned (a dense mask is)."""
    _check_mask(mask, lay)
    for lu in lay:
        for h in range(lu.heads):
            parts = [mask[n][idx] for n, idx in lu.head_slices(h)]
            alive = any(bool(p.any()) for p in parts)
            if alive and not all(bool(p.all()) for p in parts):
                return False
        rows, cols = mask[lu.ffn_in], mask[lu.ffn_out]
        if not (torch.equal(rows.all(dim=1), rows.any(dim=1)) and torch.equal(cols.all(dim=0), cols.any(dim=0))
                and torch.equal(rows.any(dim=1), cols.any(dim=0))):
            return False
    return True


def with_units(current: Mask, lay: Layout, heads: torch.Tensor, neurons: list[torch.Tensor]) -> Mask:
    """A copy of ``current`` with the slices of every head and neuron marked False in ``heads``/``neurons`` pruned."""
    out = current.copy()
    for i, lu in enumerate(lay):
        for h in range(lu.heads):
            if not bool(heads[i, h]):
                for n, idx in lu.head_slices(h):
                    out[n][idx] = False
        dead = ~neurons[i]
        out[lu.ffn_in][dead, :] = False
        out[lu.ffn_out][:, dead] = False
    return out


def unit_counts(mask: Mask, lay: Layout) -> dict:
    """Units kept: totals and per layer (the ``units`` record of a level's metrics)."""
    heads, neurons = heads_alive(mask, lay), neurons_alive(mask, lay)
    per_heads = [int(x) for x in heads.sum(dim=1)]
    per_neurons = [int(n.sum()) for n in neurons]
    return {"heads_kept": sum(per_heads), "heads_total": heads.numel(),
            "neurons_kept": sum(per_neurons), "neurons_total": sum(lu.neurons for lu in lay),
            "heads_per_layer": per_heads, "neurons_per_layer": per_neurons,
            "head_mask": [[bool(x) for x in row] for row in heads]}


# ---------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------

#: ``(head scores (layers, heads), [neuron scores (neurons,) per layer])``
Scores = tuple[torch.Tensor, list[torch.Tensor]]


def magnitude_scores(weights: dict[str, torch.Tensor], lay: Layout) -> Scores:
    """L2 norm of each unit's weights."""
    heads = torch.zeros(len(lay), lay[0].heads)
    neurons = []
    for i, lu in enumerate(lay):
        sq = {p: weights[getattr(lu, p)].detach().float().cpu() ** 2 for p in _PARTS}
        d = lu.head_size
        per_row = sq["query"].sum(1) + sq["key"].sum(1) + sq["value"].sum(1) + sq["attn_out"].sum(0)
        heads[i] = per_row.reshape(lu.heads, d).sum(1).sqrt()
        neurons.append((sq["ffn_in"].sum(1) + sq["ffn_out"].sum(0)).sqrt())
    return heads, neurons


def _modules_by_weight(model: nn.Module) -> dict[str, nn.Module]:
    from ..models.prunable import base_model

    return {f"{n}.weight": m for n, m in base_model(model).named_modules() if isinstance(m, nn.Linear)}


def importance_scores(model: nn.Module, lay: Layout, batches: Iterable[dict],
                      loss: Callable[[nn.Module, dict], torch.Tensor], normalize: bool = True) -> Scores:
    """Michel et al.'s head importance ``sum_x |dL(x)/d gate|``, and the same for FFN neurons, over ``batches``.

    ``loss(model, batch)`` is the batch's mean loss; the model runs in eval mode (no dropout) and its
    weights and gradients are left as they were.  ``normalize``: divide each layer's head (and neuron)
    scores by their L2 norm.
    """
    modules = _modules_by_weight(model)
    device = next(model.parameters()).device
    heads = torch.zeros(len(lay), lay[0].heads, dtype=torch.float64)
    neurons = [torch.zeros(lu.neurons, dtype=torch.float64) for lu in lay]
    handles = []

    def watch(i: int, kind: str):
        def pre_hook(module, args):
            x = args[0]
            if not x.requires_grad:
                return

            def grad_hook(g):
                per = (x.detach().float() * g.float())  # (B, T, width): the gate gradient's terms
                if kind == "heads":
                    per = per.reshape(per.shape[0], per.shape[1], lay[i].heads, lay[i].head_size).sum(dim=(1, 3))
                    heads[i] += per.abs().sum(0).double().cpu()
                else:
                    neurons[i] += per.sum(1).abs().sum(0).double().cpu()
            x.register_hook(grad_hook)
        return pre_hook

    for i, lu in enumerate(lay):
        handles.append(modules[lu.attn_out].register_forward_pre_hook(watch(i, "heads")))
        handles.append(modules[lu.ffn_out].register_forward_pre_hook(watch(i, "neurons")))
    was_training = model.training
    saved_grads = {n: p.grad for n, p in model.named_parameters()}
    model.eval()
    seen = 0
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            batch = {k: v.to(device) for k, v in batch.items()}
            n = int(next(iter(batch.values())).shape[0])
            # The batch loss is the mean of the per-example losses: n * its gradient is each example's own.
            (loss(model, batch) * n).backward()
            seen += n
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        for name, p in model.named_parameters():
            p.grad = saved_grads[name]
    if seen == 0:
        raise UnitError("importance scores need at least one training batch")
    heads, neurons = heads.float(), [x.float() for x in neurons]
    if normalize:
        heads = heads / heads.norm(dim=1, keepdim=True).clamp_min(1e-20)
        neurons = [x / x.norm().clamp_min(1e-20) for x in neurons]
    return heads, neurons


def random_scores(lay: Layout, generator: torch.Generator | None) -> Scores:
    """Uniform random scores: heads (layer-major), then each layer's neurons."""
    heads = torch.rand(len(lay), lay[0].heads, generator=generator)
    return heads, [torch.rand(lu.neurons, generator=generator) for lu in lay]


# ---------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------


def _lowest_first(scores: torch.Tensor) -> list[int]:
    """Flat indices by ascending score, ties by position (a stable sort)."""
    return torch.sort(scores.reshape(-1).double(), stable=True).indices.tolist()


def select_heads(scores: torch.Tensor, alive: torch.Tensor, n_prune: int, min_per_layer: int) -> torch.Tensor:
    """``alive`` with the ``n_prune`` lowest-scoring alive heads removed, never leaving a layer below
    ``min_per_layer`` heads (such a head is skipped for the next one)."""
    alive = alive.clone()
    left = alive.sum(dim=1)
    heads = alive.shape[1]
    for flat in _lowest_first(scores):
        if n_prune <= 0:
            break
        i, h = divmod(flat, heads)
        if alive[i, h] and left[i] > min_per_layer:
            alive[i, h] = False
            left[i] -= 1
            n_prune -= 1
    if n_prune > 0:
        raise UnitError(f"cannot prune {n_prune} more heads while keeping min_heads_per_layer={min_per_layer} "
                        "heads in every layer: lower the sparsity or min_heads_per_layer")
    return alive


def select_neurons(scores: list[torch.Tensor], alive: list[torch.Tensor], n_prune: int) -> list[torch.Tensor]:
    """``alive`` with the ``n_prune`` lowest-scoring alive neurons (across all layers) removed."""
    flat_alive = torch.cat(alive).clone()
    flat = torch.cat([s.float() for s in scores]).masked_fill(~flat_alive, float("inf"))
    if n_prune > 0:
        flat_alive[torch.tensor(_lowest_first(flat)[:n_prune], dtype=torch.long)] = False
    return list(torch.split(flat_alive, [a.numel() for a in alive]))


def _count(target: float, total: int) -> int:
    return int(round(target * total))


def kept_counts(layer_sparsities: dict[str, float], lay: Layout) -> tuple[list[int], list[int]]:
    """Heads and neurons kept per layer of a structured mask with these per-matrix sparsities (its query and
    intermediate matrices' sparsities are the fractions of heads and neurons pruned)."""
    missing = [n for lu in lay for n in (lu.query, lu.ffn_in) if n not in layer_sparsities]
    if missing:
        raise UnitError(f"layer_sparsities has no entry for {missing[0]!r}")
    return ([lu.heads - _count(layer_sparsities[lu.query], lu.heads) for lu in lay],
            [lu.neurons - _count(layer_sparsities[lu.ffn_in], lu.neurons) for lu in lay])


def prune_units(current: Mask, lay: Layout, target: float, scores: Scores, *, min_heads_per_layer: int = 1,
                keep: tuple[list[int], list[int]] | None = None) -> Mask:
    """``current`` with ``round(target * units)`` heads and neurons pruned in all (each kind ranked globally by
    ``scores``, lowest first); with ``keep`` = (heads, neurons) kept per layer (:func:`kept_counts`), exactly
    those counts in every layer instead, ranked within each layer."""
    if not 0.0 <= target < 1.0:
        raise UnitError(f"target sparsity must be in [0, 1), got {target}")
    h_alive, n_alive = heads_alive(current, lay), neurons_alive(current, lay)
    h_scores, n_scores = scores
    if keep is not None:
        for i, (want_h, want_n) in enumerate(zip(*keep)):
            extra_h, extra_n = int(h_alive[i].sum()) - want_h, int(n_alive[i].sum()) - want_n
            if extra_h < 0 or extra_n < 0:
                raise UnitError(f"layer {lay[i].layer} is to keep {want_h} heads and {want_n} neurons but has "
                                f"only {int(h_alive[i].sum())} and {int(n_alive[i].sum())} left")
            h_alive[i] = select_heads(h_scores[i:i + 1], h_alive[i:i + 1], extra_h, 0)[0]
            n_alive[i] = select_neurons([n_scores[i]], [n_alive[i]], extra_n)[0]
        return with_units(current, lay, h_alive, n_alive)
    n_heads = _count(target, h_alive.numel()) - int((~h_alive).sum())
    n_neurons = _count(target, sum(a.numel() for a in n_alive)) - sum(int((~a).sum()) for a in n_alive)
    if n_heads < 0 or n_neurons < 0:
        raise UnitError(f"target sparsity {target} is below the fraction of units the mask has pruned already")
    h_alive = select_heads(h_scores, h_alive, n_heads, min_heads_per_layer)
    n_alive = select_neurons(n_scores, n_alive, n_neurons)
    return with_units(current, lay, h_alive, n_alive)
