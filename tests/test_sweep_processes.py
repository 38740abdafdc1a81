"""The sweep as real processes: Ctrl-C once and twice, a killed sweep's orphans, two sweeps on one folder.

Each test starts ``python -m tickets_core.sweep`` in its own session (as a
terminal would run it), so signals reach its whole process group, and the
notebooks run in real kernels (tiny-bert, fixture data).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from test_notebooks import SWEEP as NOTEBOOKS_SWEEP
from test_notebooks import write_reviews

from tickets_core import sweep

from tickets_core.lottery import driver
from tickets_core.core.config import RunConfig
from tickets_core.analysis.results import load_masks, load_runs
from tickets_core.runs.paths import RunPaths
from tickets_core.runs.status import read_status, run_state
from tickets_core.sweep.worker import kernels

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent

TRUNK = """\
trunks:
  - name: imp
    kind: imp
    tasks: {tasks}
    seeds: [0]
    levels: {levels}
    rate: 0.2
"""


def tiny_sweep(root: Path, data: Path, cache: Path, *, steps: int, levels: int, tasks: str) -> str:
    """test_notebooks' tiny sweep settings (tiny-bert, fixture data, CPU) with one IMP trunk entry."""
    head = NOTEBOOKS_SWEEP.split("trunks:")[0].replace("max_steps: 2\n", f"max_steps: {steps}\n")
    return head.format(root=root, figs=root / "figures", data=data, cache=cache) + TRUNK.format(levels=levels,
                                                                                               tasks=tasks)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("proc_data")
    return {"data": write_reviews(tmp / "data"), "cache": tmp / "cache"}


@pytest.fixture
def make_sweep(tmp_path, data):
    def make(steps: int = 30, levels: int = 3, tasks: str = "[rotten_tomatoes]") -> Path:
        path = tmp_path / "sweep.yaml"
        path.write_text(tiny_sweep(tmp_path / "runs", data["data"], data["cache"], steps=steps, levels=levels,
                                   tasks=tasks))
        return path

    return make


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start(path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    log = path.with_suffix(f".{time.monotonic_ns()}.log")
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "tickets_core.sweep", str(path), *args], env=env(),
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def wait_for(predicate, timeout: float = 180.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def the_run(path: Path) -> Path:
    return next(j.run_dir for j in sweep.plan_sweep(path).jobs if j.is_run)


def in_imp_run(run_dir: Path) -> bool:
    """The kernel is inside driver.run, with level 0 finished and more to do."""
    status = read_status(run_dir)
    return bool(status) and status["state"] == "running" and len(status["levels_done"]) >= 1


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def gone(procs: list[psutil.Process]) -> bool:
    return not [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def text(log: Path) -> str:
    """The sweep's output without the progress bar's redraws."""
    lines = log.read_text().replace("\r", "\n").splitlines()
    return "\n".join(ln for ln in lines if ln.strip() and not re.match(r"sweep:\s+\d+%\|", ln))


def test_ctrl_c_interrupts_the_running_notebooks_and_prints_the_summary_and_the_rerun_command(make_sweep):
    path = make_sweep()
    run_dir = the_run(path)
    proc, log = start(path)
    wait_for(lambda: in_imp_run(run_dir), what="the run to be inside driver.run")
    procs = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert proc.wait(timeout=60) == 130
    out = text(log)
    assert "Traceback" not in out and "Error" not in out.replace("KeyboardInterrupt", ""), out
    assert "sweep: 0 ran, 0 already done, 0 failed, 0 skipped, 1 interrupted" in out
    assert f"to go on, run again: python -m tickets_core.sweep {path}" in out
    status = json.loads(RunPaths(run_dir).status().read_text())
    assert status["state"] == "interrupted" and status["error"] == "KeyboardInterrupt"
    wait_for(lambda: gone(procs), timeout=10, what="workers and kernels to end")
    assert read_status(run_dir)["levels_done"][0] == 0  # what finished is kept (resuming: test_reliability)


def test_a_second_ctrl_c_quits_at_once_leaving_nothing_running(make_sweep):
    path = make_sweep()
    proc, log = start(path)
    wait_for(lambda: kernels(proc.pid), what="a kernel to start")
    procs = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.monotonic()
    assert proc.wait(timeout=10) == 130 and time.monotonic() - t0 < 5
    wait_for(lambda: gone(procs), timeout=5, what="workers and kernels to be killed")
    assert "quitting now" in text(log) and "Traceback" not in text(log)


def test_killing_only_the_sweep_stops_its_workers_and_kernels(make_sweep):
    path = make_sweep()
    run_dir = the_run(path)
    proc, log = start(path, "--workers", "1")
    wait_for(lambda: in_imp_run(run_dir), what="the run to be inside driver.run")
    procs = descendants(proc.pid)
    assert kernels(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the sweep alone: its worker and kernel are orphans now
    proc.wait()
    wait_for(lambda: gone(procs), timeout=30, what="the orphaned worker and kernel to stop")
    assert run_state(run_dir) == "interrupted"
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    time.sleep(2)
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == files  # nobody writes any more


def test_two_sweeps_on_one_folder_run_every_run_once(make_sweep, tmp_path):
    path = make_sweep(steps=1, levels=1, tasks="[rotten_tomatoes, imdb]")
    plan = sweep.plan_sweep(path)
    (a, log_a), (b, log_b) = start(path), start(path)
    assert a.wait(timeout=600) == 0 and b.wait(timeout=600) == 0
    outs = [text(log_a), text(log_b)]
    for job in plan.jobs:
        ran = [out.count(f"     ok  {job.label}  [") for out in outs]
        assert sorted(ran) == [0, 1], (job.label, outs)  # one sweep ran it, the other found it done
    assert sum("waiting  " in out for out in outs) >= 1  # and said who held what it waited for
    assert_same_as_one_process(plan, tmp_path / "ref")


def assert_same_as_one_process(plan, ref_root: Path) -> None:
    """Every run of ``plan``: masks bit for bit and scores equal to ``driver.run`` in this process, one thread
    (as the kernels: OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for job in plan.jobs:
            driver.run(RunConfig.from_flat(**{**job.parameters, "output_root": str(ref_root)}))
    finally:
        torch.set_num_threads(threads)
    for job in plan.jobs:
        ref, ours = load_masks(ref_root / job.name), load_masks(job.run_dir)
        assert sorted(ours) == sorted(ref) and ref, job.label
        assert all(torch.equal(ours[k][n], ref[k][n]) for k in ref for n in ref[k]), job.label
        cols = ["level", "sparsity", "score"]
        assert load_runs(job.run_dir)[cols].equals(load_runs(ref_root / job.name)[cols]), job.label


@pytest.mark.integration
@pytest.mark.parametrize("after_s", [0.8, 2.5, 5.0, 8.0])
def test_ctrl_c_in_the_first_seconds_of_a_sweep_is_no_traceback(after_s, make_sweep):
    """Before the handler was installed, or while a worker process started, Ctrl-C printed 34-43 lines of
    traceback (and a broken process pool); now the sweep stops the same way at any time."""
    proc, log = start(make_sweep(steps=300))  # long enough that even the 8 s signal lands mid-run on an idle machine
    time.sleep(after_s)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert proc.wait(timeout=120) == 130, text(log)
    out = text(log)
    assert "Traceback" not in out and "BrokenProcessPool" not in out, out
