"""Load run folders into pandas (the only way analysis code reads runs).

Imports no training code and no torch (only :func:`load_masks` loads torch,
when called): analysis notebooks stay fast and independent of the training
stack.  Folders that are not runs (no ``config.json`` + ``status.json``) are
skipped; a malformed JSON file raises a one-line
:class:`~tickets_core.errors.RunStoreError` naming it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import RunStoreError
from .fsio import read_json
from .store import RunPaths, is_run_dir

RUN_COLUMNS = ["run", "run_dir", "kind", "task", "model", "seed", "level", "sparsity", "main_metric", "score",
               "source_run", "source_task", "source_level", "strategy", "schedule", "rate", "state"]
SPARSITY_COLUMNS = ["run", "kind", "task", "level", "name", "layer", "component", "numel", "nonzero", "sparsity"]


def run_dirs(root: str | Path) -> list[Path]:
    """Run folders directly under ``root`` (or ``root`` itself when it is a run), sorted by name."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    if not root.is_dir():
        raise RunStoreError(f"results folder {root} does not exist")
    return sorted(d for d in root.iterdir() if d.is_dir() and is_run_dir(d))


def _field(obj: dict, path: str, where: Path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise RunStoreError(f"{where} lacks field {path!r}")
        cur = cur[part]
    return cur


def load_runs(root: str | Path) -> pd.DataFrame:
    """One row per (run, finished level); columns as in docs/ARCHITECTURE.md plus ``eval_<metric>``."""
    rows = []
    for d in run_dirs(root):
        paths = RunPaths(d)
        cfg = read_json(paths.config())
        status = read_json(paths.status())
        for level in paths.levels():
            mpath = paths.metrics(level)
            m = read_json(mpath)
            if not isinstance(m, dict) or not isinstance(m.get("eval"), dict):
                raise RunStoreError(f"{mpath} is not a metrics record (no 'eval' mapping)")
            source = m.get("source") or {}
            row = {
                "run": d.name, "run_dir": str(d),
                "kind": _field(m, "kind", mpath), "task": _field(m, "task", mpath),
                "model": _field(cfg, "model.name_or_path", paths.config()),
                "seed": _field(m, "seed", mpath), "level": _field(m, "level", mpath),
                "sparsity": _field(m, "sparsity", mpath), "main_metric": _field(m, "main_metric", mpath),
                "score": _field(m, "score", mpath),
                "source_run": source.get("run"), "source_task": source.get("task"), "source_level": source.get("level"),
                "strategy": _field(cfg, "prune.strategy", paths.config()),
                "schedule": _field(cfg, "prune.schedule", paths.config()),
                "rate": _field(cfg, "prune.rate", paths.config()),
                "state": status.get("state"),
            }
            row.update({f"eval_{k}": v for k, v in m["eval"].items()})
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=RUN_COLUMNS)
    return df.sort_values(["run", "level"], kind="stable").reset_index(drop=True)


def load_sparsity(root: str | Path) -> pd.DataFrame:
    """One row per (run, finished level, prunable matrix) from the ``sparsity.json`` reports."""
    rows = []
    for d in run_dirs(root):
        paths = RunPaths(d)
        cfg = read_json(paths.config())
        for level in paths.levels():
            spath = paths.sparsity(level)
            if not spath.is_file():
                continue
            rep = read_json(spath)
            matrices = rep.get("matrices") if isinstance(rep, dict) else None
            if not isinstance(matrices, dict):
                raise RunStoreError(f"{spath} is not a sparsity report (no 'matrices' mapping)")
            for name, r in matrices.items():
                rows.append({"run": d.name, "kind": cfg.get("kind"), "task": cfg.get("data", {}).get("task"),
                             "level": level, "name": name, **{k: r.get(k) for k in SPARSITY_COLUMNS[5:]}})
    return pd.DataFrame(rows, columns=SPARSITY_COLUMNS)


def load_masks(run_dir: str | Path) -> dict:
    """The masks of a run's finished levels (:class:`~tickets_core.masks.Mask`), by level; dense levels are left out."""
    from .masks import Mask

    paths = RunPaths(run_dir)
    if not is_run_dir(paths.root):
        raise RunStoreError(f"{paths.root} is not a run folder (no config.json/status.json)")
    return {k: Mask.load(paths.mask(k)) for k in paths.levels() if paths.mask(k).is_file()}
