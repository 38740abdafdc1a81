"""Physically smaller models from structured tickets: pruned heads and FFN neurons removed, not multiplied by 0.

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

import torch
from torch import nn

from ..core.errors import ConfigError
from ..core.fsio import atomic_folder, atomic_write_text, require_new_folder
from ..models.prunable import base_model
from ..pruning import units
from ..pruning.masks import Mask

CODE_FILE = "tickets_shrunk.py"
_FFN_ATTR = {"distilbert": "hidden_dim"}  # the config field of the FFN width, where it is not intermediate_size
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
