"""Structured tickets in the analysis: heads and FFN neurons kept per layer, and how alike two head sets are.

Each level of a structured run records ``units`` in its ``metrics.json``
(:func:`tickets_core.pruning.units.unit_counts`): heads and neurons kept in
total and per layer, and the head mask (layers x heads).  :func:`load_units`
turns them into one row per (run, level, layer); :func:`head_overlap` compares
the kept head sets of pairs of runs (seeds, tasks) at a level with what random
head sets with the same per-layer counts would share: the exact expectation of
the intersection over union, from the hypergeometric law of each layer's
intersection.  No torch.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.fsio import read_json
from ..runs.paths import RunPaths
from ..runs.walk import RunFolders
from .methods import add_method
from .results import load_runs

UNIT_COLUMNS = ["run", "kind", "method", "task", "seed", "strategy", "level", "sparsity", "score", "layer",
                "heads_kept", "heads_total", "neurons_kept", "head_mask"]


def load_units(root: str | Path | RunFolders) -> pd.DataFrame:
    """One row per (run, level, layer) of every level that recorded ``units``; ``head_mask`` a tuple of bools;
    ``method`` as :func:`~tickets_core.analysis.methods.add_method` labels the folder's runs."""
    runs = add_method(load_runs(root))
    rows = []
    for _, r in runs.iterrows():
        units = read_json(RunPaths(r["run_dir"]).metrics(int(r["level"]))).get("units")
        if not units:
            continue
        heads = units["head_mask"]
        for layer, mask in enumerate(heads):
            rows.append({"run": r["run"], "kind": r["kind"], "method": r["method"], "task": r["task"],
                         "seed": r["seed"], "strategy": r["strategy"], "level": int(r["level"]),
                         "sparsity": r["sparsity"], "score": r["score"], "layer": layer,
                         "heads_kept": int(sum(mask)), "heads_total": len(mask),
                         "neurons_kept": units["neurons_per_layer"][layer], "head_mask": tuple(bool(x) for x in mask)})
    return pd.DataFrame(rows, columns=UNIT_COLUMNS)


def head_matrix(units: pd.DataFrame, run: str, level: int) -> np.ndarray:
    """The kept-head matrix (layers x heads, 1 = kept) of ``run`` at ``level``."""
    sel = units[(units["run"] == run) & (units["level"] == level)].sort_values("layer")
    if sel.empty:
        raise KeyError(f"no unit record for run {run!r} at level {level}")
    return np.array([list(m) for m in sel["head_mask"]], dtype=float)


def _hypergeom_pmf(n: int, a: int, b: int) -> np.ndarray:
    """P(|A & B| = x), x = 0..min(a, b), for random a- and b-subsets of n items."""
    from math import comb

    out = np.zeros(min(a, b) + 1)
    for x in range(max(0, a + b - n), min(a, b) + 1):
        out[x] = comb(a, x) * comb(n - a, b - x) / comb(n, b)
    return out


def expected_iou(kept_a: list[int], kept_b: list[int], heads: int) -> float:
    """E[|A & B| / |A | B|] for head sets drawn uniformly at random with these per-layer counts (exact)."""
    total = np.array([1.0])
    for a, b in zip(kept_a, kept_b):
        total = np.convolve(total, _hypergeom_pmf(heads, a, b))
    union_base = sum(kept_a) + sum(kept_b)
    x = np.arange(len(total))
    denom = union_base - x
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(denom > 0, x / denom, 1.0)
    return float((total * iou).sum())


def head_overlap(units: pd.DataFrame, level: int) -> pd.DataFrame:
    """For each pair of structured IMP runs of one strategy at ``level``: IoU of their kept head sets, the random
    expectation with the same per-layer counts, and what the pair differs in (``pair``: "seeds", "tasks",
    "tasks and seeds"; "... and settings" for two methods of one task: method labels name what sets runs of a
    task apart, so across tasks ``method_a``/``method_b`` tell)."""
    at = units[(units["level"] == level) & (units["kind"] == "imp")]
    keys = ["run", "task", "seed", "strategy", *(["method"] if "method" in at.columns else [])]
    runs = at.drop_duplicates("run")[keys].to_dict("records")
    rows = []
    for a, b in combinations(runs, 2):
        if a["strategy"] != b["strategy"]:  # other units chosen another way: not a pair to read
            continue
        ma, mb = head_matrix(at, a["run"], level) > 0, head_matrix(at, b["run"], level) > 0
        inter, union = int((ma & mb).sum()), int((ma | mb).sum())
        same_task = a["task"] == b["task"]  # method labels name what differs within a task only
        pair = " and ".join(name for key, name in (("task", "tasks"), ("seed", "seeds"), ("method", "settings"))
                            if a.get(key) != b.get(key) and (key != "method" or same_task))
        rows.append({"run_a": a["run"], "run_b": b["run"], "task_a": a["task"], "task_b": b["task"],
                     "seed_a": a["seed"], "seed_b": b["seed"], "method_a": a.get("method"),
                     "method_b": b.get("method"), "strategy": a["strategy"], "pair": pair,
                     "level": level, "iou": inter / union if union else 1.0,
                     "random_iou": expected_iou(list(ma.sum(1)), list(mb.sum(1)), ma.shape[1])})
    return pd.DataFrame(rows)
