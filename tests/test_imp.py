"""The IMP driver end to end on tiny-bert + fixture data (CPU, 1-2 steps per level)."""

from __future__ import annotations

import json

import pytest
import torch

from tickets_core.lottery import driver

from tickets_core.training import loop as train
from tickets_core.core.config import ConfigError, ModelConfig, PruneConfig
from tickets_core.pruning.masks import Mask, MaskFileError, MaskFitError
from tickets_core.models.build import build_model
from tickets_core.models.prunable import base_model, prunable_parameters
from tickets_core.pruning.strategies import magnitude_global
from tickets_core.analysis.results import load_masks, load_runs, load_sparsity
from tickets_core.runs.paths import RunPaths


def head_state(model) -> dict[str, torch.Tensor]:
    base = {id(p) for p in base_model(model).parameters()}
    return {k: p.detach().clone() for k, p in model.named_parameters() if id(p) not in base}


def record_fine_tune(monkeypatch, before=None, after=None, fail_at=None):
    """Wrap train.fine_tune: call ``before(level, model)`` / ``after(level, model)``, or fail at a level."""
    real = train.fine_tune
    calls = []

    def wrapper(model, data, cfg, *, desc=None, on_step=None, **kw):
        level = int(desc.split()[-1])
        calls.append(level)
        if before:
            before(level, model)
        step_hook = on_step
        if fail_at is not None and level == fail_at:
            def kill(step, m):  # a kill in the middle of the level: after its first optimizer step, before evaluation
                raise KeyboardInterrupt("simulated kill")
            step_hook = kill
        out = real(model, data, cfg, desc=desc, on_step=step_hook, **kw)
        if after:
            after(level, model)
        return out

    monkeypatch.setattr(train, "fine_tune", wrapper)
    return calls


@pytest.fixture(scope="module")
def trunk(tiny_config_factory, tmp_path_factory):
    """An uninterrupted IMP run: 3 levels at 20% (linear)."""
    cfg = tiny_config_factory(tmp_path_factory.mktemp("trunk"))
    return cfg, driver.run(cfg)


def test_imp_trunk_writes_every_level(trunk):
    cfg, d = trunk
    paths = RunPaths(d)
    assert d.name == cfg.run_name()
    status = json.loads(paths.status().read_text())
    assert status["state"] == "done" and status["levels_done"] == [0, 1, 2, 3] and status["levels_planned"] == 4
    assert not paths.mask(0).exists()
    masks = load_masks(d)
    assert sorted(masks) == [1, 2, 3]
    schedule = PruneConfig(schedule="linear", rate=0.2, levels=3)
    for k in (1, 2, 3):
        assert masks[k].numel - masks[k].nonzero == round(schedule.sparsity(k) * masks[k].numel)
    for k in (2, 3):
        assert not any(bool((masks[k][n] & ~masks[k - 1][n]).any()) for n in masks[k])  # nested
    df = load_runs(d.parent)
    assert list(df["level"]) == [0, 1, 2, 3]
    assert df["sparsity"].tolist() == pytest.approx([0.0, 0.2, 0.4, 0.6], abs=1e-4)
    assert (df["score"] == df["eval_accuracy"]).all() and set(df["kind"]) == {"imp"}
    m = json.loads(paths.metrics(2).read_text())
    assert {"level", "sparsity", "main_metric", "score", "eval", "train", "source", "seed", "task", "kind"} <= set(m)
    assert m["train"]["steps"] == 1 and m["main_metric"] == "accuracy"
    sp = load_sparsity(d.parent)
    assert len(sp) == 4 * 13 and set(sp["component"]) >= {"query", "ffn_out", "pooler"}


def test_rewinding_restores_theta0_bit_for_bit_and_resets_the_head(tiny_run_config, monkeypatch):
    cfg = tiny_run_config(levels=1)
    fresh = build_model(cfg.model, "classification", 2, seed=cfg.seed)
    theta0 = {k: p.detach().clone() for k, p in prunable_parameters(fresh).items()}
    head0 = head_state(fresh)
    seen = {}

    def before(level, model):
        if level == 0:
            return
        mask = Mask.load(RunPaths(cfg.output_root + "/" + cfg.run_name()).mask(level))
        params = prunable_parameters(model)
        for k, m in mask.items():
            assert torch.equal(params[k].detach()[m], theta0[k][m]), k   # survivors: theta0, bit for bit
            assert torch.count_nonzero(params[k].detach()[~m]) == 0, k   # pruned: exactly 0
        assert all(torch.equal(v, head0[k]) for k, v in head_state(model).items())
        seen[level] = True

    record_fine_tune(monkeypatch, before=before)
    driver.run(cfg)
    assert seen == {1: True}


