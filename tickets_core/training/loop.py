"""The fine-tuning and evaluation loop that every IMP level runs.

``fine_tune`` builds a fresh AdamW (no weight decay on biases and LayerNorm
weights) and a linear schedule (warm-up over ``warmup_ratio`` of the steps,
then linear decay; the learning rate reaches 0 after the call's last
optimizer step), so each IMP level starts its own schedule.  Batches are
padded to their own longest row (dynamic padding), optionally grouped by
length.  When a ``bound_mask`` is given, pruned gradients are zeroed after
every backward pass and pruned weights re-zeroed after every optimizer step.

Device and precision: ``TrainConfig.device='auto'`` takes the device
``accelerate`` assigns to this process (a GPU when present, else the CPU);
``precision='auto'`` means bf16 autocast on a GPU that supports it, fp32
otherwise.  Seeds: python, numpy and torch are seeded from ``seed``, the
data order and MLM masking use their own generators seeded from it, so the
same call on CPU repeats bit for bit.

Fast path: ``TrainConfig.fast_path`` ('auto': on for CUDA, off on the CPU)
runs the same steps with the pieces of :mod:`tickets_core.training.fastpath` (length
bucketing, multi-tensor masking, bf16 compute weights with fp32 master
weights, prefetched pinned batches, opt-in torch.compile); ``fastpath.make_plan``
decides which, and ``fastpath.Steps`` runs each forward/backward (compiled
until a step fails, then eagerly).  With it off (the CPU default) the loop is
the plain one.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import time
from typing import Callable

import numpy as np
import torch

from . import checkpoint as ckpt
from . import fastpath, prefetch, tracking
from ..core.config import TrainConfig
from ..core.seeds import derived_seed
from ..models.heads import get_head
from ..models.build import check_vocab
from ..tasks.common import TaskData

GROUP_CHUNK = 50  # length-grouped batching sorts chunks of this many batches
PROGRESS_EVERY = 10  # refresh the progress bar's loss every N steps (reading it syncs a GPU)


def fine_tune(model, data: TaskData, cfg: TrainConfig, *, seed: int = 0, bound_mask=None,
              on_step: Callable[[int, torch.nn.Module], bool | None] | None = None, desc: str | None = None,
              schedule_span: int = 1, checkpoint: "ckpt.Checkpointer | None" = None) -> dict:
    """Fine-tune ``model`` on ``data.train``; evaluate every ``cfg.eval_every`` steps and at the end.

    ``schedule_span`` stretches the linear decay to that many times this
    call's steps, of which the call runs the first (``lr_schedule:
    across_levels``, the reference code's per-level restart of one long
    schedule); 1: the learning rate reaches 0 at the call's last step.

    Returns ``{"train_loss", "steps", "examples", "time_s", "eval", "history", "fast_path"}``:
    mean training loss, optimizer steps, training examples seen, wall time,
    final evaluation metrics, the periodic evaluations
    (``[{"step": s, **metrics}]``, empty without ``eval_every``) and what
    the fast path did (``fastpath.Steps.record``: plan, compiled or not,
    fall-back step, recompiles, graphs).

    ``checkpoint`` (:class:`tickets_core.training.checkpoint.Checkpointer`):
    resume from its file when a whole one is there, and write one when it is
    due (and at a walltime signal, after which :class:`~tickets_core.training.checkpoint.WalltimeReached`
    is raised); the result is then bit for bit that of an uninterrupted call
    on a CPU.  ``on_step`` hooks with ``state_dict``/``load_state_dict`` are
    saved and restored with it.

    With the fast path (``cfg.fast_path``, on by default on CUDA; see
    :mod:`tickets_core.training.fastpath`) the same steps run with padded-to-a-multiple
    batches, multi-tensor masking, bf16 compute weights with fp32 master
    weights under bf16, prefetched batches and, when ``cfg.compile`` asks
    for it, a compiled model (the module the task's loss runs,
    ``task.compile_target``: the MLM encoder when the loss applies the head
    itself; a one-row last batch then joins the batch before it).
    ``on_step`` and periodic evaluations always see the fp32 weights (a
    callback with ``reads_weights = False``, such as a timer, is called
    without swapping them in).
    """
    check_vocab(model, data.tokenizer)
    _seed_everything(seed)
    device = resolve_device(cfg.device)
    model.to(device)
    autocast = _autocast(device, cfg.precision)
    forward_keys = _forward_keys(model)

    n_train = len(data.train)
    plan, total_steps = _plan(data, cfg, device, n_train)

    track = tracking.step_logger(total_steps)  # report_to: None when the run tracks nothing
    optimizer = make_optimizer(model, cfg)
    warmup = int(math.ceil(cfg.warmup_ratio * total_steps))
    schedule_steps = total_steps * schedule_span
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup, schedule_steps))

    order_gen = torch.Generator().manual_seed(derived_seed(seed, "data_order"))
    mask_gen = torch.Generator().manual_seed(derived_seed(seed, "mlm_masking"))
    lengths = list(data.train["length"]) if cfg.group_by_length else None
    params = [p for p in model.parameters() if p.requires_grad]  # fp32 (master) parameters

    from tqdm.auto import tqdm

    history: list[dict] = []
    loss_sum, examples, step, elapsed = torch.zeros((), device=device), 0, 0, 0.0
    mask_state = mask_gen.get_state()
    if checkpoint is not None:
        checkpoint.identity = {**checkpoint.identity, "total_steps": total_steps, "schedule_span": schedule_span}
    stored = checkpoint.load(model) if checkpoint is not None else None
    if stored is not None:  # checked whole by load(): apply it all
        ckpt.restore(stored, model=model, optimizer=optimizer, scheduler=scheduler, mask_gen=mask_gen, hook=on_step)
        step, examples, history, elapsed = stored["step"], stored["examples"], stored["history"], stored["elapsed_s"]
        loss_sum, mask_state = stored["loss_sum"].to(device), stored["mask_gen"]
    bar = tqdm(total=total_steps, initial=step, desc=desc or "fine-tune", disable=not cfg.progress, leave=False)
    start = time.perf_counter() - elapsed
    model.train()
    multi = plan.multi_tensor_masks
    if bound_mask is not None:
        bound_mask.apply_()
    batches = _batches(data, cfg, plan, n_train, total_steps, order_gen, mask_gen, lengths, forward_keys,
                       _pad_cap(model), start=step)
    if plan.prefetch:
        batches = prefetch.Prefetcher(batches, plan.prefetch)
    masters = fastpath.MasterWeights(model) if plan.master_weights else None
    # Forward and backward, compiled per the plan (the task's compile_target) until a step fails, then eagerly.
    steps = fastpath.Steps(data.task, model, plan, device)
    expose_to_callback = getattr(on_step, "reads_weights", True)
    try:
        for n_rows, batch, mask_state in batches:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            loss = steps(batch, autocast, step + 1)
            if masters is not None:
                masters.grads_to_master()
            if bound_mask is not None:
                bound_mask.mask_grads_(multi_tensor=multi)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            if track is not None:
                track(step + 1, loss, scheduler.get_last_lr()[0])
            scheduler.step()
            if masters is not None:
                model.zero_grad(set_to_none=True)  # compute and other grads; master grads are overwritten
            else:
                optimizer.zero_grad(set_to_none=True)
            if bound_mask is not None:
                bound_mask.apply_(multi_tensor=multi)
            if masters is not None:
                masters.to_compute()
            step += 1
            examples += n_rows
            loss_sum = loss_sum + loss.detach().float()  # stays on the device: no sync per step
            bar.update(1)
            if cfg.progress and step % PROGRESS_EVERY == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", **_disk(checkpoint), refresh=False)
            if on_step is not None:
                with fastpath.exposed(masters if expose_to_callback else None):
                    stop = on_step(step, model)
                if stop:
                    break  # the hook ended the level early (early-bird): evaluate it as usual
            if cfg.eval_every and step % cfg.eval_every == 0 and step < total_steps:
                with fastpath.exposed(masters):
                    history.append({"step": step, **evaluate(model, data, cfg)})
                model.train()
            if checkpoint is not None and (checkpoint.due(step) or ckpt.stop_requested()):
                with fastpath.exposed(masters):
                    checkpoint.save(ckpt.capture(
                        step=step, examples=examples, loss_sum=loss_sum, history=history,
                        elapsed_s=time.perf_counter() - start, model=model, optimizer=optimizer,
                        scheduler=scheduler, mask_state=mask_state, hook=on_step))
                if cfg.progress:
                    bar.set_postfix(loss=f"{loss.item():.4f}", **_disk(checkpoint), refresh=False)
            if ckpt.stop_requested():
                ckpt.clear_request()
                raise ckpt.WalltimeReached(checkpoint.path if checkpoint is not None else None)
    finally:
        steps.close()
        if isinstance(batches, prefetch.Prefetcher):
            batches.close()
        if masters is not None:
            masters.close()
    if bound_mask is not None and multi:
        bound_mask.apply_()  # one exact pass (masked_fill) whatever the multi-tensor passes met
    bar.close()
    mean_loss = loss_sum.item() / max(step, 1)
    if not math.isfinite(mean_loss):
        raise FloatingPointError(f"{desc or 'fine-tuning'}: the training loss is {mean_loss} (not finite) after "
                                 f"{step} steps at learning_rate {cfg.learning_rate:g}; lower the learning rate")
    final = evaluate(model, data, cfg)
    if cfg.eval_every:
        history.append({"step": step, **final})
    return {
        "train_loss": mean_loss,
        "steps": step,
        "examples": examples,
        "time_s": time.perf_counter() - start,
        "eval": final,
        "history": history,
        "fast_path": steps.record(),
    }


def plan_for(data: TaskData, cfg: TrainConfig) -> "fastpath.Plan":
    """The fast-path plan :func:`fine_tune` would use for ``data`` and ``cfg`` on this machine."""
    return _plan(data, cfg, resolve_device(cfg.device), len(data.train))[0]


def total_steps(data: TaskData, cfg: TrainConfig) -> int:
    """The optimizer steps :func:`fine_tune` would run for ``data`` and ``cfg`` on this machine (an early stop aside)."""
    return _plan(data, cfg, resolve_device(cfg.device), len(data.train))[1]


def _plan(data: TaskData, cfg: TrainConfig, device: torch.device, n_train: int) -> tuple["fastpath.Plan", int]:
    """(plan, total steps) of a fine-tuning: compiled, an epoch has no one-row last batch (it is merged)."""
    if n_train == 0:
        raise ValueError("the training set is empty")
    per_epoch = math.ceil(n_train / cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(cfg.num_epochs * per_epoch))
    plan = fastpath.make_plan(cfg, device, total_steps=total, head=data.task.head,
                              bf16=_uses_bf16(device, cfg.precision))
    if plan.merge_single_row and not cfg.max_steps:
        total = max(1, math.ceil(cfg.num_epochs * (per_epoch - _merges(n_train, cfg.batch_size))))
    return plan, total


def _disk(checkpoint) -> dict:
    """The progress line's checkpoint size (disk use) entry, once one was written or loaded."""
    return {"ckpt": ckpt.human_size(checkpoint.size)} if checkpoint is not None and checkpoint.size else {}


