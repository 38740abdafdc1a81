"""Running a plan: papermill executions on a concurrent.futures executor, in dependency order.

An :class:`Engine` is where notebooks run: ``--workers N`` local processes
(:func:`process_engine`, a ``ProcessPoolExecutor``, each worker pinned to one
GPU through ``CUDA_VISIBLE_DEVICES`` when GPUs exist, ``--workers-per-gpu``
workers per GPU), or a Dask cluster (:mod:`.cluster`).  :func:`run_plan`
hands out at most as many notebooks as the engine runs at once (the rest wait
in the sweep, so the progress line tells running from queued), trunks before
their branches, analysis after every run.

Reliability:

* A run's notebook is handed out only while this sweep holds the run
  folder's ``sweep.lock`` (:mod:`tickets_core.core.locks`): a second sweep on the
  same folder waits for it, saying who holds it, and then finds the run done.
* Stopping (``stop`` set, by the first Ctrl-C): no more notebooks are handed
  out, the running ones' kernels get a Ctrl-C of their own (their runs record
  ``interrupted``), and whatever has not ended ``grace_s`` later is killed.
* Worker processes ignore Ctrl-C (the sweep handles it) and watch their
  parent: a worker whose sweep died interrupts its kernel, waits for the run
  to release its writer lock, kills the kernel and exits.  A kernel whose
  worker died exits by itself (ipykernel's parent poller).
* The executed notebook is written under a temporary name and renamed.
* A notebook whose run stopped at its SLURM job's walltime signal, after
  writing a checkpoint (:mod:`.walltime`), is handed out again (at most
  :data:`MAX_REQUEUES` times) and resumes from the checkpoint.
"""

from __future__ import annotations

import concurrent.futures as cf
import fnmatch
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..core import locks
from ..core.fsio import remove_partials
from ..runs.paths import RunPaths
from ..runs.status import mark_interrupted, read_status, repair_status, run_progress, run_state, whole
from .planner import Job, Plan
from .yamlfile import SweepError
from .worker import ensure_importable, execute_job, kill_tree, one_line_error, signal_kernels, sigint_blocked
from .worker import tidy_partials
from .worker import init_worker as _init_worker

__all__ = ["Engine", "Outcome", "run_plan", "execute_job", "report", "select", "describe_plan", "process_engine",
           "process_executor", "as_engine", "gpu_slots", "detect_gpus", "one_line_error", "ensure_importable",
           "GRACE_S"]

#: Seconds a stopping sweep gives running notebooks to end after their Ctrl-C, before killing them.
GRACE_S = 30.0
#: Seconds a stopped sweep waits for its process pool's manager thread (it ends once it sees the killed workers).
MANAGER_JOIN_S = 10.0
#: A notebook stopped by its job's walltime (a checkpoint written) is handed out again at most this many times,
#: after this many seconds (the stopping worker is gone by then).
MAX_REQUEUES, REQUEUE_DELAY_S = 100, 10.0


# ---------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------


