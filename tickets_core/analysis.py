"""Analysis of finished runs: matching, highest matching sparsity, mask overlap, transfer.

Pure functions on the DataFrames of :mod:`tickets_core.results` (one row per
run and level, columns documented in ``docs/ARCHITECTURE.md``) and on
:class:`tickets_core.masks.Mask` objects that the caller loaded.  Nothing
here trains, loads a model or imports torch; the analysis notebooks call
these functions and hand the tables to :mod:`tickets_core.plots`.

The matching criterion follows Chen et al. (NeurIPS 2020): a subnetwork is
*matching* on task T when its score is at least the mean of the dense model's
scores over seeds minus ``n_std`` standard deviations (``n_std=1`` in the
paper).  The dense model of a task is its ``dense`` runs together with level
0 of its ``imp`` runs (the same fine-tuning of theta0), one row per seed.  With a
single dense seed the standard deviation is taken as 0 (threshold = that
score) and a warning says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .components import COMPONENTS
from .kinds import KINDS

# Two sparsities closer than this are "the same sparsity" (levels of runs that
# prune the same number of weights differ by rounding only).
SPARSITY_TOL = 0.01


class AnalysisError(ValueError):
    """The inputs cannot give the requested analysis (one-line message)."""


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Fail with one line when ``df`` is empty or lacks ``columns``."""
    if df is None or len(df) == 0:
        raise AnalysisError(f"{what}: no runs to analyse (is runs_root right, and have the runs finished a level?)")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise AnalysisError(f"{what}: results table lacks column(s) {', '.join(missing)}")


