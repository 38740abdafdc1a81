"""The on-disk run store: one folder per run, every file written atomically.

Layout (see docs/ARCHITECTURE.md)::

    <output_root>/<kind>-<task>-<hash8>/
      config.json  status.json  rewind.safetensors  carry.safetensors
      level_00/ mask.safetensors  sparsity.json  metrics.json

A level counts as done when its ``metrics.json`` exists, so a run opened
again with the same config resumes at the first unfinished level.  Opening a
folder whose ``config.json`` describes a different experiment (different
hashed fields) is an error.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig


class RunStoreError(ConfigError):
    """A run folder is inconsistent with the config that opens it (one-line message)."""


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a malformed one raises a one-line :class:`RunStoreError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunStoreError(f"cannot read {path}: {str(e).splitlines()[0]}") from None


# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------


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

    def carry(self) -> Path:
        """Trained weights the next level starts from (standard pruning; a kept head)."""
        return self.root / "carry.safetensors"

    def level_dir(self, level: int) -> Path:
        return self.root / f"level_{level:02d}"

    def mask(self, level: int) -> Path:
        return self.level_dir(level) / "mask.safetensors"

    def sparsity(self, level: int) -> Path:
        return self.level_dir(level) / "sparsity.json"

    def metrics(self, level: int) -> Path:
        return self.level_dir(level) / "metrics.json"

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


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


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
        run can be resumed on another device or with progress bars off.
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

    def set_state(self, state: str, error: str | None = None, levels_planned: int | None = None) -> None:
        """Record ``running`` / ``done`` / ``failed`` (with the error's one-line text)."""
        status = self.status
        status.update(state=state, error=error, levels_done=self.paths.levels())
        if levels_planned is not None:
            status["levels_planned"] = levels_planned
        self._write_status(status)

    def level_done(self, level: int) -> bool:
        return self.paths.metrics(level).is_file()

    def write_mask(self, level: int, mask) -> None:
        """Store the mask level ``level`` trains with (skipped for a dense mask)."""
        if mask is not None and mask.nonzero < mask.numel:
            mask.save(self.paths.mask(level))

    def write_level(self, level: int, mask, metrics: dict) -> None:
        """Finish a level: its mask (unless dense), sparsity report, then metrics (the done marker)."""
        self.write_mask(level, mask)
        if mask is not None:
            atomic_write_json(self.paths.sparsity(level), mask.report())
        atomic_write_json(self.paths.metrics(level), metrics)
        status = self.status
        status["levels_done"] = self.paths.levels()
        self._write_status(status)
