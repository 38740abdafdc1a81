"""Early-bird tickets vs IMP: training steps spent to reach each sparsity, and the score there.

For each task and seed, three runs through the project's driver (``driver.run``;
resumable: run again after an interruption and finished levels are skipped):

* an IMP trunk (every level trained to the end);
* an early-bird trunk: the same config plus ``early_bird_every/eps/window``
  (a level stops once the next level's mask changed by less than eps for
  ``window`` successive checks);
* a ``retrain`` branch of the early-bird trunk: each found mask fine-tuned from
  theta0 with the full budget (the early-bird method's score).

Steps to reach level k: IMP = its levels 0..k; early-bird = its trunk's levels
0..k-1 + the retrain's level k (:func:`tickets_core.analysis.curves.early_bird_table`).
Scores are compared over seeds (mean, std, n).  Target (issue 13): >= 30% of
IMP's steps saved at no more than 1 IMP std lower score.

Setting (full mode): the offline MiniLM (pooler kept dense, as in the demo),
rotten_tomatoes and tweet_sentiment, 1,024 training sentences of <= 64 tokens,
one epoch per level (32 steps of 32), lr 1e-4 with 10% warm-up, 400 validation
examples, IMP to 60% sparsity in 3 levels (20% of the original weights per
level), seeds 0 and 1; early-bird check every 4 steps, eps 0.01, window 3.
Runs go to runs/beyond/ (quick: runs/beyond_quick/); the figures are drawn
by notebooks/early_bird.ipynb from that folder.
"""

from __future__ import annotations

import time

from .common import ROOT, Result, cli, machine, md_table

NAME = "bench_early_bird"
RERUN_NOTE = ("Finished runs are not rerun: the tables are rebuilt from the run folders, so the time and load "
              "average in the header describe the last invocation; the training times are those fine_tune "
              "recorded when each run trained (conditions of the measured run: benchmarks/README.md).")
EARLY_BIRD = {"early_bird_every": 4, "early_bird_eps": 0.01, "early_bird_window": 3}


def settings(quick: bool) -> tuple[dict, list[str], list[int], object]:
    common = dict(model="minilm", include_pooler=False, max_seq_length=64, batch_size=32, learning_rate=1e-4,
                  warmup_ratio=0.1, num_epochs=1.0, device="cpu", progress=False, rate=0.2)
    if quick:
        return ({**common, "max_train_samples": 128, "max_eval_samples": 64, "levels": 2}, ["rotten_tomatoes"], [0],
                ROOT / "runs" / "beyond_quick")
    return ({**common, "max_train_samples": 1024, "max_eval_samples": 400, "levels": 3},
            ["rotten_tomatoes", "tweet_sentiment"], [0, 1], ROOT / "runs" / "beyond")


def run_all(params: dict, tasks: list[str], seeds: list[int], root, log=print) -> None:
    """The IMP trunk, the early-bird trunk and its retrain branch for every task and seed (resumable)."""
    from tickets_core.lottery import driver
    from tickets_core.core.config import RunConfig

    for task in tasks:
        for seed in seeds:
            base = dict(params, task=task, seed=seed, output_root=str(root))
            for label, extra in (("IMP", {}), ("early-bird trunk", EARLY_BIRD)):
                t0 = time.perf_counter()
                run_dir = driver.run(RunConfig.from_flat(**base, **extra))
                log(f"{label} {task} seed {seed}: {run_dir.name} ({time.perf_counter() - t0:.0f} s)")
                if extra:
                    t0 = time.perf_counter()
                    retrain = driver.run(RunConfig.from_flat(**base, kind="retrain", source_run=run_dir.name))
                    log(f"retrain {task} seed {seed}: {retrain.name} ({time.perf_counter() - t0:.0f} s)")


def run(quick: bool) -> Result:
    from tickets_core.analysis import curves
    params, tasks, seeds, root = settings(quick)
    res = Result(NAME, "Early-bird tickets vs IMP (steps to reach each sparsity, score there)", quick, machine())
    run_all(params, tasks, seeds, root)
    table = curves.early_bird_table(root)
    summary = curves.early_bird_summary(table)
    checks = curves.load_early_bird(root)
    n_checks = checks.groupby(["run", "level"]).size()
    stops = checks.drop_duplicates(["run", "level"]).sort_values(["task", "seed", "level"])
    rows = []
    for _, r in summary.iterrows():
        rows.append([r["task"], r["method"].split(" (")[0], r["level"], f"{100 * r['sparsity']:.0f}%",
                     f"{r['score']:.3f} ± {r['score_std']:.3f}", int(r["n_seeds"]), f"{r['steps']:.0f}",
                     f"{r['time_s']:.0f}",
                     "" if r["method"] == "IMP" else f"{100 * r['steps_saved']:.0f}%",
                     "" if r["method"] == "IMP" else f"{r['score_diff']:+.3f} ({r['score_vs_imp']:+.2f} std)"])
    res.add(f"Settings: {params}; early-bird {EARLY_BIRD}; tasks {tasks}; seeds {seeds}; runs in "
            f"{root.relative_to(ROOT)}/. {RERUN_NOTE}")
    res.add(md_table(["task", "method", "level", "sparsity", "score (mean ± std over seeds)", "seeds",
                      "steps to reach", "train s to reach", "steps saved", "score - IMP"], rows))
    iou = curves.early_bird_overlap(root).set_index(["task", "seed", "level"])["iou"]
    res.add(md_table(["task", "seed", "level", "sparsity", "stopped at step", "checks",
                      "IoU of the next mask with IMP's"],
                     [[r["task"], r["seed"], r["level"], f"{100 * r['sparsity']:.0f}%",
                       "ran to the end" if r["stopped_at"] != r["stopped_at"] else int(r["stopped_at"]),
                       int(n_checks[(r["run"], r["level"])]),
                       f"{iou.get((r['task'], r['seed'], r['level'] + 1), float('nan')):.4f}"]
                      for _, r in stops.iterrows()]))
    eb = summary[(summary["method"] != "IMP") & (summary["level"] > 0)]
    for _, r in eb.iterrows():
        ok = r["steps_saved"] >= 0.30 and (r["score_diff"] >= 0 or r["score_vs_imp"] >= -1.0)
        res.target(f"{r['task']} {100 * r['sparsity']:.0f}%: >= 30% steps saved, score >= IMP - 1 std",
                   f"{100 * r['steps_saved']:.0f}% saved, {r['score_diff']:+.3f} ({r['score_vs_imp']:+.2f} std)", ok)
    res.data = {"params": params, "early_bird": EARLY_BIRD, "table": table.to_dict("records"),
                "summary": summary.to_dict("records")}
    return res


if __name__ == "__main__":
    cli(NAME, __doc__, run)
