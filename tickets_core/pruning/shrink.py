"""Physically smaller models from structured masks: pruned heads and FFN neurons removed, not multiplied by 0.

:func:`shrink` turns a model and a structured mask (:mod:`tickets_core.pruning.units`) into a copy whose
query, key and value layers keep only the rows of the kept heads, whose attention-output layers keep only
their columns, and whose FFN layers keep only the kept neurons.  A pruned unit contributes exactly 0 to the
masked model (its output columns are zero), so the smaller model computes the same function, up to the float
rounding of shorter sums.  The Hugging Face attention of BERT, RoBERTa, ELECTRA and DistilBERT infers the
number of heads from the query layer's width, so the shrunk modules run with the stock ``forward``.

FFN widths (``ffn``):

* ``"exact"`` (default): every layer keeps exactly its own neurons;
* ``"pad"``: every layer is sliced to the largest kept count and padded with zero rows, zero biases and zero
  output columns, which contribute exactly 0.  A Hugging Face config has one ``intermediate_size`` for all
  layers, so this is the width a plain config can describe.

:func:`expand_into` copies a trained shrunk model back into the full one (training the shrunk model is
training under the mask: ``train_shrunk``).  Saving a shrunk model as a Hugging Face folder is
:mod:`tickets_core.interop.shrink`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..core.errors import ConfigError
from ..models.prunable import base_model
from . import units
from .masks import Mask

_FFN_ATTR = {"distilbert": "hidden_dim"}  # the config field of the FFN width, where it is not intermediate_size


def _linear(old: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None,
            width: int | None = None) -> nn.Linear:
    """A new Linear holding ``old``'s ``rows`` (outputs) or ``cols`` (inputs), zero-padded to ``width`` of them."""
    w, b = old.weight.detach(), None if old.bias is None else old.bias.detach()
    if rows is not None:
        w, b = w[rows], None if b is None else b[rows]
        if width is not None and width > w.shape[0]:
            w = torch.cat([w, w.new_zeros(width - w.shape[0], w.shape[1])])
            b = None if b is None else torch.cat([b, b.new_zeros(width - b.shape[0])])
    if cols is not None:
        w = w[:, cols]
        if width is not None and width > w.shape[1]:
            w = torch.cat([w, w.new_zeros(w.shape[0], width - w.shape[1])], dim=1)
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    new.train(old.training)
    return new


def shrink(model: nn.Module, mask: Mask, *, ffn: str = "exact") -> nn.Module:
    """A copy of ``model`` with the heads and FFN neurons ``mask`` prunes removed (see the module docstring).

    ``mask`` must be structured (every head and neuron all kept or all pruned) and keep a head in every layer.
    The copy's masked weights are zero where the mask says so; ``config.pruned_heads`` records the removed heads.
    """
    if ffn not in ("exact", "pad"):
        raise ConfigError(f"ffn must be 'exact' or 'pad', got {ffn!r}")
    lay = units.layout(model)
    fitted = mask.fitted(model)
    if not units.is_structured(fitted, lay):
        raise units.UnitError("the mask prunes parts of heads or neurons, not whole ones: only a structured mask "
                              "(strategy structured_*) can be shrunk")
    heads, neurons = units.heads_alive(fitted, lay), units.neurons_alive(fitted, lay)
    empty = [lu.layer for i, lu in enumerate(lay) if not bool(heads[i].any())]
    if empty:
        raise units.UnitError(f"layer {empty[0]} keeps no attention head, which a shrunk model cannot run: prune "
                              "with min_heads_per_layer >= 1")
    model = copy.deepcopy(model)
    fitted.bind(model).apply_()
    mods = dict(base_model(model).named_modules())
    width = max(int(n.sum()) for n in neurons) if ffn == "pad" else None
    replaced: dict[str, nn.Linear] = {}

    def put(weight_name: str, new: nn.Linear) -> None:
        parent, _, attr = weight_name[: -len(".weight")].rpartition(".")
        setattr(mods[parent], attr, new)
        replaced[weight_name[: -len(".weight")]] = new

    def module(weight_name: str) -> nn.Linear:
        return mods[weight_name[: -len(".weight")]]

    pruned_heads = {}
    for i, lu in enumerate(lay):
        kept = [h for h in range(lu.heads) if bool(heads[i, h])]
        if len(kept) < lu.heads:
            pruned_heads[lu.layer] = [h for h in range(lu.heads) if not bool(heads[i, h])]
            rows = torch.cat([torch.arange(h * lu.head_size, (h + 1) * lu.head_size) for h in kept])
            for name in (lu.query, lu.key, lu.value):
                put(name, _linear(module(name), rows=rows))
            put(lu.attn_out, _linear(module(lu.attn_out), cols=rows))
            attention = mods[lu.query[: -len(".weight")].rpartition(".")[0]]
            for attr in ("num_attention_heads", "n_heads"):
                if isinstance(getattr(attention, attr, None), int):
                    setattr(attention, attr, len(kept))
            if hasattr(attention, "all_head_size"):
                attention.all_head_size = len(kept) * lu.head_size
        keep = neurons[i].nonzero().squeeze(1)
        if len(keep) < lu.neurons:
            put(lu.ffn_in, _linear(module(lu.ffn_in), rows=keep, width=width))
            put(lu.ffn_out, _linear(module(lu.ffn_out), cols=keep, width=width))
    config = model.config
    config.pruned_heads = {str(k): v for k, v in pruned_heads.items()}
    if ffn == "pad" and width is not None and width < lay[0].neurons:
        setattr(config, _FFN_ATTR.get(config.model_type, "intermediate_size"), width)
    prefix = {id(m): n for n, m in model.named_modules()}
    config.tickets_linear_shapes = {prefix[id(m)]: [m.out_features, m.in_features, m.bias is not None]
                                    for m in replaced.values()}
    return model


