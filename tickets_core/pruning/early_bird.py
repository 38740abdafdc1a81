"""Early-bird stopping of an IMP level: stop training once the next level's mask has stopped changing.

You et al. (ICLR 2020, "Drawing early-bird tickets") observed that the mask
magnitude pruning would pick converges long before training ends; Chen et
al. (ACL 2021, "EarlyBERT") found the same for BERT.  IMP trains every level
to the end only to read the next mask off the trained weights, so a level
may stop as soon as that mask has converged.

:class:`EarlyBird` is an ``on_step`` hook of :func:`tickets_core.training.loop.fine_tune`:
every ``every`` optimizer steps it computes the next level's mask from the
live weights (``next_mask()``, the same pruning the level ends with) and its
distance to the mask of the previous check (:func:`mask_distance`: the
fraction of prunable weights whose bit differs, the normalised Hamming
distance of You et al.).  Once ``window`` successive distances are below
``eps`` it returns True, which ends the level (the level is then evaluated
as usual).  The first distance compares with the mask of the level's
starting weights (step 0).  :meth:`EarlyBird.record` is what the level keeps
in ``metrics.json`` (``train.early_bird``).
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from .masks import Mask


def mask_distance(a: Mask, b: Mask) -> float:
    """Fraction of the entries of two masks over the same matrices whose bits differ (normalised Hamming)."""
    differ = sum(int(torch.count_nonzero(v ^ w)) for v, w in a.paired(b))
    return differ / a.numel if a.numel else 0.0


class EarlyBird:
    """``on_step`` hook: True (stop) once the next mask changed by less than ``eps`` for ``window`` checks.

    ``next_mask()`` computes the next level's mask from the live weights;
    ``min_step`` keeps the level running at least that long (IMP's level 0
    must reach its rewind step).
    """

    def __init__(self, next_mask: Callable[[], Mask], *, every: int, eps: float, window: int,
                 min_step: int = 0) -> None:
        self.next_mask, self.every, self.eps, self.window, self.min_step = next_mask, every, eps, window, min_step
        self.curve: list[tuple[int, float]] = []
        self.stopped_at: int | None = None
        self.check_time_s = 0.0
        self._last = self._timed_mask()

    def _timed_mask(self) -> Mask:
        start = time.perf_counter()
        mask = self.next_mask()
        self.check_time_s += time.perf_counter() - start
        return mask

    def __call__(self, step: int, model=None) -> bool:
        if step % self.every:
            return False
        mask = self._timed_mask()
        self.curve.append((step, mask_distance(self._last, mask)))
        self._last = mask
        recent = [d for _, d in self.curve[-self.window:]]
        if step >= self.min_step and len(recent) == self.window and max(recent) < self.eps:
            self.stopped_at = step
            return True
        return False

    def state_dict(self) -> dict:
        """What a checkpoint inside the level keeps (:mod:`tickets_core.training.checkpoint`): the curve so far
        and the mask of the last check."""
        return {"curve": [[s, d] for s, d in self.curve], "last": dict(self._last), "stopped_at": self.stopped_at,
                "check_time_s": self.check_time_s}

    def load_state_dict(self, state: dict) -> None:
        self.curve = [(int(s), float(d)) for s, d in state["curve"]]
        self._last = Mask(state["last"])
        self.stopped_at, self.check_time_s = state["stopped_at"], float(state["check_time_s"])

    def record(self) -> dict:
        """What the level keeps: the settings, the step it stopped at (None: it ran to the end), the curve."""
        return {"every": self.every, "eps": self.eps, "window": self.window, "stopped_at": self.stopped_at,
                "curve": [[s, d] for s, d in self.curve], "check_time_s": self.check_time_s}


def chain(*hooks) -> "Chain | None":
    """One ``on_step`` hook calling every hook given (None ones skipped); True when any of them says stop."""
    hooks = [h for h in hooks if h is not None]
    return Chain(hooks) if hooks else None


class Chain:
    """Hooks called in turn (every one, even after a True); their ``state_dict`` s saved and restored together
    (a checkpoint inside the level)."""

    def __init__(self, hooks: list) -> None:
        self.hooks = hooks

    def __call__(self, step: int, model) -> bool:
        return any([bool(h(step, model)) for h in self.hooks])  # a list: every hook runs, even after a True

    def state_dict(self) -> list:
        return [h.state_dict() if hasattr(h, "state_dict") else None for h in self.hooks]

    def load_state_dict(self, states: list) -> None:
        for h, state in zip(self.hooks, states):
            if state is not None and hasattr(h, "load_state_dict"):
                h.load_state_dict(state)
