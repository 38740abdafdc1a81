"""What runs inside a sweep's worker: :func:`execute_job` (papermill), the executed notebook, the kernels it
started, and the orphan watch.

A process worker ignores Ctrl-C (the sweep handles it and interrupts the
kernels itself) and watches its parent: when the sweep dies, the worker sends
its kernel a Ctrl-C (the run records ``interrupted`` and releases its writer
lock), kills it after at most :data:`ORPHAN_GRACE_S` seconds, and exits.  A
kernel whose worker died exits by itself (ipykernel's parent poller), so
nothing of a killed sweep keeps writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..core import locks
from ..core.fsio import atomic_write_text, partial_name, remove_partials, write_error
from ..runs.paths import RunPaths
from ..runs.status import run_state
from .planner import Job

#: Seconds an orphaned worker gives its kernel to release the run (after a Ctrl-C) before killing it.
ORPHAN_GRACE_S = 15.0

ORPHANED = threading.Event()     # set in a worker whose sweep died
CURRENT: dict = {}               # the run folder this process is executing (for the orphan watch)


def one_line_error(exc: BaseException) -> str:
    """A one-line description of an exception (a notebook's own error for papermill failures)."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    text = (f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}").rstrip(": ")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return first if len(first) <= 300 else first[:297] + "..."


def ensure_importable() -> None:
    """Let notebook kernels import this tickets_core even when it is not pip-installed (PYTHONPATH)."""
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])


def execute_job(job: Job, *, stream: bool = False) -> dict:
    """Run one job's notebook through papermill (in whatever process the executor chose).

    Never raises: returns ``{"ok": bool, "error": str | None, "time_s": float,
    "interrupted": bool, "requeue": bool}`` (``interrupted``: the notebook stopped on a Ctrl-C; ``requeue``: its
    run wrote a checkpoint at a walltime signal and stopped, :mod:`.walltime`).
    ``stream``: show what the notebook prints on this process's stdout and stderr as it comes (``tickets-run``).
    """
    start = time.perf_counter()
    tmp = partial_name(job.output)
    CURRENT["run_dir"] = job.run_dir
    try:
        import papermill as pm

        ensure_importable()
        job.output.parent.mkdir(parents=True, exist_ok=True)
        try:
            streams = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if stream else {}
            pm.execute_notebook(str(job.notebook), str(tmp), parameters=job.parameters, kernel_name="python3",
                                progress_bar=False, log_output=False, cwd=str(job.notebook.parent), **streams,
                                # keep the kernels' start-up warnings out of the sweep's terminal
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
        except OSError as e:  # papermill writing the executed notebook: name the file
            raise (write_error(job.output, e) if e.errno in (errno.ENOSPC, errno.EDQUOT) else e) from None
        finally:
            publish_notebook(tmp, job.output)
        state = run_state(job.run_dir) if job.is_run else "done"
        if state != "done":
            raise RuntimeError(f"the notebook ended but {job.run_dir}/status.json is not 'done' "
                               f"(state {state!r}); do its parameters build the same config?")
        return {"ok": True, "error": None, "time_s": time.perf_counter() - start, "interrupted": False}
    except Exception as e:  # noqa: BLE001 - reported, never raised across processes
        return {"ok": False, "error": one_line_error(e), "time_s": time.perf_counter() - start,
                "interrupted": getattr(e, "ename", None) == "KeyboardInterrupt",
                "requeue": getattr(e, "ename", None) == "WalltimeReached"}  # checkpointed at a walltime signal
    finally:
        CURRENT.pop("run_dir", None)


def publish_notebook(tmp: Path, output: Path) -> None:
    """Put papermill's finished notebook ``tmp`` in place under ``output`` (atomic, with its real name in
    the metadata); a partial one (papermill could not finish writing) or one from an orphan is dropped."""
    import nbformat

    try:
        if tmp.is_file() and not ORPHANED.is_set():
            nb = nbformat.read(str(tmp), as_version=4)
            nb.metadata.get("papermill", {})["output_path"] = str(output)
            atomic_write_text(output, nbformat.writes(nb))
    except (ValueError, KeyError):  # not a whole notebook: keep the previous one
        pass
    finally:
        tmp.unlink(missing_ok=True)
        if not ORPHANED.is_set():  # what an earlier, killed attempt left (this one holds the job's claim)
            remove_partials(output)


def kernels(root_pid: int) -> list:
    """The notebook kernels (ipykernel processes) started under process ``root_pid``."""
    import psutil

    try:
        procs = psutil.Process(root_pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for p in procs:
        try:
            if any("ipykernel" in part for part in p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def signal_pid(pid: int, sig: int) -> int:
    """Send ``sig`` to a kernel (to its process group when it leads one, as Jupyter's interrupt does); 1 if sent."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return 0
    return 1


def signal_kernels(root_pid: int, sig: int) -> int:
    """Send ``sig`` to every kernel under ``root_pid``; how many got it."""
    return sum(signal_pid(p.pid, sig) for p in kernels(root_pid))


def kill_tree(root_pid: int) -> None:
    """SIGKILL every process under ``root_pid`` (kernels first, then the rest), never ``root_pid`` itself."""
    import psutil

    signal_kernels(root_pid, signal.SIGKILL)
    try:
        rest = psutil.Process(root_pid).children(recursive=True)
    except psutil.Error:
        return
    for p in rest:
        try:
            p.kill()
        except psutil.Error:
            pass


def watch_parent(parent: int, poll_s: float = 1.0) -> None:
    """Worker thread: when the sweep that started this worker dies, stop this worker's kernel and exit."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    ORPHANED.set()
    me, run_dir = os.getpid(), CURRENT.get("run_dir")
    if signal_kernels(me, signal.SIGINT) and run_dir is not None:
        deadline = time.monotonic() + ORPHAN_GRACE_S
        time.sleep(0.5)
        while time.monotonic() < deadline and locks.holder(RunPaths(run_dir).run_lock()) is not None:
            time.sleep(0.2)  # the kernel records 'interrupted', then releases the run
    kill_tree(me)
    os._exit(1)


def init_worker(slots, threads: int | None, parent: int | None = None) -> None:
    """Process-pool initializer: take one GPU (if any), cap CPU threads for the kernels it starts; in a
    pool worker (``parent`` given) leave Ctrl-C to the sweep and watch the sweep's process."""
    gpu = slots.get() if slots is not None else None
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))
    if parent is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):  # started with SIGINT blocked (execute.sigint_blocked): ignored now
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        threading.Thread(target=watch_parent, args=(parent,), name="watch-sweep", daemon=True).start()


@contextlib.contextmanager
def sigint_blocked():
    """SIGINT blocked in this thread inside the block (a Ctrl-C then arrives when it ends).  Worker processes
    started inside inherit the block, so a Ctrl-C while one starts (before its initializer ignores SIGINT) is
    not a traceback in it and a broken pool here."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def tidy_partials(job: Job, what: str) -> None:
    """Remove the partial notebooks of a run found done (a killed attempt's, or one whose run another process
    finished), when nobody runs its notebook (its sweep.lock is free)."""
    if not job.is_run or not any(job.output.parent.glob(f".{job.output.stem}.*.partial{job.output.suffix}")):
        return
    lock = locks.Lock(RunPaths(job.run_dir).sweep_lock(), what)
    try:
        lock.acquire(wait=False)
    except (locks.LockHeld, OSError):
        return
    try:
        remove_partials(job.output)
    finally:
        lock.release()
