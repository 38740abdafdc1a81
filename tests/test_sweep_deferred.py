"""tickets_core.sweep: ``source_levels: highest_matching`` (jobs planned before their source level is known),
``params_from: target``, and the paper's grid planned offline.  Fake runner as in tests/test_sweep.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tickets_core import sweep
from tickets_core.core.config import RunConfig
from tickets_core.lottery.identity import resolve
from tickets_core.sweep import SweepError
from sweep_fixtures import BASE, FakeRunner, run

HEADER = BASE.split("trunks:")[0]  # output_root, figures_dir, defaults
HIGHEST = HEADER + """\
trunks:
  - {{name: imp, kind: imp, tasks: [rotten_tomatoes, imdb, tweet_sentiment], seeds: [0, 1], levels: 2, rate: 0.3}}
  - name: dense
    kind: dense
    tasks: [rotten_tomatoes, imdb, tweet_sentiment]
    seeds: [2, 3]
transfers:
  - trunk: imp
    targets: [rotten_tomatoes, imdb]
    seeds: [0]
    source_levels: highest_matching
"""

# (task, kind) -> level -> score (every seed alike but the dense runs of rotten_tomatoes, which spread)
SCORES = {("rotten_tomatoes", "imp"): {0: 0.82, 1: 0.81, 2: 0.79},   # threshold 0.8037: highest matching level 1
          ("imdb", "imp"): {0: 0.85, 1: 0.85, 2: 0.85},              # threshold 0.85: level 2
          ("tweet_sentiment", "imp"): {0: 0.60, 1: 0.50, 2: 0.40}}   # threshold 0.60: only the dense level


class MetricsRunner(FakeRunner):
    """Writes each run folder as a finished run would (config, status, level metrics) with the scores above."""

    def __call__(self, job: sweep.Job) -> dict:
        if job.run_dir is not None:
            cfg = resolve(RunConfig.from_flat(**job.parameters))
            assert cfg.run_name() == job.name  # a job runs exactly the run it is named after
            task = cfg.data.task
            if cfg.kind == "dense":
                levels = {0: {2: 0.80, 3: 0.84}.get(cfg.seed, 0.82) if task == "rotten_tomatoes"
                          else SCORES[(task, "imp")][0]}
            elif cfg.kind == "imp":
                levels = SCORES[(task, "imp")]
            else:
                levels = {k: 0.5 for k in cfg.source_levels}
            job.run_dir.mkdir(parents=True, exist_ok=True)
            (job.run_dir / "config.json").write_text(cfg.to_json())
            for k, score in levels.items():
                (job.run_dir / f"level_{k:02d}").mkdir(exist_ok=True)
                source = ({"run": cfg.source_run, "task": "?", "level": k} if cfg.source_run else None)
                (job.run_dir / f"level_{k:02d}" / "metrics.json").write_text(json.dumps({
                    "level": k, "sparsity": 0.3 * k if cfg.kind != "dense" else 0.0, "main_metric": "accuracy",
                    "score": score, "eval": {"accuracy": score}, "train": {}, "source": source, "seed": cfg.seed,
                    "task": task, "kind": cfg.kind}))
        return super().__call__(job)


def test_highest_matching_transfers_are_resolved_once_their_sources_are_done(make_sweep, tmp_path, capsys):
    path = make_sweep(HIGHEST)
    plan = sweep.plan_sweep(path)
    deferred = [j for j in plan.jobs if j.resolver is not None]
    assert len(deferred) == 4 and all("resolved after its source runs" in j.label for j in deferred)  # 3 x 2 - 2
    job = next(j for j in deferred if j.label.startswith("transfer rotten_tomatoes->imdb seed 0"))
    src = {j.name for j in plan.jobs if j.is_run and j.resolver is None and j.parameters["task"] == "rotten_tomatoes"}
    assert set(job.deps) == src and len(src) == 4  # both IMP seeds (the level is a mean over seeds), both dense
    assert "source_levels" not in job.parameters
    assert sweep.main([str(path), "--dry-run"]) == 0
    assert "at highest_matching (resolved after its source runs)" in capsys.readouterr().out
    outcomes = {o.job.label: o for o in run(plan, MetricsRunner(), workers=2)}
    done = {label.split(" at level")[0]: o for label, o in outcomes.items() if " at level " in label}
    level = {label: int(label.split(" at level ")[1].split()[0]) for label in outcomes if " at level " in label}
    assert level == {"transfer rotten_tomatoes->imdb seed 0 at level 1 (highest matching)": 1,
                     "transfer imdb->rotten_tomatoes seed 0 at level 2 (highest matching)": 2}
    assert all(o.status == "ok" for o in done.values())
    resolved = done["transfer rotten_tomatoes->imdb seed 0"].job
    assert resolved.name == resolved.run_dir.name and resolved.parameters["source_levels"] == [1]
    assert resolved.name.startswith("transfer-imdb-") and resolved.resolver is None
    src_run = resolved.parameters["source_run"]
    assert resolved.name == resolve(RunConfig.from_flat(kind="transfer", task="imdb", seed=0, model="tiny-bert",
                                                        max_steps=2, levels=2, rate=0.3, source_levels=[1],
                                                        source_run=src_run)).run_name()
    assert src_run in src and src_run.startswith("imp-rotten_tomatoes-")
    # tweet_sentiment's IMP never matches past its dense level: nothing to transfer, said in one line
    for target in ("rotten_tomatoes", "imdb"):
        o = outcomes[f"transfer tweet_sentiment->{target} seed 0 at highest_matching (resolved after its source runs)"]
        assert o.status == "skipped" and "\n" not in o.error
        assert o.error.startswith("source_levels: highest_matching: tweet_sentiment (IMP, 2 seed(s)): only its "
                                  "dense level is matching")
    # planned again on the finished runs: resolved at plan time, to the very runs that ran, found done
    again = sweep.plan_sweep(path)
    names = {j.name for j in again.jobs}
    assert {o.job.name for o in done.values()} <= names
    second = {o.job.label: o.status for o in run(again, MetricsRunner())}
    assert {s for label, s in second.items() if " at level " in label} == {"done"}


def test_highest_matching_needs_a_dense_baseline_trained_like_the_trunk(make_sweep):
    no_dense = HIGHEST.replace("    tasks: [rotten_tomatoes, imdb, tweet_sentiment]\n    seeds: [2, 3]",
                               "    tasks: [imdb, tweet_sentiment]\n    seeds: [2, 3]")
    # the error names the line of the entry's source_levels
    with pytest.raises(SweepError, match=r"sweep.yaml:16: transfer rotten_tomatoes->imdb seed 0: source_levels: "
                                         r"highest_matching needs the dense baseline of rotten_tomatoes: no 'dense' "
                                         r"run of rotten_tomatoes trained like its trunk imp-rotten_tomatoes-"):
        sweep.plan_sweep(make_sweep(no_dense))
    other_lr = HIGHEST.replace("    seeds: [2, 3]", "    seeds: [2, 3]\n    learning_rate: 0.001")
    with pytest.raises(SweepError, match=r"sweep.yaml:17: .* trained like its trunk .* \(same model, data and "
                                         r"fine-tuning settings\)"):
        sweep.plan_sweep(make_sweep(other_lr))
    with pytest.raises(SweepError, match=r"sweep.yaml:1: n_std must be a number >= 0, got -1"):
        sweep.plan_sweep(make_sweep("n_std: -1\n" + HIGHEST))


def test_the_sweeps_n_std_decides_the_level_and_reaches_the_analysis(make_sweep):
    text = "n_std: 0\n" + HIGHEST + "analysis:\n  - sparsity_curves\n  - mask_overlap\n"
    plan = sweep.plan_sweep(make_sweep(text))
    assert plan.job("analysis:sparsity_curves").parameters["n_std"] == 0
    assert "n_std" not in plan.job("analysis:mask_overlap").parameters  # that notebook has no matching criterion
    outcomes = run(plan, MetricsRunner())
    levels = sorted(o.job.label for o in outcomes if " at level " in o.job.label)
    # threshold = the dense mean: rotten_tomatoes (0.82) matches at level 0 only -> skipped; imdb still at level 2
    assert levels == ["transfer imdb->rotten_tomatoes seed 0 at level 2 (highest matching)"]


TARGET = HEADER + """\
trunks:
  - {{name: imp, kind: imp, tasks: [rotten_tomatoes], seeds: [0], levels: 2, rate: 0.3}}
  - {{name: imp_imdb, kind: imp, tasks: [imdb], seeds: [0], levels: 2, rate: 0.3, learning_rate: 0.003}}
