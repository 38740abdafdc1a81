"""Early-bird tickets vs IMP, and against the control that cuts training at the same point without looking.

For each task and seed, through the project's driver (``driver.run``; resumable: run again after an
interruption and finished levels are skipped):

* an IMP trunk (every level trained to the end);
* an early-bird trunk: the same config plus the early-bird options (You et al.'s queue: a level stops once
  the next level's mask is within eps = 0.2% of the prunable weights of each mask of the last quarter of the
  level, checked every 2 steps, never before a quarter of the level).  eps was set from one pilot level
  (rotten_tomatoes, seed 0, level 0): the largest distance over a quarter-level queue rose to 0.32% at step
  10 of 32 and fell to 0.06% at the end, as the learning rate decays to zero; the old eps of 1% between
  consecutive checks stopped every level at the first step allowed;
* the control: a trunk that cuts every level at a fixed fraction of its steps with no criterion
  (``early_cut_fraction``), the fraction being the early-bird trunks' mean stop fraction over levels and
  seeds, so both spend the same steps on average; if the criterion is worth anything, its masks (stopped
  where the mask settled) beat the cut's (stopped at a fixed point);
* ``retrain`` branches of both: each found mask fine-tuned from theta0 with the full budget (the method's
  score); their dense level 0 is IMP's level 0, copied (``dense_level_from``), not trained again.

Steps to reach level k: IMP = its levels 0..k; early-bird or cut = its trunk's levels 0..k-1 + the retrain's
level k (:func:`tickets_core.analysis.curves.early_bird_table`).  Scores are compared over seeds (mean, std,
n).  The JSON keeps every early-stopped level's stop step, its level's steps and the early-bird distance
curve, so whether stops vary with the mask can be read off it.

Setting (full mode): the offline MiniLM (pooler kept dense, as in the demo), rotten_tomatoes, 1,024 training
sentences of <= 64 tokens, one epoch per level (32 steps of 32), lr 1e-4 with 10% warm-up, 400 validation
examples, IMP to 60% sparsity in 3 levels (20% of the original weights per level), seeds 0 and 1.  Runs go
to runs/beyond/ (quick: runs/beyond_quick/); the figures are drawn by notebooks/early_bird.ipynb from that
folder.
"""

from __future__ import annotations

import time

from .common import ROOT, Result, cli, machine, md_table

NAME = "bench_early_bird"
RERUN_NOTE = ("Finished runs are not rerun: the tables are rebuilt from the run folders, so the time and load "
              "average in the header describe the last invocation; the training times are those fine_tune "
              "recorded when each run trained (conditions of the measured run: benchmarks/README.md).")
EARLY_BIRD = {"early_bird_every": 2, "early_bird_eps": 0.002, "early_bird_span": 0.25,
              "early_bird_min_fraction": 0.25}


def settings(quick: bool) -> tuple[dict, list[str], list[int], object]:
    common = dict(model="minilm", include_pooler=False, max_seq_length=64, batch_size=32, learning_rate=1e-4,
                  warmup_ratio=0.1, num_epochs=1.0, device="cpu", progress=False, rate=0.2)
    if quick:
        return ({**common, "max_train_samples": 128, "max_eval_samples": 64, "levels": 2}, ["rotten_tomatoes"], [0],
                ROOT / "runs" / "beyond_quick")
    return ({**common, "max_train_samples": 1024, "max_eval_samples": 400, "levels": 3},
            ["rotten_tomatoes"], [0, 1], ROOT / "runs" / "beyond")


def _timed(label: str, cfg, log) -> object:
    from tickets_core.lottery import driver
    t0 = time.perf_counter()
    run_dir = driver.run(cfg)
    log(f"{label}: {run_dir.name} ({time.perf_counter() - t0:.0f} s)")
    return run_dir


def stop_fraction(trunks: list) -> float | None:
    """The early-bird trunks' mean stop fraction over their early-stopped levels (a level that ran to the end
    counts 1.0), rounded to 0.01; None when every level ran to the end (nothing to cut)."""
    from tickets_core.core.fsio import read_json
    from tickets_core.runs.paths import RunPaths

    fracs = []
    for run_dir in trunks:
        paths = RunPaths(run_dir)
        for level in paths.levels():
            eb = read_json(paths.metrics(level))["train"].get("early_bird")
            if eb:
                fracs.append(1.0 if eb["stopped_at"] is None else eb["stopped_at"] / eb["total_steps"])
    mean = sum(fracs) / len(fracs) if fracs else 1.0
    return None if mean >= 0.995 else round(mean, 2)


