"""Sweeps on a Dask cluster: an existing scheduler, or SLURM jobs started by dask-jobqueue.

* ``--executor dask --scheduler ADDRESS``: a running ``dask.distributed`` scheduler.
* ``--executor slurm --cluster FILE --jobs N``: N SLURM jobs, each one Dask worker,
  built by ``dask_jobqueue.SLURMCluster`` from FILE, a YAML mapping of its arguments
  (documented example: ``sweeps/slurm.yaml``).

Each notebook is one Dask task (:func:`~.execute.execute_job` in a worker
thread; its kernel is a child process of the worker).  The workers need this
checkout (or tickets_core installed), the notebooks, the data and
``output_root`` on a file system they all see.  GPUs are Dask *resources*:
a worker started with ``--resources GPU=1`` (the cluster file's
``worker_extra_args``) runs one notebook per GPU at a time, because every
notebook asks for ``GPU: 1`` whenever the cluster file declares GPUs.

Stopping and failures: Ctrl-C reaches the kernels of this sweep's running
runs (the holders of their ``run.lock``) through ``client.run``; other
clients' notebooks on a shared cluster are left alone, and so are analysis
notebooks (they only read, and end by themselves).  A Dask worker that dies loses its notebook; Dask runs it again
on another worker (the run resumes at its first unfinished level) and reports
it failed after ``distributed.scheduler.allowed-failures`` tries; the kernel
of the dead worker exits by itself (ipykernel's parent poller).  A sweep that
is killed outright cannot stop notebooks already running on the cluster
(Dask does not interrupt a running task): they finish their run, and a sweep
started meanwhile waits for their lock.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..core import locks
from ..core.errors import one_line
from ..core.fsio import read_text
from ..runs.paths import RunPaths
from .execute import Engine
from .worker import kernels, signal_pid
from .yamlfile import SweepError

#: Seconds to reach a Dask scheduler before the one-line error (a reachable one answers in well under a second).
SCHEDULER_TIMEOUT_S = 8
#: dask-jobqueue's SLURMCluster arguments a cluster file may not set (the sweep sets them).
_SET_BY_SWEEP = ("n_workers",)


def _signal_listed_kernels(targets: list[tuple[str, int]], sig: int) -> int:
    """Run on every Dask worker (``client.run``): signal those of its kernels that ``targets`` lists by
    (host, pid), so another client's notebooks on a shared cluster are left alone."""
    host, mine = socket.gethostname(), {p.pid for p in kernels(os.getpid())}
    return sum(signal_pid(pid, sig) for h, pid in targets if h == host and pid in mine)


def _kernels_of(jobs: list) -> list[tuple[str, int]]:
    """(host, pid) of the kernels writing these jobs' runs (the holders of their run.lock)."""
    out = []
    for job in jobs:
        holder = locks.holder(RunPaths(job.run_dir).run_lock()) if job.is_run else None
        if holder and holder.get("pid") is not None:
            out.append((holder.get("host"), holder["pid"]))
    return out


def _require_dask():
    try:
        from dask.distributed import Client
    except ImportError:
        raise SweepError("this executor needs dask.distributed (pip install 'dask[distributed]')") from None
    return Client


