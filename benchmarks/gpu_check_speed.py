"""The timed phases of benchmarks/gpu_check.py: 2:4 semi-structured inference and warm training throughput."""

from __future__ import annotations

import copy
import statistics
import time

import torch

from .common import StepClock
from .gpu_common import BATCH, LONG, SETUP, device_sync, make_model, train_config

RT_TARGET, L128_TARGET = 3000.0, 0.25  # examples/s per run at RT lengths; fraction of the bf16 matmul at 128
SEMI_REL = 2e-2  # 2:4 sparse vs dense fp16 logits, as a fraction of the largest |logit| (an estimate)


def median_s(fn, reps: int) -> float:
    """Median seconds of ``reps`` synchronized calls of ``fn``."""
    times = []
    for _ in range(reps):
        device_sync()
        t0 = time.perf_counter()
        fn()
        device_sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_tflops(n: int = 8192) -> float:
    """bf16 ``n x n @ n x n`` matmul TFLOP/s on this device (the ceiling the 128-token rate is compared with)."""
    n = n if SETUP.cuda else 256
    a = torch.randn(n, n, device=SETUP.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=SETUP.device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    return 2 * n ** 3 / median_s(lambda: a @ b, 10) / 1e12


def semi_structured_check(report) -> None:
    """bert-base pruned 2:4, fp16, eval: semi-structured sparse weights vs the dense masked model, one batch of
    32 x 128 tokens: logits close, forward time (medians of alternated rounds)."""
    from tickets_core.interop.export import semi_structured
    from tickets_core.models.prunable import prunable_parameters
    from tickets_core.pruning.masks import Mask
    from tickets_core.pruning.strategies import magnitude_2to4

    model, _ = make_model(dropout=False, seed=1, sparsity=0.0)
    weights = {k: p.detach() for k, p in prunable_parameters(model).items()}
    magnitude_2to4(weights, Mask.ones_like(model), 0.5).bind(model).apply_()
    dense = copy.deepcopy(model).to(dtype=torch.float16).eval()
    sparse = semi_structured(model, dtype=torch.float16)
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 30000, (BATCH, LONG), generator=g).to(SETUP.device),
             "attention_mask": torch.ones(BATCH, LONG, dtype=torch.long, device=SETUP.device)}
    with torch.no_grad():
        ld, ls = dense(**batch).logits.float(), sparse(**batch).logits.float()
        err = float((ld - ls).abs().max()) / float(ld.abs().max())
        t = {"dense": [], "sparse": []}
        for r in range(3):
            for name in (("dense", "sparse") if r % 2 == 0 else ("sparse", "dense")):
                m = dense if name == "dense" else sparse
                t[name].append(median_s(lambda: m(**batch), 5))
    d, s = statistics.median(t["dense"]), statistics.median(t["sparse"])
    report.set("semi_structured", "pass" if err <= SEMI_REL else "fail",
               f"fp16, batch {BATCH} x {LONG}: logits differ by {err:.1e} of max |logit| (tolerance {SEMI_REL:g}); "
               f"forward {s * 1000:.1f} ms sparse vs {d * 1000:.1f} ms dense ({d / s:.2f}x)",
               logits_rel_err=err, dense_ms=[x * 1000 for x in t["dense"]], sparse_ms=[x * 1000 for x in t["sparse"]],
               speedup=d / s)


def throughput_check(ctx, report, datas: dict) -> None:
    """Warm examples/s of the plain loop, the eager fast path and the compiled one on each of ``datas``
    (RT lengths, 128 tokens): one warm-up call each (new shapes, CUDA graphs), then 2 rounds alternating the
    variants (order rotated; --cpu: 1 round), 2 steps skipped per timed call; TFLOP/s at 128 tokens against a bf16 matmul."""
    from tickets_core.training.loop import fine_tune

    from .flops import train_step_flops

    variants = {"plain": dict(fast_path="off"), "fast eager": ctx.options(False), "fast compiled": ctx.options(True)}
    steps, warm_steps = (20, 4) if SETUP.cuda else (3, 1)
    model, mask = ctx.model, ctx.mask

    def call(v, d, clock=None, max_steps=steps):
        return fine_tune(model, datas[d], train_config(variants[v], max_steps=max_steps), seed=0,
                         bound_mask=mask.bind(model), on_step=clock)

    warm = {}
    for v in variants:
        for d in datas:
            device_sync()
            t0 = time.perf_counter()
            call(v, d, max_steps=warm_steps)
            device_sync()
            warm[f"{v} | {d}"] = time.perf_counter() - t0
    times = {f"{v} | {d}": [] for v in variants for d in datas}
    names = list(variants)
    compiled = {"recompiles": 0, "cudagraph_skips": 0, "graphs": 0}  # over the timed compiled calls
    for r in range(2 if SETUP.cuda else 1):
        for v in names[r:] + names[:r]:
            for d in datas:
                clock = StepClock(SETUP.device, skip=2)
                rec = call(v, d, clock)["fast_path"]
                times[f"{v} | {d}"].append(clock.finish())
                if v == "fast compiled":  # timed compiled numbers must be compiled ones
                    if not rec["compiled"]:
                        raise RuntimeError(f"the compiled variant fell back to eager: {rec['error']}")
                    compiled = {k: n + (rec[k] or 0) for k, n in compiled.items()}
    peak = matmul_tflops()
    flops128 = train_step_flops(model, BATCH, LONG)
    rates = {k: BATCH / statistics.median(ts) for k, ts in times.items()}
    frac = {k: flops128 / statistics.median(ts) / 1e12 / peak for k, ts in times.items() if k.endswith("L128")}
    best_rt = max(rates[f"{v} | RT"] for v in ("fast eager", "fast compiled"))
    best_frac = max(frac[f"{v} | L128"] for v in ("fast eager", "fast compiled"))
    targets = {"rt_examples_per_s >= 3000": "met" if best_rt >= RT_TARGET else "missed",
               "l128_fraction_of_bf16_matmul >= 0.25": "met" if best_frac >= L128_TARGET else "missed"}
    report.set("throughput", "pass" if not any(compiled.values()) else "fail",
               "examples/s " + ", ".join(f"{k} {x:,.0f}" for k, x in rates.items())
               + f"; 128 tokens: {best_frac:.1%} of a {peak:.3g} TFLOP/s bf16 matmul; cold compile "
                 f"{ctx.measured.get('cold_compile_s', float('nan')):.0f} s; targets {targets}",
               examples_per_s=rates, s_per_step=times, fraction_of_matmul=frac, matmul_bf16_tflops=peak,
               warmup_call_s=warm, cold_compile_s=ctx.measured.get("cold_compile_s"), targets=targets,
               timed_compiled_calls=compiled,
               data=ctx.source, steps_per_call=steps)
