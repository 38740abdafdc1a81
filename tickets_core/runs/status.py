"""A run folder's status: the level files are the truth, ``status.json`` a summary of them.

Readers (:func:`read_status`) take the finished levels from the level
folders, report a ``running`` state whose writer is gone (nobody holds
``run.lock``, see :mod:`tickets_core.core.locks`) as ``interrupted``, and rebuild
an unreadable ``status.json`` from the level folders (the run's planned levels
from :mod:`tickets_core.runs.plan`); :meth:`~tickets_core.runs.store.Run.open`
writes the rebuilt one back and says so in one line.  Status updates from
outside the run (:func:`mark_interrupted`, :func:`repair_status`) happen only
while nobody holds ``run.lock``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Callable

from ..core import locks
from ..core.config import RunConfig
from ..core.errors import ConfigError, RunStoreError
from ..core.fsio import atomic_write_json, read_json
from .paths import RunPaths
from .plan import level_numbers

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
    status = stored_status(paths)
    if status is not None and status.get("state") == "running" and locks.holder(paths.run_lock()) is None:
        status.update(state="interrupted", error=status.get("error") or "its process ended without a word (killed?)")
    planned = status.get("levels_planned") if status is not None else None
    if status is not None and status.get("state") == "done" and isinstance(planned, int) \
            and len(status["levels_done"]) < planned:
        status.update(state="interrupted", error=f"only {len(status['levels_done'])} of its {planned} levels are "
                                                 "whole on disk (a level folder deleted or damaged?); a rerun redoes "
                                                 "the others")
    return status


def stored_status(paths: RunPaths) -> dict | None:
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


def whole(run_dir: str | Path | None) -> bool:
    """The run is done and every planned level's files are whole (:meth:`RunPaths.levels` with ``verify``):
    what a sweep may skip.  A finished level deleted or damaged since makes it not whole; a rerun redoes it."""
    status = read_status(run_dir)
    if not status or status.get("state") != "done":
        return False
    try:
        read_json(RunPaths(run_dir).config())
    except RunStoreError:  # a rerun writes it again (Run.open)
        return False
    planned = status.get("levels_planned")
    return not isinstance(planned, int) or len(RunPaths(run_dir).levels(verify=True)) >= planned


def run_state(run_dir: str | Path | None) -> str | None:
    """``running`` / ``done`` / ``failed`` / ``interrupted`` of a run folder (None when it has no status)."""
    status = read_status(run_dir)
    return status.get("state") if status else None


def rebuild_status(paths: RunPaths, why: str) -> dict:
    """The status record the level folders (and config.json) imply: ``done`` when every planned level is.

    ``"rebuilt"`` says what the level folders hold; ``why`` (the read error) goes into ``error`` unless done.
    """
    done = paths.levels()
    try:
        numbers = level_numbers(RunConfig.from_dict(read_json(paths.config())), near=paths.root)
        planned = len(numbers) if numbers else None
    except (ConfigError, TypeError):
        planned = None
    finished = planned is not None and len(done) >= planned
    return {"state": "done" if finished else "interrupted", "levels_done": done, "levels_planned": planned,
            "error": None if finished else f"status.json was unreadable ({why})", "updated": now(),
            "rebuilt": f"levels {span(done)} done" + (f" of {planned}" if planned else "")}


def span(levels: list[int]) -> str:
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
        status = stored_status(paths)
        if not change(status):
            return False
        write_status(paths, status)
        return True
    finally:
        lock.release()


def write_status(paths: RunPaths, status: dict) -> None:
    """Write ``status`` (stamped now, without the in-memory ``rebuilt`` note) as the run's ``status.json``."""
    status.pop("rebuilt", None)
    status["updated"] = now()
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


def run_progress(run_dir: str | Path | None) -> str:
    """``levels done/planned`` of a run folder ("starting" before it has a status).

    Reads the stored status without probing ``run.lock`` (the state is not shown)."""
    status = stored_status(RunPaths(run_dir)) if run_dir is not None else None
    if status is None:
        return "starting"
    done, planned = len(status.get("levels_done") or []), status.get("levels_planned")
    return f"{done}/{planned} levels" if planned else f"{done} levels"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
