"""The command line: ``python -m tickets_core.sweep FILE`` (also installed as ``tickets-sweep``)."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from . import execute
from .spec import SweepError, plan_sweep


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``python -m tickets_core.sweep`` / ``tickets-sweep``)."""
    ap = argparse.ArgumentParser(prog="tickets-sweep", description="Run a sweep file's notebooks with papermill.")
    ap.add_argument("file", help="sweep YAML file (schema: python -c 'import tickets_core.sweep as s; help(s)')")
    ap.add_argument("--workers", type=int, default=1, help="parallel notebook executions (default 1)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    ap.add_argument("--only", metavar="PATTERN", help="only runs whose name or label matches (fnmatch), "
                                                       "plus the unfinished runs they need")
    ap.add_argument("--gpus", help="comma-separated GPU ids to hand to workers (default: all visible)")
    ap.add_argument("--executor", choices=("process", "dask"), default="process")
    ap.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    ap.add_argument("--notebooks-dir", help="folder of the notebooks (default: the sweep file's or this checkout's)")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    if args.executor == "dask" and not args.scheduler:
        ap.error("--executor dask needs --scheduler ADDRESS")
    try:
        plan = plan_sweep(args.file, notebooks_dir=args.notebooks_dir)
        jobs = execute.select(plan, args.only)
        if not jobs:
            raise SweepError(f"--only {args.only!r} matches no run")
        if args.dry_run:
            print(execute.describe_plan(jobs))
            return 0
        gpus = args.gpus.split(",") if args.gpus else execute.detect_gpus()
        executor = (execute.dask_executor(args.scheduler) if args.executor == "dask"
                    else execute.process_executor(args.workers, gpus))
    except (SweepError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    where = f"dask at {args.scheduler}" if args.executor == "dask" else (
        f"{args.workers} worker(s)" + (f", GPUs {','.join(gpus)}" if gpus else ", CPU"))
    print(f"sweep {args.file}: {len(jobs)} notebooks on {where}; runs in {plan.output_root}", flush=True)
    with executor:
        outcomes = execute.run_plan(jobs, executor, runner=execute.execute_job)
    text, status = execute.report(outcomes)
    print(text)
    return status
