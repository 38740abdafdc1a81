"""Figures of the stability and early-bird notebooks (the tables of :mod:`tickets_core.analysis.curves`).

Same conventions as :mod:`tickets_core.plots.figures` (the style, grid and
:func:`~tickets_core.plots.style.save_figure` of :mod:`tickets_core.plots.style`): paper widths, every font
at least 8 pt, one panel per task, the number of seeds in the legend.  Torch-free.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..analysis import AnalysisError
from .names import label, metric_name, task_name
from ..analysis.report import seeds_text
from .style import _grid, figure_width, legend_below, method_styles, panel_title, set_style


def _styles(methods):
    methods = sorted(methods, key=lambda m: (not m.startswith("IMP"), m))
    return (methods, *method_styles(methods))


def _legend(fig, handles, width) -> None:
    legend_below(fig, handles, width, max_cols=3)


def barrier_plot(table: pd.DataFrame, *, barrier: str = "error_barrier", width: str | float = "double"):
    """Barrier (mean +-1 std over seeds) against sparsity, one panel per task, one line per method.

    ``table``: :func:`tickets_core.analysis.curves.stability_table`; ``barrier``: ``"error_barrier"`` or ``"loss_barrier"``.
    """
    if table is None or len(table) == 0 or table[barrier].isna().all():
        raise AnalysisError(f"stability: no {barrier.replace('_', ' ')} to plot (no finished stability level?)")
    set_style()
    tasks = sorted(table["task"].unique())
    methods, palette, markers = _styles(table["method"].unique())
    fig, axes = _grid(len(tasks), width, panel_aspect=0.6 if len(tasks) == 1 else 0.8)
    for ax, task in zip(axes, tasks):
        d = table[table["task"] == task]
        for m in methods:
            r = d[d["method"] == m].sort_values("sparsity")
            if len(r) == 0:
                continue
            x, y, e = 100 * r["sparsity"], r[barrier], r[barrier + "_std"]
            ax.plot(x, y, color=palette[m], marker=markers[m])
            ax.fill_between(x, y - e, y + e, color=palette[m], alpha=0.15, lw=0)
        ax.axhline(0.0, color="0.35", lw=0.8, ls=":")
        panel_title(ax, task_name(task), width)
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(metric_name(barrier))
    n = table.groupby("method")["n_seeds"].apply(seeds_text)
    _legend(fig, [plt.Line2D([], [], color=palette[m], marker=markers[m], label=f"{label(m)} ({n[m]})")
                  for m in methods], width)
    return fig


def interpolation_plot(curves: pd.DataFrame, *, value: str = "error", width: str | float = "double"):
    """``value`` along the path between the two copies (alpha 0 -> 1), one panel per (task, method), one line per
    sparsity; each seed drawn separately (thin), never averaged across settings; the title says how many seeds
    (per sparsity).  ``curves``: a
    :func:`tickets_core.analysis.curves.stability_methods` table."""
    if curves is None or len(curves) == 0:
        raise AnalysisError("stability: no interpolation curve to plot")
    set_style()
    panels = sorted(curves.groupby(["task", "method"]).groups)
    fig, axes = _grid(len(panels), width)
    sparsities = sorted(curves["sparsity"].round(3).unique())
    cmap = dict(zip(sparsities, sns.color_palette("viridis", len(sparsities))))
    for ax, (task, method) in zip(axes, panels):
        d = curves[(curves["task"] == task) & (curves["method"] == method)]
        for (run, level), c in d.groupby(["run", "level"]):
            c = c.sort_values("alpha")
            ax.plot(c["alpha"], c[value], color=cmap[round(c["sparsity"].iat[0], 3)], lw=0.9, marker=".")
        panel_title(ax, f"{task_name(task)}\n{label(method)} ({seeds_text(d.groupby('level')['seed'].nunique())})",
                    width)
        ax.set_xlabel("interpolation alpha")
        ax.set_ylabel(metric_name(value))
    _legend(fig, [plt.Line2D([], [], color=cmap[s], label=f"{100 * s:.0f}% sparse") for s in sparsities], width)
    return fig


def mask_distance_plot(checks: pd.DataFrame, *, width: str | float = "double"):
    """Early-bird: each check's mask distance (the largest to the masks in its queue) against the training step, one
    panel per task,
    one colour per level, one line per (seed, level); the dotted line is eps, a cross marks where a level stopped.
    ``checks``: :func:`tickets_core.analysis.curves.load_early_bird`."""
    if checks is None or len(checks) == 0:
        raise AnalysisError("early-bird: no mask-distance curve to plot (no early-bird trunk under runs_root?)")
    set_style()
    tasks = sorted(checks["task"].unique())
    levels = sorted(checks["level"].unique())
    cmap = dict(zip(levels, sns.color_palette("colorblind", len(levels))))
    fig, axes = _grid(len(tasks), width)
    for ax, task in zip(axes, tasks):
        d = checks[checks["task"] == task]
        for (run, level), c in d.groupby(["run", "level"]):
            c = c.sort_values("step")
            ax.plot(c["step"], c["distance"], color=cmap[level], lw=0.9, marker=".")
            stop = c["stopped_at"].iat[0]
            if stop == stop:
                ax.plot([stop], [c.loc[c["step"] == stop, "distance"].iat[0]], marker="x", color=cmap[level], ms=6)
        for eps in d["eps"].unique():
            ax.axhline(eps, color="0.35", lw=0.8, ls=":")
        positive = d["distance"][d["distance"] > 0]
        if len(positive) == len(d):
            ax.set_yscale("log")
        else:  # identical successive masks (distance 0) cannot sit on a log axis
            ax.set_yscale("symlog", linthresh=float(positive.min()) if len(positive) else 1e-6)
        panel_title(ax, f"{task_name(task)} ({seeds_text(d.groupby('level')['seed'].nunique())} per level)", width)
        ax.set_xlabel("training step within the level")
        ax.set_ylabel("mask distance (largest over the queue)")
    handles = [plt.Line2D([], [], color=cmap[k], marker=".", label=f"level {k} -> mask of level {k + 1}")
               for k in levels]
    handles += [plt.Line2D([], [], color="0.35", ls=":", label="eps"),
                plt.Line2D([], [], color="0.35", marker="x", ls="none", label="stopped")]
    _legend(fig, handles, width)
    return fig


def early_bird_plot(summary: pd.DataFrame, *, width: str | float = "double"):
    """Early-bird vs IMP: score against sparsity (left) and against the training steps spent to get there (right),
    one row of panels per task, mean +-1 std over seeds.
    ``summary``: :func:`tickets_core.analysis.curves.early_bird_summary`."""
    if summary is None or len(summary) == 0:
        raise AnalysisError("early-bird: nothing to compare (need IMP trunks, early-bird trunks and their retrains)")
    set_style()
    # Settings that share their IMP trunks (an early-bird variant and its cut control, say) share a panel.
    imp = summary[summary["method"] == "IMP"]
    signature = {key: tuple(map(tuple, g[["level", "score", "steps"]].round(9).values.tolist()))
                 for key, g in imp.groupby("setting")}
    summary = summary.assign(panel=[f"{t}|{signature.get(k, k)}" for t, k in zip(summary["task"], summary["setting"])])
    summary = summary.drop_duplicates(["panel", "method", "level"])
    panels = sorted(summary.groupby(["task", "panel"]).groups)
    w = figure_width(width)
    fig, axes = plt.subplots(len(panels), 2, figsize=(w, len(panels) * w * 0.38 + 0.5), squeeze=False,
                             layout="constrained")
    methods, palette, markers = _styles(summary["method"].unique())
    several = summary.groupby("task")["panel"].nunique()  # name the setting only where a task has several
    for (task, key), (left, right) in zip(panels, axes):
        d = summary[(summary["task"] == task) & (summary["panel"] == key)]
        key = d["setting"].iat[0]
        for m in methods:
            r = d[d["method"] == m].sort_values("level")
            if len(r) == 0:
                continue
            for ax, x in ((left, 100 * r["sparsity"]), (right, r["steps"])):
                ax.errorbar(x, r["score"], yerr=r["score_std"], color=palette[m], marker=markers[m], capsize=2)
        left.set_xlabel("sparsity (%)")
        right.set_xlabel("training steps spent to reach it")
        for ax in (left, right):
            ax.set_ylabel("score")
            panel_title(ax, task_name(task) if several[task] == 1 else f"{task_name(task)} [{key}]", width)
    n = summary.groupby("method")["n_seeds"].apply(seeds_text)
    _legend(fig, [plt.Line2D([], [], color=palette[m], marker=markers[m], label=f"{label(m)} ({n[m]})")
                  for m in methods], width)
    return fig


__all__ = ["barrier_plot", "interpolation_plot", "mask_distance_plot", "early_bird_plot"]
