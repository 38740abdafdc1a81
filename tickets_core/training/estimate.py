"""The plan line every run prints before it trains: what it will run, and how long that should take here.

:func:`measure` times a few forward and backward passes of real training
batches on the run's device (a short warm-up: one untimed pass, then
:data:`WARMUP_STEPS` timed ones) and leaves nothing behind: no optimizer step,
gradients cleared, random-number states and training mode restored, so a run
with the estimate trains exactly as one without.  The time per padded token it
measures, times the tokens of the run's remaining steps and evaluations, is
the estimate (:class:`Estimate`); a forward-only evaluation is counted as a
third of a training pass.  The optimizer step is not timed (a few percent of
a step on a CPU), and a compiled GPU fast path is usually faster than the
eager warm-up: read the number as "minutes or hours", not as a promise.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..core.config import TrainConfig
from . import loop

#: Timed forward and backward passes (after one untimed pass).
WARMUP_STEPS = 2
#: An evaluation pass (forward only) costs about this fraction of a training pass per token.
EVAL_FRACTION = 1 / 3


@dataclass
class Estimate:
    """A run's remaining work and its estimated time on ``device``."""

    levels: int                 # levels still to run
    steps: int                  # optimizer steps per fine-tuning (an upper bound with early-bird stopping)
    copies: int                 # fine-tunings per level
    batch_size: int
    evaluations: int            # evaluations per level
    eval_examples: int
    device: str
    step_s: float               # estimated seconds per training step (a mean over the epoch's batch widths)
    warmup_steps: int
    total_s: float

    def line(self, name: str) -> str:
        """The plan line: ``plan: <run>: <levels> x <steps> steps ...; on <device> about <time> (...)``."""
        copies = f" x {self.copies} copies" if self.copies > 1 else ""
        return (f"plan: {name}: {self.levels} level{'s' * (self.levels != 1)}{copies} x {self.steps:,} steps "
                f"(batch {self.batch_size}) + {self.levels * self.evaluations} evaluation"
                f"{'s' * (self.levels * self.evaluations != 1)} of {self.eval_examples:,} examples; on {self.device} "
                f"about {duration(self.total_s)} ({self.step_s:.2g} s/step, from {self.warmup_steps} timed warm-up "
                f"step{'s' * (self.warmup_steps != 1)})")


def duration(seconds: float) -> str:
    """``"40 s"``, ``"12 min"``, ``"5.1 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def steps_per_level(n_train: int, cfg: TrainConfig) -> int:
    """Optimizer steps of one fine-tuning (as :func:`tickets_core.training.loop.fine_tune` counts them)."""
    return cfg.max_steps or max(1, math.ceil(cfg.num_epochs * math.ceil(n_train / cfg.batch_size)))


def _lengths(ds) -> list[int]:
    names = getattr(ds, "column_names", None) or []
    return list(ds["length"]) if "length" in names else [len(x) for x in ds["input_ids"]]


def _padded_tokens(lengths: list[int], batches: list[list[int]]) -> list[int]:
    """Tokens of each batch padded to its longest row."""
    return [len(b) * max(lengths[i] for i in b) for b in batches]


def measure(model, data, cfg: TrainConfig, *, seed: int = 0,
            steps: int = WARMUP_STEPS) -> tuple[float, float, int]:
    """``(seconds per padded token of a training pass, mean padded tokens per training batch, passes timed)``,
    timed on ``steps`` forward and backward passes of this run's batches after one untimed pass (a single
    batch is timed as it is).  Leaves the model's weights, gradients, mode and every random-number state as
    they were."""
    device = loop.resolve_device(cfg.device)
    model.to(device)
    autocast = loop._autocast(device, cfg.precision)
    keys = loop._forward_keys(model)
    lengths = _lengths(data.train)
    gen = torch.Generator().manual_seed(seed)
    order = loop.batch_order(len(lengths), cfg.batch_size, gen, lengths if cfg.group_by_length else None)
    tokens = _padded_tokens(lengths, order)
    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    was_training = model.training
    model.train()
    timed, timed_tokens, n = 0.0, 0, 0
    try:
        for i, rows in enumerate(order[: steps + 1]):
            batch = data.collate(data.train[rows], generator=gen)
            batch = {k: v.to(device) for k, v in batch.items() if k in keys}
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            with autocast:
                loss = data.task.loss(model, batch)
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i > 0:  # the first pass pays one-time costs (allocations, kernel selection)
                timed += time.perf_counter() - start
                timed_tokens += tokens[i]
                n += 1
            model.zero_grad(set_to_none=True)
        if timed_tokens == 0:  # a single batch: time it as it is
            timed_tokens, timed, n = tokens[0], time.perf_counter() - start, 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])
    return timed / timed_tokens, float(np.mean(tokens)), n


def estimate(model, data, cfg: TrainConfig, *, levels: int, copies: int = 1, line_points: int = 0,
             seed: int = 0) -> Estimate:
    """The :class:`Estimate` of ``levels`` more levels of ``copies`` fine-tunings each (plus ``line_points``
    evaluations per level), from :func:`measure` on this device."""
    per_token, batch_tokens, timed = measure(model, data, cfg, seed=seed)
    steps = steps_per_level(len(data.train), cfg)
    evals = copies + line_points + (copies * ((steps - 1) // cfg.eval_every) if cfg.eval_every else 0)
    eval_tokens, eval_examples = 0, 0
    for ds in (data.eval, *data.extra_eval.values()):
        lengths = _lengths(ds)
        size = min(cfg.eval_batch_size, data.task.max_eval_batch or cfg.eval_batch_size)
        eval_tokens += sum(_padded_tokens(lengths, [list(range(i, min(i + size, len(lengths))))
                                                    for i in range(0, len(lengths), size)]))
        eval_examples += len(lengths)
    level_s = per_token * (copies * steps * batch_tokens + evals * eval_tokens * EVAL_FRACTION)
    return Estimate(levels=levels, steps=steps, copies=copies, batch_size=cfg.batch_size, evaluations=evals,
                    eval_examples=eval_examples, device=str(loop.resolve_device(cfg.device)),
                    step_s=per_token * batch_tokens, warmup_steps=timed, total_s=levels * level_s)
