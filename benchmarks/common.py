"""Shared harness: machine description, interleaved timing, result records.

Every benchmark returns a :class:`Result`: a title, the machine it ran on
(with the load average when it started), one or more markdown tables and
notes, and a JSON-ready ``data`` dict.  ``Result.write()`` stores
``benchmarks/results/<name>.json`` and ``<name>.md``; ``run_all`` stitches
the markdown files into ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIGURES_DIR = ROOT / "figures"


def offline_env() -> None:
    """No hub access on these machines: make transformers/datasets fail fast instead of retrying."""
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(k, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def machine() -> dict:
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in load_average()],
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def machine_line(m: dict) -> str:
    la = m["loadavg_start"]
    return (f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads, "
            f"Python {m['python']}; load average at start {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} "
            f"(1/5/15 min); {m['time_utc']} UTC")


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


def median(xs) -> float:
    return float(statistics.median(xs))


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each callable ``repeats`` times, alternating between them (rotating the order each round).

    Alternation spreads machine drift (other jobs, thermal, frequency)
    evenly over the variants; compare medians.  Returns name -> seconds list.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            fns[n]()
            out[n].append(time.perf_counter() - t0)
    return out


def spread(xs) -> str:
    """``median (min-max)`` in seconds, compact."""
    return f"{median(xs):.3g} ({min(xs):.3g}-{max(xs):.3g})"


def sync(device: str) -> None:
    """Wait for the work queued on ``device`` (CUDA); nothing to wait for on the CPU."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


class StopTiming(Exception):
    """Raised by a :class:`StepClock` whose deadline has passed, to end the training call it times."""


class StepClock:
    """``on_step`` callback timing steps ``skip+1..last`` (synchronizing ``device`` at both ends), optionally with a
    deadline (then it raises :class:`StopTiming`)."""

    reads_weights = False  # fine_tune need not swap the fp32 master weights in for this callback

    def __init__(self, device: str, skip: int = 2, deadline: float | None = None) -> None:
        self.device, self.skip, self.deadline = device, skip, deadline
        self.t0 = self.t1 = None
        self.first = self.last = 0

    def __call__(self, step, model=None) -> None:
        if step == self.skip:
            sync(self.device)
            self.t0, self.first = time.perf_counter(), step
        elif step > self.skip:
            self.last = step
            if self.deadline is not None and time.time() >= self.deadline:
                sync(self.device)
                self.t1 = time.perf_counter()
                raise StopTiming

    def finish(self) -> float:
        """Seconds per step over the timed steps."""
        if self.t1 is None:
            sync(self.device)
            self.t1 = time.perf_counter()
        return (self.t1 - self.t0) / max(1, self.last - self.first)


# ---------------------------------------------------------------------------
# memory: peak resident set growth of a call
# ---------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def peak_rss_growth(fn, interval: float = 0.002):
    """Run ``fn()``; return (its result, seconds, peak RSS growth in bytes above the RSS before the call).

    A sampler thread reads /proc/self/statm every ``interval`` s (torch
    kernels release the GIL); free heap is returned to the OS first
    (``malloc_trim``) so memory freed by earlier work is not reused unseen.
    """
    _trim()
    before = _rss_bytes()
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        res = fn()
    finally:
        dt = time.perf_counter() - t0
        peak[0] = max(peak[0], _rss_bytes())
        stop.set()
        th.join()
    return res, dt, peak[0] - before


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


def md_table(header: list[str], rows: list[list]) -> str:
    def cell(x):
        if isinstance(x, float):
            return f"{x:.3g}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def verdict(ok: bool | None, why: str = "") -> str:
    if ok is None:
        return "n/a" + (f" ({why})" if why else "")
    return "met" if ok else "MISSED" + (f": {why}" if why else "")


@dataclass
class Result:
    name: str
    title: str
    quick: bool
    machine: dict
    sections: list[str] = field(default_factory=list)  # markdown blocks (tables, notes)
    data: dict = field(default_factory=dict)
    targets: list[dict] = field(default_factory=list)  # {"target", "value", "status"}
    elapsed_s: float = 0.0

    def add(self, md: str) -> None:
        self.sections.append(md)

    def target(self, target: str, value: str, ok: bool | None, why: str = "") -> None:
        self.targets.append({"benchmark": self.name, "target": target, "value": value,
                             "status": verdict(ok, why)})

    def markdown(self) -> str:
        mode = "quick" if self.quick else "full"
        parts = [f"## {self.title}", "", f"`python -m benchmarks.{self.name}{' --quick' if self.quick else ''}` "
                 f"({mode} mode, {self.elapsed_s:.0f} s)", "", machine_line(self.machine), ""]
        for s in self.sections:
            parts += [s, ""]
        if self.targets:
            parts += [md_table(["target", "measured", "status"],
                               [[t["target"], t["value"], t["status"]] for t in self.targets]), ""]
        return "\n".join(parts)

    def to_json(self) -> dict:
        return {"name": self.name, "title": self.title, "quick": self.quick, "machine": self.machine,
                "elapsed_s": round(self.elapsed_s, 2), "targets": self.targets, "data": self.data}

    def write(self) -> None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        suffix = "_quick" if self.quick else ""
        (RESULTS_DIR / f"{self.name}{suffix}.json").write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        (RESULTS_DIR / f"{self.name}{suffix}.md").write_text(self.markdown())


def cli(name: str, doc: str, run) -> None:
    """``python -m benchmarks.<name> [--quick]``: run, print the markdown, write the result files."""
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=doc)
    p.add_argument("--quick", action="store_true", help="small sizes (< 2 min); numbers are indicative only")
    p.add_argument("--no-write", action="store_true", help="print only, do not write benchmarks/results/")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice, one per core)")
    a = p.parse_args()
    set_threads(a.threads)
    res = timed_run(run, a.quick)
    print(res.markdown())
    if not a.no_write:
        res.write()


def set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def timed_run(run, quick: bool) -> Result:
    offline_env()
    t0 = time.perf_counter()
    res = run(quick)
    res.elapsed_s = time.perf_counter() - t0
    return res
