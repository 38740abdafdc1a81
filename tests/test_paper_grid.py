"""sweeps/paper.yaml before anyone spends GPU-hours on it: its miniature keeps every rule and runs end to end,
the sweep and the analysis agree on its dense baselines, nothing is trained twice, and the dry run says what it
costs (docs/paper-grid.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tickets_core import analysis, sweep
from tickets_core.core.config import RunConfig
from tickets_core.lottery.identity import resolve
from tickets_core.sweep import SweepError
from tickets_core.sweep.miniature import map_level, write_miniature
from tickets_core.sweep.reuse import dense_key

PAPER = Path(__file__).resolve().parent.parent / "sweeps" / "paper.yaml"
NO_POOLER = ("squad", "mlm")


@pytest.fixture(scope="module")
def paper_plan():
    """sweeps/paper.yaml planned once (offline: nothing is read from the hub)."""
    return sweep.plan_sweep(PAPER)


def rules(doc: dict) -> dict:
    """What a sweep file asks for, without its scale: trunk kinds and names, branch kinds per trunk, transfer
    rules per trunk, analysis notebooks."""
    def levels(e):
        v = e.get("source_levels")
        return "highest" if v == "highest_matching" else "fixed" if isinstance(v, list) else "all"
    return {"trunks": sorted((t["name"], t["kind"]) for t in doc["trunks"]),
            "branches": sorted((tuple(b["kinds"]), b["trunk"], levels(b)) for b in doc["branches"]),
            "transfers": sorted({(x["trunk"], levels(x), x.get("params_from")) for x in doc["transfers"]}),
            "analysis": [(a, a) if isinstance(a, str) else (a["notebook"], a.get("name")) for a in doc["analysis"]]}


def test_the_miniature_keeps_every_rule_and_replaces_only_scale(tmp_path):
    path = write_miniature(PAPER, tmp_path / "mini")
    text = path.read_text()
    assert write_miniature(PAPER, tmp_path / "mini").read_text() == text  # the same bytes: the command resumes
    mini, paper = yaml.safe_load(text), yaml.safe_load(PAPER.read_text())
    assert rules(mini) == rules(paper)
    assert mini["defaults"]["model"] == "tiny-bert" and mini["defaults"]["levels"] == 2 and mini["n_std"] == 1.0
    assert {t for e in mini["trunks"] for t in e["tasks"]} == {"sst2", "stsb", "squad", "mlm"}
    assert all(len(e["seeds"]) == 1 for e in mini["trunks"])
    assert {(e["name"], e["seeds"][0]) for e in mini["trunks"] if e["kind"] in ("imp", "dense")} == {
        ("imp", 0), ("dense", 3), ("imp_squad", 0), ("dense_squad", 3), ("imp_mlm", 0), ("dense_mlm", 3)}
    pairs = [(x["sources"][0], x["targets"][0]) for x in mini["transfers"]]
    assert all((s in NO_POOLER) != (t in NO_POOLER) for s, t in pairs)  # every mask crosses the pooler divide
    assert {t for _, t in pairs} == {"sst2", "stsb", "squad", "mlm"}
    assert {tuple(x["source_levels"]) for x in mini["transfers"] if isinstance(x["source_levels"], list)} == {(1, 2)}
    assert [a.get("level") for a in mini["analysis"] if isinstance(a, dict) and "level" in a] == [
        "highest_matching", 1, 2]
    assert {a.get("sparsity") for a in mini["analysis"] if isinstance(a, dict) and "sparsity" in a} == {0.1}
    for lr in (3e-5, 5e-5):  # learning rates are settings, not scale
        assert any(e.get("learning_rate") == lr for e in mini["trunks"])
    for folder in mini["data_dirs"].values():
        assert Path(folder).is_dir() and any(Path(folder).iterdir())
    plan = sweep.plan_sweep(path)
    assert sum(j.resolver is not None for j in plan.jobs) == 5  # one per highest_matching source
    assert sum(bool(j.parameters.get("dense_level_from")) for j in plan.jobs) == 12  # oneshot, standard, random_prune


def test_levels_map_to_the_same_fraction_of_the_schedule():
    assert [map_level(k, 9) for k in range(10)] == [0, 1, 1, 1, 1, 1, 1, 2, 2, 2]
    assert map_level(5, 9) == 1 and map_level(7, 9) == 2 and map_level(3, 3) == 2 and map_level(0, 0) == 0


def test_a_file_the_miniature_cannot_shrink_is_one_line(make_sweep, tmp_path):
    from sweep_fixtures import BASE

    with pytest.raises(SweepError, match=r"sweep.yaml:9: task 'rotten_tomatoes' has no miniature"):
        write_miniature(make_sweep(BASE), tmp_path / "mini")


def dense_rows(plan) -> pd.DataFrame:
    """One level-0 row per planned imp and dense run, with the config the analysis reads from its folder."""
    from tickets_core.analysis.results import run_config

    rows = []
    for j in plan.jobs:
        if j.is_run and j.resolver is None and j.parameters["kind"] in ("imp", "dense"):
            cfg = resolve(RunConfig.from_flat(**j.parameters))
            rows.append({"run": j.name, "kind": cfg.kind, "task": cfg.data.task, "seed": cfg.seed, "level": 0,
                         "sparsity": 0.0, "score": 0.5, "config": run_config(json.loads(cfg.to_json()), Path(j.name))})
    return pd.DataFrame(rows)


def groups(df: pd.DataFrame, key) -> set:
    return {frozenset(g["run"]) for _, g in df.groupby(key, sort=False)}


def test_the_sweep_and_the_analysis_agree_on_the_papers_dense_baselines(paper_plan, tmp_path):
    plan = paper_plan
    df = analysis.add_method(dense_rows(plan))
    by_sweep = df.assign(key=[dense_key(resolve(RunConfig.from_flat(**plan.job(r).parameters)))[::2]
                              for r in df["run"]])  # (task, settings): every seed
    assert groups(df, ["task", "dense_method"]) == groups(by_sweep, "key")
    per_task = df.groupby("task")["dense_method"].nunique()
    assert set(per_task) == {1} and len(per_task) == 11  # one dense variant per task: 6 seeds
    base = analysis.dense_baselines(df.assign(main_metric="accuracy"))
    assert set(base["n_seeds"]) == {6}
    for job in plan.jobs:  # a highest_matching job waits for every dense seed its level is computed from
        if job.resolver is not None:
            task = job.resolver.source_task
            assert set(df.loc[df["task"] == task, "run"]) <= set(job.deps), job.label
    # under the reference's schedule the level count separates dense fine-tunings, in both alike
    text = PAPER.read_text().replace("  levels: 9\n", "  levels: 9\n  lr_schedule: across_levels\n", 1).replace(
        "    tasks: *glue\n    seeds: [3, 4, 5]\n", "    tasks: *glue\n    seeds: [3, 4, 5]\n    levels: 2\n", 1)
    other = tmp_path / "paper.yaml"
    other.write_text(text)
    with pytest.raises(SweepError, match=r"needs the dense baseline of cola: no 'dense' run of cola trained like"):
        sweep.plan_sweep(other)
    no_transfers = tmp_path / "dense_only.yaml"
    no_transfers.write_text(text.split("transfers:")[0])
    df = analysis.add_method(dense_rows(sweep.plan_sweep(no_transfers)))
    cola = df[df["task"] == "cola"].groupby("kind")["dense_method"].unique()
    assert len(set(cola["imp"]) | set(cola["dense"])) == 2 and "2 levels" in cola["dense"][0]


def test_the_dry_run_counts_fine_tunings_and_gives_no_made_up_gpu_hours(capsys):
    assert sweep.main([str(PAPER), "--dry-run"]) == 0
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1:4] == ["918", "2,664", "99"]  # runs, fine-tunings, dense levels copied
    assert "GPU-hours: no committed GPU rate" in out and "GPU-hours (" not in out
    assert any(line.startswith("line ") and "transfer from standard_mlm at highest_matching" in line
               for line in out.splitlines())


def test_gpu_hours_only_at_a_committed_rate(paper_plan, tmp_path):
    from tickets_core.sweep.estimate import costs, summary

    plan = paper_plan
    run = tmp_path / "benchmarks" / "results"
    run.mkdir(parents=True)
    variants = {"fast compiled | RT": {"examples_per_s": 3000.0}, "fast compiled | L128": {"examples_per_s": 1000.0}}
    (run / "bench_gpu_test-gpu.json").write_text(json.dumps({"device": "Test GPU", "variants": variants}))
    text = summary(plan, plan.jobs, checkout=tmp_path)
    assert "GPU-hours (Test GPU)" in text and "bench_gpu_test-gpu.json (1,000 examples/s" in text
    table = costs(plan, plan.jobs, rate=1000.0)
    imp = next(c for name, c in table.items() if name.endswith("trunk imp"))
    assert imp.hours == pytest.approx(imp.steps * 32 / 1000.0 / 3600)  # GLUE: batch 32 at the measured rate
    assert next(c for name, c in table.items() if name.endswith("trunk imp_mlm")).hours is None  # 512 tokens
    assert table["total"].hours is None


def test_the_matching_rules_table_sets_n_std_0_beside_1(runs):
    table = analysis.matching_rules(runs, (1.0, 0.0)).set_index(["task", "method"])
    for n in (1.0, 0.0):
        ref = analysis.highest_matching_sparsity(runs, n_std=n).set_index(["task", "method"])
        for key, row in ref.iterrows():
            assert table.loc[key, f"threshold (n_std {n:g})"] == pytest.approx(row["threshold"])
            got = table.loc[key, f"highest matching (n_std {n:g})"]
            assert (pd.isna(got) and pd.isna(row["sparsity"])) or got == pytest.approx(row["sparsity"])
    assert (table["threshold (n_std 0)"] >= table["threshold (n_std 1)"]).all()


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.integration
def test_the_miniature_of_the_paper_grid_runs_end_to_end(tmp_path):
    """Every kind, branch, transfer rule and analysis notebook of sweeps/paper.yaml, on tiny-bert and the fixture
    data, through papermill; every figure and table written; dense levels copied, not trained again."""
    import contextlib
    import io
    import time

    from tickets_core.analysis import results
    from tickets_core.pruning.masks import Mask
    from tickets_core.runs.paths import RunPaths

    out, start = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = sweep.main([str(PAPER), "--miniature", "--output-root", str(tmp_path / "mini"), "--workers", "2"])
    print(f"miniature of sweeps/paper.yaml: {time.perf_counter() - start:.0f} s")
    assert status == 0, out.getvalue()[-3000:]
    assert "failed" not in out.getvalue().split("sweep: ")[-1].split("\n")[0].replace("0 failed", "")
    figures = {p.name for p in (tmp_path / "mini" / "figures").iterdir()}
    for name in ("sparsity_curves", "sparsity_curves_mean", "mask_overlap", "layer_profile",
                 "transfer_matrix_highest", "transfer_matrix_50", "transfer_matrix_70"):
        assert {f"{name}.png", f"{name}.pdf"} <= figures, name
    runs = results.load_runs(tmp_path / "mini")
    assert set(runs["kind"]) == {"imp", "dense", "oneshot", "standard", "random_prune", "random_reinit", "transfer"}
    tr = runs[runs["kind"] == "transfer"]
    assert {(s, t) for s, t in zip(tr["source_task"], tr["task"])} == {
        ("sst2", "squad"), ("stsb", "mlm"), ("squad", "sst2"), ("mlm", "stsb")}
    assert set(tr["source_run"].str.split("-").str[0]) == {"imp", "standard"}  # the reference-style MLM ticket too
    level0 = runs[runs["level"] == 0].set_index("run")
    imp0 = {(r.task, r.seed): r.score for r in level0[level0["kind"] == "imp"].itertuples()}
    for r in level0[level0["kind"].isin(["oneshot", "standard", "random_prune"])].itertuples():
        m = json.loads(RunPaths(r.run_dir).metrics(0).read_text())
        assert m["reused_from"]["run"].startswith("imp-") and r.score == imp0[(r.task, r.seed)], r.Index
    for task in ("sst2", "mlm"):  # standard pruning continued from IMP's level-0 weights: IMP's level-1 mask
        imp, std = (runs[(runs["kind"] == k) & (runs["task"] == task)]["run_dir"].iloc[0] for k in ("imp", "standard"))
        assert Mask.load(RunPaths(std).mask(1)).overlap(Mask.load(RunPaths(imp).mask(1))) == 1.0
    analysis_dir = tmp_path / "mini" / "_analysis"
    overlap = (analysis_dir / "mask_overlap.ipynb").read_text()
    # masks with (GLUE) and without (MLM, SQuAD) a pooler: the notebook says which pairs it compared on the
    # matrices both have (one seed per task here, so the seeds-vs-tasks table is rightly not drawn)
    assert "(no pooler) against" in overlap and "leaves their pooler out" in overlap
    assert "highest matching (n_std 0)" in (analysis_dir / "sparsity_curves.ipynb").read_text()
    assert "source_sparsity" in (analysis_dir / "transfer_highest.ipynb").read_text()