transfers:
  - trunk: imp
    targets: [imdb]
    seeds: [0]
    source_levels: [1]
    params_from: target
"""


def test_transfers_trained_like_their_target(make_sweep):
    plan = sweep.plan_sweep(make_sweep(TARGET))
    tr = next(j for j in plan.jobs if j.label == "transfer rotten_tomatoes->imdb seed 0")
    assert tr.parameters["learning_rate"] == 0.003 and tr.parameters["source_levels"] == [1]
    assert tr.parameters["source_run"].startswith("imp-rotten_tomatoes-")
    default = sweep.plan_sweep(make_sweep(TARGET.replace("    params_from: target\n", "")))
    assert "learning_rate" not in next(j for j in default.jobs if j.label.startswith("transfer")).parameters
    with pytest.raises(SweepError, match=r"sweep.yaml:14: params_from: target needs one imp trunk entry with task "
                                         r"'tweet_sentiment'; this file has 0"):
        sweep.plan_sweep(make_sweep(TARGET.replace("targets: [imdb]", "targets: [tweet_sentiment]")))
    with pytest.raises(SweepError, match="sweep.yaml:14: params_from must be 'source' or 'target', got 'both'"):
        sweep.plan_sweep(make_sweep(TARGET.replace("params_from: target", "params_from: both")))


def test_the_papers_grid_plans_offline():
    """sweeps/paper.yaml: 11 tasks, dense and every baseline over >= 3 seeds, 110 transfer pairs at each source's
    highest matching level and at 50%/70%, each trained with its target's budget (planned without the hub)."""
    from collections import Counter, defaultdict

    paper = Path(__file__).resolve().parent.parent / "sweeps" / "paper.yaml"
    plan = sweep.plan_sweep(paper)
    runs = [j for j in plan.jobs if j.is_run]
    tasks = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "squad", "mlm"}
    seeds: dict = defaultdict(set)
    for j in runs:
        seeds[(j.parameters["kind"], j.parameters["task"])].add(j.parameters["seed"])
    for kind in ("imp", "dense", "oneshot", "standard", "random_prune", "random_reinit"):
        assert {t for k, t in seeds if k == kind} == tasks, kind
        assert all(len(s) >= 3 for (k, _), s in seeds.items() if k == kind), kind
    transfers = [j for j in runs if j.parameters["kind"] == "transfer"]
    imp = [j for j in transfers if j.parameters["source_run"].startswith("imp-")]
    pairs = Counter((j.label.split()[1], j.resolver is not None) for j in imp)
    assert len(pairs) == 2 * 110 and set(pairs.values()) == {3}  # every pair, both ways, over 3 seeds
    ref = Counter((j.label.split()[1], j.resolver is not None) for j in transfers if j not in imp)
    assert len(ref) == 2 * 10 and set(ref.values()) == {3}  # the reference-style MLM ticket (standard pruning)
    assert all(j.parameters["source_run"].startswith("standard-mlm-") for j in transfers if j not in imp)
    budget = {"mlm": {"max_steps": 10000, "batch_size": 16, "learning_rate": 5e-5},
              "squad": {"num_epochs": 4, "batch_size": 16, "learning_rate": 3e-5, "max_steps": None},
              "sst2": {"num_epochs": 3, "batch_size": 32, "learning_rate": 2e-5, "max_steps": None}}
    for j in runs:
        want = budget.get(j.parameters["task"])
        if want:  # IMP, dense, baselines and transfers *into* the task alike
            assert {k: j.parameters.get(k) for k in want} == want, j.label
    fixed = [j for j in runs if j.parameters["kind"] == "transfer" and j.resolver is None]
    assert {tuple(j.parameters["source_levels"]) for j in fixed} == {(5, 7)}
    deferred = next(j for j in imp if j.label.startswith("transfer mlm->squad seed 1") and j.resolver is not None)
    assert sorted(d.split("-")[0] for d in deferred.deps) == ["dense"] * 3 + ["imp"] * 3
    # from standard pruning: its runs and the dense seeds of its baseline (the dense runs and IMP's level 0)
    deferred = next(j for j in transfers if j not in imp and j.label.startswith("transfer mlm->squad seed 1")
                    and j.resolver is not None)
    assert sorted(d.split("-")[0] for d in deferred.deps) == ["dense"] * 3 + ["imp"] * 3 + ["standard"] * 3
    assert {a.parameters.get("level") for a in plan.jobs if a.notebook.stem == "transfer_matrix"} == {
        "highest_matching", 5, 7}
