"""The on-disk run store: opening a run folder for writing, and finishing its levels; every file written
atomically.

Opening a folder whose ``config.json`` describes a different experiment
(different hashed fields) is an error that names the first field that differs.
Paths are :mod:`tickets_core.runs.paths`, status :mod:`tickets_core.runs.status`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..core import locks
from ..core.config import PARAMS, RunConfig
from ..core.errors import ConfigError, RunStoreError, one_line
from ..core.fsio import atomic_write_json, atomic_write_text, read_json, remove_stale_temporaries
from .paths import RunPaths
from .status import now, span, stored_status, write_status

__all__ = ["Run", "RunStoreError", "config_difference"]


def config_difference(stored: dict, cfg: RunConfig) -> str:
    """``levels is 4 there but 3 here`` for the first hashed field that differs ("" when none)."""
    try:
        theirs = _flatten(RunConfig.from_dict(stored).hashed_dict())
    except (ConfigError, TypeError) as e:
        return f"it is not a valid config ({one_line(e)})"
    ours = _flatten(cfg.hashed_dict())
    for key in sorted(set(theirs) | set(ours)):
        if theirs.get(key, _DEFAULT) != ours.get(key, _DEFAULT):
            name = next((p.name for p in PARAMS.values() if p.dotted == key), key)
            return f"{name} is {_shown(theirs.get(key, _DEFAULT))} there but {_shown(ours.get(key, _DEFAULT))} here"
    return ""


_DEFAULT = object()


def _shown(value) -> str:
    return "the default" if value is _DEFAULT else repr(value)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k in ("model", "data", "train", "prune") and not prefix:
            out.update(_flatten(v, f"{k}."))
        else:
            out[prefix + k] = v
    return out


def _readable(path: Path) -> bool:
    try:
        read_json(path)
        return True
    except RunStoreError:
        return False


class Run:
    """An open run folder: config, status and per-level artifacts."""

    def __init__(self, cfg: RunConfig, root_dir: Path) -> None:
        self.cfg = cfg
        self.paths = RunPaths(root_dir)

    @property
    def root(self) -> Path:
        return self.paths.root

    @classmethod
    def check(cls, cfg: RunConfig) -> "Run":
        """The run folder of ``cfg`` (not opened); a ``config.json`` there for a different config is an error
        that names the first field that differs.  Reads only."""
        run = cls(cfg, Path(cfg.output_root) / cfg.run_name())
        cfg_path = run.paths.config()
        if cfg_path.is_file():
            try:
                stored = read_json(cfg_path)
            except RunStoreError:  # damaged: the folder's name (the hash of this config) says what it was
                return run  # open() writes it again
            diff = config_difference(stored, cfg)
            if diff:
                raise RunStoreError(f"{cfg_path} describes a different config than the run being started: {diff}")
        return run

    @classmethod
    def open(cls, cfg: RunConfig, levels_planned: int | None = None,
             say: Callable[[str], None] = locks.say) -> "Run":
        """Create ``<output_root>/<run_name>`` or resume it; a differing stored config is an error.

        Only the hashed fields (those that change results) are compared, so a
        run can be resumed on another device, from another folder, or with
        progress bars off.  The caller holds the run's writer lock: what a
        killed writer left (temporary files, the carry file of a level that is
        done) is removed, and an unreadable ``status.json`` is rebuilt from the
        level folders (``say`` reports it).
        """
        run = cls.check(cfg)
        if not run.paths.config().is_file():
            atomic_write_text(run.paths.config(), cfg.to_json() + "\n")
        elif not _readable(run.paths.config()):
            atomic_write_text(run.paths.config(), cfg.to_json() + "\n")
            say(f"{run.paths.config()} was unreadable; wrote it again from this config (the folder's name is its hash)")
        remove_stale_temporaries(run.root)
        status = run.status
        for k in status["levels_done"]:  # a done level's carry file, left by a kill right after its metrics
            run.paths.carry(k).unlink(missing_ok=True)
            for p in run.paths.checkpoints(k):  # and its checkpoints
                p.unlink(missing_ok=True)
        if status.pop("rebuilt", None):
            say(f"{run.paths.status()} was unreadable; rebuilt it from the level folders "
                f"(levels {span(status['levels_done'])} done)")
        status.update(state="running", error=None)
        if levels_planned is not None:
            status["levels_planned"] = levels_planned
        write_status(run.paths, status)
        return run

    @property
    def status(self) -> dict:
        """The status record, ``levels_done`` always from the level folders (the whole record rebuilt from
        them when ``status.json`` is unreadable)."""
        if self.paths.status().is_file():
            return stored_status(self.paths)
        return {"state": "running", "levels_done": self.paths.levels(), "levels_planned": None, "error": None,
                "updated": now()}

    def set_state(self, state: str, error: str | None = None) -> None:
        """Record ``running`` / ``done`` / ``failed`` / ``interrupted`` (with the error's one-line text)."""
        status = self.status
        status.update(state=state, error=error)
        write_status(self.paths, status)

    def level_done(self, level: int) -> bool:
        return self.paths.metrics(level).is_file()

    def write_level(self, level: int, mask, metrics: dict) -> None:
        """Finish a level: its mask (unless dense), sparsity report, then metrics (the done marker).

        The level's carry file and checkpoints have served their purpose once
        the level is done and are removed (whole-model files are large).
        """
        if mask.nonzero < mask.numel:
            mask.save(self.paths.mask(level))
        atomic_write_json(self.paths.sparsity(level), mask.report())
        atomic_write_json(self.paths.metrics(level), metrics)
        self.paths.carry(level).unlink(missing_ok=True)
        for p in self.paths.checkpoints(level):  # checkpoints inside the level: done with
            p.unlink(missing_ok=True)
        write_status(self.paths, self.status)  # levels_done read again: now with this level
