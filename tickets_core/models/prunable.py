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

from torch import nn

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