def _batches(data: TaskData, cfg: TrainConfig, plan, n_train: int, total_steps: int, order_gen, mask_gen,
             lengths, keys: set[str], cap: int | None, start: int = 0):
    """``(rows, batch, masking generator state after it)`` for each of the ``total_steps`` steps: epochs of
    :func:`batch_order`, collated.  ``start``: the first ``start`` batches are skipped uncollated (a resumed
    fine-tuning; the data order is replayed from the seed, the masking generator restored by the caller)."""
    step = 0
    while step < total_steps:
        for indices in batch_order(n_train, cfg.batch_size, order_gen, lengths, plan.merge_single_row):
            if step < start:
                step += 1
                if step >= total_steps:
                    return
                continue
            batch = data.collate(data.train[indices], generator=mask_gen)
            batch = {k: v for k, v in batch.items() if k in keys}
            if plan.pad_multiple > 1:
                batch = fastpath.pad_batch(batch, plan.pad_multiple, data.pad_id, cap)
            if plan.pin_memory:
                batch = fastpath.pin(batch)
            yield len(indices), batch, mask_gen.get_state()
            step += 1
            if step >= total_steps:
                return


def sample_batches(model, data: TaskData, batch_size: int, count: int, generator: torch.Generator):
    """The first ``count`` batches of one epoch of ``data.train`` in ``generator``'s order, collated, holding the
    keys ``model.forward`` takes (targets included); read lazily."""
    keys = _forward_keys(model)
    for indices in batch_order(len(data.train), batch_size, generator)[:count]:
        batch = data.collate(data.train[indices], generator=generator)
        yield {k: v for k, v in batch.items() if k in keys}


