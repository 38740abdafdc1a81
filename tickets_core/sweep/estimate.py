"""What a planned sweep costs before it runs: fine-tunings and optimizer steps per entry, GPU-hours where measured.

``python -m tickets_core.sweep FILE --dry-run`` prints :func:`summary` under the
plan.  Per planned run, its fine-tunings are the levels it trains: a trunk's
schedule (``levels + 1``, a ``dense`` run one), a branch's source levels
(default: every level of its source run), one for a transfer at
``highest_matching`` or from a mask file, less a dense level it copies from the
run that trains it (``dense_level_from``, :mod:`tickets_core.sweep.reuse`).  A
fine-tuning's optimizer steps are ``max_steps``, else ``ceil(epochs x
ceil(examples / batch))`` as ``training.loop.fine_tune`` counts them, with the
training set's size: the published size of a hub task (:data:`TRAIN_EXAMPLES`;
SQuAD's 384-token windows are an estimate), capped by ``max_train_samples``;
local data are not read here, so a run on local data without ``max_steps``
has unknown steps (shown as such).

GPU-hours are given only at a rate a GPU measured and this checkout committed:
``benchmarks/results/bench_gpu_*.json`` (written by ``benchmarks/gpu_check.sh``;
its fast-path rate on <= 128-token GLUE inputs at batch 32, the conservative
one of its two inputs).  It measures nothing longer than 128 tokens, so SQuAD
and MLM runs get no hours; a file that is not there gives none at all, and
the summary says so.  Nothing here guesses a rate.  Evaluation, pruning and
start-up are not counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..core.config import RunConfig
from ..core.errors import ConfigError
from ..core.kinds import get_kind
from ..runs.plan import own_levels
from .planner import Job, Plan

#: Training examples of the hub tasks (GLUE: the official train splits; SQuAD v1.1: 87,599 questions give about
#: 88,600 windows of 384 tokens at stride 128 with the bert-base-uncased tokenizer, an estimate).
TRAIN_EXAMPLES = {"cola": 8_551, "sst2": 67_349, "mrpc": 3_668, "stsb": 5_749, "qqp": 363_846, "mnli": 392_702,
                  "qnli": 104_743, "rte": 2_490, "wnli": 635, "squad": 88_600}
ESTIMATED = ("squad",)
#: Where committed GPU measurements lie in a checkout.
RATES_GLOB = "benchmarks/results/bench_gpu_*.json"
CHECKOUT = Path(__file__).resolve().parents[2]
#: The longest GLUE input the measured rate covers (its inputs are RT sentences and 128-token sequences).
RATE_MAX_TOKENS = 128


@dataclass
class Cost:
    """The cost of some runs: fine-tunings, dense levels copied, optimizer steps (None: unknown), GPU-hours."""

    runs: int = 0
    fine_tunings: int = 0
    copied: int = 0
    steps: int | None = 0
    estimated: bool = False
    hours: float | None = 0.0       # None: some run has no measured rate

    def add(self, other: "Cost") -> None:
        self.runs += other.runs
        self.fine_tunings += other.fine_tunings
        self.copied += other.copied
        self.steps = None if self.steps is None or other.steps is None else self.steps + other.steps
        self.estimated |= other.estimated
        self.hours = None if self.hours is None or other.hours is None else self.hours + other.hours


def committed_rates(checkout: Path = CHECKOUT) -> list[dict]:
    """The GPU rates committed in ``checkout`` (:data:`RATES_GLOB`): ``{"device", "examples_per_s", "file"}``
    each, the conservative fast-path rate of one run on <= 128-token inputs at batch 32."""
    out = []
    for path in sorted(checkout.glob(RATES_GLOB)):
        try:
            info = json.loads(path.read_text())
            v = info["variants"]
            rate = min(v["fast compiled | RT"]["examples_per_s"], v["fast compiled | L128"]["examples_per_s"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out.append({"device": str(info.get("device")), "examples_per_s": float(rate), "file": path.name})
    return out


def levels(job: Job, jobs: dict[str, Job]) -> int:
    """How many levels ``job``'s run consists of (see the module docstring); 0 for an analysis job."""
    if not job.is_run:
        return 0
    p = job.parameters
    kind = get_kind(p["kind"])
    if job.resolver is not None or p.get("mask_path"):
        return 1
    if not kind.is_branch:
        return len(own_levels(kind, int(p.get("levels", RunConfig().prune.levels))))
    if p.get("source_levels") is not None:
        return len(p["source_levels"])
    source = jobs.get(str(p.get("source_run")))  # not planned (a finished run on disk): its trunk's schedule
    return levels(source, jobs) if source is not None else int(p.get("levels", RunConfig().prune.levels)) + 1


