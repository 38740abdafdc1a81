"""Figures of the analysis notebooks, sized for a paper (style: :mod:`tickets_core.plots.style`).

Every function takes the tables of :mod:`tickets_core.analysis` and returns a matplotlib ``Figure``;
:func:`~tickets_core.plots.style.save_figure` writes it.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle

from ..analysis import AnalysisError, transfer_note
from .names import label, metric_name, metric_names, task_name
from ..analysis.report import seeds_text
from .style import (MIN_FONT_PT, _grid, _method_order, figure_width, legend_below, method_styles, panel_title,
                    set_style)


def sparsity_curves(rows: pd.DataFrame, baselines: pd.DataFrame, highest: pd.DataFrame | None = None, *,
                    metric: str = "score", metric_label: str | None = None, width: str | float = "double",
                    tasks: Iterable[str] | None = None, n_std: float | None = None):
    """Metric against sparsity, one panel per task, one line per method (mean and +-1 std over seeds).

    ``rows``: results rows with a ``method`` column (:func:`analysis.add_method`),
    dense runs excluded; ``baselines``: :func:`analysis.dense_baselines`
    (solid grey line: dense mean; dotted: the matching threshold; labelled
    when a task has several dense variants; the legend says over how many
    dense seeds);
    ``highest``: :func:`analysis.highest_matching_sparsity` (dashed vertical
    line and a star at the highest matching sparsity, in the method's colour).
    The legend says over how many seeds each method's points are averaged, and with ``n_std`` which
    matching rule the threshold is (mean - n_std std; 0: the dense mean itself).
    """
    if rows is None or len(rows) == 0:
        raise AnalysisError("sparsity curves: nothing to plot")
    set_style()
    tasks = sorted(rows["task"].unique()) if tasks is None else list(tasks)
    methods = _method_order(rows)
    seeds = {m: seeds_text(g.groupby(["task", "level"])["seed"].nunique()) for m, g in rows.groupby("method")}
    palette, markers = method_styles(methods)
    fig, axes = _grid(len(tasks), width)
    base = baselines if baselines is not None and len(baselines) else None
    best = highest if highest is not None and len(highest) else None
    data = rows.assign(sparsity_pct=(rows["sparsity"] * 100).round(2))
    for ax, task in zip(axes, tasks):
        d = data[data["task"] == task]
        sns.lineplot(data=d, x="sparsity_pct", y=metric, hue="method", style="method", hue_order=methods,
                     style_order=methods, palette=palette, markers=markers, dashes=False, errorbar="sd",
                     err_kws={"alpha": 0.15, "linewidth": 0}, ax=ax, legend=False)
        task_base = base[base["task"] == task] if base is not None else []
        for b in (task_base.itertuples() if len(task_base) else ()):
            ax.axhline(b.mean, color="0.35", lw=0.9, ls="-", zorder=1)
            ax.axhline(b.threshold, color="0.35", lw=0.9, ls=":", zorder=1)
            if len(task_base) > 1:  # several dense variants: say which line is which
                ax.annotate(label(b.method), (1.0, b.mean), xycoords=("axes fraction", "data"), xytext=(-2, 2),
                            textcoords="offset points", ha="right", fontsize=MIN_FONT_PT, color="0.35")
        task_best = best[(best["task"] == task) & best["sparsity"].notna()] if best is not None else []
        for h in (task_best.itertuples() if len(task_best) else ()):
            x, color = 100 * float(h.sparsity), palette.get(h.method, "k") if len(task_best) > 1 else "k"
            ax.axvline(x, color=color, lw=0.8, ls="--", zorder=1)
            ax.plot([x], [h.score], marker="*", ms=9, color=color, zorder=5, ls="none")
        # the highest matching sparsity in the title: a label inside the panel would collide with the curves
        found = sorted({f"{100 * float(h.sparsity):.0f}%" for h in task_best.itertuples()}) if len(task_best) else []
        panel_title(ax, task_name(task) + (f"\nmatching up to {', '.join(found)}" if found else ""), width)
        ax.set_xlabel("sparsity (%)")
        if metric_label is None and metric == "score" and "main_metric" in d.columns and d["main_metric"].notna().any():
            ax.set_ylabel(metric_names(sorted(d["main_metric"].dropna().unique())))
        else:
            ax.set_ylabel(metric_label or metric_name(metric))
    handles = [plt.Line2D([], [], color=palette[m], marker=markers[m], label=f"{label(m)} ({seeds[m]})")
               for m in methods]
    shown = base.loc[base["task"].isin(tasks), "n_seeds"] if base is not None else []
    dense = f" ({seeds_text(shown)})" if len(shown) else ""
    handles += [plt.Line2D([], [], color="0.35", ls="-", label="dense mean" + dense),
                plt.Line2D([], [], color="0.35", ls=":", label="matching threshold" + _rule(n_std) + dense)]
    if best is not None:
        handles.append(plt.Line2D([], [], color="k", ls="--", marker="*", ms=7, label="highest matching"))
    legend_below(fig, handles, width, max_cols=4 if figure_width(width) > 4 else 2)
    return fig


def _rule(n_std: float | None) -> str:
    """The matching rule for a legend: ", mean - 1 std", ", = dense mean" (n_std 0), or nothing when unknown."""
    if n_std is None:
        return ""
    return ", = dense mean" if n_std == 0 else f", mean - {n_std:g} std"


# ---------------------------------------------------------------------------
# Heat maps
# ---------------------------------------------------------------------------


def _heatmap(ax, table: pd.DataFrame, *, fmt: str, cmap: str, vmin=None, vmax=None, center=None, cbar=True,
             cbar_label: str | None = None):
    table = table.rename(index=label, columns=label)  # display names; the tables keep the registry names
    sns.heatmap(table.astype(float), ax=ax, annot=True, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax, center=center,
                square=False, linewidths=0.5, linecolor="white", cbar=cbar,
                cbar_kws={"label": cbar_label} if cbar and cbar_label else None,
                annot_kws={"fontsize": MIN_FONT_PT})
    ax.grid(False)
    for tick in ax.get_xticklabels():  # rotated, anchored at their tick: neighbours never overlap
        tick.set(rotation=45, ha="right", rotation_mode="anchor")
    ax.tick_params(axis="y", labelrotation=0)


def overlap_heatmaps(observed: pd.DataFrame, expected: pd.DataFrame, *, sparsity: float | None = None,
                     width: str | float = "double", note: str | None = None):
    """Label x label IoU of the masks (left) beside the IoU of random masks of the same densities (right).

    Labels are :func:`analysis.pick_levels`' ``label`` (the task, or "task: method"); each mask is one seed's.
    ``note``: a line under the panels (:func:`analysis.common_set_note`: which pairs leave the pooler out).
    """
    if observed is None or observed.empty:
        raise AnalysisError("mask overlap: nothing to plot")
    set_style()
    fig, axes = _grid(2, width, panel_aspect=0.85, max_cols=2 if figure_width(width) > 4 else 1)
    _heatmap(axes[0], observed, fmt=".2f", cmap="viridis", vmin=0, vmax=1, cbar=False)
    _heatmap(axes[1], expected.loc[observed.index, observed.columns], fmt=".2f", cmap="viridis", vmin=0, vmax=1,
             cbar_label="IoU of kept weights")
    at = f" at {100 * sparsity:.0f}% sparsity" if sparsity is not None else ""
    axes[0].set_title("masks" + at + " (one seed each)")
    axes[1].set_title("random masks, same densities")
    for ax in axes:
        ax.set_xlabel("mask")
        ax.set_ylabel("mask")
    if note:
        fig.supxlabel(note, fontsize=MIN_FONT_PT, wrap=True)
    return fig


def layer_profile_heatmaps(profiles: Mapping[str, pd.DataFrame], *, seeds: Mapping[str, int] | None = None,
                           width: str | float = "double"):
    """One layer x component heat map of sparsity per label (usually per task), each one seed's mask.

    ``seeds``: the seed of each label's mask, named in its title (without it the title says "one seed").
    """
    if not profiles:
        raise AnalysisError("layer profile: nothing to plot")
    set_style()
    keys = list(profiles)
    fig, axes = _grid(len(keys), width, panel_aspect=1.1)
    for i, (ax, key) in enumerate(zip(axes, keys)):
        last = i == len(keys) - 1
        _heatmap(ax, profiles[key] * 100, fmt=".0f", cmap="rocket_r", vmin=0, vmax=100, cbar=last,
                 cbar_label="sparsity (%)" if last else None)
        panel_title(ax, f"{label(key)} (seed {seeds[key]})" if seeds and key in seeds else f"{label(key)} (one seed)",
                    width)
    return fig


def transfer_heatmaps(table: pd.DataFrame, *, values: Iterable[str] = ("vs_dense", "vs_imp"),
                      width: str | float = "double", metric_label: str = "score"):
    """Source x target heat maps of :func:`analysis.transfer_matrix` columns; matching cells boxed in black.

    Rows are the table's ``source`` (the source task, plus what sets its
    transfer method apart); the title says over how many seeds the cells are
    (and a ``vs_dense`` panel over how many seeds the dense means are).
    """
    if table is None or len(table) == 0:
        raise AnalysisError("transfer matrix: nothing to plot")
    set_style()
    values = list(values)
    metric_label = metric_name(metric_label)
    only_imp = table["source_method"].astype(str).str.startswith("IMP").all() if "source_method" in table else True
    titles = {"vs_dense": f"{metric_label} - dense",
              "vs_imp": f"{metric_label} - " + ("own IMP ticket" if only_imp else "own ticket of the row's method"),
              "score": metric_label}
    fig, axes = _grid(len(values), width, panel_aspect=0.9, max_cols=len(values) if figure_width(width) > 4 else 1)
    match = table.pivot(index="source", columns="target_task", values="matching")
    n = seeds_text(table["n_seeds"])
    dense = table.loc[table["n_dense_seeds"] > 0, "n_dense_seeds"]  # cells without a dense baseline have 0
    for ax, value in zip(axes, values):
        m = table.pivot(index="source", columns="target_task", values=value)
        finite = np.abs(m.to_numpy(dtype=float)[np.isfinite(m.to_numpy(dtype=float))])
        lim = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        if value == "score":
            _heatmap(ax, m, fmt=".3f", cmap="viridis")
        else:
            _heatmap(ax, m, fmt="+.3f", cmap="RdBu", vmin=-lim, vmax=lim, center=0)
        for i, src in enumerate(m.index):
            for j, tgt in enumerate(m.columns):
                flag = match.loc[src, tgt] if src in match.index and tgt in match.columns else False
                if flag is True or (not pd.isna(flag) and bool(flag)):
                    ax.add_patch(Rectangle((j + 0.04, i + 0.04), 0.92, 0.92, fill=False, ec="k", lw=1.4))
        on_dense = f"\ndense mean over {seeds_text(dense)}" if value == "vs_dense" and len(dense) else ""
        ax.set_title(f"{titles.get(value, value)} ({n}){on_dense}")
        ax.set_xlabel("target task")
        ax.set_ylabel("source task (mask)")
        if ax.get_subplotspec().colspan.start > 0:  # the same rows as the panel on its left: room for the cells
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelleft=False)
    note = transfer_note(table)  # masks moved between models with and without a pooler
    if note:
        fig.supxlabel(note, fontsize=MIN_FONT_PT, wrap=True)
    return fig
