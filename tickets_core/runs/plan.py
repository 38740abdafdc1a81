"""The levels a run consists of: one function for the driver, the status of a run folder, and the sweep's checks.

A trunk follows its pruning schedule (levels ``0 .. prune.levels``) or runs
level 0 alone (``levels: single`` kinds); a branch runs one level per source
level it reads (its ``source_levels``, else every finished level of its
source run), or level 0 alone when it reads a mask file.  The source run is
found by its name: beside the run folder when one is given, under
``output_root``, or at the path as given (:func:`find_source`).  Torch-free.
"""

from __future__ import annotations

from pathlib import Path

from ..core.config import RunConfig
from ..core.kinds import RunKind, get_kind
from .paths import RunPaths, is_run_dir


def own_levels(kind: RunKind, prune_levels: int) -> list[int] | None:
    """The levels of a run of ``kind`` that reads no source run: the schedule's ``0 .. prune_levels``, or level 0
    alone; None for a kind whose levels are its source's."""
    if kind.levels == "single":
        return [0]
    if kind.levels == "schedule":
        return list(range(prune_levels + 1))
    return None


def source_candidates(cfg: RunConfig, near: str | Path | None = None, run: str | None = None) -> list[Path]:
    """Where a branch's source run (or the run ``run`` names, e.g. ``dense_level_from``) may lie, in the order
    looked at (see the module docstring)."""
    given = str(cfg.source_run if run is None else run)
    name = Path(given).name
    out = ([Path(near).parent / name] if near is not None else []) + [Path(cfg.output_root) / name, Path(given)]
    return list(dict.fromkeys(out))


def find_source(cfg: RunConfig, near: str | Path | None = None, run: str | None = None) -> Path | None:
    """A branch's source run folder (or ``run``'s: the first of :func:`source_candidates` that is a run), or
    None."""
    return next((c for c in source_candidates(cfg, near, run) if is_run_dir(c)), None)


def level_numbers(cfg: RunConfig, near: str | Path | None = None) -> list[int] | None:
    """The levels run ``cfg`` consists of, ascending; None when its source run cannot be found.

    ``near``: the run's own folder (its source is looked for beside it first)."""
    kind = get_kind(cfg.kind)
    if kind.levels == "source":
        if cfg.mask_path:
            return [0]
        if cfg.source_levels is not None:
            return list(cfg.source_levels)
        source = find_source(cfg, near)
        return RunPaths(source).levels() if source is not None else None
    return own_levels(kind, cfg.prune.levels)
