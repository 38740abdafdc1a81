"""The SLURM walltime path (tickets_core.sweep.walltime): the job script asks for the signal and requeues; the guard,
sent SIGUSR1 as SLURM would, has the run write a checkpoint and stop, requeues the job and exits 75; the rerun
resumes from the checkpoint; the sweep hands a notebook stopped that way out again.  Real processes and signals.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_sweep_runner import finish_run, jobs

from tickets_core.lottery import driver
from tickets_core.runs.paths import RunPaths
from tickets_core.runs.status import read_status, run_state
from tickets_core.sweep import execute
from tickets_core.sweep.yamlfile import SweepError
from tickets_core.training.checkpoint import REQUEUE_STATUS

ROOT = Path(__file__).resolve().parent.parent
CHILD = ("import json, sys, torch; torch.set_num_threads(1)\n"
         "from tickets_core.core.config import RunConfig\n"
         "from tickets_core.lottery import driver\n"
         "driver.run(RunConfig.from_flat(**json.loads(sys.argv[1])))\n")


def test_the_cluster_file_asks_for_the_signal_and_puts_the_guard_in_front_of_the_worker(tmp_path):
    from tickets_core.sweep.cluster import cluster_arguments

    args = cluster_arguments(ROOT / "sweeps" / "slurm.yaml")
    assert args["job_extra_directives"][-2:] == ["--signal=B:USR1@600", "--requeue"]
    assert args["python"] == f"exec {sys.executable} -m tickets_core.sweep.walltime -- {sys.executable}"
    assert "walltime_signal" not in args
    bad = tmp_path / "bad.yaml"
    bad.write_text("walltime_signal: 10 minutes\n")
    with pytest.raises(SweepError, match=r"bad.yaml: walltime_signal must be a whole number of seconds"):
        cluster_arguments(bad)
    bad.write_text("walltime_signal: null\nqueue: gpu\n")
    assert cluster_arguments(bad) == {"queue": "gpu"}


@pytest.mark.integration
def test_the_guard_checkpoints_the_run_at_usr1_requeues_the_job_and_the_rerun_resumes(tiny_run_config, tmp_path):
    """A real guard process running a real training process; SIGUSR1 sent to the guard as SLURM's
    ``--signal=B:USR1`` sends it to the batch shell (which the guard is, after ``exec``)."""
    cfg = tiny_run_config(levels=0, max_steps=20)
    bin_dir, log = tmp_path / "bin", tmp_path / "scontrol.log"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    guard = subprocess.Popen([sys.executable, "-m", "tickets_core.sweep.walltime", "--grace", "60", "--",
                              sys.executable, "-c", CHILD, json.dumps(cfg.flat())],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = Path(cfg.output_root) / cfg.run_name()
    deadline = time.monotonic() + 120
    while not RunPaths(run).status().is_file() and time.monotonic() < deadline:  # its handler is installed by now
        time.sleep(0.1)
    guard.send_signal(signal.SIGUSR1)
    out, err = guard.communicate(timeout=120)
    assert guard.returncode == REQUEUE_STATUS, err
    assert log.read_text() == "requeue 4242\n"
    assert "walltime guard: the job's time limit is near" in err and "scontrol requeue 4242: done" in err
    assert RunPaths(run).checkpoint(0).is_file() and read_status(run)["state"] == "interrupted"
    assert "WalltimeReached: stopped by the walltime signal (checkpoint" in read_status(run)["error"]
    driver.run(cfg)  # the requeued job: the same command
    assert run_state(run) == "done" and not RunPaths(run).checkpoints(0)
    assert json.loads(RunPaths(run).metrics(0).read_text())["train"]["steps"] == 20


def test_the_guard_without_the_signal_exits_with_its_command_status():
    res = subprocess.run([sys.executable, "-m", "tickets_core.sweep.walltime", "--", sys.executable, "-c",
                          "import sys; sys.exit(3)"], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 3


def test_a_notebook_stopped_at_the_walltime_is_handed_out_again(tmp_path, monkeypatch):
    monkeypatch.setattr(execute, "REQUEUE_DELAY_S", 0.2)
    calls, lines = [], []

    def runner(job):
        calls.append(job.name)
        if len(calls) == 1:
            return {"ok": False, "error": "WalltimeReached: stopped by the walltime signal", "time_s": 0.1,
                    "requeue": True}
        return finish_run(job)

    with cf.ThreadPoolExecutor(1) as ex:
        outcomes = execute.run_plan(jobs(tmp_path, 1), ex, runner=runner, progress=False, log=lines.append,
                                    poll_s=0.05)
    assert [o.status for o in outcomes] == ["ok"] and len(calls) == 2
    assert any(ln.startswith("requeue  imp t0 seed 0") for ln in lines), lines
