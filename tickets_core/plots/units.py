"""Figures of structured tickets (the tables of :mod:`tickets_core.analysis.units`): heads kept per layer as a heat
map, FFN neurons kept per layer, head-set overlap against its random expectation.  Torch-free."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..analysis import AnalysisError
from ..analysis.units import head_matrix
from ..analysis.report import seeds_text
from .style import figure_width, legend_below, set_style


def head_heatmaps(units: pd.DataFrame, runs: list[str], level: int, *, width: str | float = "double",
                  titles: list[str] | None = None):
    """One panel per run: layers (rows) x heads (columns), dark = kept, at ``level``."""
    if units.empty:
        raise AnalysisError("no structured levels to draw (no metrics.json with 'units')")
    set_style()
    fig, axes = plt.subplots(1, len(runs), figsize=(figure_width(width), 1.4 + 0.25 * units["layer"].nunique()),
                             squeeze=False)
    for i, (ax, run) in enumerate(zip(axes[0], runs)):
        m = head_matrix(units, run, level)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1.3, aspect="auto")
        ax.grid(False)
        ax.set_xticks(range(m.shape[1]))
        ax.set_xticklabels([str(h) if h % 2 == 0 else "" for h in range(m.shape[1])])
        ax.set_yticks(range(m.shape[0]))
        ax.set_xlabel("head")
        if i == 0:
            ax.set_ylabel("layer")
        ax.set_title(titles[i] if titles else f"{run} ({int(m.sum())}/{m.size} kept)", fontsize=8)
    fig.tight_layout()
    return fig


def neurons_per_layer(units: pd.DataFrame, *, width: str | float = "single"):
    """FFN neurons kept per layer, one line per (task, method, level), mean over its seeds (the legend says how
    many); tasks and methods are never averaged together."""
    if units.empty:
        raise AnalysisError("no structured levels to draw (no metrics.json with 'units')")
    set_style()
    fig, ax = plt.subplots(figsize=(figure_width(width), 2.4), layout="constrained")
    pruned = units[units["level"] > 0]
    if "method" not in pruned.columns:  # a table made by hand: the kind and strategy stand for the method
        pruned = pruned.assign(method=pruned["kind"] + ", " + pruned["strategy"])
    line = ["task", "kind", "strategy", "method", "level"]
    seeds = pruned.groupby(line)["seed"].nunique()
    several = pruned.groupby(["task", "kind", "strategy"])["method"].nunique() > 1
    g = pruned.groupby([*line, "layer"])["neurons_kept"].mean().reset_index()
    for (task, kind, strategy, method, level), d in g.groupby(line):
        name = "random units" if kind == "random_prune" else strategy.replace("structured_", "")
        if several[(task, kind, strategy)]:
            name = f"{name} ({method})"
        n = seeds[(task, kind, strategy, method, level)]
        ax.plot(d["layer"], d["neurons_kept"], marker="o", label=f"{name}, {task}, level {level} ({seeds_text([n])})")
    ax.set_xticks(sorted(g["layer"].unique()))
    ax.set_xlabel("layer")
    ax.set_ylabel("FFN neurons kept")
    legend_below(fig, ax.get_legend_handles_labels()[0], width, max_cols=1)
    return fig


def overlap_bars(overlap: pd.DataFrame, *, width: str | float = "single"):
    """Head-set IoU of each pair of runs beside the IoU random head sets with the same per-layer counts expect."""
    if overlap.empty:
        raise AnalysisError("no pairs of structured runs to compare at this level")
    set_style()
    fig, ax = plt.subplots(figsize=(figure_width(width), 2.4))
    x = np.arange(len(overlap))
    ax.bar(x - 0.2, overlap["iou"], width=0.4, label="measured")
    ax.bar(x + 0.2, overlap["random_iou"], width=0.4, label="random, same counts")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{p}\n{a}/{b}" for p, a, b in zip(overlap["pair"], overlap["seed_a"], overlap["seed_b"])],
                       fontsize=8)
    ax.set_ylabel("IoU of kept heads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
