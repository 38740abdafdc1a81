"""Plan-time checks of sweep values that only make sense against the rest of the sweep file.

They run while the sweep is planned, before any trunk runs, so a value no run
could honour fails at the line that set it instead of after hours of training:
a branch's or transfer's ``source_levels`` that its trunk never produces, and
an analysis notebook's ``sparsity`` outside [0, 1).  Each returns ``None`` or
``(where, message)`` for :meth:`~tickets_core.sweep.yamlfile.SweepFile.error`.
"""

from __future__ import annotations

from typing import Any

from ..core.config import lookup
from ..core.kinds import get_kind
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


def analysis_value(key: str, value: Any) -> str | None:
    """An analysis notebook parameter's value that no run can match: a ``sparsity`` outside [0, 1)."""
    if key == "sparsity" and isinstance(value, (int, float)) and not 0 <= value < 1:
        return f"'sparsity' must be in [0, 1), got {value!r}"
    return None
