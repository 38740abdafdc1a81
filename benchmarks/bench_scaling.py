"""Benchmark 5: time per IMP level vs model size and vs number of levels (through ``tickets_core.lottery.driver.run``).

The same IMP trunk (rotten_tomatoes, the same training examples and batch
order, batch 32, ``max_steps`` optimizer steps per level, 64 validation
examples) for three models of the BERT family, all through the project's
real driver (build, theta0 copy, prune, rewind, fine-tune, evaluate,
atomic writes):

* tiny-bert (2 layers, 64 wide, random), MiniLM (offline pre-trained,
  6 x 384), bert-base (12 x 768, random init from the config, no download;
  a few steps only: one step takes tens of seconds on this CPU).

Each level's end time is the modification time of its ``metrics.json``;
level k's time is the gap to the previous level's end (level 0 from the
start of ``driver.run``, so it includes model building). The train time is
``fine_tune``'s own ``time_s`` (which includes its final evaluation).
Projected: a full Rotten Tomatoes level (7,678 training sentences x 3
epochs = 720 steps) = per-level overhead + 720 x measured seconds/step.
The plot goes to figures/scaling.png and .pdf.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from .common import FIGURES_DIR, Result, cli, machine, md_table

NAME = "bench_scaling"
FULL_LEVEL_STEPS = 720
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def _models(quick: bool):
    from tickets_core.core.config import ModelConfig

    # name, model config, levels after level 0, steps per level
    if quick:
        return [("tiny-bert", ModelConfig("tiny-bert"), 3, 2), ("MiniLM", ModelConfig("minilm"), 1, 1)]
    return [("tiny-bert", ModelConfig("tiny-bert"), 5, 4), ("MiniLM", ModelConfig("minilm"), 3, 4),
            ("bert-base", ModelConfig("tiny-bert", config_overrides=BERT_BASE), 2, 2)]


def run_trunk(mcfg, levels: int, steps: int, root: Path) -> dict:
    from tickets_core.lottery import driver
    from tickets_core.core.config import DataConfig, PruneConfig, RunConfig, TrainConfig
    from tickets_core.models.build import build_model
    from tickets_core.models.prunable import prunable_parameters

    cfg = RunConfig(kind="imp", seed=0, model=mcfg,
                    data=DataConfig(task="rotten_tomatoes", max_train_samples=32 * steps, max_eval_samples=64),
                    train=TrainConfig(batch_size=32, max_steps=steps, eval_batch_size=64, progress=False,
                                      device="cpu", precision="fp32"),
                    prune=PruneConfig(levels=levels), output_root=str(root))
    n_params = sum(p.numel() for p in prunable_parameters(build_model(mcfg, "classification")).values())
    t0 = time.time()
    run_dir = driver.run(cfg)
    ends, train_s, sparsity = [], [], []
    for k in range(levels + 1):
        f = run_dir / f"level_{k:02d}" / "metrics.json"
        ends.append(f.stat().st_mtime - t0)
        m = json.loads(f.read_text())
        train_s.append(m["train"]["time_s"])
        sparsity.append(m["sparsity"])
    level_s = [ends[0]] + [ends[k] - ends[k - 1] for k in range(1, levels + 1)]
    eval_s = _eval_time(cfg)
    return {"eval_s": eval_s, "prunable": n_params, "levels": levels + 1, "steps_per_level": steps, "cumulative_s": ends,
            "level_s": level_s, "train_s": train_s, "sparsity": sparsity}


def _eval_time(cfg) -> float:
    """Seconds of one ``evaluate`` on the run's validation examples (fine_tune's time_s includes one)."""
    from tickets_core.models.build import build_model, load_tokenizer
    from tickets_core.tasks import get_task
    from tickets_core.training.loop import evaluate

    task = get_task(cfg.data.task)
    data = task.load(cfg.data, load_tokenizer(cfg.model))
    model = build_model(cfg.model, task.head, task.num_labels)
    ts = []
    for _ in range(2):
        t0 = time.perf_counter()
        evaluate(model, data, cfg.train)
        ts.append(time.perf_counter() - t0)
    return min(ts)


def plot(records: dict, path_stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(records)
    xs = [records[n]["prunable"] for n in names]
    a.loglog(xs, [records[n]["step_s"] for n in names], "o-", label="measured: seconds per training step")
    a.loglog(xs, [records[n]["projected_level_s"] for n in names], "s--",
             label=f"projected: full level ({FULL_LEVEL_STEPS} steps)")
    for n, x in zip(names, xs):
        a.annotate(n, (x, records[n]["step_s"]), textcoords="offset points", xytext=(4, -12))
    a.set_xlabel("prunable weights")
    a.set_ylabel("seconds")
    a.set_title("Time per IMP level vs model size")
    a.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for n in names:
        r = records[n]
        b.plot(range(r["levels"]), r["level_s"], "o-", label=f"{n}: per level ({r['steps_per_level']} steps/level)")
        b.plot(range(r["levels"]), r["cumulative_s"], ":", color=b.lines[-1].get_color(), label=f"{n}: cumulative")
    b.set_xlabel("IMP level (0 = dense, includes model build)")
    b.set_ylabel("wall time (s)")
    b.set_yscale("log")
    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    b.set_title("Time vs number of levels (measured, driver.run)")
    b.legend(fontsize=7)
    fig.tight_layout()
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path_stem.with_suffix(".png"), dpi=150)
    fig.savefig(path_stem.with_suffix(".pdf"))
    plt.close(fig)


def run(quick: bool) -> Result:
    res = Result(NAME, "5. Scaling: time per IMP level vs model size and number of levels", quick, machine())
    records = {}
    with tempfile.TemporaryDirectory() as d:
        for name, mcfg, levels, steps in _models(quick):
            r = run_trunk(mcfg, levels, steps, Path(d))
            # per-level overhead = level time - training steps; later levels only (level 0 also builds the model)
            later = range(1, r["levels"])
            step_s = sum(r["train_s"][k] - r["eval_s"] for k in later) / (len(later) * steps)
            overhead = sum(r["level_s"][k] - r["train_s"][k] for k in later) / len(later) + r["eval_s"]
            r.update(step_s=step_s, overhead_s=overhead,
                     projected_level_s=overhead + FULL_LEVEL_STEPS * step_s)
            records[name] = r
            print(f"[{NAME}] {name}: {r}", flush=True)
    rows = [[n, f"{r['prunable']:,}", r["steps_per_level"], f"{r['step_s']:.2f}", f"{r['overhead_s']:.2f}",
             ", ".join(f"{x:.1f}" for x in r["level_s"]), f"{r['projected_level_s'] / 60:.1f}",
             f"{r['projected_level_s'] * 10 / 3600:.2f}"]
            for n, r in records.items()]
    res.add("Same rotten_tomatoes examples and batch order for every model; timings from the project's "
            "`driver.run`. s/step = (`fine_tune` time - one `evaluate`, timed separately) / steps, levels >= 1; "
            "'overhead' = the rest of a level (prune, rewind, evaluation on 64 examples, mask/metrics writes). Projection = overhead + 720 steps x s/step (one full-data level, 3 epochs); "
            "10 levels (0-9, the paper's 90%) = 10x that: masking keeps dense kernels, so a level costs the same "
            "at every sparsity.")
    res.add(md_table(["model", "prunable weights", "steps/level", "s/step", "overhead s/level",
                      "measured s per level (0, 1, ...)", "projected min per full level",
                      "projected h for levels 0-9"], rows))
    if quick:
        res.add("Quick mode: bert-base is left out (one step takes tens of seconds here); the full run includes it.")
    stem = FIGURES_DIR / ("scaling_quick" if quick else "scaling")
    plot(records, stem)
    res.add(f"![scaling](../../figures/{stem.name}.png)")
    res.data = {"records": records, "figure": str(stem.with_suffix(".png").relative_to(FIGURES_DIR.parent))}
    return res


def replot(quick: bool = False) -> None:
    """Redraw the figure from the stored results JSON (no measuring)."""
    from .common import RESULTS_DIR

    recs = json.loads((RESULTS_DIR / f"{NAME}{'_quick' if quick else ''}.json").read_text())["data"]["records"]
    plot(recs, FIGURES_DIR / ("scaling_quick" if quick else "scaling"))


if __name__ == "__main__":
    cli(NAME, __doc__, run)
