"""Early-bird stopping of an IMP level: stop training once the next level's mask has stopped changing.

You et al. (ICLR 2020, "Drawing early-bird tickets") observed that the mask
magnitude pruning would pick converges long before training ends; Chen et
al. (ACL 2021, "EarlyBERT") found the same for BERT.  IMP trains every level
to the end only to read the next mask off the trained weights, so a level
may stop as soon as that mask has converged.

:class:`EarlyBird` is an ``on_step`` hook of :func:`tickets_core.training.loop.fine_tune`:
every ``every`` optimizer steps it computes the next level's mask from the
live weights (``next_mask()``, the same pruning the level ends with) and its
distance (:func:`mask_distance`: the fraction of prunable weights whose bit
differs, the normalised Hamming distance of You et al.) to each mask of a
queue of the last ``window`` checks; the largest is the check's distance.
Once it is below ``eps`` (with a full queue, after a minimum number of
steps) it returns True, which ends the level (the level is then evaluated as
usual).  :meth:`EarlyBird.record` is what the level keeps in
``metrics.json`` (``train.early_bird``).

:class:`EarlyCut` is its control: it stops the level at a fixed fraction of
its steps with no criterion (``train.early_cut``).  Whether the criterion is
worth more than the cut is what ``benchmarks/bench_early_bird.py`` compares.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

import torch

from .masks import Mask


def mask_distance(a: Mask, b: Mask) -> float:
    """Fraction of the entries of two masks over the same matrices whose bits differ (normalised Hamming)."""
    differ = sum(int(torch.count_nonzero(v ^ w)) for v, w in a.paired(b))
    return differ / a.numel if a.numel else 0.0


class EarlyBird:
    """``on_step`` hook: True (stop) once the next mask is within ``eps`` of each of the last ``window`` checks' masks.

    ``next_mask()`` computes the next level's mask from the live weights.  At
    every ``every``-th step the current mask is compared with each mask in a
    queue of the last ``window`` checks (the first check's queue holds the
    mask of the level's starting weights); the distance of the check is the
    largest of those (You et al.'s queue: the mask must have stayed put over
    the whole window, not just since the previous check).  The level stops
    once the queue is full and that distance is below ``eps``, at step
    ``min_step`` or later (IMP's level 0 must reach its rewind step; a minimum
    fraction of the level).  :func:`window_for` turns a fraction of a level
    into a queue length, so ``eps`` can bound the change over a fixed part of
    the level whatever the check interval.
    """

    def __init__(self, next_mask: Callable[[], Mask], *, every: int, eps: float, window: int,
                 min_step: int = 0, span: float | None = None, total_steps: int | None = None) -> None:
        self.next_mask, self.every, self.eps, self.window, self.min_step = next_mask, every, eps, window, min_step
        self.span, self.total_steps = span, total_steps
        self.curve: list[tuple[int, float]] = []
        self.stopped_at: int | None = None
        self.check_time_s = 0.0
        self._queue: deque[Mask] = deque([self._timed_mask()], maxlen=window)

    def _timed_mask(self) -> Mask:
        start = time.perf_counter()
        mask = self.next_mask()
        self.check_time_s += time.perf_counter() - start
        return mask

    def __call__(self, step: int, model=None) -> bool:
        if step % self.every:
            return False
        full = len(self._queue) == self.window
        mask = self._timed_mask()
        distance = max(mask_distance(old, mask) for old in self._queue)
        self.curve.append((step, distance))
        self._queue.append(mask)
        if step >= self.min_step and full and distance < self.eps:
            self.stopped_at = step
            return True
        return False

    def state_dict(self) -> dict:
        """What a checkpoint inside the level keeps (:mod:`tickets_core.training.checkpoint`): the curve so far
        and the mask of the last check."""
        return {"curve": [[s, d] for s, d in self.curve], "queue": [dict(m) for m in self._queue],
                "stopped_at": self.stopped_at, "check_time_s": self.check_time_s}

    def load_state_dict(self, state: dict) -> None:
        self.curve = [(int(s), float(d)) for s, d in state["curve"]]
        self._queue = deque((Mask(m) for m in state["queue"]), maxlen=self.window)
        self.stopped_at, self.check_time_s = state["stopped_at"], float(state["check_time_s"])

    def record(self) -> dict:
        """What the level keeps: the settings, the step it stopped at (None: it ran to the end), the curve
        (``[step, distance]``: the distance is the largest over the queue)."""
        return {"every": self.every, "eps": self.eps, "window": self.window, "span": self.span,
                "min_step": self.min_step, "total_steps": self.total_steps, "queue": "max",
                "stopped_at": self.stopped_at, "curve": [[s, d] for s, d in self.curve],
                "check_time_s": self.check_time_s}


def window_for(span: float, every: int, total_steps: int) -> int:
    """Queue length (in checks every ``every`` steps) covering ``span`` of a level of ``total_steps`` steps (>= 1)."""
    return max(1, math.ceil(span * total_steps / every))


class EarlyCut:
    """``on_step`` hook, the control of :class:`EarlyBird`: True at step ``stop_step``, whatever the mask does.

    It reads no weights (``reads_weights`` False: the fast path need not expose them)."""

    reads_weights = False

    def __init__(self, stop_step: int, fraction: float, total_steps: int) -> None:
        self.stop_step, self.fraction, self.total_steps = stop_step, fraction, total_steps
        self.stopped_at: int | None = None

    def __call__(self, step: int, model=None) -> bool:
        if step >= self.stop_step:
            self.stopped_at = step
            return True
        return False

    def record(self) -> dict:
        return {"fraction": self.fraction, "stop_step": self.stop_step, "total_steps": self.total_steps,
                "stopped_at": self.stopped_at}


def chain(*hooks) -> "Chain | None":
    """One ``on_step`` hook calling every hook given (None ones skipped); True when any of them says stop."""
    hooks = [h for h in hooks if h is not None]
    return Chain(hooks) if hooks else None


class Chain:
    """Hooks called in turn (every one, even after a True); their ``state_dict`` s saved and restored together
    (a checkpoint inside the level)."""

    def __init__(self, hooks: list) -> None:
        self.hooks = hooks

    @property
    def reads_weights(self) -> bool:
        return any(getattr(h, "reads_weights", True) for h in self.hooks)

    def __call__(self, step: int, model) -> bool:
        return any([bool(h(step, model)) for h in self.hooks])  # a list: every hook runs, even after a True

    def state_dict(self) -> list:
        return [h.state_dict() if hasattr(h, "state_dict") else None for h in self.hooks]

    def load_state_dict(self, states: list) -> None:
        for h, state in zip(self.hooks, states):
            if state is not None and hasattr(h, "load_state_dict"):
                h.load_state_dict(state)
