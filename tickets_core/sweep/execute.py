"""Running a plan: papermill executions on a concurrent.futures executor, in dependency order.

Executors: ``--workers N`` local processes (``ProcessPoolExecutor``), each
pinned to one GPU through ``CUDA_VISIBLE_DEVICES`` when GPUs exist; or an
existing Dask cluster (``dask.distributed``, imported only then).  Runs
already ``done`` on disk are not executed; a job whose dependency failed is
skipped; analysis jobs wait until every run job has ended.
"""

from __future__ import annotations

import concurrent.futures as cf
import fnmatch
import multiprocessing as mp
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..store import run_progress, run_state
from .spec import Job, Plan, SweepError


def one_line_error(exc: BaseException) -> str:
    """A one-line description of an exception (a notebook's own error for papermill failures)."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return first if len(first) <= 300 else first[:297] + "..."


def ensure_importable() -> None:
    """Let notebook kernels import this tickets_core even when it is not pip-installed (PYTHONPATH)."""
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])


def execute_job(job: Job) -> dict:
    """Run one job's notebook through papermill (in whatever process the executor chose).

    Never raises: returns ``{"ok": bool, "error": str | None, "time_s": float}``.
    """
    start = time.perf_counter()
    try:
        import papermill as pm

        ensure_importable()
        job.output.parent.mkdir(parents=True, exist_ok=True)
        pm.execute_notebook(str(job.notebook), str(job.output), parameters=job.parameters, kernel_name="python3",
                            progress_bar=False, log_output=False, cwd=str(job.notebook.parent),
                            # keep the kernels' start-up warnings out of the sweep's terminal
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
        if job.is_run and run_state(job.run_dir) != "done":
            raise RuntimeError(f"the notebook ended but {job.run_dir}/status.json is not 'done' "
                               f"(state {run_state(job.run_dir)!r}); do its parameters build the same config?")
        return {"ok": True, "error": None, "time_s": time.perf_counter() - start}
    except Exception as e:  # noqa: BLE001 - reported, never raised across processes
        return {"ok": False, "error": one_line_error(e), "time_s": time.perf_counter() - start}


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


def _init_worker(slots, threads: int | None) -> None:
    """Process-pool initializer: take one GPU (if any) and cap CPU threads for the kernels it starts."""
    gpu = slots.get() if slots is not None else None
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))


def process_executor(workers: int, gpus: list[str]) -> cf.Executor:
    """``workers`` local processes; worker i gets GPU ``gpus[i % len(gpus)]``."""
    ctx = mp.get_context("spawn")
    slots = None
    if gpus:
        slots = ctx.Queue()
        for i in range(workers):
            slots.put(gpus[i % len(gpus)])
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(slots, threads))


def dask_executor(scheduler: str) -> cf.Executor:
    """A concurrent.futures executor on an existing Dask cluster."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise SweepError("--executor dask needs dask.distributed (pip install 'dask[distributed]')") from None
    return Client(scheduler).get_executor(pure=False)


@dataclass
class Outcome:
    job: Job
    status: str          # "ok", "done" (finished before), "failed", "skipped" (a dependency failed)
    error: str | None = None
    time_s: float = 0.0


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


def run_plan(jobs: list[Job], executor: cf.Executor, *, runner: Callable[[Job], dict] = execute_job,
             log: Callable[[str], None] | None = None, progress: bool = True,
             poll_s: float = 10.0) -> list[Outcome]:
    """Execute ``jobs`` on ``executor``, trunks before their branches, analysis last.

    The progress bar counts notebooks; its suffix shows, every ``poll_s``
    seconds, how many levels each run in flight has finished.

    Runs already ``done`` on disk are not executed; a job whose dependency
    failed is skipped; analysis jobs wait until every run job has ended.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="sweep", unit="nb", disable=not progress, dynamic_ncols=True)
    say = log or bar.write
    results: dict[str, Outcome] = {}
    pending = list(jobs)
    running: dict[cf.Future, Job] = {}
    names = {j.name for j in jobs}
    # Finished before this sweep started: never executed (checked once per job).
    already = {j.name for j in jobs if j.is_run and run_state(j.run_dir) == "done"}

    def finish(outcome: Outcome) -> None:
        results[outcome.job.name] = outcome
        bar.update(1)
        extra = f"  {outcome.error}" if outcome.error else ""
        timing = f" ({outcome.time_s:.1f} s)" if outcome.status in ("ok", "failed") else ""
        say(f"{outcome.status:>7}  {outcome.job.label}  [{outcome.job.name}]{timing}{extra}")

    try:
        while pending or running:
            for job in list(pending):
                if job.name in already:
                    pending.remove(job)
                    finish(Outcome(job, "done"))
                    continue
                deps = [d for d in job.deps if d in names]
                failed = [d for d in deps if d in results and results[d].status in ("failed", "skipped")]
                if failed:
                    pending.remove(job)
                    finish(Outcome(job, "skipped", f"needs {failed[0]}, which {results[failed[0]].status}"))
                    continue
                runs_open = any(j.is_run for j in pending) or any(j.is_run for j in running.values())
                if all(d in results for d in deps) and not (job.after_all and runs_open):
                    pending.remove(job)
                    reason = job.finalize()  # a deferred job (source_levels: highest_matching) gets its run now
                    if reason is None:
                        running[executor.submit(runner, job)] = job
                    else:
                        finish(Outcome(job, "skipped", reason))
            if not running:
                if pending:  # cannot happen with an acyclic plan; never spin
                    raise SweepError(f"cannot order the remaining jobs: {', '.join(j.name for j in pending)}")
                continue
            done, _ = cf.wait(running, timeout=poll_s, return_when=cf.FIRST_COMPLETED)
            # Live view of the notebooks in flight: each run's finished levels (from status.json).
            bar.set_postfix_str("; ".join(f"{j.label}: {run_progress(j.run_dir) if j.is_run else 'running'}"
                                          for j in running.values()), refresh=True)
            for fut in done:
                job = running.pop(fut)
                try:
                    res = fut.result()
                except Exception as e:  # noqa: BLE001 - e.g. a worker process died
                    res = {"ok": False, "error": one_line_error(e), "time_s": 0.0}
                finish(Outcome(job, "ok" if res["ok"] else "failed", res.get("error"), res.get("time_s", 0.0)))
    finally:
        bar.close()
    return [results[j.name] for j in jobs]


def report(outcomes: list[Outcome]) -> tuple[str, int]:
    """Summary text and exit status (1 when anything failed or was skipped)."""
    count = {s: sum(o.status == s for o in outcomes) for s in ("ok", "done", "failed", "skipped")}
    lines = [f"sweep: {count['ok']} ran, {count['done']} already done, {count['failed']} failed, "
             f"{count['skipped']} skipped"]
    for o in outcomes:
        if o.status in ("failed", "skipped"):
            where = o.job.output if o.status == "failed" else o.job.name
            lines.append(f"  {o.status.upper()} {o.job.label}: {o.error}  ({where})")
    return "\n".join(lines), int(count["failed"] + count["skipped"] > 0)


def describe_plan(jobs: list[Job]) -> str:
    """The execution plan as text (for --dry-run)."""
    out = []
    for i, j in enumerate(jobs, 1):
        state = run_state(j.run_dir) if j.is_run else None
        mark = "done" if state == "done" else (state or "todo")
        deps = f"  after {', '.join(j.deps)}" if j.deps else ("  after all runs" if j.after_all else "")
        out.append(f"{i:4d}. [{mark:>7}] {j.label:<40} {j.notebook.name:<22} -> {j.output}{deps}")
    return "\n".join(out)


