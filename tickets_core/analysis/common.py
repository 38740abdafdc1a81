"""What every analysis function shares: its error, the input checks, and aggregation over seeds."""

from __future__ import annotations

from typing import Iterable

import pandas as pd

# Two sparsities closer than this are "the same sparsity" (levels of runs that
# prune the same number of weights differ by rounding only).
SPARSITY_TOL = 0.01


class AnalysisError(ValueError):
    """The inputs cannot give the requested analysis (one-line message)."""

    def _render_traceback_(self) -> list[str]:
        """IPython (notebooks, papermill) shows it as its one line, not as a traceback."""
        return [f"{type(self).__name__}: {self}"]


def require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Fail with one line when ``df`` is empty or lacks ``columns``."""
    if df is None or len(df) == 0:
        raise AnalysisError(f"{what}: no runs to analyse (is runs_root right, and have the runs finished a level?)")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise AnalysisError(f"{what}: results table lacks column(s) {', '.join(missing)}")


def scores(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of ``df`` that have a value for ``metric``."""
    if metric not in df.columns:
        choices = ", ".join(c for c in df.columns if c == "score" or c.startswith("eval_"))
        raise AnalysisError(f"unknown metric column {metric!r}; available: {choices}")
    return df[df[metric].notna()]


def over_seeds(rows: pd.DataFrame, by: list[str], metric: str, ddof: int = 1) -> pd.DataFrame:
    """``sparsity``, ``mean``, ``std`` (0 for one seed) and ``n_seeds`` of ``metric`` per group ``by``.

    Rows of the same seed and source run (the same level computed by two
    runs that differ only in which source levels they read) are averaged
    first, so each such experiment counts once and the spread is the spread
    over seeds; transfers with the same seed from different source runs (the
    sources' seeds) are different experiments and count apart.
    """
    key = by + ["seed"] + (["source_run"] if "source_run" in rows.columns and "source_run" not in by else [])
    per_seed = rows.groupby(key, sort=True, dropna=False).agg(sparsity=("sparsity", "mean"),
                                                              value=(metric, "mean")).reset_index()
    out = per_seed.groupby(by, sort=True, dropna=False).agg(sparsity=("sparsity", "mean"), mean=("value", "mean"),
                                                            std=("value", lambda v: v.std(ddof=ddof)),
                                                            n_seeds=("seed", "size"))
    out["std"] = out["std"].fillna(0.0)
    return out.reset_index()


def filter_runs(df: pd.DataFrame, *, model: str | None = None, tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """Rows of one model and/or some tasks; an empty result is an error naming what was asked.

    Method labels (:func:`~tickets_core.analysis.add_method`) name what sets
    runs apart *in the table they are given*: filter first, or label first to
    keep the whole folder's labels.
    """
    require(df, ("task", "model"), "runs")
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
