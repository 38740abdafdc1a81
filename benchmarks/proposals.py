"""Proposed patches to project code, measured side by side with the code as it is (not used by tickets_core).

``prune_lowest_no_gather``: ``tickets_core.pruning._prune_lowest`` with the
survivor gather ``scores[keep]`` (a boolean-mask gather over all 85.5M
scores: about half the pruning step at bert-base scale) replaced by one
``masked_fill`` of the pruned entries with +inf in a copy; the k-th
smallest of that copy is the k-th smallest survivor, because every pruned
entry sorts after every survivor. Same threshold, same tie rule, same mask.
"""

from __future__ import annotations

import contextlib

import torch


def prune_lowest_no_gather(scores: torch.Tensor, keep: torch.Tensor, n_prune: int) -> torch.Tensor:
    keep = keep.clone()
    if n_prune <= 0:
        return keep
    alive = scores.masked_fill(~keep, float("inf")).numpy()  # one pass; no gather of the survivors
    alive.partition(n_prune - 1)
    threshold = float(alive[n_prune - 1])
    below = (scores < threshold) & keep
    ties = ((scores == threshold) & keep).nonzero().squeeze(1)
    keep &= ~below
    keep[ties[: n_prune - int(torch.count_nonzero(below))]] = False
    return keep


@contextlib.contextmanager
def patched_prune_lowest():
    """Run ``tickets_core.pruning`` with :func:`prune_lowest_no_gather` in place of ``_prune_lowest``."""
    from tickets_core import pruning

    old = getattr(pruning, "_prune_lowest", None)
    if old is None:
        raise AttributeError("tickets_core.pruning has no _prune_lowest any more: the proposal no longer applies")
    pruning._prune_lowest = prune_lowest_no_gather
    try:
        yield
    finally:
        pruning._prune_lowest = old
