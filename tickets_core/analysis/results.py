"""Load run folders into pandas (the only way analysis code reads runs).

Imports no training code and no torch (only :func:`load_masks` loads torch,
when called): analysis notebooks stay fast and independent of the training
stack.  Folders that are not runs (no ``config.json`` + ``status.json``) are
skipped; a malformed JSON file raises a one-line
:class:`~tickets_core.core.errors.RunStoreError` naming it.

Each row carries its run's ``config``: every parameter that changes results
(``config.PARAMS[name].hashed``, by flat name, defaults filled in for
parameters newer than the run) plus ``mask_fingerprint``.  The analysis
reads it to tell variants of a method apart
(:func:`tickets_core.analysis.add_method`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from ..core.config import PARAMS, RunConfig
from ..core.errors import ConfigError, RunStoreError, one_line
from ..core.fsio import read_json
from ..runs.paths import RunPaths, is_run_dir
from ..runs.walk import RunFolders, folders

RUN_COLUMNS = ["run", "run_dir", "kind", "task", "model", "seed", "level", "sparsity", "main_metric", "score",
               "source_run", "source_task", "source_level", "source_path", "strategy", "schedule", "rate", "state",
               "config", "heads_kept", "neurons_kept"]
SPARSITY_COLUMNS = ["run", "kind", "task", "level", "name", "layer", "component", "numel", "nonzero", "sparsity"]


def _field(obj: dict, path: str, where: Path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise RunStoreError(f"{where} lacks field {path!r}")
        cur = cur[part]
    return cur


def run_config(cfg: dict, where: Path) -> dict:
    """The result-changing parameters of a stored config, by flat name (see the module docstring)."""
    try:
        flat = RunConfig.from_dict(cfg).flat()
    except (ConfigError, TypeError) as e:
        raise RunStoreError(f"{where} is not a run config: {one_line(e)}") from None
    out = {name: value for name, value in flat.items() if PARAMS[name].hashed}
    out["mask_fingerprint"] = cfg.get("mask_fingerprint")
    return out


def load_runs(root: str | Path | RunFolders, *, tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per (run, finished level); columns as in docs/ARCHITECTURE.md plus ``eval_<metric>``.

    ``tasks``: read only the runs of these tasks (the others' levels are not opened).  ``root`` may be a
    :class:`~tickets_core.runs.walk.RunFolders` shared with other readers.
    """
    runs = folders(root)
    tasks = None if tasks is None else {tasks} if isinstance(tasks, str) else set(tasks)
    rows = []
    for name in runs.of_task(tasks):
        paths, cfg = runs.paths(name), runs.config(name)
        config = run_config(cfg, paths.config())
        status = runs.status(name)  # a corrupt status.json is rebuilt from the level folders, not fatal
        for level, m in runs.levels(name):
            mpath = paths.metrics(level)
            source = m.get("source") or {}
            row = {
                "run": name, "run_dir": str(paths.root),
                "kind": _field(m, "kind", mpath), "task": _field(m, "task", mpath),
                "model": _field(cfg, "model.name_or_path", paths.config()),
                "seed": _field(m, "seed", mpath), "level": _field(m, "level", mpath),
                "sparsity": _field(m, "sparsity", mpath), "main_metric": _field(m, "main_metric", mpath),
                "score": _field(m, "score", mpath),
                "source_run": source.get("run"), "source_task": source.get("task"), "source_level": source.get("level"),
                "source_path": source.get("path"),
                "strategy": _field(cfg, "prune.strategy", paths.config()),
                "schedule": _field(cfg, "prune.schedule", paths.config()),
                "rate": _field(cfg, "prune.rate", paths.config()),
                "state": status.get("state"), "config": config,
                # structured masks (pruning/units.py): attention heads and FFN neurons kept; None otherwise
                "heads_kept": (m.get("units") or {}).get("heads_kept"),
                "neurons_kept": (m.get("units") or {}).get("neurons_kept"),
            }
            row.update({f"eval_{k}": v for k, v in m["eval"].items()})
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=RUN_COLUMNS)
    return df.sort_values(["run", "level"], kind="stable").reset_index(drop=True)


def load_sparsity(root: str | Path | RunFolders) -> pd.DataFrame:
    """One row per (run, finished level, prunable matrix) from the ``sparsity.json`` reports."""
    runs, rows = folders(root), []
    for name in runs.dirs:
        paths, cfg = runs.paths(name), runs.config(name)
        for level in paths.levels():
            spath = paths.sparsity(level)
            if not spath.is_file():
                continue
            rep = read_json(spath)
            matrices = rep.get("matrices") if isinstance(rep, dict) else None
            if not isinstance(matrices, dict):
                raise RunStoreError(f"{spath} is not a sparsity report (no 'matrices' mapping)")
            for mat, r in matrices.items():
                rows.append({"run": name, "kind": cfg.get("kind"), "task": cfg.get("data", {}).get("task"),
                             "level": level, "name": mat, **{k: r.get(k) for k in SPARSITY_COLUMNS[5:]}})
    return pd.DataFrame(rows, columns=SPARSITY_COLUMNS)


def load_masks(run_dir: str | Path) -> dict:
    """The masks of a run's finished levels (:class:`~tickets_core.pruning.masks.Mask`), by level; dense levels are left out."""
    from ..pruning.masks import Mask

    paths = RunPaths(run_dir)
    if not is_run_dir(paths.root):
        raise RunStoreError(f"{paths.root} is not a run folder (no config.json/status.json)")
    return {k: Mask.load(paths.mask(k)) for k in paths.levels() if paths.mask(k).is_file()}
