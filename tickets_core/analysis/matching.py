"""Dense baselines, the matching criterion, sparsity curves and the highest matching sparsity.

The criterion follows Chen et al. (NeurIPS 2020): a subnetwork is *matching*
on task T when its score is at least the mean of the dense model's scores over
seeds minus ``n_std`` standard deviations (``n_std=1`` in the paper).  The
dense model of a method is the dense variant of its task trained like it
(:mod:`.methods`): ``dense`` runs and level 0 of ``imp`` runs, one value per
seed.  With a single dense seed the standard deviation is taken as 0
(threshold = that score) and a warning says so.  Every table is per method
and says over how many seeds (``n_seeds``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .common import AnalysisError, over_seeds, require, scores
from .methods import add_method


@dataclass(frozen=True)
class DenseBaseline:
    """The dense model's scores on one task, summarised over seeds."""

    task: str
    metric: str
    mean: float
    std: float
    n_seeds: int
    n_std: float
    method: str = "dense"

    @property
    def threshold(self) -> float:
        """Lowest matching score: ``mean - n_std * std``."""
        return self.mean - self.n_std * self.std


def _dense_candidates(df: pd.DataFrame, task: str) -> pd.DataFrame:
    return df[(df["task"] == task) & ((df["kind"] == "dense") | ((df["kind"] == "imp") & (df["level"] == 0)))]


def dense_variant(df: pd.DataFrame, task: str, method: str | None = None) -> str:
    """The dense variant (its label) that ``method`` on ``task`` is compared with; one-line errors otherwise.

    ``method=None`` asks for the task's only dense variant.
    """
    df = add_method(df)
    variants = sorted(_dense_candidates(df, task)["dense_method"].dropna().unique())
    if not variants:
        raise AnalysisError(f"task {task!r} has no dense result (no 'dense' run and no level 0 of an 'imp' run)")
    if method is None or method in variants:
        if method is None and len(variants) > 1:
            raise AnalysisError(f"task {task!r} has {len(variants)} dense variants ({'; '.join(variants)}): "
                                "say which method's baseline is meant")
        return method or variants[0]
    mine = df[(df["task"] == task) & (df["method"] == method)]
    if len(mine) == 0:
        raise AnalysisError(f"no runs of method {method!r} on task {task!r}")
    found = mine["dense_method"].dropna().unique()
    if len(found) == 0:
        raise AnalysisError(f"task {task!r}: no dense fine-tuning was trained like {method!r} (same model, data "
                            f"and fine-tuning settings); dense variants: {'; '.join(variants)}")
    return str(found[0])


def dense_rows(df: pd.DataFrame, task: str, method: str | None = None) -> pd.DataFrame:
    """The dense fine-tunings of ``task`` that ``method`` is compared with, one row per seed.

    Level 0 of an IMP run is a dense fine-tuning from theta0, so it counts as
    one seed of its dense variant; a seed that also has a ``dense`` run is
    counted once (the ``dense`` run's row is kept).
    """
    df = add_method(df)
    variant = dense_variant(df, task, method)
    rows = _dense_candidates(df, task)
    rows = rows[rows["dense_method"] == variant]
    dense = rows[rows["kind"] == "dense"]
    level0 = rows[(rows["kind"] == "imp") & ~rows["seed"].isin(dense["seed"])]
    return pd.concat([dense, level0]) if len(level0) else dense


def dense_baseline(df: pd.DataFrame, task: str, n_std: float = 1.0, *, metric: str = "score", ddof: int = 1,
                   method: str | None = None) -> DenseBaseline:
    """Mean and standard deviation of the dense model's ``metric`` on ``task`` over seeds.

    ``method``: the method whose baseline is meant (or a dense variant's
    label); None when the task has one dense variant.  Several rows with the
    same seed are averaged first, so each seed counts once.  ``ddof=1`` gives
    the sample standard deviation; one seed gives std 0 with a warning.
    """
    require(df, ("task", "kind", "level", "seed"), "dense baseline")
    if n_std < 0:
        raise AnalysisError(f"n_std must be >= 0, got {n_std}")
    df = add_method(df)
    variant = dense_variant(df, task, method)
    rows = scores(dense_rows(df, task, variant), metric)
    if len(rows) == 0:
        raise AnalysisError(f"task {task!r} has no dense result with a {metric!r} value")
    per_seed = rows.groupby("seed")[metric].mean()
    n = int(per_seed.size)
    if n == 1:
        warnings.warn(f"task {task!r}: the dense baseline has one seed; its std is taken as 0", stacklevel=2)
        std = 0.0
    else:
        std = float(per_seed.std(ddof=ddof))
    return DenseBaseline(task=task, metric=metric, mean=float(per_seed.mean()), std=std, n_seeds=n,
                         n_std=float(n_std), method=variant)


