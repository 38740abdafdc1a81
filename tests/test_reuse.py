"""A dense level copied, not trained again (``dense_level_from``): the copy equals what training it again gives,
the sweep plans it where a run repeats an IMP trunk's level 0, and anything that does not fit is one line."""

from __future__ import annotations

import json

import pytest

from tickets_core import sweep
from tickets_core.core.config import RunConfig
from tickets_core.core.errors import ConfigError
from tickets_core.lottery import driver
from tickets_core.pruning.masks import Mask
from tickets_core.runs.paths import RunPaths


def metrics(run, level):
    return json.loads(RunPaths(run).metrics(level).read_text())


def test_standard_pruning_from_a_copied_level_0_equals_training_it_again(tiny_config_factory, tmp_path):
    """The reference: the same standard-pruning run training its own level 0 (the CPU is deterministic)."""
    plain = driver.run(tiny_config_factory(tmp_path / "a", kind="standard", levels=2))
    imp = driver.run(tiny_config_factory(tmp_path / "b", levels=2, save_dense_weights=True))
    copied = driver.run(tiny_config_factory(tmp_path / "b", kind="standard", levels=2, dense_level_from=imp.name))
    assert copied.name == plain.name  # outside the hash: the same run, wherever its level 0 came from
    m0 = metrics(copied, 0)
    assert m0["reused_from"]["run"] == imp.name and m0["reused_from"]["level"] == 0
    assert m0["train"]["time_s"] == 0.0 and m0["eval"] == metrics(imp, 0)["eval"] == metrics(plain, 0)["eval"]
    assert "reused_from" not in metrics(plain, 0)
    for k in (1, 2):  # continued from the copied weights exactly as from its own
        assert metrics(copied, k)["eval"] == metrics(plain, k)["eval"]
        a, b = Mask.load(RunPaths(copied).mask(k)), Mask.load(RunPaths(plain).mask(k))
        assert all(bool((a[n] == b[n]).all()) for n in a)
    assert Mask.load(RunPaths(copied).mask(1)).overlap(Mask.load(RunPaths(imp).mask(1))) == 1.0  # IMP's level-1 mask
    assert RunPaths(imp).weights(0).is_file() and not RunPaths(imp).weights(1).exists()  # level 0's weights only


def test_one_shot_and_dense_runs_copy_level_0_and_train_the_rest(tiny_config_factory, tmp_path):
    imp = driver.run(tiny_config_factory(tmp_path / "b", levels=1))
    plain = driver.run(tiny_config_factory(tmp_path / "a", kind="oneshot", levels=1))
    copied = driver.run(tiny_config_factory(tmp_path / "b", kind="oneshot", levels=1, dense_level_from=imp.name))
    assert metrics(copied, 0)["eval"] == metrics(imp, 0)["eval"] and "reused_from" in metrics(copied, 0)
    assert metrics(copied, 1)["eval"] == metrics(plain, 1)["eval"] and "reused_from" not in metrics(copied, 1)
    dense = driver.run(tiny_config_factory(tmp_path / "b", kind="dense", dense_level_from=str(imp)))  # a folder
    assert metrics(dense, 0)["eval"] == metrics(imp, 0)["eval"] and metrics(dense, 0)["reused_from"]["run"] == imp.name


def test_what_does_not_fit_is_one_line(tiny_config_factory, tmp_path):
    root = tmp_path / "runs"
    imp = driver.run(tiny_config_factory(root, levels=1))
    cases = {
        "its seed is 0, this run's 1": dict(kind="oneshot", seed=1),
        "it was trained with learning_rate 0.001, this run with 0.002": dict(kind="oneshot", learning_rate=2e-3),
        "kept no level-0 weights": dict(kind="standard"),
        "not found": dict(kind="oneshot", dense_level_from="imp-rotten_tomatoes-00000000"),
    }
    for message, overrides in cases.items():
        cfg = tiny_config_factory(root, levels=1, **{"dense_level_from": imp.name, **overrides})
        with pytest.raises(ConfigError, match="dense_level_from: .*" + message.replace("(", r"\(")) as e:
            driver.run(cfg)
        assert "\n" not in str(e.value) and e.value.param == "dense_level_from"
    with pytest.raises(ConfigError, match="dense_level_from is for kinds whose dense level .* not 'random_reinit'"):
        RunConfig.from_flat(kind="random_reinit", source_run="x", dense_level_from=imp.name)


