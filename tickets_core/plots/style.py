"""The house style of every figure: paper widths, fonts of at least 8 pt, grids of panels, colours and markers
per method, seed counts in words, and :func:`save_figure`.

Widths follow a two-column paper: ``"single"`` is one column (3.3 in), ``"double"`` the full text width (6.9 in),
or a number of inches.  All text is at least 8 pt (:data:`MIN_FONT_PT`), so figures stay readable when printed at
size.  Nothing here picks a matplotlib backend: Jupyter uses its inline backend, scripts and tests without a
display fall back to Agg.
"""

from __future__ import annotations

import itertools
import math
import re
import textwrap
from pathlib import Path
from typing import Iterable

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..analysis import AnalysisError
from ..core.kinds import KINDS

#: Paper widths in inches.
WIDTHS: dict[str, float] = {"single": 3.3, "double": 6.9}
_MARKERS = ("o", "X", "s", "P", "D", "^", "v", "<", ">")
#: Smallest font size used anywhere in a figure (points).
MIN_FONT_PT = 8
_RC = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "legend.title_fontsize": 8, "figure.titlesize": 9,
    "axes.linewidth": 0.6, "lines.linewidth": 1.2, "lines.markersize": 4,
    "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.bbox": "tight", "savefig.pad_inches": 0.02,
}


def set_style() -> None:
    """Seaborn paper style with every font at least 8 pt (embedded TrueType in PDFs)."""
    sns.set_theme(context="paper", style="whitegrid", rc=_RC)


def figure_width(width: str | float) -> float:
    """Width in inches of ``"single"``, ``"double"`` or a number of inches."""
    if isinstance(width, str):
        if width not in WIDTHS:
            raise AnalysisError(f"unknown figure width {width!r}; use 'single', 'double' or inches")
        return WIDTHS[width]
    if not 1.0 <= float(width) <= 20.0:
        raise AnalysisError(f"figure width must be between 1 and 20 inches, got {width}")
    return float(width)


def _grid(n: int, width: str | float, panel_aspect: float = 0.8, max_cols: int | None = None):
    """Figure and a flat list of ``n`` axes laid out to fit ``width``."""
    w = figure_width(width)
    cols = max_cols or max(1, min(n, int(w // 2.2)))
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    panel_w = w / cols
    fig, axes = plt.subplots(rows, cols, figsize=(w, rows * panel_w * panel_aspect + 0.5), squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


#: The formats :func:`save_figure` writes (``formats``).
FORMATS = ("png", "pdf", "svg")


def save_figure(fig, name: str, figures_dir: str | Path = "figures", *, dpi: int = 300,
                formats: Iterable[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``<figures_dir>/<name>.<format>`` for each of ``formats`` (png, pdf, svg); returns the paths.

    The folder is created when missing; each file is written to a temporary
    name and renamed, so a crash leaves no half-written figure.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        raise AnalysisError(f"figure name must be a plain file name (letters, digits, _ . -), got {name!r}")
    formats = [formats] if isinstance(formats, str) else list(formats)
    if not formats or any(f not in FORMATS for f in formats):
        raise AnalysisError(f"figure formats must be some of {', '.join(FORMATS)}, got {formats!r}")
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in dict.fromkeys(formats):
        final = folder / f"{name}.{ext}"
        tmp = folder / f".{name}.tmp.{ext}"
        fig.savefig(tmp, format=ext, dpi=dpi)
        tmp.replace(final)
        paths.append(final)
    return paths


def panel_title(ax, text: str, width: str | float) -> None:
    """``ax``'s title, each line wrapped to the panel's share of the figure width (titles never run into the
    next panel's)."""
    cols = ax.get_subplotspec().get_gridspec().ncols if ax.get_subplotspec() is not None else 1
    chars = max(12, int(figure_width(width) / cols * 72 / (0.6 * 9)))  # 9 pt titles
    ax.set_title("\n".join(textwrap.fill(line, chars) for line in text.split("\n")))


def legend_below(fig, handles: list, width: str | float, *, max_cols: int = 4):
    """The figure's legend under its panels, in as many columns (at most ``max_cols``) as fit inside the figure's
    width, measured on the drawn legend; labels too long for one column are wrapped."""
    inches = figure_width(width)
    chars = max(20, int(inches * 72 / (0.62 * MIN_FONT_PT)) - 6)  # a label's width in characters of 8 pt text
    for h in handles:
        h.set_label(textwrap.fill(h.get_label(), chars))
    renderer = fig.canvas.get_renderer()
    for ncol in range(min(len(handles), max_cols), 0, -1):
        legend = fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)
        if ncol == 1 or legend.get_window_extent(renderer).width <= inches * fig.dpi:
            return legend
        legend.remove()
    return None


def _method_order(rows: pd.DataFrame) -> list[str]:
    """Methods in registry order of their kinds, then by name."""
    kinds = list(KINDS)
    pairs = rows[["method", "kind"]].drop_duplicates("method")
    key = {m: (kinds.index(k) if k in kinds else len(kinds), m) for m, k in zip(pairs["method"], pairs["kind"])}
    return sorted(key, key=key.get)


def method_styles(methods: Iterable[str]) -> tuple[dict, dict]:
    """Colour (colour-blind palette) and marker of each method, in the order given."""
    methods = list(methods)
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    return palette, dict(zip(methods, itertools.cycle(_MARKERS)))


# ---------------------------------------------------------------------------
# Sparsity curves
# ---------------------------------------------------------------------------
