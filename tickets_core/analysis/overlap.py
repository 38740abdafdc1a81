"""Masks: do methods and tasks find the same subnetwork?  IoU of kept weights, and where masks prune.

Functions on :class:`tickets_core.pruning.masks.Mask` objects the caller loaded
(:func:`tickets_core.analysis.results.load_masks`) and on the per-matrix table of
:func:`tickets_core.analysis.results.load_sparsity`; nothing here loads torch.

Masks of models with and without a pooler (a BERT classifier's have a pooler
entry, its MLM and QA models' do not) are compared on the matrices both have
(:meth:`~tickets_core.pruning.masks.Mask.common`): the IoU, the random masks'
IoU it is set beside, and :func:`seeds_vs_tasks`; :func:`common_set_note` says
so in a sentence for the figure.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..models.components import COMPONENTS, is_pooler
from .common import AnalysisError, require
from .methods import add_method


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


def expected_overlap_matrix(masks: Mapping[str, Any]) -> pd.DataFrame:
    """Label x label expected IoU of independent random masks with the densities each pair of ``masks`` has on
    the matrices both have: the reference for :func:`overlap_matrix` (equal to :func:`random_overlap_matrix` of
    the masks' densities when every mask has the same matrices)."""
    if not masks:
        raise AnalysisError("mask overlap: no masks given")

    def cell(a: str, b: str) -> float:
        x, y = masks[a].common(masks[b])
        return random_iou(x.density, y.density)

    labels = list(masks)
    return pd.DataFrame([[cell(a, b) for b in labels] for a in labels], index=labels, columns=labels)


def _with_pooler(masks: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    has = [label for label, m in masks.items() if any(is_pooler(k) for k in m)]
    return has, [label for label in masks if label not in has]


def common_set_note(masks: Mapping[str, Any]) -> str | None:
    """One sentence for a figure or table when some masks have a pooler entry and others none (say which pairs
    were compared without the pooler); None when every mask has the same matrices."""
    has, lacks = _with_pooler(masks)
    if not has or not lacks:
        return None
    return (f"IoU over the matrices both masks have: {', '.join(map(str, lacks))} (no pooler) against "
            f"{', '.join(map(str, has))} leaves their pooler out")


def random_overlap_matrix(densities: Mapping[str, float]) -> pd.DataFrame:
    """Label x label expected IoU of independent random masks with these densities."""
    if not densities:
        raise AnalysisError("mask overlap: no densities given")
    labels = list(densities)
    return pd.DataFrame([[random_iou(densities[a], densities[b]) for b in labels] for a in labels],
                        index=labels, columns=labels)


def pick_levels(df: pd.DataFrame, sparsity: float | None = None, *, kind: str = "imp", method: str | None = None,
                seed: int | None = None, tasks: Iterable[str] | None = None, tol: float = 0.02) -> pd.DataFrame:
    """Choose one run level per task and method at (about) the same sparsity, to compare masks.

    Methods are those of ``kind`` (or just ``method``), labelled by
    :func:`~tickets_core.analysis.add_method`.  ``sparsity=None`` takes the
    highest sparsity every (task, method) reached.  For each the level closest
    to the target within ``tol`` is chosen, from the lowest seed unless
    ``seed`` is given: a mask is one seed's, never an average.  Returns
    ``task, method, label, run, run_dir, seed, level, sparsity``, where
    ``label`` names the mask in a figure: the task, or "task: method" when
    several methods are compared.  Pairs without such a level are dropped with
    a warning.
    """
    require(df, ("task", "kind", "level", "seed", "sparsity", "run", "run_dir"), "mask overlap")
    df = add_method(df)
    rows = df[df["method"] == method] if method is not None else df[df["kind"] == kind]
    if seed is not None:
        rows = rows[rows["seed"] == seed]
    if tasks is not None:
        rows = rows[rows["task"].isin([tasks] if isinstance(tasks, str) else list(tasks))]
    what = repr(method or kind)
    if len(rows) == 0:
        raise AnalysisError(f"mask overlap: no {what} runs" + (f" with seed {seed}" if seed is not None else ""))
    if sparsity is None:
        sparsity = float(rows.groupby(["task", "method"])["sparsity"].max().min())
    several = rows["method"].nunique() > 1
    out, missing = [], []
    for (task, name), g in rows.groupby(["task", "method"], sort=True):
        g = g.assign(_dist=(g["sparsity"] - sparsity).abs()).sort_values(["_dist", "seed", "level"])
        best = g.iloc[0]
        if best["_dist"] > tol:
            missing.append(f"{task} ({name})" if several else task)
            continue
        out.append({"task": task, "method": name, "label": f"{task}: {name}" if several else task,
                    **{k: best[k] for k in ("run", "run_dir", "seed", "level", "sparsity")}})
    if missing:
        warnings.warn(f"no {what} level within {tol} of sparsity {sparsity:.3f} for {', '.join(missing)}",
                      stacklevel=2)
    if not out:
        raise AnalysisError(f"mask overlap: no task has a {what} level near sparsity {sparsity:.3f}")
    return pd.DataFrame(out)


def pick_seeds(df: pd.DataFrame, sparsity: float, *, kind: str = "imp", method: str | None = None,
               tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """:func:`pick_levels` for every seed of the compared runs: one row per task, method and seed at
    ``sparsity`` (the input of :func:`seeds_vs_tasks`)."""
    df = add_method(df)
    rows = df[df["method"] == method] if method is not None else df[df["kind"] == kind]
    with warnings.catch_warnings():  # a seed that lacks the level is simply not compared
        warnings.simplefilter("ignore")
        picks = []
        for s in sorted(rows["seed"].unique()):
            try:
                picks.append(pick_levels(df, sparsity, kind=kind, method=method, seed=int(s), tasks=tasks))
            except AnalysisError:
                pass
    return pd.concat(picks, ignore_index=True) if picks else pd.DataFrame(columns=["task", "method", "seed"])


def check_comparable(picked: pd.DataFrame, per_seed: pd.DataFrame | None = None, *,
                     require_seeds: bool = False) -> str | None:
    """Before anything is drawn: can these masks answer the mask-overlap question?

    A single mask (one task, one method) is a one-line :class:`AnalysisError`: there is nothing to compare it
    with.  Without two seeds of a task (``per_seed``, :func:`pick_seeds`) the IoU between tasks cannot be told
    from seed noise: an error when ``require_seeds``, else the returned one-line note (None: comparable).
    """
    at = f"{float(picked['sparsity'].mean()):.0%}" if len(picked) else "that sparsity"
    if picked["label"].nunique() < 2:
        raise AnalysisError(f"mask overlap: only one mask to compare ({picked['label'].iloc[0]} at {at}); it compares "
                            "tasks, or methods of one kind: run the method on a second task (and keep tasks=None)")
    if per_seed is None:
        return None
    counts = per_seed.groupby(["task", "method"])["seed"].nunique() if len(per_seed) else pd.Series(dtype=int)
    if len(counts) and counts.max() >= 2:
        return None
    seeds = ", ".join(str(int(s)) for s in sorted(per_seed["seed"].unique())) if len(per_seed) else "none"
    why = (f"one seed per task at {at} (seeds: {seeds}), so the IoU between tasks cannot be told from the IoU "
           "between two seeds of one task")
    if require_seeds:
        raise AnalysisError(f"mask overlap: {why}: run a second seed, or set compare_seeds=None to draw the task "
                            "overlap alone")
    return f"seeds vs tasks: not compared: {why} (run a second seed)"


def seeds_vs_tasks(picked: pd.DataFrame, masks: Mapping[tuple, Any]) -> pd.DataFrame:
    """IoU between seeds of one task next to IoU between tasks at the same seed.

    A mask's overlap with another task's says nothing about task structure on
    its own: two seeds of one task differ too.  ``picked`` holds one row per
    task, method and seed (:func:`pick_levels` called per seed); ``masks`` maps
    ``(task, method, seed)`` to that level's loaded mask.  Returns one row per
    pair: ``method, pair`` ("within" = two seeds of ``task_a``; "between" =
    ``task_a`` vs ``task_b`` at equal seeds), ``task_a, task_b, n_seeds,
    n_pairs, iou_mean, iou_min, iou_max, matrices``; ``n_seeds`` is how many seeds of each
    task the row uses (all of ``task_a``'s; the seeds both tasks have); ``matrices`` says
    "without the pooler" for two tasks of which one has none (the IoU is over the matrices
    both have), else "all".  Only a gap between the two is task structure.
    """
    require(picked, ("task", "method", "seed"), "seed and task overlap")
    rows = []
    for name, g in picked.groupby("method", sort=True):
        seeds = {t: sorted(gg["seed"]) for t, gg in g.groupby("task", sort=True)}
        tasks = list(seeds)
        pairs: dict[tuple, list[float]] = {}
        for t in tasks:
            for i, a in enumerate(seeds[t]):
                for b in seeds[t][i + 1:]:
                    pairs.setdefault(("within", t, t), []).append(masks[(t, name, a)].overlap(masks[(t, name, b)]))
        for i, t in enumerate(tasks):
            for u in tasks[i + 1:]:
                for s in sorted(set(seeds[t]) & set(seeds[u])):
                    pairs.setdefault(("between", t, u), []).append(masks[(t, name, s)].overlap(masks[(u, name, s)]))
        pooler = {t: _with_pooler({t: masks[(t, name, seeds[t][0])]})[0] != [] for t in tasks}
        rows += [{"method": name, "pair": pair, "task_a": a, "task_b": b,
                  "n_seeds": len(seeds[a]) if pair == "within" else len(v),  # between: one pair per common seed
                  "n_pairs": len(v), "iou_mean": float(np.mean(v)), "iou_min": float(np.min(v)),
                  "iou_max": float(np.max(v)),
                  "matrices": "all" if pooler[a] == pooler[b] else "without the pooler"}
                 for (pair, a, b), v in pairs.items()]
    if not rows:
        raise AnalysisError("seed and task overlap: need two seeds of a task or two tasks with a common seed")
    return pd.DataFrame(rows).sort_values(["method", "pair", "task_a", "task_b"], ignore_index=True)


def matrix_rows(sparsity_df: pd.DataFrame, run: str, level: int) -> pd.DataFrame:
    """The per-matrix rows of one run and level in a :func:`results.load_sparsity` table."""
    require(sparsity_df, ("run", "level"), "layer profile")
    rows = sparsity_df[(sparsity_df["run"] == run) & (sparsity_df["level"] == level)]
    if len(rows) == 0:
        raise AnalysisError(f"layer profile: no sparsity report for run {run} level {level}")
    return rows


def layer_profile(sparsity_df: pd.DataFrame) -> pd.DataFrame:
    """Sparsity per layer (rows) and component (columns) of one mask's sparsity report.

    ``sparsity_df`` holds one row per prunable matrix with ``layer`` (int, or
    NaN/None for the pooler), ``component``, ``numel`` and ``nonzero``, e.g.
    the rows of :func:`tickets_core.analysis.results.load_sparsity` for one run and
    level.  Matrices of the same cell (e.g. several ``ffn_in`` matrices) are
    pooled by weight count.  The pooler becomes a row named ``"pooler"``.
    """
    require(sparsity_df, ("layer", "component", "numel", "nonzero"), "layer profile")
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
