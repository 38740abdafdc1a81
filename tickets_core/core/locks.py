"""Locks per run folder: who writes a run, and which sweep runs it.

Two ``flock`` locks (through the ``filelock`` package) live in a run folder:

* ``run.lock`` is held by the process that writes the run (:func:`tickets_core.lottery.driver.run`,
  usually in a notebook's kernel) for as long as it writes.  Another writer waits.
* ``sweep.lock`` is held by the sweep that hands the run's notebook to a worker,
  until that notebook has ended.  Another sweep leaves the run alone meanwhile
  and says who holds it.

The operating system drops an ``flock`` lock the moment its holder dies, so a
lock whose holder was killed is free.  While held, the lock file names its
holder (one line of JSON: pid, host, what, since); it is emptied on release, so
a non-empty free lock file names a holder that died holding it, and taking the
lock over says so.  On a shared file system the locks work wherever ``flock``
does (local disks, NFS; Lustre mounted with ``-o flock``).

Floor 0: imports nothing from tickets_core but its errors, and no torch.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path
from typing import Callable

from .errors import RunStoreError


class LockHeld(RunStoreError):
    """The lock is held by another live process (``holder``: its record)."""

    def __init__(self, path: Path, holder: dict) -> None:
        super().__init__(f"{path.parent} is in use by {describe(holder)}")
        self.holder = holder


def describe(holder: dict | None) -> str:
    """``pid 123 on host (sweep x.yaml, since 12:00:01)`` for a holder record."""
    if not holder or holder.get("pid") is None:
        return "another process"
    extra = ", ".join(str(x) for x in (holder.get("what"), holder.get("since") and f"since {holder['since']}") if x)
    return f"pid {holder['pid']} on {holder.get('host', '?')}" + (f" ({extra})" if extra else "")


def _record(what: str) -> dict:
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return {"pid": os.getpid(), "host": socket.gethostname(), "what": what, "since": now}


def _parse(raw: bytes) -> dict | None:
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"pid": None} if raw.strip() else None
    return rec if isinstance(rec, dict) else {"pid": None}


class Lock:
    """One lock file: ``acquire`` (waiting or not), ``release``; a context manager that waits."""

    def __init__(self, path: str | Path, what: str) -> None:
        from filelock import FileLock

        self.path, self.what = Path(path), what
        self.previous: dict | None = None    # the record of a holder that died holding it, once taken over
        self._lock = FileLock(str(self.path), thread_local=False, preserve_lock_file=True,
                              on_acquired=self._on_acquired)

    def _on_acquired(self, fd: int) -> None:
        self.previous = _parse(os.pread(fd, 4096, 0))
        data = (json.dumps(_record(self.what)) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    @property
    def is_held(self) -> bool:
        return self._lock.is_locked

    def acquire(self, *, wait: bool = True, on_wait: Callable[[dict | None], None] | None = None,
                poll_s: float = 0.5) -> "Lock":
        """Take the lock.  ``wait=False``: raise :class:`LockHeld` (naming the holder) when it is held;
        ``wait=True``: call ``on_wait(holder)`` once, then wait for it."""
        from filelock import Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # a brief wait first: someone merely checking the lock (holder()) holds it for an instant
            self._lock.acquire(timeout=0.2 if wait else 0.05, poll_interval=0.01)
            return self
        except Timeout:
            if not wait:
                raise LockHeld(self.path, holder(self.path) or {"pid": None}) from None
        if on_wait is not None:
            on_wait(holder(self.path))
        self._lock.acquire(timeout=-1, poll_interval=poll_s)
        return self

    def release(self) -> None:
        """Empty the lock file (no holder) and release it; a no-op when not held."""
        if not self._lock.is_locked:
            return
        try:
            with open(self.path, "r+b") as fh:
                fh.truncate(0)
        except OSError:
            pass
        self._lock.release(force=True)

    def __enter__(self) -> "Lock":
        return self if self.is_held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(path: str | Path) -> dict | None:
    """The record of the live process holding the lock file ``path``, or None when it is free.

    Checks by trying the lock for an instant (never creates the file).  A
    lock file this process cannot open counts as free.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    if not path.is_file():
        return None
    probe = FileLock(str(path), thread_local=False, preserve_lock_file=True)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        try:
            return _parse(path.read_bytes()) or {"pid": None}
        except OSError:
            return {"pid": None}
    except OSError:
        return None
    probe.release(force=True)
    return None


def say(line: str) -> None:
    """Print one line to stderr (in a kernel: the notebook's output)."""
    print(line, file=sys.stderr, flush=True)