def detect_gpus() -> list[str]:
    """GPU ids to hand out: ``CUDA_VISIBLE_DEVICES`` when set, else what ``nvidia-smi -L`` lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, ln in enumerate(out.splitlines()) if ln.startswith("GPU ")]


def gpu_slots(gpus: list[str], per_gpu: int = 1) -> list[str]:
    """One entry per worker place: each GPU ``per_gpu`` times (``[0, 0, 1, 1]`` for 2 GPUs, 2 per GPU)."""
    return [g for g in gpus for _ in range(per_gpu)]


def process_executor(workers: int, gpus: list[str]) -> cf.Executor:
    """``workers`` local processes; worker i gets GPU ``gpus[i % len(gpus)]`` (pass :func:`gpu_slots`)."""
    ctx = mp.get_context("spawn")
    slots = None
    if gpus:
        slots = ctx.Queue()
        for i in range(workers):
            slots.put(gpus[i % len(gpus)])
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(slots, threads, os.getpid()))


def _nothing(*args) -> None:
    pass


@dataclass
class Engine:
    """Where notebooks run, how many at once, and how to stop them."""

    executor: cf.Executor
    where: str                                            # for the sweep's first line: "2 worker(s), CPU"
    capacity: Callable[[], int]                           # notebooks that may run at once (now)
    interrupt: Callable[[list[Job]], None] = _nothing     # Ctrl-C to the kernels of these running jobs
    kill: Callable[[list[Job]], None] = _nothing          # end them now
    close: Callable[[], None] = _nothing                  # after the executor has shut down
    stopped: bool = False                                 # set by run_plan when it was stopped
    in_flight: dict = field(default_factory=dict)         # run_plan's running futures -> jobs (for a hard stop)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        wait = exc[0] is None and not self.stopped
        if self.stopped:  # nothing is left to wait for: end idle workers now, so exiting cannot hang
            self.kill(list(self.in_flight.values()))
        manager = getattr(self.executor, "_executor_manager_thread", None)  # a process pool's
        try:
            try:
                self.executor.shutdown(wait=wait, cancel_futures=True)
            except TypeError:  # an executor without cancel_futures (Dask's)
                self.executor.shutdown(wait=wait)
            if manager is not None and not wait:
                # the manager closes its wake-up pipe now, not racing concurrent.futures' exit hook (which
                # wakes it without a lock: an OSError traceback after the report on Python 3.11)
                manager.join(timeout=MANAGER_JOIN_S)
        finally:
            self.close()


def _local_stop(executor: cf.Executor) -> tuple[Callable, Callable]:
    """(interrupt, kill) for an executor on this machine: the kernels under its worker processes (a process
    pool keeps them by pid), or under this process (threads); never anything else this process started."""
    def roots() -> list[int]:
        procs = getattr(executor, "_processes", None)
        return list(procs) if procs is not None else [os.getpid()]

    def interrupt(jobs) -> None:
        for pid in roots():
            signal_kernels(pid, signal.SIGINT)

    def kill(jobs) -> None:
        for pid in roots():
            if pid == os.getpid():
                signal_kernels(pid, signal.SIGKILL)
                continue
            kill_tree(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    return interrupt, kill


def process_engine(workers: int, gpus: list[str]) -> Engine:
    """Local worker processes (``gpus``: one entry per worker place, see :func:`gpu_slots`)."""
    executor = process_executor(workers, gpus)
    interrupt, kill = _local_stop(executor)
    where = f"{workers} worker(s)" + (f", GPUs {','.join(gpus)}" if gpus else ", CPU")
    return Engine(executor, where, capacity=lambda: workers, interrupt=interrupt, kill=kill)


def as_engine(executor: cf.Executor | Engine) -> Engine:
    """An engine for a bare executor: as many at once as it has workers, stopped as :func:`_local_stop` says."""
    if isinstance(executor, Engine):
        return executor
    n = getattr(executor, "_max_workers", None) or 1 << 30
    interrupt, kill = _local_stop(executor)
    return Engine(executor, f"{type(executor).__name__}", capacity=lambda: n, interrupt=interrupt, kill=kill)


# ---------------------------------------------------------------------------
# Running a plan
# ---------------------------------------------------------------------------


@dataclass
class Outcome:
    job: Job
    status: str          # "ok", "done" (finished before), "failed", "skipped" (a dependency failed),
    #                      "interrupted" (stopped while running), "not started" (the sweep stopped first)
    error: str | None = None
    time_s: float = 0.0


STATUSES = ("ok", "done", "failed", "skipped", "interrupted", "not started")


def select(plan: Plan, pattern: str | None) -> list[Job]:
    """Jobs whose name or label matches ``pattern`` (fnmatch), plus the unfinished runs they need."""
    if not pattern:
        return list(plan.jobs)
    chosen = {j.name for j in plan.jobs if fnmatch.fnmatch(j.name, pattern) or fnmatch.fnmatch(j.label, pattern)}
    todo = list(chosen)
    while todo:
        for dep in plan.job(todo.pop()).deps:
            if dep not in chosen:
                chosen.add(dep)
                todo.append(dep)
    return [j for j in plan.jobs if j.name in chosen]


def run_plan(jobs: list[Job], executor: cf.Executor | Engine, *, runner: Callable[[Job], dict] = execute_job,
             log: Callable[[str], None] | None = None, progress: bool = True, poll_s: float = 10.0,
             stop: threading.Event | None = None, grace_s: float = GRACE_S, what: str = "sweep") -> list[Outcome]:
    """Execute ``jobs`` on ``executor`` (an :class:`Engine` or a bare executor), trunks before their
    branches, analysis last; returns one :class:`Outcome` per job, in order.

    Runs already ``done`` on disk are not executed; a job whose dependency
    failed is skipped; analysis jobs wait until every run job has ended.  The
    progress bar counts notebooks; its suffix shows the running ones (with
    their finished levels, every ``poll_s`` seconds) and how many are queued.
    Setting ``stop`` stops the sweep (see the module docstring); ``what``
    names this sweep in the run folders' ``sweep.lock``.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="sweep", unit="nb", disable=not progress, dynamic_ncols=True)
    try:
        return _Run(jobs, as_engine(executor), runner, log or bar.write, bar, poll_s, stop or threading.Event(),
                    grace_s, what).loop()
    finally:
        bar.close()


