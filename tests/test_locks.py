"""Run-folder locks (tickets_core.core.locks): a held lock names its holder, a dead holder's lock is taken over,
a second writer waits for the first, lock files follow the umask."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tickets_core.core import locks
from tickets_core.lottery import driver
from tickets_core.runs.paths import RunPaths
from tickets_core.runs.status import run_state

from test_reliability import ROOT, one_line


HOLD = """\
import sys
sys.path.insert(0, {root!r})
from tickets_core.core.locks import Lock
lock = Lock(sys.argv[1], sys.argv[2]).acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


def hold_lock(path: Path, what: str = "a test holder") -> subprocess.Popen:
    """A process holding the lock file ``path`` until it reads a line on stdin."""
    p = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT)), str(path), what], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.fixture
def holder_process():
    """``start(lock_path) -> Popen``: :func:`hold_lock`, killed after the test."""
    procs = []

    def start(path: Path) -> subprocess.Popen:
        procs.append(hold_lock(path))
        return procs[-1]

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_a_held_lock_names_its_holder_and_a_dead_holders_lock_is_taken_over(tmp_path, holder_process):
    path = tmp_path / "run" / "run.lock"
    p = holder_process(path)
    assert locks.holder(path)["pid"] == p.pid
    with pytest.raises(locks.LockHeld) as e:
        locks.Lock(path, "me").acquire(wait=False)
    text = one_line(e.value)
    assert text.startswith(f"{path.parent} is in use by pid {p.pid} on ") and "a test holder" in text
    p.kill()  # kill -9: the holder never releases it
    p.wait()
    assert locks.holder(path) is None
    lock = locks.Lock(path, "me").acquire(wait=False)
    assert lock.previous["pid"] == p.pid  # taken over, and we know from whom
    lock.release()
    assert path.read_bytes() == b"" and locks.Lock(path, "me").acquire(wait=False).previous is None


def test_a_second_writer_waits_for_the_first(tiny_run_config, holder_process, capsys, monkeypatch):
    cfg = tiny_run_config(levels=1)
    lock_path = RunPaths(Path(cfg.output_root) / cfg.run_name()).run_lock()
    p = holder_process(lock_path)
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            p.stdin.write("go\n")
            p.stdin.flush()

    def say_then_release(line: str) -> None:  # the holder lets go once the run says it waits (after its plan line)
        locks.say(line)
        threading.Timer(0.5, release).start()

    monkeypatch.setattr(driver, "say", say_then_release)
    timer = threading.Timer(120.0, release)  # never hang
    timer.start()
    run_dir = driver.run(cfg)
    timer.cancel()
    err = capsys.readouterr().err
    assert f"{run_dir.name}: waiting for pid {p.pid} on " in err and "a test holder" in err
    assert run_state(run_dir) == "done"


def test_lock_files_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        locks.Lock(tmp_path / "x.lock", "me").acquire().release()
    finally:
        os.umask(old)
    assert (tmp_path / "x.lock").stat().st_mode & 0o777 == 0o664
