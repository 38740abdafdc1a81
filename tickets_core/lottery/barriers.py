"""The barrier of a path between two trained networks (Frankle et al., ICML 2020, linear mode connectivity).

A ``stability`` level (:mod:`tickets_core.lottery.levels`) evaluates points on the straight line between two
copies of a subnetwork trained with different data orders; its *barrier* is the highest error (or loss) along the
path minus the mean of the two ends.  The analysis (:mod:`tickets_core.analysis.curves`) reads the same
functions.  numpy only.
"""

from __future__ import annotations

import numpy as np

#: The loss a task's evaluation reports, by the first name found (classification/regression, MLM).
LOSS_KEYS = ("loss", "mlm_loss")


def barrier(values) -> float:
    """Highest value along a path minus the mean of its two ends (Frankle et al.'s error barrier)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or np.isnan(v).any():
        return float("nan")
    return float(v.max() - (v[0] + v[-1]) / 2.0)


def loss_key(points: list[dict]) -> str | None:
    """The loss every interpolation point reports (the first of :data:`LOSS_KEYS`); None when there is none."""
    return next((k for k in LOSS_KEYS if points and all(k in p for p in points)), None)


def barriers(points: list[dict]) -> dict:
    """``error_barrier`` and ``loss_barrier`` (None when the task reports no loss) of interpolation points."""
    key = loss_key(points)
    return {"error_barrier": barrier([p["error"] for p in points]),
            "loss_barrier": barrier([p[key] for p in points]) if key else None}
