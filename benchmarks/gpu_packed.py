"""Packed runs for bench_gpu.py and gpu_check.py: N training processes sharing one GPU, aggregate examples/s.

``packed(counts, seconds, ...)`` starts ``max(counts)`` worker processes
(``python -m benchmarks.gpu_packed --worker I ...``), each with its own
bert-base model, mask and data, exactly as the single runs (gpu_common.py).  Each
warms up (compilation, shapes; Inductor's on-disk cache is warm from the
parent by then), reports ready, then trains whenever a round file lists it,
until the round's deadline.  Rounds run 1, 2, 4, ... workers at once over the
same wall-clock window; a round's aggregate is the sum of its runs'
examples/s.  Control goes through files in a temporary folder: no sockets,
no shared state.  This is how a sweep shares a GPU too: N independent
processes with the same ``CUDA_VISIBLE_DEVICES`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import StepClock, StopTiming, offline_env
from .gpu_common import BATCH, SETUP, cpu_mode, make_data, make_model, peak_gb, project_call, reset_peak


def worker(ctl: Path, wid: int, variant: str, n_rows: int) -> None:
    """One packed run: warm up, then train whenever a round file lists this worker, until its deadline."""
    data = make_data(n_rows)[0]
    model, mask = make_model()
    project_call(model, mask, data, variant)  # warm-up: compile, shapes
    (ctl / f"ready_{wid}").write_text("1")
    k = 0
    while True:
        f = ctl / f"round_{k}.json"
        if (ctl / "exit").exists():
            return
        if not f.exists():
            time.sleep(0.05)
            continue
        spec = json.loads(f.read_text())
        if wid in spec["active"]:
            time.sleep(max(0.0, spec["start"] - time.time()))
            reset_peak()
            clock = StepClock(SETUP.device, skip=2, deadline=spec["start"] + spec["seconds"])
            try:
                project_call(model, mask, data, variant, clock=clock, max_steps=10 ** 7)
            except StopTiming:
                pass
            rate = BATCH / clock.finish()
            (ctl / f"result_{k}_{wid}.json").write_text(json.dumps(
                {"examples_per_s": rate, "peak_gb": peak_gb()}))
        k += 1


def packed(counts: list[int], seconds: float, variant: str, n_rows: int, budget_end: float, smoke: bool = False) -> dict:
    """Aggregate examples/s of ``n`` concurrent runs for each ``n`` in ``counts`` (rounds that would end after ``budget_end`` are skipped)."""
    ctl = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    n_max = max(counts)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    extra = ["--smoke"] if smoke else []
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.gpu_packed", "--worker", str(i), "--ctl", str(ctl),
                               "--variant", variant, "--rows", str(n_rows)] + extra, env=env,
                              stdout=open(ctl / f"log_{i}.txt", "w"), stderr=subprocess.STDOUT) for i in range(n_max)]
    out: dict = {"variant": variant, "seconds": seconds, "rounds": {}}
    try:
        t0 = time.time()
        while not all((ctl / f"ready_{i}").exists() for i in range(n_max)):
            if any(p.poll() is not None for p in procs) or time.time() > budget_end:
                raise RuntimeError("packed workers did not get ready: " + (ctl / "log_0.txt").read_text()[-500:])
            time.sleep(0.5)
        out["worker_warmup_s"] = time.time() - t0
        for k, n in enumerate(counts):
            if time.time() + seconds + 30 > budget_end:
                out["rounds"][n] = "skipped: time budget"
                continue
            start = time.time() + 2
            (ctl / f"round_{k}.json").write_text(json.dumps({"active": list(range(n)), "start": start, "seconds": seconds}))
            want = [ctl / f"result_{k}_{i}.json" for i in range(n)]
            while not all(f.exists() for f in want):
                if time.time() > start + seconds + 120:
                    raise RuntimeError(f"packed round with {n} workers did not finish")
                time.sleep(0.2)
            res = [json.loads(f.read_text()) for f in want]
            out["rounds"][n] = {"per_run": [r["examples_per_s"] for r in res],
                                "aggregate": sum(r["examples_per_s"] for r in res),
                                "peak_gb_per_run": max(r["peak_gb"] for r in res)}
    finally:
        (ctl / "exit").write_text("1")
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_packed", description="one packed-run worker (internal)")
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--ctl", required=True)
    p.add_argument("--variant", default="fast compiled")
    p.add_argument("--rows", type=int, default=BATCH * 40)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    offline_env()
    if a.smoke:
        cpu_mode()
    worker(Path(a.ctl), a.worker, a.variant, a.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
