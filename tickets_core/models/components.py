"""What the prunable matrices are called: layer index and component, from the parameter name alone.

Components, in model order: ``query``, ``key``, ``value``, ``attn_out``,
``ffn_in``, ``ffn_out`` and ``pooler``.  The rules cover the Hugging Face
BERT layout (BERT, RoBERTa, ELECTRA, MiniLM) and DistilBERT.  Pure string
work: the analysis uses it without loading torch.
"""

from __future__ import annotations

import re

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
