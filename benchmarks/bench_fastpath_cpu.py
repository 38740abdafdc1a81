"""Which pieces of the GPU fast path pay on a CPU? (decides ``fast_path='auto'`` off the GPU)

The offline pre-trained MiniLM, batch 32 of real Rotten Tomatoes sentences (dynamic padding,
length grouping), a 50% global-magnitude mask, ``fine_tune`` on the CPU.  Each variant is one
``TrainConfig`` change from the plain loop; calls alternate between variants (order rotated),
each timing its steps after the first two; medians with ranges:

* ``plain``: ``fast_path='off'`` (the CPU default), fp32;
* ``pad16``: batches padded to a multiple of 16;
* ``multi-tensor masks``: ``fast_path='on'`` with no padding (foreach masking only, on fp32);
* ``prefetch 2``: collation on a background thread;
* ``fast path on``: everything the fast path does on a CPU (pad16 + multi-tensor masks);
* ``bf16 autocast`` vs ``bf16 master weights`` (``precision='bf16'``, not a CPU default);
* ``compiled`` (``--compile`` only): ``compile='default'`` (Inductor), with its compile time.
"""

from __future__ import annotations

import copy
import time

from .common import Result, StepClock, cli, machine, md_table, median

NAME = "bench_fastpath_cpu"
VARIANTS = {
    "plain": dict(fast_path="off"),
    "pad16": dict(fast_path="off", pad_to_multiple_of=16),
    "multi-tensor masks": dict(fast_path="on", pad_to_multiple_of=1),
    "prefetch 2": dict(fast_path="off", prefetch_batches=2),
    "fast path on": dict(fast_path="on"),
    "bf16 autocast": dict(fast_path="off", precision="bf16"),
    "bf16 master weights": dict(fast_path="off", precision="bf16", master_weights="on"),
}


def run(quick: bool, compile_too: bool = False) -> Result:
    from tickets_core.core.config import ModelConfig, TrainConfig
    from tickets_core.pruning.masks import Mask
    from tickets_core.models.build import build_model, load_tokenizer
    from tickets_core.models.prunable import prunable_parameters
    from tickets_core.pruning.strategies import magnitude_global
    from tickets_core.training.loop import fine_tune

    from .data import rt_data

    res = Result(NAME, "Fast-path pieces on the CPU (MiniLM, batch 32, real lengths)", quick, machine())
    steps, rounds = (6, 2) if quick else (10, 5)
    mcfg = ModelConfig("minilm")
    tok = load_tokenizer(mcfg)
    data = rt_data(tok, 32 * steps, 32)
    base = build_model(mcfg, "classification", num_labels=2, seed=0)
    mask = magnitude_global({k: p.detach() for k, p in prunable_parameters(base).items()}, Mask.ones_like(base), 0.5)
    variants = dict(VARIANTS)
    if compile_too:
        variants["compiled (Inductor)"] = dict(fast_path="off", compile="default")
    models = {v: copy.deepcopy(base) for v in variants}

    def call(v, clock=None):
        cfg = TrainConfig(batch_size=32, num_epochs=1.0, learning_rate=2e-5, progress=False, device="cpu",
                          eval_batch_size=32, **{"precision": "fp32", **variants[v]})
        return fine_tune(models[v], data, cfg, seed=0, bound_mask=mask.bind(models[v]), on_step=clock)

    warm = {}
    for v in variants:
        t0 = time.perf_counter()
        call(v)
        warm[v] = time.perf_counter() - t0
    names = list(variants)
    per_step = {v: [] for v in names}
    for r in range(rounds):
        for v in names[r % len(names):] + names[: r % len(names)]:
            clock = StepClock("cpu", skip=2)
            call(v, clock)
            per_step[v].append(clock.finish())
    plain = median(per_step["plain"])
    low = min(per_step["plain"])
    rows = [[v, f"{median(t) * 1000:.0f}", f"{min(t) * 1000:.0f}-{max(t) * 1000:.0f}", f"{median(t) / plain:.3f}",
             f"{min(t) / low:.3f}", f"{warm[v]:.1f}"] for v, t in per_step.items()]
    res.add(f"{steps} steps per call ({steps - 2} timed), {rounds} alternated rounds, 50% mask, fp32 unless named. "
            "Warm-up s: the first call (compile included). On a loaded machine compare the minima "
            "(the least disturbed calls).")
    res.add(md_table(["variant", "median ms/step", "range ms", "ratio to plain (medians)", "ratio (minima)",
                      "warm-up s"], rows))
    bf = median(per_step["bf16 master weights"]) / median(per_step["bf16 autocast"])
    res.add(f"bf16 master weights / bf16 autocast: {bf:.3f}.")
    res.data = {"per_step_s": per_step, "warmup_s": warm, "steps": steps, "rounds": rounds}
    return res


if __name__ == "__main__":
    import sys

    compile_too = "--compile" in sys.argv
    if compile_too:
        sys.argv.remove("--compile")
    cli(NAME, __doc__, lambda quick: run(quick, compile_too))