def _pad_cap(model) -> int | None:
    """Widest batch the model's position embeddings allow (None: no limit known)."""
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(n) if isinstance(n, int) else None


@torch.no_grad()
def evaluate(model, data: TaskData, cfg: TrainConfig) -> dict[str, float]:
    """Metrics of ``model`` on ``data.eval`` (and ``data.extra_eval``, with suffixed names)."""
    check_vocab(model, data.tokenizer)
    device = resolve_device(cfg.device)
    model.to(device)
    was_training = model.training
    model.eval()
    try:
        out = _evaluate_split(model, data, data.eval, cfg, device)
        for suffix, ds in data.extra_eval.items():
            out.update({f"{k}_{suffix}": v for k, v in _evaluate_split(model, data, ds, cfg, device).items()})
    finally:
        model.train(was_training)
    return out


def _evaluate_split(model, data: TaskData, ds, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Feed ``ds`` through ``model`` in order; the task's evaluator turns the outputs into metrics."""
    task = data.task
    autocast = _autocast(device, cfg.precision)
    keys = _forward_keys(model) - set(get_head(task.head).targets)
    bs = min(cfg.eval_batch_size, task.max_eval_batch or cfg.eval_batch_size)
    scorer = task.evaluator(data, ds)
    for lo in range(0, len(ds), bs):
        rows = ds[lo: lo + bs]
        batch = data.collate(rows)
        with autocast:
            out = task.outputs(model, {k: v.to(device) for k, v in batch.items() if k in keys}, batch)
        scorer.add(out, batch, rows)
    return scorer.result()


# ---------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------


def linear_schedule(step: int, warmup: int, total: int) -> float:
    """LR factor before optimizer step ``step`` (0-based): linear warm-up to 1, then linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on every trainable parameter except biases and normalization weights."""
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)) or "norm" in type(module).__name__.lower():
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (plain if name.endswith("bias") or id(p) in no_decay else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    # The fused kernel does one pass over each tensor instead of ~7 small ops per
    # parameter (CPU and CUDA; 3-7x faster optimizer steps on CPU, see benchmarks/).
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_DTYPES for p in decay + plain)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, fused=fused or None)