def dense_threshold(df: pd.DataFrame, task: str, n_std: float = 1.0, *, metric: str = "score",
                    ddof: int = 1, method: str | None = None) -> float:
    """The matching threshold of ``task`` (for ``method``): dense mean minus ``n_std`` stds over seeds."""
    return dense_baseline(df, task, n_std, metric=metric, ddof=ddof, method=method).threshold


BASELINE_COLUMNS = ["task", "method", "metric", "mean", "std", "n_seeds", "threshold"]


def dense_baselines(df: pd.DataFrame, n_std: float = 1.0, *, metric: str = "score", ddof: int = 1,
                    tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per task and dense variant: ``task, method, metric, mean, std, n_seeds, threshold``.

    Tasks without any dense result are left out (with a warning naming them).
    """
    require(df, ("task", "kind", "level", "seed"), "dense baselines")
    scores(df, metric)  # an unknown metric fails here, not as "no dense result"
    df = add_method(df)
    rows, missing = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for task in (sorted(df["task"].dropna().unique()) if tasks is None else tasks):
            variants = sorted(_dense_candidates(df, task)["dense_method"].dropna().unique())
            for variant in variants:
                try:
                    b = dense_baseline(df, task, n_std, metric=metric, ddof=ddof, method=variant)
                except AnalysisError:
                    continue
                rows.append({"task": task, "method": variant, "metric": metric, "mean": b.mean, "std": b.std,
                             "n_seeds": b.n_seeds, "threshold": b.threshold})
            if not any(r["task"] == task for r in rows):
                missing.append(task)
    if missing:
        warnings.warn(f"no dense result for task(s) {', '.join(missing)}: no matching threshold", stacklevel=2)
    single = sorted({r["task"] for r in rows if r["n_seeds"] == 1})
    if single:
        warnings.warn(f"dense baseline with one seed (std taken as 0) for task(s) {', '.join(single)}", stacklevel=2)
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


def baseline_of(baselines: pd.DataFrame, task: str, dense_method: Any) -> pd.Series | None:
    """The row of :func:`dense_baselines` for ``task`` and dense variant ``dense_method`` (None: none)."""
    if not isinstance(dense_method, str):
        return None
    hit = baselines[(baselines["task"] == task) & (baselines["method"] == dense_method)]
    return hit.iloc[0] if len(hit) else None


def is_matching(score: Any, threshold: Any) -> Any:
    """``score >= threshold``, elementwise for arrays/Series; NaN is never matching."""
    s = np.asarray(score, dtype=float)
    t = np.asarray(threshold, dtype=float)
    out = np.greater_equal(s, t) & ~np.isnan(s) & ~np.isnan(t)
    if isinstance(score, pd.Series):
        return pd.Series(out, index=score.index, name="matching")
    return bool(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------
# Sparsity curves and the highest matching sparsity
# ---------------------------------------------------------------------------


def curve_table(df: pd.DataFrame, *, metric: str = "score", kinds: Iterable[str] | None = None,
                ddof: int = 1) -> pd.DataFrame:
    """Score against sparsity per task and method, aggregated over seeds.

    One row per (task, method, level): ``kind``, ``sparsity`` (mean over
    seeds), ``mean``, ``std`` (0 for one seed), ``n_seeds``.  Dense runs are
    left out (they are the baseline, drawn as a line).
    """
    require(df, ("task", "kind", "level", "seed", "sparsity"), "sparsity curves")
    rows = add_method(scores(df, metric))
    rows = rows[rows["kind"] != "dense"]
    if kinds is not None:
        rows = rows[rows["kind"].isin(list(kinds))]
    if len(rows) == 0:
        raise AnalysisError("sparsity curves: no pruned runs with a score")
    out = over_seeds(rows, ["task", "method", "kind", "level"], metric, ddof)
    return out.sort_values(["task", "method", "sparsity"], ignore_index=True)


HIGHEST_COLUMNS = ["task", "method", "sparsity", "level", "score", "n_seeds", "threshold", "dense_mean", "dense_std",
                   "n_dense_seeds", "dense_method"]


def highest_matching_sparsity(df: pd.DataFrame, *, kind: str = "imp", method: str | None = None,
                              metric: str = "score", n_std: float = 1.0, ddof: int = 1,
                              tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """Highest sparsity per task and method (of ``kind``, or just ``method``) at which it is matching.

    A level is matching when its score averaged over seeds is at least the
    threshold of the method's dense variant.  One row per (task, method):
    ``task, method, sparsity, level, score, n_seeds, threshold, dense_mean,
    dense_std, n_dense_seeds, dense_method``; ``sparsity`` and ``level`` are NaN
    when no level matches (or the method has no dense variant).  ``n_seeds`` is
    the number of seeds of the reported level (of all levels when none matches).  The dense
    level itself (sparsity 0) counts, so a method whose pruned levels all fail
    still reports 0.0 when its level 0 matches.
    """
    require(df, ("task", "kind", "level", "seed", "sparsity"), "highest matching sparsity")
    df = add_method(df)
    rows = scores(df[df["method"] == method] if method is not None else df[df["kind"] == kind], metric)
    if tasks is not None:
        rows = rows[rows["task"].isin([tasks] if isinstance(tasks, str) else list(tasks))]
    if len(rows) == 0:
        raise AnalysisError(f"highest matching sparsity: no {method or kind!r} runs with a score")
    base = dense_baselines(df, n_std, metric=metric, ddof=ddof, tasks=sorted(rows["task"].unique()))
    out, orphans = [], []
    for (task, name), g in rows.groupby(["task", "method"], sort=True):
        levels = over_seeds(g, ["level"], metric, ddof).set_index("level")
        dense = g["dense_method"].dropna()
        rec = {"task": task, "method": name, "sparsity": math.nan, "level": math.nan, "score": math.nan,
               "n_seeds": int(g["seed"].nunique()), "threshold": math.nan, "dense_mean": math.nan,
               "dense_std": math.nan, "n_dense_seeds": 0, "dense_method": dense.iloc[0] if len(dense) else None}
        b = baseline_of(base, task, rec["dense_method"])
        if b is None and (base["task"] == task).any():
            orphans.append(f"{name} on {task}")
        if b is not None:
            rec.update(threshold=float(b["threshold"]), dense_mean=float(b["mean"]), dense_std=float(b["std"]),
                       n_dense_seeds=int(b["n_seeds"]))
            ok = levels[is_matching(levels["mean"], rec["threshold"])]
            if len(ok):
                best = ok.sort_values("sparsity").iloc[-1]
                rec.update(sparsity=float(best["sparsity"]), level=int(best.name), score=float(best["mean"]),
                           n_seeds=int(best["n_seeds"]))  # the seeds the reported level rests on
        out.append(rec)
    if orphans:
        warnings.warn(f"no dense baseline trained like {', '.join(orphans)}: no matching threshold", stacklevel=2)
    return pd.DataFrame(out, columns=HIGHEST_COLUMNS)


def matching_rules(df: pd.DataFrame, n_stds: Iterable[float] = (1.0, 0.0), *, kinds: Iterable[str] | None = None,
                   metric: str = "score", ddof: int = 1) -> pd.DataFrame:
    """The highest matching sparsity per task and method under several matching rules, side by side.

    ``n_stds``: the rules (1: the paper's, dense mean - 1 std; 0: its Table 4 rule, mean at or above the
    dense mean).  One row per task and method of ``kinds`` (default: every kind with a curve of its own task,
    i.e. not dense and not transfer): ``task, method, n_seeds`` (the method's seeds), ``dense_mean,
    dense_std, n_dense_seeds``, then per rule ``n`` the columns ``threshold (n_std n)`` and ``highest
    matching (n_std n)`` (a sparsity; NaN when no level matches), as :func:`highest_matching_sparsity` computes
    them.
    """
    df = add_method(df)
    present = [k for k in dict.fromkeys(df["kind"]) if k not in ("dense", "transfer")]
    out = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in n_stds:
            parts = [highest_matching_sparsity(df, kind=k, metric=metric, n_std=n, ddof=ddof)
                     for k in (present if kinds is None else kinds)]
            t = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=HIGHEST_COLUMNS)
            rule = t[["task", "method", "threshold", "sparsity"]].rename(
                columns={"threshold": f"threshold (n_std {n:g})", "sparsity": f"highest matching (n_std {n:g})"})
            if out is None:
                seeds = df.groupby(["task", "method"])["seed"].nunique().rename("n_seeds")
                out = t[["task", "method", "dense_mean", "dense_std", "n_dense_seeds"]].join(
                    seeds, on=["task", "method"]).merge(rule, on=["task", "method"])
            else:
                out = out.merge(rule, on=["task", "method"])
    if out is None:
        raise AnalysisError("matching rules: give at least one n_std")
    cols = ["task", "method", "n_seeds", "dense_mean", "dense_std", "n_dense_seeds"]
    return out[cols + [c for c in out.columns if c not in cols]].sort_values(["task", "method"], ignore_index=True)
