"""The command line: ``python -m tickets_core.sweep FILE`` (also installed as ``tickets-sweep``).

Ctrl-C (or SIGTERM) once: the sweep hands out no more notebooks, interrupts
the running ones (their runs record ``interrupted``), prints the summary and
the command that resumes it, and exits with status 130.  Twice: it kills its
workers and kernels and exits at once.  Nothing finished is lost either way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading

from ..core.errors import ConfigError, one_line
from ..core.locks import say
from . import execute
from .spec import SweepError, plan_sweep

STOPPED = 130  # exit status after Ctrl-C, as shells report it


class Stopper:
    """Signal handler: the first SIGINT/SIGTERM sets ``event`` (run_plan stops gently); the second quits now."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.engine: execute.Engine | None = None

    def __call__(self, signum, frame) -> None:
        if not self.event.is_set():
            self.event.set()
            say("\nstopping: no more notebooks are started; the running ones are interrupted "
                "(Ctrl-C again to quit at once)")
            return
        say("\nquitting now: killing the running notebooks (their finished levels are kept)")
        try:
            if self.engine is not None:
                self.engine.kill(list(self.engine.in_flight.values()))
        finally:
            os._exit(STOPPED)

    @contextlib.contextmanager
    def installed(self):
        """Handle SIGINT and SIGTERM while in the block (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def make_engine(args, ap: argparse.ArgumentParser) -> execute.Engine:
    """The engine the options ask for (process workers, a Dask scheduler, or SLURM jobs)."""
    if args.executor == "dask":
        from .cluster import dask_engine

        return dask_engine(args.scheduler)
    if args.executor == "slurm":
        from .cluster import slurm_engine

        return slurm_engine(args.cluster, args.jobs)
    gpus = args.gpus.split(",") if args.gpus else execute.detect_gpus()
    slots = execute.gpu_slots(gpus, args.workers_per_gpu)
    workers = args.workers or (len(slots) if args.workers_per_gpu > 1 and slots else 1)
    return execute.process_engine(workers, slots)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``python -m tickets_core.sweep`` / ``tickets-sweep``)."""
    ap = argparse.ArgumentParser(prog="tickets-sweep", description="Run a sweep file's notebooks with papermill.")
    ap.add_argument("file", help="sweep YAML file (schema: python -c 'import tickets_core.sweep as s; help(s)')")
    ap.add_argument("--workers", type=int, help="parallel notebook executions (default 1; with --workers-per-gpu: "
                                                "that many per GPU)")
    ap.add_argument("--workers-per-gpu", type=int, default=1, metavar="N",
                    help="N workers share each GPU (pinned through CUDA_VISIBLE_DEVICES; no effect without GPUs)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    ap.add_argument("--only", metavar="PATTERN", help="only runs whose name or label matches (fnmatch), "
                                                       "plus the unfinished runs they need")
    ap.add_argument("--gpus", help="comma-separated GPU ids to hand to workers (default: all visible)")
    ap.add_argument("--executor", choices=("process", "dask", "slurm"), default="process",
                    help="local worker processes (default), a running Dask scheduler (--scheduler), or SLURM jobs "
                         "started by dask-jobqueue (--cluster, --jobs)")
    ap.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    ap.add_argument("--cluster", metavar="FILE", help="dask_jobqueue.SLURMCluster arguments, YAML (with --executor "
                                                      "slurm; example: sweeps/slurm.yaml)")
    ap.add_argument("--jobs", type=int, default=1, help="SLURM jobs to start, one Dask worker each (default 1)")
    ap.add_argument("--notebooks-dir", help="folder of the notebooks (default: the sweep file's or this checkout's)")
    ap.add_argument("--output-root", metavar="DIR", help="run folders under DIR instead of the file's output_root")
    ap.add_argument("--miniature", action="store_true",
                    help="the file's structure at a tiny scale (tiny-bert, fixture data, 3 levels, one seed per "
                         "entry): proves the grid end to end in minutes on a CPU; runs and figures under DIR "
                         "(default: the file's output_root + '-miniature'); see tickets_core.sweep.miniature")
    args = ap.parse_args(argv)
    if (args.workers is not None and args.workers < 1) or args.workers_per_gpu < 1 or args.jobs < 1:
        ap.error("--workers, --workers-per-gpu and --jobs must be >= 1")
    if args.executor == "dask" and not args.scheduler:
        ap.error("--executor dask needs --scheduler ADDRESS")
    if args.executor == "slurm" and not args.cluster:
        ap.error("--executor slurm needs --cluster FILE (e.g. sweeps/slurm.yaml)")
    stopper = Stopper()
    with stopper.installed():  # from the start: a Ctrl-C while planning or starting workers is one line too
        return _run(args, ap, argv, stopper)


def _run(args, ap: argparse.ArgumentParser, argv: list[str] | None, stopper: Stopper) -> int:
    try:
        path = args.file
        if args.miniature:
            from .miniature import write_miniature

            path = write_miniature(args.file, args.output_root)
        plan = plan_sweep(path, notebooks_dir=args.notebooks_dir,
                          output_root=None if args.miniature else args.output_root)
        jobs = execute.select(plan, args.only)
        if not jobs:
            raise SweepError(f"--only {args.only!r} matches no run")
        if args.dry_run:
            from .estimate import summary

            print(execute.describe_plan(jobs))
            print(summary(plan, jobs))
            return 0
        engine = stopper.engine = make_engine(args, ap)
    except (SweepError, ConfigError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    print(f"sweep {args.file}: {len(jobs)} notebooks on {engine.where}; runs in {plan.output_root}", flush=True)
    with engine:
        outcomes = execute.run_plan(jobs, engine, runner=execute.execute_job, stop=stopper.event,
                                    what=f"sweep {args.file}")
    text, status = execute.report(outcomes)
    print(text)
    if stopper.event.is_set():
        again = " ".join(["python -m tickets_core.sweep", shlex.join(sys.argv[1:] if argv is None else argv)])
        print(f"stopped: finished levels are kept; to go on, run again: {again}", flush=True)
        return STOPPED
    return status