def _kept_indices(mask: Mask, lay) -> dict[str, tuple[str, torch.Tensor]]:
    """Module path (relative to the base model) -> ("rows" | "cols", kept indices) of every shrinkable layer."""
    heads, neurons = units.heads_alive(mask, lay), units.neurons_alive(mask, lay)
    out = {}
    for i, lu in enumerate(lay):
        rows = torch.cat([torch.arange(h * lu.head_size, (h + 1) * lu.head_size)
                          for h in range(lu.heads) if bool(heads[i, h])] or [torch.zeros(0, dtype=torch.long)])
        keep = neurons[i].nonzero().squeeze(1)
        for name, how, idx in ((lu.query, "rows", rows), (lu.key, "rows", rows), (lu.value, "rows", rows),
                               (lu.attn_out, "cols", rows), (lu.ffn_in, "rows", keep), (lu.ffn_out, "cols", keep)):
            out[name[: -len(".weight")]] = (how, idx)
    return out


@torch.no_grad()
def expand_into(full: nn.Module, small: nn.Module, mask: Mask) -> None:
    """Copy the weights of ``small`` (:func:`shrink` of ``full`` under ``mask``, exact FFN widths, then trained)
    back into ``full``: every tensor of the same shape as is, each shrunk layer's rows or columns into the kept
    positions.  The removed units' weights are set to 0; their biases keep their values (they cannot reach the
    output: the units' output columns are 0)."""
    lay = units.layout(full)
    fitted = mask.fitted(full)
    kept = _kept_indices(fitted, lay)
    big = dict(base_model(full).named_parameters())
    little = dict(base_model(small).named_parameters())
    for name, p in little.items():
        module, _, leaf = name.rpartition(".")
        target = big[name]
        if target.shape == p.shape:
            target.copy_(p)
            continue
        how, idx = kept[module]
        if how == "rows" or leaf == "bias":
            if leaf == "weight":
                target.zero_()
            target[idx.to(target.device)] = p.to(target.dtype)
        else:
            target.zero_()
            target[:, idx.to(target.device)] = p.to(target.dtype)
    outer = {n: q for n, q in full.named_parameters() if all(q is not v for v in big.values())}
    for name, q in small.named_parameters():
        if name in outer:  # the task head and whatever else lies outside the base model
            outer[name].copy_(q)


def shrinkable(model: nn.Module, mask: Mask) -> bool:
    """Whether ``mask`` prunes whole units only (and some) and keeps every other prunable matrix dense and a
    head in every layer: then training the shrunk model is training under the mask."""
    try:
        lay = units.layout(model)
        fitted = mask.fitted(model)
        if fitted.nonzero == fitted.numel or not units.is_structured(fitted, lay):
            return False
    except units.UnitError:
        return False
    unit_names = {getattr(lu, p) for lu in lay for p in ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")}
    if any(not bool(v.all()) for k, v in fitted.items() if k not in unit_names):
        return False
    return bool(units.heads_alive(fitted, lay).any(dim=1).all())
