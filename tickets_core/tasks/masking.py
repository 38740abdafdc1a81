"""The torch side of masked language modelling: BERT's token masking, and vocabulary logits at the masked
positions only (see :mod:`tickets_core.tasks.mlm`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .common import Evaluator
from .metrics import mlm_metrics

#: Attributes of masked-LM models holding a head that maps hidden states (any leading shape) to vocabulary
#: logits: BERT's ``cls`` (BertOnlyMLMHead), RoBERTa's ``lm_head``.  Other layouts take the full forward.
HEAD_ATTRS = ("cls", "lm_head")


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer, probability: float,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: returns (masked input ids, labels with -100 at unmasked positions)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype)
    candidates = (attention_mask == 1) & ~torch.isin(input_ids, special)
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & candidates
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(len(tokenizer), input_ids.shape, generator=generator, dtype=input_ids.dtype)
    masked = input_ids.clone()
    masked[chosen & (roll < 0.8)] = tokenizer.mask_token_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[swap] = random_ids[swap]
    return masked, labels



@dataclass
class MaskedLogits:
    """Vocabulary logits at the masked positions only (``N x V``) and those positions' labels (``N``)."""

    logits: torch.Tensor
    labels: torch.Tensor


def mlm_head(model) -> torch.nn.Module | None:
    """The module mapping ``model``'s hidden states to vocabulary logits, for the layouts of :data:`HEAD_ATTRS`."""
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return None
    for attr in HEAD_ATTRS:
        head = getattr(model, attr, None)
        if isinstance(head, torch.nn.Module):
            return head
    return None


def masked_logits(model, inputs: dict, labels: torch.Tensor, encoder=None) -> MaskedLogits | None:
    """Encoder on ``inputs``, then the MLM head on the positions where ``labels`` != -100 only.

    None when ``model`` has no head of a known layout (the caller runs the full forward).  ``encoder``: a
    compiled ``model.base_model`` to run in its place (None: the encoder itself).
    """
    head = mlm_head(model)
    if head is None:
        return None
    hidden = (model.base_model if encoder is None else encoder)(**inputs, return_dict=True)[0]
    labels = labels.to(hidden.device)
    sel = labels != -100
    return MaskedLogits(head(hidden[sel]), labels[sel])


class MaskedTokens(Evaluator):
    """Cross-entropy and accuracy summed over the masked positions only."""

    def __init__(self) -> None:
        self.loss_sum, self.correct, self.count = 0.0, 0, 0

    def add(self, outputs, batch: dict, rows: dict) -> None:
        import torch.nn.functional as F

        if isinstance(outputs, MaskedLogits):
            logits, target = outputs.logits.float(), outputs.labels
        else:
            labels = batch["labels"].to(outputs.logits.device)
            sel = labels != -100
            logits, target = outputs.logits[sel].float(), labels[sel]
        self.loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        self.correct += int((logits.argmax(-1) == target).sum())
        self.count += int(target.numel())

    def result(self) -> dict[str, float]:
        return mlm_metrics(self.loss_sum, self.correct, self.count)
