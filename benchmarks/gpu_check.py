"""One device call that proves (or disproves) the GPU fast path: ``bash benchmarks/gpu_check.sh`` (issue 19).

Writes ONE file, ``gpu_check.json``, rewritten after every entry, so a run killed by its time limit still
leaves everything done before (an entry it was in says ``running``; one it never reached ``pending``).
Each entry has ``status`` pass / fail / skipped (with ``why``), a one-line ``detail`` and its numbers:

* ``versions``: Python, torch, CUDA, transformers, GPU name;
* ``compiled_warm``: bert-base (random init) at 50% sparsity, bf16 fast path compiled (``--mode``,
  'reduce-overhead'), dropout off, 50 steps: after the warm-up step 0 recompiles, 0 cudagraph skips,
  at most 2 Dynamo graphs (and the CUDA graphs recorded);
* ``zeros``: in that run, pruned entries exactly 0 after every step in the fp32 master weights, the
  bf16 compute copies, the gradients the optimizer stepped with and the AdamW moments;
* ``mask_tightened``: weights rewound in place and the mask tightened to 60%: compiled logits on a
  fixed batch equal eager ones under the new mask (bf16 tolerance, and far from the old mask's), no new
  graph, then a 20-step level: no new graph, no recompile, memory flat;
* ``losses``: compiled vs eager per-step training losses within 1e-2 relative (both levels);
* ``dropout_rng``: a small BERT with dropout, compiled: replays of the same batch draw new dropout masks;
* ``one_row_last_batch``: 129 = 4 x 32 + 1 rows, compiled: the one-row batch is merged, no recompile;
* ``prefetch``: prefetched pinned batches equal inline ones (device checksums);
* ``semi_structured``: 2:4-pruned bert-base as semi-structured sparse tensors (fp16): logits close to the
  dense masked model's, forward time against dense;
* ``throughput``: warm examples/s of the plain loop, the eager fast path and the compiled one at Rotten
  Tomatoes lengths and at 128 tokens, TFLOP/s against a bf16 matmul of the same run, cold compile
  seconds; the targets (>= 3,000 examples/s at RT lengths, >= 25% of the matmul at 128 tokens) are
  reported met/missed (a missed target is a result, not a failure); it fails when a timed compiled call
  fell back, recompiled, compiled a graph or skipped CUDA graphs (its numbers would not be compiled ones);
* ``packed_pair``: one and two eager fast-path runs sharing the GPU (separate processes), aggregate;
* ``cuda_tests``: the CUDA tests of tests/test_fastpath.py (pytest; they need ``datasets``, which the
  ``.dev`` pack installs), if time is left.

``--cpu``: the same script on the CPU with a tiny BERT and Dynamo's 'eager' backend (the CUDA-only
entries ``skipped: no CUDA``), so that it cannot rot: tests/test_gpu_check.py runs it.  Exit status 0
when no entry failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import gpu_check_parts as parts
from .common import ROOT, offline_env
from .gpu_common import SETUP, cpu_mode

ENTRIES = ("versions", "compiled_warm", "zeros", "mask_tightened", "losses", "dropout_rng", "one_row_last_batch",
           "prefetch", "semi_structured", "throughput", "packed_pair", "cuda_tests")
# Seconds each phase may need on an H200 (estimates; a phase that would end past the budget is skipped).
ESTIMATE_S = {"train": 200, "tighten": 40, "one_row": 15, "dropout": 45, "prefetch": 10, "semi_structured": 30,
              "throughput": 60, "packed_pair": 60, "cuda_tests": 100}


class Report:
    """The JSON file: every entry pending at first, rewritten (atomically) after each change."""

    def __init__(self, path: Path, budget_s: float, info: dict) -> None:
        self.path, self.t0, self.budget_s = path, time.time(), budget_s
        self.doc = {"script": "benchmarks/gpu_check.py", **info, "budget_s": budget_s,
                    "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "finished": False,
                    "entries": {name: {"status": "pending"} for name in ENTRIES}}
        self.write()

    def left(self) -> float:
        return self.budget_s - (time.time() - self.t0)

    def set(self, name: str, status: str, detail: str = "", **numbers) -> None:
        entry = {"status": status, "detail": detail, **numbers}
        if status != "running":
            entry["at_s"] = round(time.time() - self.t0, 1)
        self.doc["entries"][name] = entry
        note = detail or numbers.get("why", "")
        print(f"gpu_check: {name}: {status}{' - ' + note if note else ''}", flush=True)
        self.write()

    def write(self) -> None:
        self.doc["elapsed_s"] = round(time.time() - self.t0, 1)
        counts = {}
        for e in self.doc["entries"].values():
            counts[e["status"]] = counts.get(e["status"], 0) + 1
        self.doc["summary"] = counts
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=_plain) + "\n")
        os.replace(tmp, self.path)

    def failed(self) -> bool:
        return any(e["status"] == "fail" for e in self.doc["entries"].values())


def _plain(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    return str(x)


def phase(report: Report, key: str, names: tuple[str, ...], fn, *, cuda_only: bool = False) -> None:
    """Run ``fn()`` (which sets ``names``' entries) unless CUDA is missing or the budget would run out;
    an exception fails every entry of ``names`` not yet set, with its first line."""
    if cuda_only and not SETUP.cuda:
        for n in names:
            report.set(n, "skipped", why="no CUDA")
        return
    need = ESTIMATE_S[key] if SETUP.cuda else 0
    if report.left() < need:
        for n in names:
            report.set(n, "skipped", why=f"time budget: {report.left():.0f} s left, phase needs ~{need} s")
        return
    for n in names:
        report.doc["entries"][n] = {"status": "running"}
    report.write()
    try:
        fn()
    except Exception as e:  # record, go on with the next phase
        line = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        for n in names:
            if report.doc["entries"][n]["status"] in ("running", "pending"):
                report.set(n, "fail", f"phase {key} raised {line}")
    finally:
        if SETUP.cuda:
            torch.cuda.empty_cache()


def versions() -> dict:
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__, "cpu_count": os.cpu_count()}
    if SETUP.cuda:
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=torch.cuda.get_device_name(0), capability=f"{props.major}.{props.minor}",
                   gpu_memory_gb=round(props.total_memory / 2 ** 30, 1), cudnn=torch.backends.cudnn.version())
    else:
        out["gpu"] = None
    return out


def run(report: Report, args) -> None:
    v = versions()
    report.set("versions", "pass", f"torch {v['torch']} (CUDA {v['cuda']}), transformers {v['transformers']}, "
               f"GPU {v['gpu'] or 'none'}", **v)
    ctx = parts.Context(mode=args.mode, steps=args.steps, synthetic=not SETUP.cuda)
    phase(report, "train", ("compiled_warm", "zeros", "losses"), lambda: parts.train_levels(ctx, report))
    phase(report, "tighten", ("mask_tightened",), lambda: parts.tightened_level(ctx, report))
    phase(report, "one_row", ("one_row_last_batch",), lambda: parts.one_row(ctx, report))
    phase(report, "prefetch", ("prefetch",), lambda: parts.prefetch_equal(ctx, report))
    # the warm compiled model times next; the dropout check compiles a model of its own
    phase(report, "throughput", ("throughput",), lambda: parts.throughput(ctx, report))
    phase(report, "dropout", ("dropout_rng",), lambda: parts.dropout_rng(ctx, report))
    phase(report, "semi_structured", ("semi_structured",), lambda: parts.semi_structured(ctx, report),
          cuda_only=True)
    phase(report, "packed_pair", ("packed_pair",), lambda: parts.packed_pair(ctx, report, report.left()),
          cuda_only=not args.packed_on_cpu)
    phase(report, "cuda_tests", ("cuda_tests",), lambda: cuda_tests(report), cuda_only=True)


def cuda_tests(report: Report) -> None:
    """tests/test_fastpath.py's CUDA tests in a subprocess, within the time left (they need ``datasets``)."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("datasets") is None:
        report.set("cuda_tests", "skipped", why="no datasets here (the .dev pack installs it)")
        return
    limit = max(30, int(report.left()) - 10)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_fastpath.py",
           "-k", "cuda"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        report.set("cuda_tests", "skipped", why=f"time budget: pytest did not finish in {limit} s")
        return
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    summary = lines[-1] if lines else ""
    report.set("cuda_tests", "pass" if proc.returncode == 0 else "fail", summary,
               returncode=proc.returncode, tail=lines[-40:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="the CPU and a tiny BERT (CUDA-only entries skipped)")
    p.add_argument("--out", default=None,
                   help="folder of gpu_check.json (default: $OUT, else benchmarks/results/gpu_check; --cpu: a "
                        "temporary folder)")
    p.add_argument("--budget-s", type=float, default=None, help="start no phase that would end after this "
                   "(default 330 on CUDA; gpu_check.sh sets it from its 7-minute limit)")
    p.add_argument("--mode", default=None, help="compile mode checked (default 'reduce-overhead'; --cpu: 'eager')")
    p.add_argument("--steps", type=int, default=None, help="steps of the first level (default 50; --cpu: 6)")
    p.add_argument("--packed-on-cpu", action="store_true", help="--cpu: run the packed pair too (two worker "
                   "processes; ~1 min on 2 cores, so not by default)")
    a = p.parse_args(argv)
    offline_env()
    if a.cpu:
        cpu_mode()
        torch.set_num_threads(1)  # tiny kernels: one thread is faster than two contending ones
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --cpu to check the script itself)", file=sys.stderr)
        return 2
    a.mode = a.mode or ("reduce-overhead" if SETUP.cuda else "eager")
    a.steps = a.steps or (50 if SETUP.cuda else 6)
    out = Path(a.out or os.environ.get("OUT") or (tempfile.mkdtemp(prefix="gpu_check_") if a.cpu
                                                  else ROOT / "benchmarks" / "results" / "gpu_check"))
    report = Report(out / "gpu_check.json", a.budget_s or (330.0 if SETUP.cuda else 600.0),
                    {"mode": "cuda" if SETUP.cuda else "cpu (tiny BERT; numbers meaningless)",
                     "compile_mode": a.mode, "steps": a.steps, "argv": sys.argv[1:]})
    try:
        run(report, a)
        report.doc["finished"] = True
    finally:
        report.write()
    print(f"gpu_check: {report.doc['summary']}; {report.path}")
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
