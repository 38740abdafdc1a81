"""The sweep on Dask: a real ``distributed.LocalCluster`` (2 worker processes), a worker killed mid-run,
and the SLURM job script dask-jobqueue builds from ``sweeps/slurm.yaml``."""

from __future__ import annotations

import os
import re
import sys
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from test_notebooks import write_reviews
from test_sweep_processes import assert_same_as_one_process, tiny_sweep

from tickets_core import sweep

from tickets_core.core import locks
from tickets_core.analysis.results import load_masks
from tickets_core.runs.paths import RunPaths
from tickets_core.runs.status import read_status, run_state

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    """2 Dask worker processes, one thread each; kernels they start use one CPU thread (as the reference)."""
    distributed = pytest.importorskip("distributed")
    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as c:
            yield c
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.integration
def test_a_sweep_on_a_dask_cluster_survives_a_killed_worker_and_matches_one_process(cluster, tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(tiny_sweep(tmp_path / "runs", write_reviews(tmp_path / "data"), tmp_path / "cache", steps=15,
                               levels=3, tasks="[rotten_tomatoes, imdb]"))
    plan = sweep.plan_sweep(path)
    args = [str(path), "--executor", "dask", "--scheduler", cluster.scheduler_address]
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("status", sweep.main(args)))
    thread.start()
    # Kill the Dask worker process whose kernel is writing a run, in the middle of that run.
    victim_run = plan.jobs[0].run_dir
    deadline = time.monotonic() + 300
    while not ((s := read_status(victim_run)) and s["state"] == "running" and s["levels_done"]):
        assert time.monotonic() < deadline and thread.is_alive(), "the run never got going"
        time.sleep(0.1)
    kernel = psutil.Process(locks.holder(RunPaths(victim_run).run_lock())["pid"])
    worker = kernel.parent()
    assert worker.pid in {w.pid for w in psutil.Process().children(recursive=True)}  # one of the cluster's
    levels_at_kill = len(read_status(victim_run)["levels_done"])
    worker.send_signal(signal.SIGKILL)
    thread.join(600)
    out = capsys.readouterr().out
    assert levels_at_kill < 4
    # Dask runs a lost task again (the run resumes from its last finished level) or reports it failed.
    first = re.search(r"(ok|failed)  imp rotten_tomatoes seed 0", out).group(1)
    assert result["status"] == (0 if first == "ok" else 1), out
    assert sweep.main(args) == 0  # and a rerun finishes whatever is left
    assert all(run_state(j.run_dir) == "done" for j in plan.jobs)
    _, alive = psutil.wait_procs([kernel], timeout=30)
    assert not alive  # the dead worker's kernel ended by itself
    # Run folders identical to one process running the same configs (which is what the process executor
    # gives: tests/test_sweep_processes.py).
    assert_same_as_one_process(plan, tmp_path / "ref")
    assert sorted(load_masks(plan.jobs[0].run_dir)) == [1, 2, 3]


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_the_documented_slurm_cluster_writes_the_right_job_script():
    pytest.importorskip("dask_jobqueue")
    from tickets_core.sweep.cluster import cluster_arguments, gpu_resources, slurm_cluster

    cluster = slurm_cluster(ROOT / "sweeps" / "slurm.yaml")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    for directive in ("#SBATCH -p gpu", "#SBATCH --cpus-per-task=8", "#SBATCH -t 24:00:00", "#SBATCH --gres=gpu:1",
                      "#SBATCH -n 1"):
        assert directive in lines, script
    assert re.search(r"^#SBATCH --mem=\d+G$", script, re.M)
    for directive in ("#SBATCH --signal=B:USR1@600", "#SBATCH --requeue"):  # the walltime guard (test_walltime.py)
        assert directive in lines, script
    worker = next(ln for ln in lines if "distributed.cli.dask_worker" in ln)
    assert worker.startswith(f"exec {sys.executable} -m tickets_core.sweep.walltime -- {sys.executable} -m ")
    assert "--resources GPU=1" in worker and "--nthreads 8" in worker
    assert gpu_resources(cluster_arguments(ROOT / "sweeps" / "slurm.yaml")) == {"GPU": 1}


def test_a_bad_cluster_file_is_one_line(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from tickets_core.sweep.cluster import slurm_cluster

    bad = tmp_path / "c.yaml"
    bad.write_text("cores: 4\nmemory: 8GB\nn_workers: 3\n")
    with pytest.raises(sweep.SweepError, match=r"c.yaml: 'n_workers' is set by the sweep \(--jobs\)"):
        slurm_cluster(bad)
    bad.write_text("cores: 4\nmemory: 8GB\nqueu: gpu\n")
    with pytest.raises(sweep.SweepError) as e:
        slurm_cluster(bad)
    assert str(e.value).startswith(f"{bad}: ") and "queu" in str(e.value) and "\n" not in str(e.value)


def test_a_stopping_sweep_signals_only_the_kernels_of_its_own_runs(tmp_path):
    """On a shared Dask cluster, Ctrl-C reaches the kernels holding this sweep's runs, no other."""
    import socket
    import subprocess
    import sys

    from tickets_core.sweep.cluster import _kernels_of, _signal_listed_kernels

    # two stand-in kernels (their command line names ipykernel), children of this process as of a Dask worker
    ours, other = (subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ipykernel"])
                   for _ in range(2))
    try:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "run.lock").write_text("")
        job = sweep.Job(name="r", label="r", notebook=Path("x"), output=run_dir / "nb.ipynb", parameters={},
                        run_dir=run_dir)
        assert _kernels_of([job]) == []  # nobody writes it
        targets = [(socket.gethostname(), ours.pid), ("another-host", other.pid)]
        assert _signal_listed_kernels(targets, signal.SIGTERM) == 1
        assert ours.wait(timeout=10) == -signal.SIGTERM and other.poll() is None
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()