def test_rewind_step_and_kept_head(tiny_run_config, monkeypatch):
    cfg = tiny_run_config(levels=1, rewind_step=1, reset_head=False, max_steps=2)
    trained_head = {}
    checked = []

    def after(level, model):
        if level == 0:
            trained_head.update(head_state(model))

    def before(level, model):
        if level != 1:
            return
        from safetensors.torch import load_file

        paths = RunPaths(cfg.output_root + "/" + cfg.run_name())
        theta_i = load_file(str(paths.rewind()))
        mask = Mask.load(paths.mask(1))
        prefix = model.base_model_prefix + "."
        params = prunable_parameters(model)
        fresh = prunable_parameters(build_model(cfg.model, "classification", 2, seed=cfg.seed))
        for k, m in mask.items():
            assert torch.equal(params[k].detach()[m], theta_i[prefix + k][m])
        name = "encoder.layer.0.attention.self.query.weight"
        assert not torch.equal(theta_i[prefix + name], fresh[name].detach())  # theta_1 is not theta0
        assert all(torch.equal(v, trained_head[k]) for k, v in head_state(model).items())
        checked.append(level)

    record_fine_tune(monkeypatch, before=before, after=after)
    driver.run(cfg)
    assert checked == [1]


def test_killed_run_resumes_with_the_same_masks(trunk, tiny_config_factory, tmp_path, monkeypatch):
    ref_cfg, ref_dir = trunk
    cfg = tiny_config_factory(tmp_path / "runs")
    assert cfg.run_name() == ref_cfg.run_name()
    record_fine_tune(monkeypatch, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        driver.run(cfg)
    paths = RunPaths(tmp_path / "runs" / cfg.run_name())
    status = json.loads(paths.status().read_text())
    assert status["state"] == "interrupted" and "simulated kill" in status["error"] and status["levels_done"] == [0, 1]
    monkeypatch.undo()
    calls = record_fine_tune(monkeypatch)
    driver.run(cfg)
    assert calls == [2, 3]  # finished levels are not redone
    assert json.loads(paths.status().read_text())["state"] == "done"
    ours, ref = load_masks(paths.root), load_masks(ref_dir)
    assert sorted(ours) == sorted(ref) == [1, 2, 3]
    for k in ref:
        assert all(torch.equal(ours[k][n], ref[k][n]) for n in ref[k]), k
    assert load_runs(paths.root)["score"].tolist() == load_runs(ref_dir)["score"].tolist()
    driver.run(cfg)  # a finished run is a no-op
    assert calls == [2, 3]


def test_branches_from_the_trunk(trunk, tiny_run_config, monkeypatch):
    _, src = trunk
    src_masks = load_masks(src)
    theta0 = prunable_parameters(build_model(ModelConfig("tiny-bert"), "classification"))
    starts = {}
    record_fine_tune(monkeypatch, before=lambda level, model: starts.setdefault(
        level, {k: p.detach().clone() for k, p in prunable_parameters(model).items()}))
    name = "encoder.layer.1.intermediate.dense.weight"

    d = driver.run(tiny_run_config(kind="random_prune", source_run=str(src), source_levels=[2]))
    rp = load_masks(d)
    assert sorted(rp) == [2] and rp[2].layer_sparsities() == src_masks[2].layer_sparsities()
    assert rp[2].overlap(src_masks[2]) < 0.95
    assert torch.equal(starts[2][name], theta0[name].detach() * rp[2][name])
    df = load_runs(d)
    assert df["source_level"].tolist() == [2] and set(df["source_task"]) == {"rotten_tomatoes"}

    starts.clear()
    d = driver.run(tiny_run_config(kind="random_reinit", source_run=str(src), source_levels=[2]))
    assert torch.equal(load_masks(d)[2][name], src_masks[2][name])
    kept = src_masks[2][name]
    assert not torch.equal(starts[2][name][kept], theta0[name].detach()[kept])  # new random weights
    assert torch.count_nonzero(starts[2][name][~kept]) == 0

    starts.clear()
    d = driver.run(tiny_run_config(kind="transfer", source_run=str(src), source_levels=[3]))
    assert torch.equal(load_masks(d)[3][name], src_masks[3][name])
    assert torch.equal(starts[3][name], theta0[name].detach() * src_masks[3][name])


def test_oneshot_standard_and_dense(tiny_run_config, monkeypatch):
    fresh = build_model(ModelConfig("tiny-bert"), "classification")
    w = {k: p.detach() for k, p in prunable_parameters(fresh).items()}
    d = driver.run(tiny_run_config(kind="oneshot", levels=2, max_steps=1))
    one = load_masks(d)
    schedule = PruneConfig(schedule="linear", rate=0.2, levels=2)
    for k in (1, 2):  # magnitude pruning of theta0 itself, straight to each level's sparsity
        expect = magnitude_global(w, Mask.ones_like(fresh), schedule.sparsity(k))
        assert all(torch.equal(one[k][n], expect[n]) for n in expect)

    ends, starts = {}, {}
    record_fine_tune(monkeypatch,
                     before=lambda lvl, m: starts.setdefault(lvl, {k: v.detach().clone() for k, v in m.state_dict().items()}),
                     after=lambda lvl, m: ends.setdefault(lvl, {k: v.detach().clone() for k, v in m.state_dict().items()}))
    d = driver.run(tiny_run_config(kind="standard", levels=1))
    mask1 = load_masks(d)[1]
    for key, v in starts[1].items():  # level 1 continues from level 0's trained weights (pruned)
        name = key.split(".", 1)[1]
        expect = ends[0][key] * mask1[name] if name in mask1 else ends[0][key]
        assert torch.equal(v, expect), key

    d = driver.run(tiny_run_config(kind="dense", seed=3))
    assert load_runs(d)["level"].tolist() == [0] and load_runs(d)["seed"].tolist() == [3]


def test_transfer_of_an_mlm_mask_to_a_classifier(tiny_run_config, tmp_path):
    mlm = build_model(ModelConfig("tiny-bert"), "mlm")
    ones = Mask.ones_like(mlm)
    assert "pooler.dense.weight" not in ones
    mask = magnitude_global({k: p.detach() for k, p in prunable_parameters(mlm).items()}, ones, 0.5)
    mask.save(tmp_path / "mlm_mask.safetensors")
    d = driver.run(tiny_run_config(kind="transfer", mask_path=str(tmp_path / "mlm_mask.safetensors")))
    used = load_masks(d)[0]
    assert bool(used["pooler.dense.weight"].all())  # the classifier keeps a dense pooler
    assert all(torch.equal(used[n], mask[n]) for n in mask)
    row = load_runs(d).iloc[0]
    assert row["sparsity"] == pytest.approx(used.sparsity) and row["sparsity"] < 0.5


@pytest.mark.parametrize("family", ["tiny-roberta", "tiny-distilbert", "tiny-electra"])
def test_each_family_runs_imp(tiny_run_config, family):
    d = driver.run(tiny_run_config(model=family, levels=1))
    df = load_runs(d)
    assert df["sparsity"].tolist() == pytest.approx([0.0, 0.2], abs=1e-4)
    assert (df["state"] == "done").all()


def test_bad_input_fails_before_writing(tiny_run_config, tmp_path):
    root = tmp_path / "runs"
    other = build_model(ModelConfig("tiny-bert", config_overrides={"num_hidden_layers": 3}), "classification")
    Mask.ones_like(other).save(tmp_path / "deep.safetensors")
    with pytest.raises(MaskFitError, match="layer.2"):
        driver.run(tiny_run_config(kind="transfer", mask_path=str(tmp_path / "deep.safetensors")))
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(MaskFileError):
        driver.run(tiny_run_config(kind="transfer", mask_path=str(tmp_path / "bad.safetensors")))
    with pytest.raises(ConfigError, match="source run"):
        driver.run(tiny_run_config(kind="random_prune", source_run="no-such-run"))
    with pytest.raises(ConfigError, match="unknown task"):
        driver.run(tiny_run_config(task="no_such_task"))
    with pytest.raises(ConfigError, match="sparsity must stay below 1"):
        driver.run(tiny_run_config(levels=10, rate=0.1))
    assert not root.exists() or not any(root.iterdir())