def dask_engine(address: Any, *, resources: dict | None = None, where: str | None = None,
                close_also: Any = None) -> Engine:
    """An engine on a Dask cluster: ``address`` is a scheduler address or a cluster object.

    ``resources`` (e.g. ``{"GPU": 1}``) is what each notebook asks of a worker;
    ``close_also`` (a cluster) is closed with the client.
    """
    Client = _require_dask()
    try:
        client = Client(address, timeout=f"{SCHEDULER_TIMEOUT_S}s")
    except (OSError, TimeoutError) as e:
        raise SweepError(f"cannot reach the Dask scheduler {address}: {one_line(e)}") from None
    executor = client.get_executor(pure=False, **({"resources": resources} if resources else {}))
    cache = {"at": -1e9, "n": 1}

    def capacity() -> int:
        """Notebooks the cluster's workers can run at once now (cached for 5 s)."""
        if time.monotonic() - cache["at"] > 5.0:
            workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
            if resources:
                n = sum(min(int(w.get("resources", {}).get(k, 0) // v) for k, v in resources.items())
                        for w in workers)
            else:
                n = sum(w.get("nthreads", 1) for w in workers)
            cache.update(at=time.monotonic(), n=max(1, n))
        return cache["n"]

    def signal_jobs(jobs: list, sig: int) -> None:
        targets = _kernels_of(jobs)
        if targets:
            try:
                client.run(_signal_listed_kernels, targets, sig)
            except Exception:  # noqa: BLE001 - a worker gone meanwhile; best effort
                pass

    def close() -> None:
        client.close()
        if close_also is not None:
            close_also.close()

    return Engine(executor, where or f"dask at {client.scheduler.address}", capacity=capacity,
                  interrupt=lambda jobs: signal_jobs(jobs, signal.SIGINT),
                  kill=lambda jobs: signal_jobs(jobs, signal.SIGKILL),
                  close=close)


def cluster_arguments(path: str | Path) -> dict:
    """The SLURMCluster arguments in the YAML file ``path`` (one-line errors naming the file)."""
    path = Path(path)
    try:
        args = yaml.safe_load(read_text(path, error=SweepError))
    except OSError as e:
        raise SweepError(f"{path}: cannot read cluster file ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: invalid YAML: {one_line(e)}") from None
    if not isinstance(args, dict):
        raise SweepError(f"{path}: a cluster file is a mapping of dask_jobqueue.SLURMCluster arguments")
    for key in _SET_BY_SWEEP:
        if key in args:
            raise SweepError(f"{path}: {key!r} is set by the sweep (--jobs); remove it here")
    return walltime_guarded(args, path)


def walltime_guarded(args: dict, path: str | Path = "the cluster file") -> dict:
    """``args`` with its ``walltime_signal`` key (seconds before the job's time limit; None: off) turned into
    SLURMCluster arguments: ``#SBATCH --signal=B:USR1@N`` and ``--requeue``, and the worker started under the
    walltime guard (:mod:`.walltime`, ``exec``: the guard is the batch shell SLURM signals), which has the
    running notebooks checkpoint, then requeues the job."""
    args = dict(args)
    seconds = args.pop("walltime_signal", None)
    if seconds is None:
        return args
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise SweepError(f"{path}: walltime_signal must be a whole number of seconds >= 1 (or null), "
                         f"got {seconds!r}")
    python = args.get("python") or sys.executable
    args["job_extra_directives"] = [*(args.get("job_extra_directives") or []), f"--signal=B:USR1@{seconds}",
                                    "--requeue"]
    args["python"] = f"exec {python} -m tickets_core.sweep.walltime -- {python}"
    return args


def slurm_cluster(path: str | Path, args: dict | None = None):
    """A ``dask_jobqueue.SLURMCluster`` built from the cluster file ``path`` (no job submitted yet);
    ``args``: its :func:`cluster_arguments` when already read."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise SweepError("--executor slurm needs dask-jobqueue (pip install dask-jobqueue)") from None
    try:
        return SLURMCluster(**(cluster_arguments(path) if args is None else args))
    except (TypeError, ValueError) as e:
        raise SweepError(f"{path}: {one_line(e)}") from None


def gpu_resources(args: dict) -> dict | None:
    """``{"GPU": 1}`` when a cluster file's workers declare GPUs (``--resources GPU=n``), else None."""
    extra = [str(a) for a in args.get("worker_extra_args") or []]
    specs = [a.split("=", 1)[1] for a in extra if a.startswith("--resources=")]
    specs += [extra[i + 1] for i, a in enumerate(extra[:-1]) if a == "--resources"]
    names = {part.split("=")[0].strip() for spec in specs for part in spec.replace(",", " ").split()}
    return {"GPU": 1} if "GPU" in names else None


def slurm_engine(path: str | Path, jobs: int) -> Engine:
    """``jobs`` SLURM jobs (one Dask worker each) from the cluster file ``path``, and an engine on them."""
    args = cluster_arguments(path)
    cluster = slurm_cluster(path, args)
    cluster.scale(jobs=jobs)
    return dask_engine(cluster, resources=gpu_resources(args), close_also=cluster,
                       where=f"SLURM ({jobs} job(s) from {path})")
