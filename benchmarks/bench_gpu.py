"""GPU benchmark (issue 11): one IMP level's training loop on a GPU, project fast path vs today's loop vs the reference.

bert-base architecture (``BertConfig()``, random init; 73 prunable matrices), 50% global-magnitude
mask, batch 32, bf16 autocast, Rotten Tomatoes sentences in the SST-2 layout ("RT", mean ~27
tokens) and 128-token sequences (RT sentences joined and cut at 128 tokens, "L128").  Every
variant is warmed up over the same batches (compilation and per-shape costs land there), then
timed in rounds that alternate the variants (order rotated), medians with ranges:

* ``plain``: ``fine_tune`` with ``fast_path='off'`` (the loop as it was before the fast path);
* ``fast eager``: ``fast_path='on', compile='off'``;
* ``fast compiled``: ``fast_path='on', compile='reduce-overhead'`` (opt-in: 'auto' stays eager until a
  committed GPU measurement, see gpu_check.py);
* ``reference fp32`` / ``reference bf16``: ``benchmarks/reference.py`` (prune hooks, every batch
  padded to 128 tokens, plain loop).

Also: a bf16 8192^3 matmul in the same run (the ceiling for TFLOP/s ratios); torch.profiler over
one call per variant (kernels and GPU time per step, GPU-busy fraction = GPU time / step time);
compile time; peak memory; global magnitude pruning of bert-base on the GPU vs
``global_unstructured``; and packed runs: N worker processes training concurrently on this GPU,
aggregate examples/s vs one run.

``python -m benchmarks.bench_gpu [--quick] [--out DIR]``.  Without CUDA it prints one line and
exits 0.  Longer than one device call allows with the 7-minute ``gpu_check.sh`` beside it: run it in a
session of its own.  Shared pieces (device, model, data without ``datasets``): gpu_common.py.  Writes ``benchmarks/results/bench_gpu_<device>[_quick].md/.json`` (and into ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from .common import RESULTS_DIR, StepClock, machine, machine_line, md_table, offline_env, verdict
from .gpu_common import (BATCH, LONG, SETUP, SPARSITY, VARIANTS, cpu_mode, device_sync, make_data, make_model,
                         peak_gb, project_call, reset_peak)

NAME = "bench_gpu"
TARGETS = {"rt_examples_per_s": 3000.0, "l128_fraction_of_matmul": 0.25, "packed_over_today": 4.0}


def reference_call(model, rows, pad_id, dtype, clock=None) -> dict:
    from .reference import reference_fine_tune

    return reference_fine_tune(model, rows, pad_id, epochs=1.0, batch_size=BATCH, device=SETUP.device,
                               autocast_dtype=dtype, on_step=clock)


def step_flops(model, data, variant: str) -> float:
    """Matmul FLOPs of one epoch of ``data`` as ``variant`` pads it (dynamic, multiple of 16, or 128)."""
    from tickets_core.training.fastpath import padded_width
    from tickets_core.training.loop import batch_order

    from .flops import train_step_flops

    lengths = list(data.train["length"])
    batches = batch_order(len(lengths), BATCH, torch.Generator().manual_seed(0), lengths)
    total = 0.0
    for b in batches:
        w = max(lengths[i] for i in b)
        w = LONG if variant.startswith("reference") else padded_width(w, 16, 512) if variant.startswith("fast") else w
        total += train_step_flops(model, len(b), w)
    return total / len(batches)


def matmul_tflops(n: int = 8192, reps: int = 10) -> float:
    n = n if SETUP.cuda else 512
    a = torch.randn(n, n, device=SETUP.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=SETUP.device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        device_sync()
        t0 = time.perf_counter()
        a @ b
        device_sync()
        times.append(time.perf_counter() - t0)
    del a, b
    return 2 * n ** 3 / statistics.median(times) / 1e12


def profile_call(fn) -> dict:
    """Kernels, CPU-side launches and GPU time of one call of ``fn`` (returns its result's step count)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if SETUP.cuda else [])
    with profile(activities=acts) as prof:
        out = fn()
        device_sync()
    kernels = gpu_us = launches = 0
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kernels += 1
            gpu_us += e.time_range.elapsed_us()
        elif e.name in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                        "cudaGraphLaunch", "cudaMemcpyAsync"):
            launches += 1
    steps = max(1, out["steps"])
    return {"kernels_per_step": kernels / steps, "launches_per_step": launches / steps,
            "gpu_ms_per_step": gpu_us / 1000 / steps}