class _Run:
    """The state of one :func:`run_plan` call."""

    def __init__(self, jobs, engine: Engine, runner, say, bar, poll_s, stop, grace_s, what) -> None:
        self.jobs, self.engine, self.runner, self.say, self.bar = jobs, engine, runner, say, bar
        self.poll_s, self.stop, self.grace_s, self.what = poll_s, stop, grace_s, what
        self.results: dict[str, Outcome] = {}
        self.pending = list(jobs)
        self.running: dict[cf.Future, Job] = engine.in_flight  # shared: a second Ctrl-C kills what runs
        self.claims: dict[str, locks.Lock] = {}
        self.waiting: set[str] = set()     # jobs whose run another sweep holds
        self.said: set[str] = set()        # ... and for which we said so
        self.retry_at: dict[str, float] = {}  # when to try a held run's lock again
        self.requeued: dict[str, int] = {}    # notebooks handed out again after a walltime checkpoint
        self.names = {j.name for j in jobs}
        # Finished before this sweep started: never executed (checked once per job).
        self.already = set()
        for j in jobs:
            status = read_status(j.run_dir) if j.is_run else None
            if status and status.get("rebuilt") and repair_status(j.run_dir):
                say(f"   note  {j.label}  [{j.name}]: status.json was unreadable; rebuilt it from the level "
                    f"folders ({status['rebuilt']})")
            if status and status.get("state") == "done" and whole(j.run_dir):  # its files checked (cheaply)
                self.already.add(j.name)
        self.stopping_since: float | None = None
        self.last_interrupt = 0.0
        self.shown, self.shown_at = "", 0.0

    def finish(self, outcome: Outcome) -> None:
        self.results[outcome.job.name] = outcome
        self.waiting.discard(outcome.job.name)
        claim = self.claims.pop(outcome.job.name, None)
        if claim is not None:
            claim.release()
        self.bar.update(1)
        extra = f"  {outcome.error}" if outcome.error else ""
        timing = f" ({outcome.time_s:.1f} s)" if outcome.status in ("ok", "failed", "interrupted") else ""
        self.say(f"{outcome.status:>7}  {outcome.job.label}  [{outcome.job.name}]{timing}{extra}")

    def loop(self) -> list[Outcome]:
        try:
            while self.pending or self.running:
                if self.stop.is_set():
                    self.stopping()
                else:
                    self.hand_out()
                if not self.running:
                    if self.pending and not self.waiting:  # cannot happen with an acyclic plan; never spin
                        raise SweepError(f"cannot order the remaining jobs: {', '.join(j.name for j in self.pending)}")
                    if self.pending:
                        self.show_progress()
                        time.sleep(min(self.poll_s, 0.5))
                    continue
                done, _ = cf.wait(self.running, timeout=min(self.poll_s, 0.5), return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    self.collect(fut, self.running.pop(fut))
                self.show_progress(force=bool(done))
        finally:
            for claim in self.claims.values():
                claim.release()
        self.bar.set_postfix_str("", refresh=True)
        return [self.results[j.name] for j in self.jobs]

    # -- handing out -----------------------------------------------------------------

    def hand_out(self) -> None:
        for job in list(self.pending):
            if job.name in self.already:
                self.pending.remove(job)
                tidy_partials(job, self.what)
                self.finish(Outcome(job, "done"))
                continue
            deps = [d for d in job.deps if d in self.names]
            failed = [d for d in deps if d in self.results and self.results[d].status != "ok"
                      and self.results[d].status != "done"]
            if failed:
                self.pending.remove(job)
                self.finish(Outcome(job, "skipped", f"needs {failed[0]}, which {self.results[failed[0]].status}"))
                continue
            runs_open = any(j.is_run for j in self.pending) or any(j.is_run for j in self.running.values())
            if not all(d in self.results for d in deps) or (job.after_all and runs_open):
                continue
            if len(self.running) >= max(1, self.engine.capacity()):
                continue
            reason = job.finalize()  # a deferred job gets its run now
            if reason is not None:
                self.pending.remove(job)
                self.finish(Outcome(job, "skipped", reason))
                continue
            if not self.claim(job):
                continue
            self.pending.remove(job)
            if job.is_run and whole(job.run_dir):  # another sweep finished it meanwhile
                self.finish(Outcome(job, "done"))
                continue
            with sigint_blocked():  # a worker process started now inherits it until its initializer ignores it
                self.running[self.engine.executor.submit(self.runner, job)] = job

    def claim(self, job: Job) -> bool:
        """Hold the run folder's sweep.lock for this job (True), or note who holds it (False; tried again
        every 2 s).  A lock that cannot be taken at all (no permission) fails the job."""
        if not job.is_run:
            return True
        if self.retry_at.get(job.name, 0.0) > time.monotonic():
            return False
        lock = locks.Lock(RunPaths(job.run_dir).sweep_lock(), self.what)
        try:
            lock.acquire(wait=False)
        except locks.LockHeld as e:
            self.retry_at[job.name] = time.monotonic() + 2.0
            self.waiting.add(job.name)
            if job.name not in self.said and e.holder.get("pid") is not None:  # (None: someone merely looked)
                self.said.add(job.name)
                self.say(f"waiting  {job.label}  [{job.name}]: in use by {locks.describe(e.holder)}")
            return False
        except OSError as e:
            self.pending.remove(job)
            self.finish(Outcome(job, "failed", f"cannot lock {lock.path}: {e.strerror or e}"))
            return False
        self.waiting.discard(job.name)
        remove_partials(job.output)  # what a killed sweep's worker left (no one else runs this job now)
        if lock.previous:
            self.say(f"   note  {job.label}: taking it over from {locks.describe(lock.previous)}, which is gone")
        self.claims[job.name] = lock
        return True

    def collect(self, fut: cf.Future, job: Job) -> None:
        try:
            res = fut.result()
        except Exception as e:  # noqa: BLE001 - e.g. a worker process died
            res = {"ok": False, "error": one_line_error(e), "time_s": 0.0}
        if res.get("requeue") and self.stopping_since is None and self.requeued.get(job.name, 0) < MAX_REQUEUES:
            self.requeued[job.name] = self.requeued.get(job.name, 0) + 1  # its SLURM job stopped at the walltime
            claim = self.claims.pop(job.name, None)
            if claim is not None:
                claim.release()
            self.retry_at[job.name] = time.monotonic() + REQUEUE_DELAY_S  # let the stopping worker go first
            self.pending.append(job)
            self.waiting.add(job.name)
            self.say(f"requeue  {job.label}  [{job.name}]: stopped at its job's walltime with a checkpoint; "
                     "handed out again")
            return
        if res["ok"]:
            status = "ok"
        elif res.get("interrupted") or self.stopping_since is not None:
            status = "interrupted"
        else:
            status = "failed"
        self.finish(Outcome(job, status, res.get("error"), res.get("time_s", 0.0)))

    # -- stopping ----------------------------------------------------------------------

    def stopping(self) -> None:
        now = time.monotonic()
        if self.stopping_since is None:
            self.stopping_since, self.engine.stopped = now, True
            for job in self.pending:
                self.finish(Outcome(job, "not started", "the sweep was stopped"))
            self.pending.clear()
            if self.running:
                self.say(f"stopping: interrupting {len(self.running)} running notebook(s)")
        if self.running and now - self.last_interrupt >= 5.0:  # again: a kernel between two cells ignores one
            self.last_interrupt = now
            self.engine.interrupt(list(self.running.values()))
        if self.running and now - self.stopping_since > self.grace_s:
            self.engine.kill(list(self.running.values()))
            for fut, job in list(self.running.items()):
                fut.cancel()
                if job.is_run:
                    mark_interrupted(job.run_dir, "killed when the sweep stopped")
                self.finish(Outcome(job, "interrupted", f"did not stop within {self.grace_s:.0f} s; killed"))
            self.running.clear()

    # -- progress ------------------------------------------------------------------------

    def show_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.shown_at < self.poll_s:
            return
        parts = [f"{j.label}: {run_progress(j.run_dir) if j.is_run else 'running'}" for j in self.running.values()]
        ready = len(self.pending) - len(self.waiting)
        if ready > 0:
            parts.append(f"{ready} queued")
        if self.waiting:
            parts.append(f"{len(self.waiting)} held by another sweep")
        text = "; ".join(parts)
        if force or text != self.shown or now - self.shown_at >= self.poll_s:
            self.bar.set_postfix_str(text, refresh=True)
            self.shown, self.shown_at = text, now


def report(outcomes: list[Outcome]) -> tuple[str, int]:
    """Summary text and exit status (1 when anything failed, was skipped, interrupted or not started)."""
    count = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
    lines = [f"sweep: {count['ok']} ran, {count['done']} already done, {count['failed']} failed, "
             f"{count['skipped']} skipped"
             + "".join(f", {count[s]} {s}" for s in ("interrupted", "not started") if count[s])]
    for o in outcomes:
        if o.status in ("failed", "skipped", "interrupted"):
            where = o.job.output if o.status != "skipped" else o.job.name
            lines.append(f"  {o.status.upper()} {o.job.label}: {o.error}  ({where})")
    return "\n".join(lines), int(sum(count[s] for s in STATUSES[2:]) > 0)


def describe_plan(jobs: list[Job]) -> str:
    """The execution plan as text (for --dry-run)."""
    out = []
    for i, j in enumerate(jobs, 1):
        state = run_state(j.run_dir) if j.is_run else None
        mark = "done" if state == "done" else (state or "todo")
        deps = f"  after {', '.join(j.deps)}" if j.deps else ("  after all runs" if j.after_all else "")
        out.append(f"{i:4d}. [{mark:>7}] {j.label:<40} {j.notebook.name:<22} -> {j.output}{deps}")
    return "\n".join(out)
