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
(different hashed fields) is an error that names the first field that differs.

The level files are the truth; ``status.json`` is a summary of them.  Readers
(:func:`read_status`) take the finished levels from the level folders,
report a ``running`` state whose writer is gone (nobody holds ``run.lock``,
see :mod:`tickets_core.core.locks`) as ``interrupted``, and rebuild an unreadable
``status.json`` from the level folders; :meth:`Run.open` writes the rebuilt
one back and says so in one line.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Callable

from ..core import locks
from ..core.config import PARAMS, RunConfig
from ..core.errors import ConfigError, RunStoreError, one_line
from ..core.fsio import atomic_write_json, atomic_write_text, read_json, remove_stale_temporaries

__all__ = ["RunPaths", "Run", "RunStoreError", "is_run_dir", "read_status", "run_state", "run_progress",
           "rebuild_status", "repair_status", "mark_interrupted", "config_difference"]


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

    def run_lock(self) -> Path:
        """Held by the process writing the run (:mod:`tickets_core.core.locks`)."""
        return self.root / "run.lock"

    def sweep_lock(self) -> Path:
        """Held by the sweep running the run's notebook."""
        return self.root / "sweep.lock"

    def weights(self, level: int) -> Path:
        """The level's trained weights (whole model), written with ``save_weights``."""
        return self.level_dir(level) / "weights.safetensors"

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
    """A run folder's status as the level files say it, or None when the folder holds no run.

    ``levels_done`` comes from the level folders; a ``running`` state whose
    writer is gone (nobody holds ``run.lock``) reads ``interrupted``; an
    unreadable ``status.json`` is rebuilt from the level folders (in memory;
    ``"rebuilt"`` then says what they hold; :func:`repair_status` writes it).
    """
    if run_dir is None:
        return None
    paths = RunPaths(run_dir)
    status = _stored_status(paths)
    if status is not None and status.get("state") == "running" and locks.holder(paths.run_lock()) is None:
        status.update(state="interrupted", error=status.get("error") or "its process ended without a word (killed?)")
    return status


def _stored_status(paths: RunPaths) -> dict | None:
    """``status.json`` with ``levels_done`` from the level folders; rebuilt when unreadable; None when absent."""
    if not paths.status().is_file():
        return None
    try:
        status = read_json(paths.status())
        if not isinstance(status, dict):
            raise RunStoreError(f"cannot read {paths.status()}: not a JSON object")
    except RunStoreError as e:
        return rebuild_status(paths, str(e))
    status["levels_done"] = paths.levels()
    return status


def run_state(run_dir: str | Path | None) -> str | None:
    """``running`` / ``done`` / ``failed`` / ``interrupted`` of a run folder (None when it has no status)."""
    status = read_status(run_dir)
    return status.get("state") if status else None


def rebuild_status(paths: RunPaths, why: str) -> dict:
    """The status record the level folders (and config.json) imply: ``done`` when every planned level is.

    ``"rebuilt"`` says what the level folders hold; ``why`` (the read error) goes into ``error`` unless done.
    """
    done = paths.levels()
    from .plan import level_numbers  # (plan reads run folders through this module)

    try:
        numbers = level_numbers(RunConfig.from_dict(read_json(paths.config())), near=paths.root)
        planned = len(numbers) if numbers else None
    except (ConfigError, TypeError):
        planned = None
    finished = planned is not None and len(done) >= planned
    return {"state": "done" if finished else "interrupted", "levels_done": done, "levels_planned": planned,
            "error": None if finished else f"status.json was unreadable ({why})", "updated": _now(),
            "rebuilt": f"levels {_span(done)} done" + (f" of {planned}" if planned else "")}


def _span(levels: list[int]) -> str:
    return "none" if not levels else (f"{levels[0]}-{levels[-1]}" if levels == list(range(levels[0], levels[-1] + 1))
                                      else ", ".join(map(str, levels)))


def _update_unwritten(run_dir: str | Path, what: str, change: Callable[[dict], bool]) -> bool:
    """Apply ``change`` to the stored status (rebuilt when unreadable) and write it, but only when nobody
    writes the run (its ``run.lock`` is free) and ``change`` says so (returns True).  True when written."""
    paths = RunPaths(run_dir)
    if not paths.status().is_file():
        return False
    lock = locks.Lock(paths.run_lock(), what)
    try:
        lock.acquire(wait=False)
    except (locks.LockHeld, OSError):
        return False
    try:
        status = _stored_status(paths)
        if not change(status):
            return False
        _write_status(paths, status)
        return True
    finally:
        lock.release()


def _write_status(paths: RunPaths, status: dict) -> None:
    """Write ``status`` (stamped now, without the in-memory ``rebuilt`` note) as the run's ``status.json``."""
    status.pop("rebuilt", None)
    status["updated"] = _now()
    atomic_write_json(paths.status(), status)


def mark_interrupted(run_dir: str | Path, error: str) -> bool:
    """Record ``interrupted`` for a run whose writer was stopped from outside (True when written).

    Writes only when nobody holds ``run.lock`` and the status still says ``running``.
    """
    def change(status: dict) -> bool:
        if status.get("state") != "running":
            return False
        status.update(state="interrupted", error=error)
        return True

    return _update_unwritten(run_dir, "marking the run interrupted", change)


def repair_status(run_dir: str | Path) -> bool:
    """Write an unreadable ``status.json`` again, rebuilt from the level folders (True when it did)."""
    return _update_unwritten(run_dir, "rebuilding status.json", lambda status: bool(status.get("rebuilt")))


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


def run_progress(run_dir: str | Path | None) -> str:
    """``levels done/planned`` of a run folder ("starting" before it has a status).

    Reads the stored status without probing ``run.lock`` (the state is not shown)."""
    status = _stored_status(RunPaths(run_dir)) if run_dir is not None else None
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
    def check(cls, cfg: RunConfig) -> "Run":
        """The run folder of ``cfg`` (not opened); a ``config.json`` there for a different config is an error
        that names the first field that differs.  Reads only."""
        run = cls(cfg, Path(cfg.output_root) / cfg.run_name())
        cfg_path = run.paths.config()
        if cfg_path.is_file():
            diff = config_difference(read_json(cfg_path), cfg)
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
        remove_stale_temporaries(run.root)
        status = run.status
        for k in status["levels_done"]:  # a done level's carry file, left by a kill right after its metrics
            run.paths.carry(k).unlink(missing_ok=True)
        if status.pop("rebuilt", None):
            say(f"{run.paths.status()} was unreadable; rebuilt it from the level folders "
                f"(levels {_span(status['levels_done'])} done)")
        status.update(state="running", error=None)
        if levels_planned is not None:
            status["levels_planned"] = levels_planned
        _write_status(run.paths, status)
        return run

    @property
    def status(self) -> dict:
        """The status record, ``levels_done`` always from the level folders (the whole record rebuilt from
        them when ``status.json`` is unreadable)."""
        if self.paths.status().is_file():
            return _stored_status(self.paths)
        return {"state": "running", "levels_done": self.paths.levels(), "levels_planned": None, "error": None,
                "updated": _now()}

    def set_state(self, state: str, error: str | None = None) -> None:
        """Record ``running`` / ``done`` / ``failed`` / ``interrupted`` (with the error's one-line text)."""
        status = self.status
        status.update(state=state, error=error)
        _write_status(self.paths, status)

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
        _write_status(self.paths, self.status)  # levels_done read again: now with this level
