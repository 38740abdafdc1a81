"""Which weights of a transformer are prunable, discovered from module structure.

Prunable by default: the weight of every ``nn.Linear`` inside the encoder's
repeated blocks (any ``nn.ModuleList`` of the base model whose entries are
transformer blocks: attention query/key/value, attention output, FFN in and
out) plus the pooler's dense layer when the model has one.  Never
embeddings (ELECTRA's ``embeddings_project`` sits outside the block list, so
it is excluded), biases, LayerNorm, or task heads (classifier, QA outputs,
MLM head), which live outside ``model.base_model``.

Names are relative to the base model (``encoder.layer.0.attention.self.query.weight``),
so one mask fits the masked-LM, sequence-classification and
question-answering variants of one architecture.  Nothing here hard-codes
layer counts or attribute paths like ``model.bert``.
"""

from __future__ import annotations

import re

from torch import nn

COMPONENTS = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out", "pooler")

# Rules mapping the module path inside one block to a component, checked in
# order; they cover BERT/RoBERTa/ELECTRA/MiniLM (HF BERT layout) and DistilBERT.
_COMPONENT_RULES: tuple[tuple[str, str], ...] = (
    (r"(^|\.)(query|q_lin|q_proj)$", "query"),
    (r"(^|\.)(key|k_lin|k_proj)$", "key"),
    (r"(^|\.)(value|v_lin|v_proj)$", "value"),
    (r"(^|\.)attention\.output\.dense$", "attn_out"),
    (r"(^|\.)(out_lin|o_proj|out_proj)$", "attn_out"),
    (r"(^|\.)intermediate\.dense$", "ffn_in"),
    (r"(^|\.)(lin1|fc1)$", "ffn_in"),
    (r"(^|\.)output\.dense$", "ffn_out"),
    (r"(^|\.)(lin2|fc2)$", "ffn_out"),
)


def base_model(model: nn.Module) -> nn.Module:
    """The encoder without its task head (``model.base_model`` for HF models, else the model)."""
    base = getattr(model, "base_model", None)
    return base if isinstance(base, nn.Module) else model


def _block_lists(base: nn.Module) -> list[str]:
    """Names of the ``nn.ModuleList``s holding the repeated transformer blocks."""
    out = []
    for name, mod in base.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        # A block list: every entry holds Linear layers, and it is not nested in another block list.
        if all(any(isinstance(m, nn.Linear) for m in block.modules()) for block in mod):
            if not any(name.startswith(p + ".") for p in out):
                out.append(name)
    return out


def pooler_module(base: nn.Module) -> nn.Module | None:
    """The pooler of a base model, or None (RoBERTa classifiers, MLM and QA variants have none)."""
    pooler = getattr(base, "pooler", None)
    return pooler if isinstance(pooler, nn.Module) else None


def prunable_parameters(model: nn.Module, include_pooler: bool = True) -> dict[str, nn.Parameter]:
    """Prunable weight matrices keyed by name relative to the base model, in module order."""
    base = base_model(model)
    lists = _block_lists(base)
    pooler = pooler_module(base) if include_pooler else None
    pooler_names = {n for n, m in base.named_modules() if pooler is not None and m is pooler}
    out: dict[str, nn.Parameter] = {}
    for name, mod in base.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        in_blocks = any(name.startswith(p + ".") for p in lists)
        in_pooler = any(name == p or name.startswith(p + ".") for p in pooler_names)
        if in_blocks or in_pooler:
            out[f"{name}.weight"] = mod.weight
    return out


def is_pooler(name: str) -> bool:
    """True for a prunable name that belongs to the pooler."""
    return name.split(".", 1)[0] == "pooler"


def describe(name: str) -> tuple[int | None, str]:
    """``(layer index, component)`` of a prunable name; layer is None for the pooler.

    Components: query, key, value, attn_out, ffn_in, ffn_out, pooler.  A name
    matching no known layout keeps its module's own name as component.
    """
    module = name[: -len(".weight")] if name.endswith(".weight") else name
    if is_pooler(module):
        return None, "pooler"
    m = re.search(r"\.(\d+)\.(.+)$", module)
    if m is None:
        return None, module.rsplit(".", 1)[-1]
    layer, inner = int(m.group(1)), m.group(2)
    for pattern, component in _COMPONENT_RULES:
        if re.search(pattern, inner):
            return layer, component
    return layer, inner.rsplit(".", 1)[-1]