SWEEP = """\
output_root: {root}
figures_dir: {figs}
defaults: {{model: tiny-bert, max_steps: 2, levels: 2, rate: 0.3}}
trunks:
  - {{name: imp, kind: imp, tasks: [rotten_tomatoes, imdb], seeds: [0, 1]}}
  - {{kind: dense, tasks: [rotten_tomatoes], seeds: [1, 2]}}
  - {{kind: oneshot, tasks: [rotten_tomatoes], seeds: [0]}}
  - {{kind: standard, tasks: [rotten_tomatoes, imdb], seeds: [0]}}
  - {{kind: standard, name: other_lr, tasks: [imdb], seeds: [1], learning_rate: 0.001}}
branches:
  - {{kinds: [random_prune, random_reinit], trunk: imp, tasks: [imdb], seeds: [0]}}
  - {{kinds: [random_prune], trunk: imp, tasks: [rotten_tomatoes], seeds: [1], source_levels: [1, 2]}}
"""


def test_the_sweep_copies_every_repeated_dense_level_from_the_run_that_trains_it(make_sweep, capsys):
    plan = sweep.plan_sweep(make_sweep(SWEEP))
    imp = {(j.parameters["task"], j.parameters["seed"]): j for j in plan.jobs if j.parameters.get("kind") == "imp"}
    copied = {j.label: j.parameters["dense_level_from"] for j in plan.jobs if j.parameters.get("dense_level_from")}
    assert copied == {
        "dense rotten_tomatoes seed 1": imp[("rotten_tomatoes", 1)].name,   # seed 2 has no IMP trunk: trained
        "oneshot rotten_tomatoes seed 0": imp[("rotten_tomatoes", 0)].name,
        "standard rotten_tomatoes seed 0": imp[("rotten_tomatoes", 0)].name,
        "standard imdb seed 0": imp[("imdb", 0)].name,                      # other_lr: trained unlike it
        "random_prune imdb seed 0": imp[("imdb", 0)].name,                  # random_reinit: not theta0's weights
    }                                                                       # source_levels [1, 2]: no dense level
    for job in plan.jobs:
        if job.label in copied:
            assert copied[job.label] in job.deps
    keeps = {j.label for j in plan.jobs if j.parameters.get("save_dense_weights")}
    assert keeps == {"imp rotten_tomatoes seed 0", "imp imdb seed 0"}  # standard pruning continues from them
    assert sweep.main([str(make_sweep(SWEEP)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dense levels copied" in out and "no committed GPU rate" in out


def test_an_owner_finished_without_its_weights_is_not_used_by_standard_pruning(make_sweep, tmp_path):
    text = SWEEP.split("branches:")[0]
    plan = sweep.plan_sweep(make_sweep(text))
    owner = plan.job(next(j.parameters["dense_level_from"] for j in plan.jobs if j.label == "standard imdb seed 0"))
    level0 = owner.run_dir / "level_00"  # as a sweep before this rule left it: level 0 done, no weights kept
    level0.mkdir(parents=True)
    (level0 / "metrics.json").write_text("{}")
    again = sweep.plan_sweep(make_sweep(text))
    standard = next(j for j in again.jobs if j.label == "standard imdb seed 0")
    assert "dense_level_from" not in standard.parameters  # it trains its own level 0
    assert "save_dense_weights" not in again.job(owner.name).parameters
