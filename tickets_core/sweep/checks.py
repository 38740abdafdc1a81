"""Plan-time checks of sweep values that only make sense against the rest of the sweep file.

They run while the sweep is planned, before any trunk runs, so a value no run
could honour fails at the line that set it instead of after hours of training:
a branch's or transfer's ``source_levels`` that its trunk never produces, and
an analysis notebook's value that cannot work (``sparsity`` outside [0, 1), an
unknown figure format, ...; the notebooks ask the same before reading runs).  Each returns ``None`` or
``(where, message)`` for :meth:`~tickets_core.sweep.yamlfile.SweepFile.error`.
"""

from __future__ import annotations

from typing import Any

from ..core.config import lookup
from ..core.kinds import get_kind
from ..core.settings import HIGHEST
from ..runs.plan import own_levels


def source_levels(trunk: dict, params: dict[str, tuple[Any, tuple]]) -> tuple[tuple, str] | None:
    """A list of ``source_levels`` must name levels the trunk runs (0 to its ``levels``; 0 for a single-level
    kind).  Other values (None: every level; a name such as ``highest_matching``) are not for this check."""
    value, where = params.get("source_levels", (None, ()))
    prune_levels = trunk["params"].get("levels", (lookup("levels").default,))[0]
    if type(prune_levels) is not int or not isinstance(value, list):
        return None
    levels = own_levels(get_kind(trunk["kind"]), prune_levels)
    bad = [k for k in value if type(k) is int and k not in levels]
    if not bad:
        return None
    last = levels[-1]
    return where + (value.index(bad[0]),), (f"source_levels: the trunk ({trunk['kind']}) has no level {bad[0]}; "
                                            f"its levels are 0-{last}")


#: Formats :func:`tickets_core.plots.save_figure` writes (an analysis notebook's ``figure_formats``).
FIGURE_FORMATS = ("png", "pdf", "svg")


def analysis_value(key: str, value: Any) -> str | None:
    """Why an analysis notebook's parameter value cannot work (None: fine).  The sweep asks at plan time, the
    notebooks themselves before reading anything (:func:`tickets_core.sweep.parameters.analysis`)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key == "sparsity" and value is not None and not (number and 0 <= value < 1):
        return f"sparsity must be a fraction in [0, 1) (e.g. 0.6 for 60%) or None, got {value!r}"
    if key == "level" and value is not None and value != HIGHEST and not (type(value) is int and value >= 0):
        return f"level must be a level number >= 0, {HIGHEST!r} or None, got {value!r}"
    if key == "n_std" and not (number and value >= 0):
        return f"n_std must be a number >= 0 (the matching threshold is dense mean - n_std * std), got {value!r}"
    if key == "width" and not (value in ("single", "double") or (number and 1 <= value <= 20)):
        return f"width must be 'single', 'double' or inches (1 to 20), got {value!r}"
    if key == "figure_formats":
        formats = value if isinstance(value, (list, tuple)) else [value]
        bad = [f for f in formats if f not in FIGURE_FORMATS]
        if bad or not formats:
            return f"figure_formats must be a list of {', '.join(FIGURE_FORMATS)}, got {value!r}"
    if key == "tasks" and value is not None and not (isinstance(value, (list, tuple)) and value
                                                      and all(isinstance(t, str) for t in value)):
        return f"tasks must be a list of task names or None, got {value!r}"
    if key == "compare_seeds" and value is not None and not isinstance(value, bool):
        return f"compare_seeds must be true, false or None, got {value!r}"
    if key == "seed" and value is not None and type(value) is not int:
        return f"seed must be an integer or None, got {value!r}"
    return None
