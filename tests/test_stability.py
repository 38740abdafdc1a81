"""Instability analysis (linear mode connectivity): the stability branch, its barriers, the evaluation loss."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from tickets_core.analysis import curves

from tickets_core.lottery import driver

from tickets_core.training import loop as train
from tickets_core.core.config import ConfigError, RunConfig
from tickets_core.core.seeds import derived_seed
from tickets_core.lottery import barriers as B
from tickets_core.models.build import build_model, load_tokenizer
from tickets_core.runs.paths import RunPaths
from tickets_core.tasks import get_task

from notebook_run import run_analysis_notebook


def metrics(run_dir, level) -> dict:
    return json.loads(RunPaths(run_dir).metrics(level).read_text())


def test_barrier_is_the_highest_point_minus_the_mean_of_the_ends():
    assert B.barrier([0.2, 0.5, 0.3, 0.4]) == pytest.approx(0.5 - 0.3)
    assert B.barrier([0.1, 0.1, 0.1]) == 0.0
    assert B.barrier([0.4, 0.2, 0.1]) == pytest.approx(0.4 - 0.25)  # an end can be the highest point
    points = [{"error": e, "loss": l} for e, l in ((0.3, 1.0), (0.6, 2.0), (0.3, 1.2))]
    assert B.barriers(points) == pytest.approx({"error_barrier": 0.3, "loss_barrier": 0.9})
    assert B.barriers([{"error": 0.1}, {"error": 0.2}])["loss_barrier"] is None


@pytest.mark.parametrize("head", ["classification", "regression"])
def test_the_evaluation_loss_is_the_loss_the_model_computes(head, tiny_run_config):
    """The classifier's new ``loss`` metric against transformers' own loss for the same logits and labels."""
    cfg = tiny_run_config()
    data = get_task("rotten_tomatoes").load(cfg.data, load_tokenizer(cfg.model))
    model = build_model(cfg.model, head, 2, seed=3).eval()
    rows = data.eval[: len(data.eval)]
    batch = data.collate(rows)
    if head == "regression":
        batch["labels"] = batch["labels"].float() * 2.5
    with torch.no_grad():
        out = model(**batch)
    scorer = get_task("stsb" if head == "regression" else "rotten_tomatoes").evaluator(data, data.eval)
    half = len(rows["input_ids"]) // 2  # two batches of different sizes: the mean is per example
    for sl in (slice(0, half), slice(half, None)):
        scorer.add(SimpleNamespace(logits=out.logits[sl]), {"labels": batch["labels"][sl]}, None)
    assert scorer.result()["loss"] == pytest.approx(out.loss.item(), rel=1e-5)
    if head == "classification":
        assert train.evaluate(model, data, cfg.train)["loss"] == pytest.approx(out.loss.item(), rel=1e-5)


@pytest.fixture(scope="module")
def runs(tiny_config_factory, tmp_path_factory):
    """IMP (theta0 and theta_1), random pruning, and stability branches of them at level 1 (3 points each)."""
    root = tmp_path_factory.mktemp("stability_runs")
    make = lambda **kw: tiny_config_factory(root, levels=1, max_steps=2, **kw)  # noqa: E731
    imp0 = driver.run(make())
    impk = driver.run(make(rewind_step=1))
    rand = driver.run(make(kind="random_prune", source_run=imp0.name))
    st = {name: driver.run(make(kind="stability", source_run=src.name, source_levels=[1], stability_points=3, **kw))
          for name, src, kw in (("imp0", imp0, {}), ("rand0", rand, {}), ("impk", impk, {"rewind_step": 1}))}
    return root, imp0, impk, rand, st


def test_a_stability_level_trains_two_copies_and_walks_the_line_between_them(runs):
    root, imp0, impk, rand, st = runs
    m = metrics(st["imp0"], 1)
    rec = m["train"]["stability"]
    assert m["kind"] == "stability" and m["source"] == {"run": imp0.name, "task": "rotten_tomatoes", "level": 1}
    assert rec["seeds"] == [0, derived_seed(0, "stability_copy")] and rec["rewind_step"] == 0
    # copy A is the IMP trunk's own level 1 (same seed, mask and start), bit for bit
    assert m["eval"] == metrics(imp0, 1)["eval"] and m["sparsity"] == metrics(imp0, 1)["sparsity"]
    points = rec["points"]
    assert [p["alpha"] for p in points] == [0.0, 0.5, 1.0]
    assert {k: points[0][k] for k in m["eval"]} == m["eval"]  # alpha 0: copy A
    assert {k: points[-1][k] for k in m["eval"]} == rec["other_copy"]["eval"]  # alpha 1: copy B
    assert rec["other_copy"]["train_loss"] != m["train"]["train_loss"]  # another data order
    assert all(p["error"] == pytest.approx(1 - p["accuracy"]) for p in points)
    assert rec["error_barrier"] == pytest.approx(max(p["error"] for p in points)
                                                 - (points[0]["error"] + points[-1]["error"]) / 2)
    assert rec["loss_barrier"] == pytest.approx(B.barrier([p["loss"] for p in points]))


def test_the_rewind_point_is_the_one_an_imp_trunk_with_that_rewind_step_saves(runs):
    from safetensors.torch import load_file

    _, _, impk, _, st = runs
    ours, trunk = load_file(str(RunPaths(st["impk"]).rewind())), load_file(str(RunPaths(impk).rewind()))
    assert ours.keys() == trunk.keys() and all(torch.equal(ours[k], trunk[k]) for k in ours)
    assert metrics(st["impk"], 1)["eval"] == metrics(impk, 1)["eval"]  # copy A = the theta_1 trunk's level 1


def test_the_rewind_point_follows_the_trunks_lr_schedule_across_levels(tiny_config_factory, tmp_path):
    """lr_schedule across_levels: a stability branch computes theta_i on the trunk's stretched LR curve (step 2
    of 3 runs at a different LR than per_level's), so its rewind point is still the trunk's, bit for bit."""
    from safetensors.torch import load_file

    def make(**kw):
        return tiny_config_factory(tmp_path, **{"levels": 1, "max_steps": 3, "rewind_step": 2,
                                                "lr_schedule": "across_levels", **kw})

    trunk = driver.run(make())
    branch = driver.run(make(kind="stability", source_run=trunk.name, source_levels=[1], stability_points=3))
    ours, theirs = load_file(str(RunPaths(branch).rewind())), load_file(str(RunPaths(trunk).rewind()))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert metrics(branch, 1)["eval"] == metrics(trunk, 1)["eval"]  # copy A = the trunk's level 1
    for kind, kw in (("imp", {}), ("stability", dict(source_run=trunk.name, source_levels=[1]))):
        with pytest.raises(ConfigError, match="^rewind_step 4 exceeds the 3 steps of a level$"):
            driver.run(make(kind=kind, rewind_step=4, **kw))


def test_barriers_by_method_and_sparsity(runs):
    root, imp0, impk, rand, st = runs
    table = curves.stability_table(curves.load_stability(root))
    assert set(table["method"]) == {"IMP, rewind to theta0", "IMP, rewind to step 1",
                                    "random pruning, rewind to theta0"}
    assert (table["n_seeds"] == 1).all() and (table["level"] == 1).all()
    assert table["sparsity"].tolist() == pytest.approx([0.2] * 3, abs=1e-3)
    row = table.set_index("method").loc["IMP, rewind to theta0"]
    assert row["error_barrier"] == pytest.approx(metrics(st["imp0"], 1)["train"]["stability"]["error_barrier"])


def test_a_finished_stability_run_is_skipped(runs, tiny_config_factory, monkeypatch):
    root, imp0, *_ = runs
    calls = []
    monkeypatch.setattr(train, "fine_tune", lambda *a, **k: calls.append(1))
    again = driver.run(tiny_config_factory(root, levels=1, max_steps=2, kind="stability", source_run=imp0.name,
                                        source_levels=[1], stability_points=3))
    assert again == runs[4]["imp0"] and calls == []


def test_a_retrain_on_another_task_fails_before_writing_anything(runs, tiny_config_factory):
    root, imp0, *_ = runs
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(ConfigError, match="^retrain fine-tunes a mask on its source's task \\('rotten_tomatoes'\\), "
                                          "not 'imdb'; that is a transfer$") as info:
        driver.run(tiny_config_factory(root, levels=1, max_steps=2, kind="retrain", task="imdb", source_run=imp0.name))
    assert info.value.param == "task"
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # no run folder, not even config.json


def test_stability_options_are_checked():
    with pytest.raises(ConfigError, match="stability_points must be >= 3") as info:
        RunConfig.from_flat(kind="stability", source_run="imp-x-1", stability_points=2)
    assert info.value.param == "stability_points"
    with pytest.raises(ConfigError, match="source_run is required"):
        RunConfig.from_flat(kind="stability")


@pytest.mark.notebook
def test_the_stability_notebook_draws_its_figures(runs, tmp_path):
    assert run_analysis_notebook("stability", runs[0], tmp_path) == {
        f"stability{s}.{e}" for s in ("", "_paths") for e in ("png", "pdf")}


def test_curve_modules_import_no_training_code():
    import subprocess
    import sys

    code = ("import sys, tickets_core.analysis.curves, tickets_core.plots.dynamics; "
            "bad = [m for m in ('torch', 'transformers', 'tickets_core.training.loop') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
