"""The on-disk run store: one folder per run, every file written atomically.

Layout (see docs/ARCHITECTURE.md)::

    <output_root>/<kind>-<task>-<hash8>/
      config.json  status.json  rewind.safetensors
      level_00/ mask.safetensors  sparsity.json  metrics.json  carry.safetensors

A level counts as done when its ``metrics.json`` exists, so a run opened
again with the same config resumes at the first unfinished level.  What a
level needs from the level before it (its mask, and the weights it starts
from when it does not rewind: ``carry.safetensors``) lies in its own folder,
written before the earlier level is marked done and never overwritten by a
later one; a level's carry file is removed once the level is done.
Opening a folder whose ``config.json`` describes a different experiment
(different hashed fields) is an error.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .config import RunConfig
from .errors import ConfigError, RunStoreError
from .fsio import atomic_write_json, atomic_write_text, read_json

__all__ = ["RunPaths", "Run", "RunStoreError", "is_run_dir", "read_status", "run_state", "run_progress"]


class RunPaths:
    """One method per artifact of a run folder."""

    def __init__(self, root_dir: str | Path) -> None:
        self.root = Path(root_dir)

    def config(self) -> Path:
        return self.root / "config.json"

    def status(self) -> Path:
        return self.root / "status.json"

    def rewind(self) -> Path:
        """theta_i (base-model weights after step ``rewind_step`` of level 0)."""
        return self.root / "rewind.safetensors"

    def level_dir(self, level: int) -> Path:
        return self.root / f"level_{level:02d}"

    def mask(self, level: int) -> Path:
        return self.level_dir(level) / "mask.safetensors"

    def sparsity(self, level: int) -> Path:
        return self.level_dir(level) / "sparsity.json"

    def metrics(self, level: int) -> Path:
        return self.level_dir(level) / "metrics.json"

    def carry(self, level: int) -> Path:
        """Weights level ``level`` starts from, left by the level before it (standard pruning; a kept head)."""
        return self.level_dir(level) / "carry.safetensors"

    def levels(self) -> list[int]:
        """Levels with a finished ``metrics.json``, ascending."""
        out = []
        for d in self.root.glob("level_*"):
            if d.is_dir() and d.name[6:].isdigit() and (d / "metrics.json").is_file():
                out.append(int(d.name[6:]))
        return sorted(out)


def is_run_dir(path: str | Path) -> bool:
    """A folder holding a run (config.json and status.json)."""
    p = RunPaths(path)
    return p.config().is_file() and p.status().is_file()


def read_status(run_dir: str | Path | None) -> dict | None:
    """A run folder's status record, or None when it has none (or it cannot be read)."""
    if run_dir is None:
        return None
    try:
        status = read_json(RunPaths(run_dir).status())
    except RunStoreError:
        return None
    return status if isinstance(status, dict) else None


def run_state(run_dir: str | Path | None) -> str | None:
    """``running`` / ``done`` / ``failed`` / ``interrupted`` of a run folder (None when it has no status)."""
    status = read_status(run_dir)
    return status.get("state") if status else None


def run_progress(run_dir: str | Path | None) -> str:
    """``levels done/planned`` of a run folder ("starting" before it has a status)."""
    status = read_status(run_dir)
    if status is None:
        return "starting"
    done, planned = len(status.get("levels_done") or []), status.get("levels_planned")
    return f"{done}/{planned} levels" if planned else f"{done} levels"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Run:
    """An open run folder: config, status and per-level artifacts."""

    def __init__(self, cfg: RunConfig, root_dir: Path) -> None:
        self.cfg = cfg
        self.paths = RunPaths(root_dir)

    @property
    def root(self) -> Path:
        return self.paths.root

    @classmethod
    def open(cls, cfg: RunConfig, levels_planned: int | None = None) -> "Run":
        """Create ``<output_root>/<run_name>`` or resume it; a differing stored config is an error.

        Only the hashed fields (those that change results) are compared, so a
        run can be resumed on another device, from another folder, or with
        progress bars off.
        """
        run = cls(cfg, Path(cfg.output_root) / cfg.run_name())
        cfg_path = run.paths.config()
        if cfg_path.is_file():
            stored = read_json(cfg_path)
            try:
                same = RunConfig.from_dict(stored).hashed_dict() == cfg.hashed_dict()
            except (ConfigError, TypeError):
                same = False
            if not same:
                raise RunStoreError(f"{cfg_path} describes a different config than the run being started")
        else:
            atomic_write_text(cfg_path, cfg.to_json() + "\n")
        status = run.status
        status.update(state="running", error=None, levels_done=run.paths.levels())
        if levels_planned is not None:
            status["levels_planned"] = levels_planned
        run._write_status(status)
        return run

    @property
    def status(self) -> dict:
        if self.paths.status().is_file():
            return read_json(self.paths.status())
        return {"state": "running", "levels_done": [], "levels_planned": None, "error": None, "updated": _now()}

    def _write_status(self, status: dict) -> None:
        status["updated"] = _now()
        atomic_write_json(self.paths.status(), status)

    def set_state(self, state: str, error: str | None = None) -> None:
        """Record ``running`` / ``done`` / ``failed`` / ``interrupted`` (with the error's one-line text)."""
        status = self.status
        status.update(state=state, error=error, levels_done=self.paths.levels())
        self._write_status(status)

    def level_done(self, level: int) -> bool:
        return self.paths.metrics(level).is_file()

    def write_level(self, level: int, mask, metrics: dict) -> None:
        """Finish a level: its mask (unless dense), sparsity report, then metrics (the done marker).

        The level's carry file has served its purpose once the level is done
        and is removed (whole-model carries are large).
        """
        if mask.nonzero < mask.numel:
            mask.save(self.paths.mask(level))
        atomic_write_json(self.paths.sparsity(level), mask.report())
        atomic_write_json(self.paths.metrics(level), metrics)
        self.paths.carry(level).unlink(missing_ok=True)
        status = self.status
        status["levels_done"] = self.paths.levels()
        self._write_status(status)