def _scores(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of ``df`` that have a value for ``metric``."""
    if metric not in df.columns:
        choices = ", ".join(c for c in df.columns if c == "score" or c.startswith("eval_"))
        raise AnalysisError(f"unknown metric column {metric!r}; available: {choices}")
    return df[df[metric].notna()]


def method_label(kind: str, source_task: Any = None) -> str:
    """Display name of a run kind (its registry label); transfers name their source task."""
    label = KINDS[kind].label if kind in KINDS else kind
    if kind == "transfer" and isinstance(source_task, str) and source_task:
        label = f"transfer from {source_task}"
    return label


def add_method(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` with a ``method`` column (display name per row)."""
    out = df.copy()
    src = out["source_task"] if "source_task" in out.columns else pd.Series(None, index=out.index)
    out["method"] = [method_label(k, s) for k, s in zip(out["kind"], src)]
    return out


def filter_runs(df: pd.DataFrame, *, model: str | None = None, tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """Rows of one model and/or some tasks; an empty result is an error naming what was asked."""
    _require(df, ("task", "model"), "runs")
    out = df
    if model is not None:
        out = out[out["model"] == model]
        if len(out) == 0:
            raise AnalysisError(f"no runs of model {model!r}; models: {', '.join(sorted(map(str, df['model'].unique())))}")
    if tasks is not None:
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        out = out[out["task"].isin(tasks)]
        if len(out) == 0:
            raise AnalysisError(f"no runs of task(s) {', '.join(tasks)}; tasks: {', '.join(sorted(df['task'].unique()))}")
    return out


# ---------------------------------------------------------------------------
# Dense baseline and matching
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DenseBaseline:
    """The dense model's scores on one task, summarised over seeds."""

    task: str
    metric: str
    mean: float
    std: float
    n_seeds: int
    n_std: float

    @property
    def threshold(self) -> float:
        """Lowest matching score: ``mean - n_std * std``."""
        return self.mean - self.n_std * self.std


def dense_rows(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """The dense fine-tunings of ``task``: its ``dense`` runs, plus level 0 of its ``imp`` runs.

    Level 0 of an IMP run is a dense fine-tuning from theta0, so it counts as
    one seed of the dense baseline; a seed that also has a ``dense`` run is
    counted once (the ``dense`` run's row is kept).
    """
    dense = df[(df["task"] == task) & (df["kind"] == "dense")]
    level0 = df[(df["task"] == task) & (df["kind"] == "imp") & (df["level"] == 0)]
    level0 = level0[~level0["seed"].isin(dense["seed"])]
    return pd.concat([dense, level0]) if len(level0) else dense


def dense_baseline(df: pd.DataFrame, task: str, n_std: float = 1.0, *, metric: str = "score",
                   ddof: int = 1) -> DenseBaseline:
    """Mean and standard deviation of the dense model's ``metric`` on ``task`` over seeds.

    Several rows with the same seed (e.g. a ``dense`` run repeated under two
    configs) are averaged first, so each seed counts once.  ``ddof=1`` gives
    the sample standard deviation; one seed gives std 0 with a warning.
    """
    _require(df, ("task", "kind", "level", "seed"), "dense baseline")
    if n_std < 0:
        raise AnalysisError(f"n_std must be >= 0, got {n_std}")
    rows = _scores(dense_rows(df, task), metric)
    if len(rows) == 0:
        raise AnalysisError(f"task {task!r} has no dense result (no 'dense' run and no level 0 of an 'imp' run)")
    per_seed = rows.groupby("seed")[metric].mean()
    n = int(per_seed.size)
    if n == 1:
        warnings.warn(f"task {task!r}: the dense baseline has one seed; its std is taken as 0", stacklevel=2)
        std = 0.0
    else:
        std = float(per_seed.std(ddof=ddof))
    return DenseBaseline(task=task, metric=metric, mean=float(per_seed.mean()), std=std, n_seeds=n, n_std=float(n_std))


def dense_threshold(df: pd.DataFrame, task: str, n_std: float = 1.0, *, metric: str = "score",
                    ddof: int = 1) -> float:
    """The matching threshold of ``task``: dense mean minus ``n_std`` stds over seeds."""
    return dense_baseline(df, task, n_std, metric=metric, ddof=ddof).threshold


def dense_baselines(df: pd.DataFrame, n_std: float = 1.0, *, metric: str = "score", ddof: int = 1,
                    tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per task with a dense result: ``task, mean, std, n_seeds, threshold``.

    Tasks without any dense result are left out (with a warning naming them).
    """
    _require(df, ("task", "kind", "level", "seed"), "dense baselines")
    _scores(df, metric)  # an unknown metric fails here, not as "no dense result"
    rows, missing = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for task in (sorted(df["task"].dropna().unique()) if tasks is None else tasks):
            try:
                b = dense_baseline(df, task, n_std, metric=metric, ddof=ddof)
            except AnalysisError:
                missing.append(task)
                continue
            rows.append({"task": task, "metric": metric, "mean": b.mean, "std": b.std,
                         "n_seeds": b.n_seeds, "threshold": b.threshold})
    if missing:
        warnings.warn(f"no dense result for task(s) {', '.join(missing)}: no matching threshold", stacklevel=2)
    single = [r["task"] for r in rows if r["n_seeds"] == 1]
    if single:
        warnings.warn(f"dense baseline with one seed (std taken as 0) for task(s) {', '.join(single)}", stacklevel=2)
    return pd.DataFrame(rows, columns=["task", "metric", "mean", "std", "n_seeds", "threshold"])


def is_matching(score: Any, threshold: Any) -> Any:
    """``score >= threshold``, elementwise for arrays/Series; NaN is never matching."""
    s = np.asarray(score, dtype=float)
    t = np.asarray(threshold, dtype=float)
    out = np.greater_equal(s, t) & ~np.isnan(s) & ~np.isnan(t)
    if isinstance(score, pd.Series):
        return pd.Series(out, index=score.index, name="matching")
    return bool(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------
# Sparsity curves
# ---------------------------------------------------------------------------


def curve_table(df: pd.DataFrame, *, metric: str = "score", kinds: Iterable[str] | None = None) -> pd.DataFrame:
    """Score against sparsity per task and method, aggregated over seeds.

    One row per (task, method, level): ``sparsity`` (mean over seeds),
    ``mean``, ``std`` (0 for one seed), ``n_seeds``.  Dense runs are left out
    (they are the baseline, drawn as a line).
    """
    _require(df, ("task", "kind", "level", "seed", "sparsity"), "sparsity curves")
    rows = add_method(_scores(df, metric))
    rows = rows[rows["kind"] != "dense"]
    if kinds is not None:
        rows = rows[rows["kind"].isin(list(kinds))]
    if len(rows) == 0:
        raise AnalysisError("sparsity curves: no pruned runs with a score")
    g = rows.groupby(["task", "method", "kind", "level"], sort=True)
    out = g.agg(sparsity=("sparsity", "mean"), mean=(metric, "mean"), std=(metric, "std"), n_seeds=("seed", "nunique"))
    out["std"] = out["std"].fillna(0.0)
    return out.reset_index().sort_values(["task", "method", "sparsity"], ignore_index=True)


def highest_matching_sparsity(df: pd.DataFrame, *, kind: str = "imp", metric: str = "score", n_std: float = 1.0,
                              ddof: int = 1, tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """Highest sparsity per task at which ``kind``'s subnetworks are matching.

    A level is matching when its score averaged over seeds is at least the
    task's dense threshold (:func:`dense_threshold`).  Returns one row per
    task: ``task, sparsity, level, score, threshold, dense_mean, dense_std,
    n_dense_seeds``; ``sparsity`` and ``level`` are NaN when no level matches.
    The dense level itself (sparsity 0) counts, so a task whose pruned levels
    all fail still reports 0.0 when its level 0 matches.
    """
    _require(df, ("task", "kind", "level", "seed", "sparsity"), "highest matching sparsity")
    rows = _scores(df[df["kind"] == kind], metric)
    if len(rows) == 0:
        raise AnalysisError(f"highest matching sparsity: no {kind!r} runs with a score")
    base = dense_baselines(df, n_std, metric=metric, ddof=ddof, tasks=tasks).set_index("task")
    out = []
    for task in (sorted(rows["task"].unique()) if tasks is None else tasks):
        levels = rows[rows["task"] == task].groupby("level").agg(sparsity=("sparsity", "mean"), score=(metric, "mean"))
        rec = {"task": task, "sparsity": math.nan, "level": math.nan, "score": math.nan, "threshold": math.nan,
               "dense_mean": math.nan, "dense_std": math.nan, "n_dense_seeds": 0}
        if task in base.index:
            b = base.loc[task]
            rec.update(threshold=float(b["threshold"]), dense_mean=float(b["mean"]), dense_std=float(b["std"]),
                       n_dense_seeds=int(b["n_seeds"]))
            ok = levels[is_matching(levels["score"], rec["threshold"])]
            if len(ok):
                best = ok.sort_values("sparsity").iloc[-1]
                rec.update(sparsity=float(best["sparsity"]), level=int(best.name), score=float(best["score"]))
        out.append(rec)
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------
# Masks: overlap and per-layer profile
# ---------------------------------------------------------------------------


def random_iou(d1: float, d2: float) -> float:
    """Expected IoU of two independent random masks keeping fractions ``d1`` and ``d2``.

    Each weight is kept by both with probability ``d1*d2`` and by either with
    ``d1 + d2 - d1*d2``, so the IoU tends to ``d1*d2 / (d1 + d2 - d1*d2)``.
    """
    for d in (d1, d2):
        if not 0.0 <= d <= 1.0:
            raise AnalysisError(f"densities must be in [0, 1], got {d}")
    union = d1 + d2 - d1 * d2
    return 1.0 if union == 0 else d1 * d2 / union


def overlap_matrix(masks: Mapping[str, Any]) -> pd.DataFrame:
    """Label x label IoU of the kept weights (``Mask.overlap``; labels are usually task names)."""
    if not masks:
        raise AnalysisError("mask overlap: no masks given")
    labels = list(masks)
    m = pd.DataFrame(np.eye(len(labels)), index=labels, columns=labels)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            m.loc[a, b] = m.loc[b, a] = masks[a].overlap(masks[b])
    return m


def random_overlap_matrix(densities: Mapping[str, float]) -> pd.DataFrame:
    """Label x label expected IoU of independent random masks with these densities."""
    if not densities:
        raise AnalysisError("mask overlap: no densities given")
    labels = list(densities)
    return pd.DataFrame([[random_iou(densities[a], densities[b]) for b in labels] for a in labels],
                        index=labels, columns=labels)


def pick_levels(df: pd.DataFrame, sparsity: float | None = None, *, kind: str = "imp", seed: int | None = None,
                tasks: Iterable[str] | None = None, tol: float = 0.02) -> pd.DataFrame:
    """Choose one run level per task at (about) the same sparsity, to compare masks.

    ``sparsity=None`` takes the highest sparsity that every task reached
    (the smallest of the tasks' maxima).  For each task the level closest to
    the target within ``tol`` is chosen, from the lowest seed unless ``seed``
    is given.  Returns ``task, run, run_dir, seed, level, sparsity``; tasks
    without such a level are dropped with a warning.
    """
    _require(df, ("task", "kind", "level", "seed", "sparsity", "run", "run_dir"), "mask overlap")
    rows = df[df["kind"] == kind]
    if seed is not None:
        rows = rows[rows["seed"] == seed]
    if tasks is not None:
        rows = rows[rows["task"].isin(list(tasks))]
    if len(rows) == 0:
        raise AnalysisError(f"mask overlap: no {kind!r} runs" + (f" with seed {seed}" if seed is not None else ""))
    if sparsity is None:
        sparsity = float(rows.groupby("task")["sparsity"].max().min())
    out, missing = [], []
    for task, g in rows.groupby("task", sort=True):
        g = g.assign(_dist=(g["sparsity"] - sparsity).abs()).sort_values(["_dist", "seed", "level"])
        best = g.iloc[0]
        if best["_dist"] > tol:
            missing.append(task)
            continue
        out.append({k: best[k] for k in ("task", "run", "run_dir", "seed", "level", "sparsity")})
    if missing:
        warnings.warn(f"no {kind!r} level within {tol} of sparsity {sparsity:.3f} for task(s) {', '.join(missing)}",
                      stacklevel=2)
    if not out:
        raise AnalysisError(f"mask overlap: no task has a {kind!r} level near sparsity {sparsity:.3f}")
    return pd.DataFrame(out)


def matrix_rows(sparsity_df: pd.DataFrame, run: str, level: int) -> pd.DataFrame:
    """The per-matrix rows of one run and level in a :func:`results.load_sparsity` table."""
    _require(sparsity_df, ("run", "level"), "layer profile")
    rows = sparsity_df[(sparsity_df["run"] == run) & (sparsity_df["level"] == level)]
    if len(rows) == 0:
        raise AnalysisError(f"layer profile: no sparsity report for run {run} level {level}")
    return rows


def layer_profile(sparsity_df: pd.DataFrame) -> pd.DataFrame:
    """Sparsity per layer (rows) and component (columns) of one mask's sparsity report.

    ``sparsity_df`` holds one row per prunable matrix with ``layer`` (int, or
    NaN/None for the pooler), ``component``, ``numel`` and ``nonzero``, e.g.
    the rows of :func:`tickets_core.results.load_sparsity` for one run and
    level.  Matrices of the same cell (e.g. several ``ffn_in`` matrices) are
    pooled by weight count.  The pooler becomes a row named ``"pooler"``.
    """
    _require(sparsity_df, ("layer", "component", "numel", "nonzero"), "layer profile")
    d = sparsity_df.copy()
    d["row"] = [("pooler" if c == "pooler" else "other") if pd.isna(layer) else str(int(layer))
                for layer, c in zip(d["layer"], d["component"])]
    g = d.groupby(["row", "component"])[["numel", "nonzero"]].sum()
    g["sparsity"] = 1.0 - g["nonzero"] / g["numel"]
    table = g["sparsity"].unstack("component")
    cols = [c for c in COMPONENTS if c in table.columns] + sorted(c for c in table.columns if c not in COMPONENTS)
    numeric = sorted((r for r in table.index if r.isdigit()), key=int)
    rows = numeric + [r for r in ("pooler", "other") if r in table.index]
    table = table.loc[rows, cols]
    table.index.name, table.columns.name = "layer", "component"
    return table


# ---------------------------------------------------------------------------
# Transfer
# ---------------------------------------------------------------------------


def _at_sparsity(rows: pd.DataFrame, sparsity: float, tol: float) -> pd.DataFrame:
    return rows[(rows["sparsity"] - sparsity).abs() <= tol]


def transfer_matrix(df: pd.DataFrame, *, sparsity: float | None = None, level: int | None = None,
                    metric: str = "score", n_std: float = 1.0, ddof: int = 1, tol: float = SPARSITY_TOL,
                    include_diagonal: bool = True) -> pd.DataFrame:
    """Source task x target task table of transferred subnetworks at one sparsity.

    Uses the ``transfer`` rows (``source_task`` -> ``task``) at ``level``, or
    at ``sparsity`` (within ``tol``); with neither, the highest level all
    transfers share.  One row per (source, target):

    ``source_task, target_task, level, sparsity, score, score_std, n_seeds,
    dense_mean, threshold, imp_score, vs_dense, vs_imp, matching``

    where ``vs_dense = score - dense_mean`` and ``vs_imp = score - imp_score``
    (the target's own IMP ticket at the same sparsity), and ``matching`` is
    ``score >= threshold`` (NaN-safe: False without a dense baseline).  With
    ``include_diagonal`` the diagonal (source = target) is the target's IMP
    ticket itself, when its IMP runs reach that sparsity.
    """
    _require(df, ("task", "kind", "level", "seed", "sparsity", "source_task"), "transfer matrix")
    if sparsity is not None and level is not None:
        raise AnalysisError("transfer matrix: give sparsity or level, not both")
    scored = _scores(df, metric)
    tr = scored[(scored["kind"] == "transfer") & scored["source_task"].notna()]
    if len(tr) == 0:
        raise AnalysisError("transfer matrix: no transfer runs with a source task and a score")
    if sparsity is None and level is None:
        level = int(tr.groupby(["source_task", "task"])["level"].max().min())
    sel = tr[tr["level"] == level] if level is not None else _at_sparsity(tr, sparsity, tol)
    if len(sel) == 0:
        what = f"level {level}" if level is not None else f"sparsity {sparsity}"
        raise AnalysisError(f"transfer matrix: no transfer run reached {what}")
    imp = scored[scored["kind"] == "imp"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = dense_baselines(df, n_std, metric=metric, ddof=ddof).set_index("task")

    def cell(source: str, target: str, rows: pd.DataFrame) -> dict:
        s = float(rows["sparsity"].mean())
        score = float(rows[metric].mean())
        own = _at_sparsity(imp[imp["task"] == target], s, tol)
        imp_score = float(own[metric].mean()) if len(own) else math.nan
        dense_mean = float(base.loc[target, "mean"]) if target in base.index else math.nan
        thr = float(base.loc[target, "threshold"]) if target in base.index else math.nan
        return {"source_task": source, "target_task": target, "level": int(rows["level"].iloc[0]), "sparsity": s,
                "score": score, "score_std": float(rows[metric].std(ddof=ddof)) if len(rows) > 1 else 0.0,
                "n_seeds": int(rows["seed"].nunique()), "dense_mean": dense_mean, "threshold": thr,
                "imp_score": imp_score, "vs_dense": score - dense_mean, "vs_imp": score - imp_score,
                "matching": bool(is_matching(score, thr))}

    out = [cell(s, t, g) for (s, t), g in sel.groupby(["source_task", "task"], sort=True)]
    if include_diagonal:
        s_target = float(sel["sparsity"].mean())
        done = {(r["source_task"], r["target_task"]) for r in out}
        for task in sorted(set(sel["source_task"]) | set(sel["task"])):
            own = _at_sparsity(imp[imp["task"] == task], s_target, tol)
            if (task, task) not in done and len(own):
                # The diagonal cell's sparsity is the IMP level's own.
                out.append(cell(task, task, own[own["level"] == own["level"].iloc[0]]))
    return pd.DataFrame(out).sort_values(["source_task", "target_task"], ignore_index=True)