def steps_per_fine_tuning(cfg: RunConfig) -> tuple[int | None, bool]:
    """(optimizer steps of one fine-tuning of ``cfg``, estimated?); None when the training set's size is unknown."""
    t = cfg.train
    if t.max_steps:
        return t.max_steps, False
    if cfg.data.data_dir is not None or cfg.data.task not in TRAIN_EXAMPLES:
        return None, False
    n = TRAIN_EXAMPLES[cfg.data.task]
    if cfg.data.max_train_samples:
        n = min(n, cfg.data.max_train_samples)
    return max(1, math.ceil(t.num_epochs * math.ceil(n / t.batch_size))), cfg.data.task in ESTIMATED


def job_cost(job: Job, jobs: dict[str, Job], rate: float | None) -> Cost:
    n = levels(job, jobs)
    copied = 1 if job.parameters.get("dense_level_from") else 0
    cfg = RunConfig.from_flat(**job.parameters)
    per, estimated = steps_per_fine_tuning(cfg)
    trained = n - copied
    cost = Cost(runs=1, fine_tunings=trained, copied=copied, steps=None if per is None else per * trained,
                estimated=estimated)
    glue_like = cfg.data.task in TRAIN_EXAMPLES and cfg.data.task != "squad"
    if rate is None or per is None or not glue_like or cfg.data.max_seq_length > RATE_MAX_TOKENS:
        cost.hours = None
    else:
        cost.hours = per * trained * cfg.train.batch_size / rate / 3600
    return cost


def costs(plan: Plan, jobs: list[Job], rate: float | None = None) -> dict[str, Cost]:
    """Cost per sweep-file entry (:attr:`Job.entry`) of ``jobs`` (a selection of ``plan``), and ``"total"``."""
    by_name = {j.name: j for j in plan.jobs}
    out: dict[str, Cost] = {}
    total = Cost()
    for job in jobs:
        if not job.is_run:
            continue
        try:
            c = job_cost(job, by_name, rate)
        except (ConfigError, KeyError, TypeError, ValueError):
            c = Cost(runs=1, steps=None, hours=None)
        out.setdefault(job.entry or "(no entry)", Cost()).add(c)
        total.add(c)
    out["total"] = total
    return out


def _num(x: int | float | None, estimated: bool = False) -> str:
    if x is None:
        return "unknown"
    return ("~" if estimated else "") + (f"{x:,.1f}" if isinstance(x, float) else f"{x:,}")


def summary(plan: Plan, jobs: list[Job], checkout: Path = CHECKOUT) -> str:
    """The cost table the dry run prints (see the module docstring)."""
    rates = committed_rates(checkout)
    rate = rates[0] if rates else None
    table = costs(plan, jobs, rate["examples_per_s"] if rate else None)
    head = ["entry", "runs", "fine-tunings", "dense levels copied", "optimizer steps"] + (
        [f"GPU-hours ({rate['device']})"] if rate else [])
    rows = [[name, _num(c.runs), _num(c.fine_tunings), _num(c.copied), _num(c.steps, c.estimated)]
            + ([_num(c.hours)] if rate else []) for name, c in table.items()]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]

    def line(r: list) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    out = ["", "Cost (training only; tickets_core.sweep.estimate):", line(head)] + [line(r) for r in rows]
    if rate:
        out.append(f"GPU-hours at the rate committed in {rate['file']} ({rate['examples_per_s']:,.0f} examples/s, "
                   f"one run, <= {RATE_MAX_TOKENS}-token inputs); 'unknown' where no rate was measured "
                   "(longer inputs, SQuAD, MLM).")
    else:
        out.append(f"GPU-hours: no committed GPU rate ({RATES_GLOB} in {checkout}: none; no GPU has measured one), "
                   "so only fine-tunings and optimizer steps are counted.")
    if table["total"].estimated:
        out.append("~: SQuAD's training windows are an estimate (87,599 questions, about 88,600 384-token windows).")
    return "\n".join(out)
