"""run_plan with stand-in runners: the progress line, stopping, another sweep's claim, workers per GPU.

Seconds: no notebook runs here (the real processes are in tests/test_sweep_processes.py).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from pathlib import Path

import pytest

from test_locks import hold_lock

from tickets_core import sweep
from tickets_core.sweep import execute

def jobs(tmp_path: Path, n: int, deps: bool = False) -> list[sweep.Job]:
    out = []
    for i in range(n):
        run_dir = tmp_path / "runs" / f"imp-t{i}-0000000{i}"
        out.append(sweep.Job(name=run_dir.name, label=f"imp t{i} seed 0", notebook=Path("x.ipynb"),
                             output=run_dir / "notebook.ipynb", parameters={}, run_dir=run_dir,
                             deps=[out[0].name] if deps and out else []))
    return out


def finish_run(job: sweep.Job) -> dict:
    job.run_dir.mkdir(parents=True, exist_ok=True)
    (job.run_dir / "config.json").write_text("{}")
    (job.run_dir / "status.json").write_text('{"state": "done"}')
    return {"ok": True, "error": None, "time_s": 0.0}


class Bar:
    """Stands in for tqdm: records the progress line."""

    def __init__(self, *a, **kw) -> None:
        self.postfixes: list[str] = []

    def set_postfix_str(self, text, refresh=True) -> None:
        self.postfixes.append(text)

    def update(self, n) -> None:
        pass

    def write(self, text) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_progress_line_shows_running_jobs_and_counts_queued_ones(tmp_path, monkeypatch):
    """With one worker and four ready runs: one running, three queued (not four 'starting')."""
    bar = Bar()
    monkeypatch.setattr("tqdm.auto.tqdm", lambda *a, **kw: bar)
    gate = threading.Event()

    def runner(job):
        gate.wait(10)
        return finish_run(job)

    with cf.ThreadPoolExecutor(1) as ex:
        t = threading.Thread(target=lambda: execute.run_plan(jobs(tmp_path, 4), ex, runner=runner, poll_s=0.05))
        t.start()
        time.sleep(0.5)
        gate.set()
        t.join(10)
    assert "imp t0 seed 0: starting; 3 queued" in bar.postfixes
    assert not any("t1" in p and "t0" in p for p in bar.postfixes)  # never two running on one worker


def test_stopping_ends_queued_jobs_interrupts_running_ones_and_kills_what_does_not_stop(tmp_path):
    stop, interrupted, killed = threading.Event(), threading.Event(), threading.Event()

    def runner(job):
        if job.label.startswith("imp t0"):  # answers the interrupt, as a kernel running driver.run does
            interrupted.wait(10)
            return {"ok": False, "error": "KeyboardInterrupt", "time_s": 0.1, "interrupted": True}
        killed.wait(10)                     # ignores it (a long C call): killed after the grace time
        return {"ok": False, "error": "DeadKernelError: killed", "time_s": 0.1}

    with cf.ThreadPoolExecutor(2) as ex:
        engine = execute.Engine(ex, "test", capacity=lambda: 2, interrupt=lambda jobs: interrupted.set(),
                                kill=lambda jobs: killed.set())
        threading.Timer(0.5, stop.set).start()
        t0 = time.monotonic()
        outcomes = execute.run_plan(jobs(tmp_path, 4), engine, runner=runner, progress=False, log=lambda s: None,
                                    stop=stop, grace_s=1.0)
    assert [o.status for o in outcomes] == ["interrupted", "interrupted", "not started", "not started"]
    assert outcomes[1].error == "did not stop within 1 s; killed" and time.monotonic() - t0 < 5
    assert engine.stopped and interrupted.is_set() and killed.is_set()
    text, status = execute.report(outcomes)
    assert text.splitlines()[0] == "sweep: 0 ran, 0 already done, 0 failed, 0 skipped, 2 interrupted, 2 not started"
    assert status == 1


def test_a_run_another_sweep_holds_waits_then_counts_as_done(tmp_path):
    js = jobs(tmp_path, 2)
    held = js[0]
    held.run_dir.mkdir(parents=True)
    other = hold_lock(held.run_dir / "sweep.lock", "sweep other.yaml")
    try:
        lines, calls = [], []

        def runner(job):
            calls.append(job.name)
            return finish_run(job)

        def other_sweep_finishes():  # the other sweep runs it meanwhile, then lets go
            finish_run(held)
            other.stdin.write("go\n")
            other.stdin.flush()

        threading.Timer(1.0, other_sweep_finishes).start()
        with cf.ThreadPoolExecutor(2) as ex:
            outcomes = execute.run_plan(js, ex, runner=runner, progress=False, log=lines.append)
    finally:
        other.kill()
        other.wait()
    assert [o.status for o in outcomes] == ["done", "ok"] and calls == [js[1].name]
    waiting = [ln for ln in lines if ln.startswith("waiting")]
    assert waiting == [f"waiting  imp t0 seed 0  [{held.name}]: in use by pid {other.pid} on "
                       f"{waiting[0].split(' on ')[1]}"] and "(sweep other.yaml, since " in waiting[0]


def test_workers_per_gpu_share_each_gpu(monkeypatch):
    """``--workers-per-gpu 2 --gpus 3,4``: four workers, two on each GPU (without GPUs it changes nothing)."""
    import argparse
    import multiprocessing as mp

    from test_sweep import _visible

    captured = {}
    monkeypatch.setattr(execute, "process_engine", lambda workers, slots: captured.update(workers=workers, slots=slots))
    for gpus, expected in (("3,4", {"workers": 4, "slots": ["3", "3", "4", "4"]}),
                           (None, {"workers": 1, "slots": []})):
        monkeypatch.setattr(execute, "detect_gpus", lambda: [])
        sweep.cli.make_engine(argparse.Namespace(executor="process", gpus=gpus, workers_per_gpu=2, workers=None), None)
        assert captured == expected
    monkeypatch.undo()
    # The workers really are pinned so (two real worker processes sharing GPU "5"; the layout over several GPUs
    # is test_sweep.py's test_process_workers_each_get_a_gpu).
    with mp.get_context("spawn").Manager() as manager, execute.process_executor(2, execute.gpu_slots(["5"], 2)) as ex:
        barrier = manager.Barrier(2)
        seen = [f.result() for f in [ex.submit(_visible, barrier) for _ in range(2)]]
    assert len({pid for pid, _ in seen}) == 2 and [gpu for _, gpu in seen] == ["5", "5"]


@pytest.mark.parametrize("argv,message", [
    (["--workers-per-gpu", "0"], "--workers, --workers-per-gpu and --jobs must be >= 1"),
    (["--executor", "slurm"], "--executor slurm needs --cluster FILE"),
])
def test_bad_options_are_one_line(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        sweep.main([str(tmp_path / "s.yaml"), *argv])
    assert message in capsys.readouterr().err


def test_a_stopped_process_engine_leaves_no_pool_thread_for_the_interpreter_exit():
    """A stopped sweep kills its workers and returns at once; the pool's manager thread must have closed its
    wake-up pipe before the interpreter exits, or concurrent.futures' exit hook races it and prints an
    ``OSError: Bad file descriptor`` traceback after the sweep's report (seen on Python 3.11 in CI)."""
    engine = execute.process_engine(1, [])
    with engine:
        future = engine.executor.submit(time.sleep, 60)
        while not future.running():
            time.sleep(0.05)
        manager = engine.executor._executor_manager_thread
        wakeup = engine.executor._executor_manager_thread_wakeup
        engine.in_flight[future] = None
        engine.stopped = True
        t0 = time.monotonic()
    assert time.monotonic() - t0 < execute.MANAGER_JOIN_S  # killing the workers ended the pool quickly
    assert not manager.is_alive() and wakeup._closed
