"""The reference way, as the baseline every benchmark compares against.

Chen et al.'s code (transformers 2.5 ``run_glue.py`` plus
``torch.nn.utils.prune``) trains a pruned model like this:

* masks live in ``torch.nn.utils.prune`` forward pre-hooks: each prunable
  ``Linear`` holds ``weight_orig`` and a float ``weight_mask`` and recomputes
  ``weight = weight_orig * weight_mask`` before every forward;
* every example is tokenized and padded to ``max_seq_length`` (128) ahead of
  time, so every batch is 32 x 128 tokens whatever the sentence lengths;
* a plain loop: random sampler, AdamW (no decay on bias/LayerNorm), linear
  schedule to zero, gradient clipping at 1.0, ``model.zero_grad()``.

This module is written here from that description (no code copied); it
uses tickets_core only to find the prunable matrices, so both sides of a
comparison prune exactly the same weights.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from tickets_core.models.prunable import base_model, prunable_parameters

REFERENCE_MAX_LEN = 128


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Prunable weight name (relative to the base model) -> the module that owns it."""
    names = prunable_parameters(model)
    mods = dict(base_model(model).named_modules())
    return {k: mods[k[: -len(".weight")]] for k in names}


def attach_prune_hooks(model: nn.Module, mask: dict[str, torch.Tensor]) -> None:
    """Mask ``model`` the reference way: ``torch.nn.utils.prune.custom_from_mask`` on every prunable matrix."""
    for k, mod in prunable_modules(model).items():
        m = mask[k] if k in mask else torch.ones_like(mod.weight, dtype=torch.bool)
        torch_prune.custom_from_mask(mod, "weight", m.to(mod.weight.device).to(mod.weight.dtype))


def remove_prune_hooks(model: nn.Module) -> None:
    """Bake the masks into the weights and drop the hooks (``prune.remove``)."""
    for mod in prunable_modules(model).values():
        if torch_prune.is_pruned(mod) and hasattr(mod, "weight_orig"):
            torch_prune.remove(mod, "weight")


def global_unstructured_mask(model: nn.Module, amount: float) -> dict[str, torch.Tensor]:
    """The reference pruning step: ``global_unstructured(L1Unstructured)``; returns the bool masks and removes the hooks' state."""
    mods = prunable_modules(model)
    torch_prune.global_unstructured([(m, "weight") for m in mods.values()],
                                    pruning_method=torch_prune.L1Unstructured, amount=amount)
    return {k: m.weight_mask.bool() for k, m in mods.items()}


def pad128(rows: list[dict], pad_id: int, max_len: int = REFERENCE_MAX_LEN) -> dict[str, torch.Tensor]:
    """Pad (and truncate) every example to ``max_len`` tokens, as the reference's tokenize-ahead did."""
    n = len(rows)
    ids = torch.full((n, max_len), pad_id, dtype=torch.long)
    att = torch.zeros((n, max_len), dtype=torch.long)
    tt = torch.zeros((n, max_len), dtype=torch.long)
    for i, r in enumerate(rows):
        x = list(r["input_ids"])[:max_len]
        ids[i, : len(x)] = torch.tensor(x)
        att[i, : len(x)] = 1
        if "token_type_ids" in r and r["token_type_ids"] is not None:
            t = list(r["token_type_ids"])[:max_len]
            tt[i, : len(t)] = torch.tensor(t)
    return {"input_ids": ids, "attention_mask": att, "token_type_ids": tt,
            "labels": torch.tensor([int(r["labels"]) for r in rows], dtype=torch.long)}


def rows_of(dataset) -> list[dict]:
    """A tokenized dataset (``datasets.Dataset`` or list of dicts) as a list of row dicts."""
    if isinstance(dataset, list):
        return dataset
    cols = [c for c in ("input_ids", "token_type_ids", "labels") if c in dataset.column_names]
    d = dataset.select_columns(cols).to_dict()
    return [dict(zip(d, vals)) for vals in zip(*d.values())]


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)],
         "weight_decay": weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)],
         "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, eps=1e-8)


def reference_fine_tune(model: nn.Module, train_rows: list[dict], pad_id: int, *, epochs: float = 1.0,
                        batch_size: int = 32, lr: float = 2e-5, weight_decay: float = 0.0,
                        max_grad_norm: float = 1.0, seed: int = 0, device=None, autocast_dtype=None,
                        on_step=None) -> dict:
    """Plain reference training loop (batches padded to 128, random order); returns time and counts.

    ``device``: where the model is (batches are padded on the CPU and copied
    there, as the reference's DataLoader did); ``autocast_dtype``: e.g.
    ``torch.bfloat16`` for autocast (the reference itself ran fp32 or apex
    fp16); ``on_step(step)`` is called after each optimizer step (timing).
    """
    import contextlib
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model.train()
    opt = _optimizer(model, lr, weight_decay)
    steps_per_epoch = (len(train_rows) + batch_size - 1) // batch_size
    total = max(1, int(round(steps_per_epoch * epochs)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (total - s) / total))
    g = torch.Generator().manual_seed(seed)
    step, examples, tokens, loss_sum = 0, 0, 0, 0.0
    t0 = time.perf_counter()
    model.zero_grad()
    while step < total:
        order = torch.randperm(len(train_rows), generator=g).tolist()
        for i in range(0, len(order), batch_size):
            if step >= total:
                break
            batch = pad128([train_rows[j] for j in order[i:i + batch_size]], pad_id)
            if device is not None:
                batch = {k: v.to(device) for k, v in batch.items()}
            amp = (torch.autocast(device_type=torch.device(device or "cpu").type, dtype=autocast_dtype)
                   if autocast_dtype is not None else contextlib.nullcontext())
            with amp:
                out = model(**batch)
            out.loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            sched.step()
            model.zero_grad()
            step += 1
            examples += batch["input_ids"].shape[0]
            tokens += batch["input_ids"].numel()
            loss_sum += out.loss.item()
            if on_step is not None:
                on_step(step)
    return {"time_s": time.perf_counter() - t0, "steps": step, "examples": examples,
            "tokens_processed": tokens, "train_loss": loss_sum / max(step, 1)}


@torch.no_grad()
def reference_evaluate(model: nn.Module, eval_rows: list[dict], pad_id: int, batch_size: int = 64) -> dict:
    """Accuracy with every batch padded to 128 (the reference evaluation)."""
    model.eval()
    correct, t0 = 0, time.perf_counter()
    for i in range(0, len(eval_rows), batch_size):
        batch = pad128(eval_rows[i:i + batch_size], pad_id)
        labels = batch.pop("labels")
        correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    model.train()
    return {"accuracy": correct / max(len(eval_rows), 1), "time_s": time.perf_counter() - t0}