def pruning_times() -> dict:
    """Global magnitude pruning of bert-base to 50% on the GPU: tickets_core vs global_unstructured (same mask?)."""
    from tickets_core.pruning.masks import Mask
    from tickets_core.pruning.strategies import magnitude_global
    from tickets_core.models.prunable import prunable_parameters

    from .reference import global_unstructured_mask, remove_prune_hooks

    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(1)
    model = BertForSequenceClassification(BertConfig(num_labels=2, **SETUP.model_kw)).to(SETUP.device)
    weights = {k: p.detach() for k, p in prunable_parameters(model).items()}
    ones = Mask.ones_like(model)  # IMP passes the current level's mask; global_unstructured makes its own
    ours, ref = [], []
    for _ in range(4):  # first round = warm-up
        device_sync()
        t0 = time.perf_counter()
        mask = magnitude_global(weights, ones, SPARSITY)
        ours.append(time.perf_counter() - t0)
        twin = copy.deepcopy(model)
        device_sync()
        t0 = time.perf_counter()
        theirs = global_unstructured_mask(twin, SPARSITY)
        device_sync()
        ref.append(time.perf_counter() - t0)
        remove_prune_hooks(twin)
        same = sum(int((mask[k] != theirs[k].cpu()).sum()) for k in mask)
        del twin
    return {"ours_s": ours[1:], "global_unstructured_s": ref[1:], "differing_weights": same}


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def run(quick: bool, budget_s: float, save=lambda md, info: None) -> tuple[str, dict]:
    """Measure everything; ``save(markdown, info)`` is called after the single runs and again at the end."""
    from .reference import attach_prune_hooks, rows_of

    t_start = time.time()
    budget_end = t_start + budget_s
    dev = torch.cuda.get_device_name() if SETUP.cuda else "CPU smoke run (tiny model; numbers meaningless)"
    n_rows = BATCH * (20 if quick else 40) if SETUP.cuda else BATCH * 4
    rounds = 2 if quick else 3
    rt, long, tok, source = make_data(n_rows)
    info = {"device": dev, "torch": torch.__version__, "quick": quick, "rows": n_rows, "data": source,
            "machine": machine()}
    info["matmul_bf16_tflops"] = matmul_tflops()
    info["pruning"] = pruning_times()

    base, mask = make_model()
    datas = {"RT": rt, "L128": long}
    ref_rows = {k: rows_of(d.train) for k, d in datas.items()}
    names = list(VARIANTS) + ["reference fp32", "reference bf16"]
    models = {}
    for v in names:
        m = copy.deepcopy(base)
        if v.startswith("reference"):
            attach_prune_hooks(m, mask)
        models[v] = m
    del base

    def call(v, d, clock=None):
        if v.startswith("reference"):
            dtype = torch.bfloat16 if v.endswith("bf16") else None
            return reference_call(models[v], ref_rows[d], tok.pad_token_id, dtype, clock)
        return project_call(models[v], mask, datas[d], v, clock)

    warm = {}
    for v in names:  # warm-up over the same batches: compile, kernel choice per shape
        for d in datas:
            device_sync()
            t0 = time.perf_counter()
            call(v, d)
            device_sync()
            warm[(v, d)] = time.perf_counter() - t0
    times = {(v, d): [] for v in names for d in datas}
    peak = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for v in order:
            for d in datas:
                before = reset_peak()
                clock = StepClock(SETUP.device, skip=2)
                call(v, d, clock)
                times[(v, d)].append(clock.finish())
                peak[(v, d)] = peak_gb(before)
    prof = {}
    for v in names:
        try:
            prof[v] = profile_call(lambda v=v: call(v, "RT"))
        except Exception as e:  # the profiler is an extra: report and go on
            print(f"profiler failed for {v}: {type(e).__name__}: {e}", file=sys.stderr)
            prof[v] = {"kernels_per_step": float("nan"), "launches_per_step": float("nan"), "gpu_ms_per_step": float("nan")}
    flops = {(v, d): step_flops(models["plain"], datas[d], v) for v in names for d in datas}

    rows, data_rows = [], {}
    peak_tf = info["matmul_bf16_tflops"]
    for v in names:
        for d in datas:
            ts = times[(v, d)]
            med = statistics.median(ts)
            tf = flops[(v, d)] / med / 1e12
            rec = {"ms_per_step": [t * 1000 for t in ts], "examples_per_s": BATCH / med, "tflops": tf,
                   "fraction_of_matmul": tf / peak_tf, "warmup_s": warm[(v, d)], "peak_gb_growth": peak[(v, d)]}
            if d == "RT":
                rec.update(prof[v])
                rec["gpu_busy"] = prof[v]["gpu_ms_per_step"] / (med * 1000)
            data_rows[f"{v} | {d}"] = rec
            rows.append([v, d, f"{BATCH / med:,.0f}", f"{med * 1000:.1f} ({min(ts) * 1000:.1f}-{max(ts) * 1000:.1f})",
                         f"{tf:.1f}", f"{tf / peak_tf:.1%}", f"{warm[(v, d)]:.1f}", f"{peak[(v, d)]:.2f}",
                         f"{rec.get('kernels_per_step', float('nan')):.0f}", f"{rec.get('launches_per_step', float('nan')):.0f}",
                         f"{rec.get('gpu_busy', float('nan')):.0%}"])
    info.update(variants=data_rows, table=rows, rounds=rounds, packed={"error": "not run yet"})
    save(report(info, t_start), info)  # in case the packed section runs out of time
    models.clear()
    if SETUP.cuda:
        torch.cuda.empty_cache()
    counts = [1, 4] if quick else [1, 2, 4, 8]
    try:
        from .gpu_packed import packed

        info["packed"] = packed(counts, 8.0 if quick else 15.0, "fast compiled", n_rows, budget_end,
                                smoke=not SETUP.cuda)
    except Exception as e:  # report, keep the rest
        info["packed"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    md = report(info, t_start)
    save(md, info)
    return md, info


def report(info: dict, t_start: float) -> str:
    """The markdown of a (possibly partial) run."""
    data_rows, rows, dev, quick = info["variants"], info["table"], info["device"], info["quick"]
    n_rows, rounds, peak_tf = info["rows"], info["rounds"], info["matmul_bf16_tflops"]
    today = data_rows["plain | RT"]["examples_per_s"]
    best_rt = data_rows["fast compiled | RT"]["examples_per_s"]
    frac = data_rows["fast compiled | L128"]["fraction_of_matmul"]
    pr = info["pruning"]
    lines = [f"## GPU: one IMP level's training loop, bert-base, batch {BATCH}, bf16 ({dev})", "",
             f"`python -m benchmarks.bench_gpu{' --quick' if quick else ''}` ({time.time() - t_start:.0f} s); "
             f"device {dev}, torch {torch.__version__}", "", machine_line(info["machine"]), "",
             f"Data: RT = {n_rows} rows of {info.get('data', 'Rotten Tomatoes sentences')}, L128 = RT rows joined and "
             f"cut at {LONG} tokens; bert-base architecture (random init), {SPARSITY:.0%} global-magnitude mask; "
             f"warm-up over the same batches, then {rounds} alternated rounds; ms/step median (range). bf16 matmul "
             f"8192^3 in this run: {peak_tf:.0f} TFLOP/s. TFLOP/s counts matmul FLOPs of the padded batches "
             "(benchmarks/flops.py); kernels, launches and GPU time per step from torch.profiler over one RT call; "
             "GPU busy = GPU time / step time. Warm-up s = first call over the batches (compile included).", "",
             md_table(["variant", "data", "examples/s", "ms/step", "TFLOP/s", "of matmul", "warm-up s", "peak GB+",
                       "kernels/step", "launches/step", "GPU busy"], rows), "",
             f"Pruning bert-base to 50% on the GPU: tickets_core {statistics.median(pr['ours_s']) * 1000:.1f} ms vs "
             f"global_unstructured {statistics.median(pr['global_unstructured_s']) * 1000:.1f} ms "
             f"(medians of 3); weights assigned differently: {pr['differing_weights']} (ties only)."]
    pk = info["packed"]
    if "rounds" in pk:
        prow = [[n, "-" if isinstance(r, str) else f"{r['aggregate']:,.0f}",
                 r if isinstance(r, str) else ", ".join(f"{x:,.0f}" for x in r["per_run"]),
                 "-" if isinstance(r, str) else f"{r['peak_gb_per_run']:.1f}"] for n, r in pk["rounds"].items()]
        lines += ["", f"Packed runs ({pk['variant']}, RT, separate processes on this GPU, {pk['seconds']:.0f} s "
                  f"windows; worker warm-up {pk.get('worker_warmup_s', 0):.0f} s):", "",
                  md_table(["runs", "aggregate examples/s", "per run", "peak GB per run"], prow)]
        agg = max((r["aggregate"] for r in pk["rounds"].values() if not isinstance(r, str)), default=0.0)
    else:
        lines += ["", f"Packed runs failed: {pk.get('error')}"]
        agg = 0.0
    tgt = [["RT examples/s per run >= 3,000", f"{best_rt:,.0f}", verdict(best_rt >= 3000)],
           ["L128 >= 25% of the bf16 matmul", f"{frac:.1%}", verdict(frac >= 0.25)],
           ["packed aggregate >= 4x today's single run", f"{agg:,.0f} vs 4 x {today:,.0f}", verdict(agg >= 4 * today)],
           ["pruning no slower than global_unstructured",
            f"{statistics.median(pr['ours_s']) * 1000:.1f} vs {statistics.median(pr['global_unstructured_s']) * 1000:.1f} ms",
            verdict(statistics.median(pr["ours_s"]) <= statistics.median(pr["global_unstructured_s"]))]]
    lines += ["", md_table(["target", "measured", "status"], tgt), ""]
    info["targets"] = tgt
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps, 2 rounds, packed 1 and 4 runs (estimate: ~5 min, most of it compiling)")
    p.add_argument("--budget-s", type=float, default=None, help="no packed round starts that would end after this (default 340 quick / 480)")
    p.add_argument("--out", default=None, help="also write the result files here (e.g. $OUT)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model: check this script without a GPU")
    a = p.parse_args()
    offline_env()
    if a.smoke:
        cpu_mode()
    elif not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing measured (run benchmarks/gpu_check.sh on a GPU machine)")
        return 0
    def save(md: str, info: dict) -> None:
        if a.no_write:
            return
        slug = re.sub(r"[^a-z0-9]+", "-", info["device"].lower()).strip("-")
        name = f"{NAME}_{slug}{'_quick' if a.quick else ''}"
        for folder in ([] if a.smoke else [RESULTS_DIR]) + ([Path(a.out)] if a.out else []):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.md").write_text(md)
            (folder / f"{name}.json").write_text(json.dumps(info, indent=2, default=str) + "\n")

    md, _ = run(a.quick, a.budget_s or (340 if a.quick else 480), save)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