_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def batch_order(n: int, batch_size: int, generator: torch.Generator, lengths=None,
                merge_single_row: bool = False) -> list[list[int]]:
    """One epoch of batches (lists of row indices) in a seeded random order.

    With ``lengths``, each chunk of :data:`GROUP_CHUNK` batches of the shuffled
    rows is sorted by length before being cut into batches, and the batches
    are then shuffled: rows of similar length share a batch (little padding)
    while the order stays random.  ``merge_single_row`` (compiled training):
    a one-row last batch joins the batch cut before it, since a one-row batch
    makes torch.compile specialize and recompile.
    """
    perm = torch.randperm(n, generator=generator).tolist()
    if lengths is None:
        batches = [perm[i: i + batch_size] for i in range(0, n, batch_size)]
        return _merge_last(batches) if merge_single_row else batches
    chunk = batch_size * GROUP_CHUNK
    batches = []
    for lo in range(0, n, chunk):
        rows = sorted(perm[lo: lo + chunk], key=lambda i: -lengths[i])
        batches.extend(rows[i: i + batch_size] for i in range(0, len(rows), batch_size))
    if merge_single_row:
        batches = _merge_last(batches)
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def _merges(n: int, batch_size: int) -> int:
    """1 when an epoch ends in a one-row batch that ``merge_single_row`` joins to the one before, else 0."""
    return int(batch_size > 1 and n > batch_size and n % batch_size == 1)


def _merge_last(batches: list[list[int]]) -> list[list[int]]:
    if len(batches) > 1 and len(batches[-1]) == 1 and len(batches[-2]) > 1:
        batches[-2:] = [batches[-2] + batches[-1]]
    return batches


def resolve_device(name: str) -> torch.device:
    """'auto' -> the device accelerate assigns this process (a GPU when present); else ``torch.device(name)``."""
    if name == "auto":
        from accelerate import PartialState

        return PartialState().device
    return torch.device(name)


def _uses_bf16(device: torch.device, precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())


def _autocast(device: torch.device, precision: str):
    if _uses_bf16(device, precision):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _forward_keys(model) -> set[str]:
    """Batch keys the model's forward accepts (DistilBERT takes no token_type_ids)."""
    return set(inspect.signature(model.forward).parameters)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