def run_all(params: dict, tasks: list[str], seeds: list[int], root, log=print) -> float | None:
    """IMP, the early-bird trunk, the cut control and both retrains for every task and seed (resumable).
    Returns the control's cut fraction (None: no early-bird level stopped, so there is nothing to cut)."""
    from tickets_core.core.config import RunConfig

    birds, imps = {}, {}
    for task in tasks:
        for seed in seeds:
            base = dict(params, task=task, seed=seed, output_root=str(root))
            imps[task, seed] = _timed(f"IMP {task} seed {seed}", RunConfig.from_flat(**base), log)
            birds[task, seed] = _timed(f"early-bird trunk {task} seed {seed}",
                                       RunConfig.from_flat(**base, **EARLY_BIRD), log)
    fraction = stop_fraction(list(birds.values()))
    for (task, seed), bird in birds.items():
        base = dict(params, task=task, seed=seed, output_root=str(root), dense_level_from=imps[task, seed].name)
        _timed(f"retrain of early-bird {task} seed {seed}",
               RunConfig.from_flat(**base, kind="retrain", source_run=bird.name), log)
        if fraction is None:
            continue
        cut = _timed(f"cut trunk ({fraction:g} of each level) {task} seed {seed}",
                     RunConfig.from_flat(**{k: v for k, v in base.items() if k != "dense_level_from"},
                                         early_cut_fraction=fraction), log)
        _timed(f"retrain of cut {task} seed {seed}", RunConfig.from_flat(**base, kind="retrain", source_run=cut.name),
               log)
    return fraction


def stops(root) -> list[dict]:
    """Every early-stopped trunk level: method, seed, level, the step it stopped at and its level's steps."""
    from tickets_core.analysis import curves
    from tickets_core.runs.walk import folders

    runs, out = folders(root), []
    for name in runs.of_kind("imp"):
        prune = runs.config(name)["prune"]
        for level, m in runs.levels(name):
            rec = m["train"].get("early_bird") or m["train"].get("early_cut")
            if not rec:
                continue
            out.append({"task": m["task"], "method": curves.early_method(prune), "seed": m["seed"], "level": level,
                        "stopped_at": rec["stopped_at"], "steps_total": rec["total_steps"],
                        "curve": rec.get("curve")})
    return sorted(out, key=lambda r: (r["task"], r["method"], r["seed"], r["level"]))


def run(quick: bool) -> Result:
    from tickets_core.analysis import curves
    params, tasks, seeds, root = settings(quick)
    res = Result(NAME, "Early-bird tickets vs IMP and vs a cut at the same point (steps to reach each sparsity, "
                       "score there)", quick, machine())
    fraction = run_all(params, tasks, seeds, root)
    table = curves.early_bird_table(root)
    summary = curves.early_bird_summary(table)
    stopped = stops(root)
    rows = []
    for _, r in summary.iterrows():
        rows.append([r["task"], r["method"].split(" (")[0], r["level"], f"{100 * r['sparsity']:.0f}%",
                     f"{r['score']:.3f} ± {r['score_std']:.3f}", int(r["n_seeds"]), f"{r['steps']:.0f}",
                     f"{r['time_s']:.0f}",
                     "" if r["method"] == "IMP" else f"{100 * r['steps_saved']:.0f}%",
                     "" if r["method"] == "IMP" else f"{r['score_diff']:+.3f} ({r['score_vs_imp']:+.2f} std)"])
    res.add(f"Settings: {params}; early-bird {EARLY_BIRD}; control: cut at {fraction} of each level; tasks "
            f"{tasks}; seeds {seeds}; runs in {root.relative_to(ROOT)}/. {RERUN_NOTE}")
    res.add(md_table(["task", "method", "level", "sparsity", "score (mean ± std over seeds)", "seeds",
                      "steps to reach", "train s to reach", "steps saved", "score - IMP"], rows))
    res.add(md_table(["task", "method", "seed", "level", "stopped at step / level steps"],
                     [[r["task"], r["method"], r["seed"], r["level"], f"{r['stopped_at']} / {r['steps_total']}"]
                      for r in stopped]))
    bird_stops = [r["stopped_at"] for r in stopped if r["curve"] is not None]
    res.add(f"Early-bird stop steps: {bird_stops} (distinct: {sorted(set(s for s in bird_stops if s is not None))}; "
            f"the earliest allowed is {EARLY_BIRD['early_bird_min_fraction']:g} of the level).")
    res.data = {"params": params, "early_bird": EARLY_BIRD, "cut_fraction": fraction,
                "table": table.to_dict("records"), "summary": summary.to_dict("records"), "stops": stopped}
    return res


if __name__ == "__main__":
    cli(NAME, __doc__, run)
