"""The SLURM job's walltime guard: ``python -m tickets_core.sweep.walltime [--grace S] -- CMD ...``.

SLURM sends the batch shell SIGUSR1 some time before the job's limit when the
job asks for it (``#SBATCH --signal=B:USR1@600``; :mod:`.cluster` adds it,
with ``--requeue``, when the cluster file's ``walltime_signal`` is set, and
puts this guard in front of the Dask worker with ``exec``, so the guard *is*
the batch shell).  The guard runs CMD as its child; on SIGUSR1 it:

1. passes SIGUSR1 on to the notebook kernels under CMD (or to CMD itself when
   it has none: a training process started directly).  A run's process has a
   handler for it (:func:`tickets_core.training.checkpoint.install_walltime_handler`):
   the training loop writes a checkpoint at the end of its step and stops
   with :class:`~tickets_core.training.checkpoint.WalltimeReached`; the run
   records ``interrupted`` and the sweep hands its notebook out again;
2. waits up to ``--grace`` seconds for those processes to end, then stops CMD
   (SIGTERM, SIGKILL 30 s later);
3. requeues the job (``scontrol requeue $SLURM_JOB_ID``, when SLURM_JOB_ID is
   set) and exits with :data:`~tickets_core.training.checkpoint.REQUEUE_STATUS`
   (75).  The requeued job starts again as a worker of the same sweep, and
   the run resumes from its checkpoint.

Without the signal the guard exits with CMD's own status.  SIGTERM and SIGINT
are passed on to CMD.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from ..core.settings import REQUEUE_STATUS
from .worker import kernels

#: Seconds the guard gives the signalled processes to write their checkpoint and end.
GRACE_S = 240.0


def _targets(child: subprocess.Popen) -> list[int]:
    """The processes that get the walltime signal: the kernels under ``child``, else ``child`` itself."""
    found = [p.pid for p in kernels(child.pid)]
    return found or [child.pid]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def guard(command: list[str], grace_s: float = GRACE_S, say=print) -> int:
    """Run ``command`` under the walltime guard (see the module docstring); the exit status."""
    signalled = threading.Event()
    child = subprocess.Popen(command)
    signal.signal(signal.SIGUSR1, lambda *_: signalled.set())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    while child.poll() is None and not signalled.is_set():
        signalled.wait(0.2)
    if not signalled.is_set():
        return child.returncode
    targets = _targets(child)
    say(f"walltime guard: the job's time limit is near; asking pid(s) {', '.join(map(str, targets))} to "
        "checkpoint and stop")
    for pid in targets:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s

    def running() -> bool:
        return any(child.poll() is None if p == child.pid else _alive(p) for p in targets)

    while time.monotonic() < deadline and running():
        time.sleep(0.2)
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        res = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        say(f"walltime guard: scontrol requeue {job}: "
            f"{'done' if res.returncode == 0 else (res.stderr.strip() or f'exit {res.returncode}')}")
    return REQUEUE_STATUS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tickets_core.sweep.walltime",
                                 description="Run CMD; on SIGUSR1 have its runs checkpoint, then requeue the job.")
    ap.add_argument("--grace", type=float, default=GRACE_S,
                    help=f"seconds to wait for the checkpoints (default {GRACE_S:g})")
    ap.add_argument("command", nargs="*", help="after --: the command to run (e.g. the Dask worker)")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    command = args.command + argv[cut + 1:]
    if not command:
        ap.error("no command given")
    return guard(command, args.grace, say=lambda line: print(line, file=sys.stderr, flush=True))


if __name__ == "__main__":
    sys.exit(main())
