"""Instability analysis: error barriers of IMP and random-pruning subnetworks, rewound to theta0 or theta_i.

Frankle et al. (ICML 2020): two copies of a subnetwork trained from the same
rewind point with different data orders; the error barrier is the highest
error on the line between them minus the mean error of the ends.  Runs (all
through ``lottery.driver.run``, resumable):

* the IMP trunk of ``bench_early_bird`` (rewind to theta0; the same run folder
  when both use runs/beyond/) and an IMP trunk rewound to theta_i
  (``rewind_step`` i: masks found with that rewinding, as Frankle et al. do);
* a ``random_prune`` branch of the theta0 trunk (random masks with IMP's
  per-matrix sparsities);
* ``stability`` branches: IMP (theta0 trunk, rewind 0; theta_i trunk, rewind
  i) and random pruning (rewind 0 and rewind i), at the dense level 0 (IMP
  only) and at 20% and 60% sparsity.

Setting (full mode): MiniLM on rotten_tomatoes as in bench_early_bird (1,024
training sentences, one epoch of 32 steps per level), i = 3 steps, seeds 0 and
1; the stability runs evaluate 7 points on 200 validation examples.  The
figures are drawn by notebooks/stability.ipynb from runs/beyond/.
"""

from __future__ import annotations

import time

from .bench_early_bird import RERUN_NOTE, settings
from .common import ROOT, Result, cli, machine, md_table

NAME = "bench_stability"
REWIND = 3


def run(quick: bool) -> Result:
    from tickets_core.analysis import curves
    from tickets_core.lottery import driver
    from tickets_core.core.config import RunConfig

    params, _, seeds, root = settings(quick)
    task = "rotten_tomatoes"
    levels = [0, 1, params["levels"]]
    stab = dict(stability_points=3 if quick else 7, max_eval_samples=64 if quick else 200)
    res = Result(NAME, "Stability (linear mode connectivity): error barrier vs sparsity", quick, machine())
    for seed in seeds:
        base = dict(params, task=task, seed=seed, output_root=str(root))

        def go(label, **kw):
            t0 = time.perf_counter()
            d = driver.run(RunConfig.from_flat(**{**base, **kw}))
            print(f"{label} seed {seed}: {d.name} ({time.perf_counter() - t0:.0f} s)", flush=True)
            return d.name

        trunk0 = go("IMP trunk, theta0")
        trunk_i = go(f"IMP trunk, theta_{REWIND}", rewind_step=REWIND)
        rand = go("random pruning", kind="random_prune", source_run=trunk0, source_levels=levels[1:])
        for label, src, rewind, lv in (("IMP", trunk0, 0, levels), ("IMP", trunk_i, REWIND, levels),
                                       ("random", rand, 0, levels[1:]), ("random", rand, REWIND, levels[1:])):
            go(f"stability {label} rewind {rewind}", kind="stability", source_run=src, source_levels=lv,
               rewind_step=rewind, **stab)
    table = curves.stability_table(curves.load_stability(root))
    res.add(f"Settings: {params}, task {task}, seeds {seeds}, rewind step {REWIND}; stability runs: {stab}; "
            f"runs in {root.relative_to(ROOT)}/. {RERUN_NOTE}")
    res.add(md_table(["method", "level", "sparsity", "error barrier (mean ± std)", "loss barrier (mean ± std)",
                      "mean error of the ends", "seeds"],
                     [[r["method"], r["level"], f"{100 * r['sparsity']:.0f}%",
                       f"{r['error_barrier']:.3f} ± {r['error_barrier_std']:.3f}",
                       f"{r['loss_barrier']:.3f} ± {r['loss_barrier_std']:.3f}", f"{r['end_error']:.3f}",
                       int(r["n_seeds"])] for _, r in table.iterrows()]))
    res.data = {"params": params, "stability": stab, "rewind_step": REWIND, "table": table.to_dict("records")}
    return res


if __name__ == "__main__":
    cli(NAME, __doc__, run)
