"""Reference-faithful switches: the LR schedule across levels, random-init magnitude pruning, the weight
ablations, and the importer of the reference code's mask files (tiny-bert, CPU, seconds)."""

from __future__ import annotations

import os

import pytest
import torch

from tickets_core.lottery import driver

from tickets_core.training import loop as train
from tickets_core.core.config import ConfigError, ModelConfig, RunConfig
from tickets_core.core.seeds import derived_seed
from tickets_core.interop.importers import import_reference_mask, main as import_main
from tickets_core.pruning.masks import Mask, MaskFileError, MaskFitError
from tickets_core.models.build import build_model
from tickets_core.models.prunable import prunable_parameters
from tickets_core.analysis.results import load_masks, load_runs

from test_imp import record_fine_tune
from test_pruning import torch_masks


def record_lrs(monkeypatch) -> list[list[float]]:
    """The learning rate of every optimizer step, one list per fine_tune call."""
    real, calls = train.make_optimizer, []

    def make(model, cfg):
        opt = real(model, cfg)
        calls.append([])
        opt.register_step_pre_hook(lambda o, args, kwargs: calls[-1].append(o.param_groups[0]["lr"]))
        return opt

    monkeypatch.setattr(train, "make_optimizer", make)
    return calls


# ---------------------------------------------------------------------------
# lr_schedule
# ---------------------------------------------------------------------------


def test_across_levels_restarts_the_reference_long_schedule_at_every_level(tiny_run_config, monkeypatch):
    from transformers import get_linear_schedule_with_warmup

    lrs = record_lrs(monkeypatch)
    driver.run(tiny_run_config(levels=2, max_steps=4, lr_schedule="across_levels"))
    # The reference (LT_glue.py): after each pruning step a new AdamW and
    # get_linear_schedule_with_warmup(num_training_steps=t_total), t_total = all rounds' steps.
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=3 * 4)
    reference = []
    for _ in range(4):
        reference.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [pytest.approx(reference, rel=1e-12)] * 3
    assert reference == pytest.approx([1e-3, 1e-3 * 11 / 12, 1e-3 * 10 / 12, 1e-3 * 9 / 12])


def test_lr_schedules_by_hand(tiny_run_config, monkeypatch):
    lrs = record_lrs(monkeypatch)
    driver.run(tiny_run_config(kind="dense", max_steps=4, warmup_ratio=0.25))
    driver.run(tiny_run_config(kind="dense", max_steps=4, warmup_ratio=0.25, lr_schedule="across_levels", levels=2))
    # per level: 1 warm-up step ((s + 1) / (W + 1)), then linear decay to 0 at the level's 4th step
    assert lrs[0] == pytest.approx([1e-3 * f for f in (1 / 2, 1, 2 / 3, 1 / 3)])
    # across levels (3 levels of 4 steps): the same warm-up, then decay towards 0 at step 12
    assert lrs[1] == pytest.approx([1e-3 * f for f in (1 / 2, 1, 10 / 11, 9 / 11)])


def test_unknown_lr_schedule_is_one_line():
    with pytest.raises(ConfigError, match="^lr_schedule must be one of per_level, across_levels, got 'cosine'$"):
        RunConfig.from_flat(lr_schedule="cosine")


# ---------------------------------------------------------------------------
# random_magnitude: the reference's random pruning
# ---------------------------------------------------------------------------


def test_random_magnitude_prunes_a_random_init_like_the_reference(tiny_run_config, monkeypatch):
    starts = {}
    record_fine_tune(monkeypatch, before=lambda level, m: starts.setdefault(
        level, {k: p.detach().clone() for k, p in prunable_parameters(m).items()}))
    d = driver.run(tiny_run_config(kind="random_magnitude", levels=2, seed=3))
    masks = load_masks(d)
    assert sorted(masks) == [1, 2] and load_runs(d)["sparsity"].tolist() == pytest.approx([0, 0.2, 0.4], abs=1e-4)
    # oneshot.py --weight rand: a BertForSequenceClassification(config) pruned by global_unstructured
    # (L1Unstructured) over the prunable matrices; its mask is then applied to the pre-trained weights.
    theta0 = prunable_parameters(build_model(ModelConfig("tiny-bert"), "classification", seed=3))
    for level, amount in ((1, 0.2), (2, 0.4)):
        rand = build_model(ModelConfig("tiny-bert", random_init=True), "classification", seed=derived_seed(3, "reinit"))
        for name, ref in torch_masks(rand, amount).items():
            assert torch.equal(masks[level][name], ref), (level, name)
            assert torch.equal(starts[level][name], theta0[name].detach() * ref)


# ---------------------------------------------------------------------------
# Weight ablations: shuffled, noised
# ---------------------------------------------------------------------------


def _full_starts(monkeypatch):
    starts = {}
    record_fine_tune(monkeypatch, before=lambda level, m: starts.setdefault(
        level, {k: v.detach().clone() for k, v in m.state_dict().items()}))
    return starts


def test_shuffled_weights_permute_each_matrix_of_theta0(tiny_trunk, tiny_run_config, monkeypatch):
    starts = _full_starts(monkeypatch)
    d = driver.run(tiny_run_config(kind="shuffled", source_run=str(tiny_trunk), seed=1))
    theta0 = build_model(ModelConfig("tiny-bert"), "classification", seed=1).state_dict()
    src_masks = load_masks(tiny_trunk)
    prunable = {"bert." + k for k in prunable_parameters(build_model(ModelConfig("tiny-bert"), "classification"))}
    assert torch.equal(load_masks(d)[2]["encoder.layer.0.output.dense.weight"],
                       src_masks[2]["encoder.layer.0.output.dense.weight"])
    shuffled = {}
    for key, w0 in theta0.items():
        if key not in prunable:  # embeddings, biases, LayerNorm, pooler-free head: theta0 itself
            assert all(torch.equal(starts[k][key], w0) for k in (0, 1, 2)), key
            continue
        name = key.removeprefix("bert.")
        at1 = starts[1][key]
        assert torch.count_nonzero(at1[~src_masks[1][name]]) == 0
        assert not torch.equal(at1, w0 * src_masks[1][name])
        # level 0 (dense source level) shows the whole shuffled matrix: a permutation of theta0's entries
        shuffled[key] = starts[0][key]
        assert torch.equal(shuffled[key].flatten().sort().values, w0.flatten().sort().values), key
        # every level starts from the same shuffled weights, under its own mask
        for k in (1, 2):
            assert torch.equal(starts[k][key], shuffled[key] * src_masks[k][name]), (k, key)
    gen = torch.Generator().manual_seed(derived_seed(1, "perturb"))  # the documented seed, in module order
    first = next(k for k in theta0 if k in prunable)
    perm = torch.randperm(theta0[first].numel(), generator=gen)
    assert torch.equal(shuffled[first].flatten(), theta0[first].flatten()[perm])


def test_noised_weights_add_gaussian_noise_scaled_by_each_matrix_std(tiny_trunk, tiny_run_config, monkeypatch):
    starts = _full_starts(monkeypatch)
    driver.run(tiny_run_config(kind="noised", source_run=str(tiny_trunk), source_levels=[0], noise_scale=0.5))
    theta0 = build_model(ModelConfig("tiny-bert"), "classification").state_dict()
    prunable = {"bert." + k for k in prunable_parameters(build_model(ModelConfig("tiny-bert"), "classification"))}
    ratios = []
    for key, w0 in theta0.items():
        if key not in prunable:
            assert torch.equal(starts[0][key], w0), key
            continue
        noise = (starts[0][key] - w0) / w0.std()
        ratios.append(float(noise.std()))
        assert abs(float(noise.mean())) < 0.05, key
    assert len(ratios) == 13 and all(abs(r - 0.5) < 0.05 for r in ratios), ratios  # 4096-8192 draws each


def test_weight_ablations_take_a_mask_file_and_noise_scale_belongs_to_noised(tiny_run_config, tmp_path, tiny_trunk):
    Mask.load(tiny_trunk / "level_02" / "mask.safetensors").save(tmp_path / "m.safetensors")
    d = driver.run(tiny_run_config(kind="shuffled", mask_path=str(tmp_path / "m.safetensors")))
    assert load_runs(d)["sparsity"].tolist() == pytest.approx([0.4], abs=1e-4)
    with pytest.raises(ConfigError, match="^noise_scale is for kind 'noised'; a 'shuffled' run does not use it$"):
        tiny_run_config(kind="shuffled", source_run=str(tiny_trunk), noise_scale=0.2)


# ---------------------------------------------------------------------------
# Importing the reference code's mask.pt
# ---------------------------------------------------------------------------


def reference_mask_file(path, *, model="tiny-bert", amount=0.3, data_parallel=False, overrides=None):
    """A mask.pt as the reference scripts write it: prune.global_unstructured, then every '*mask*' state entry."""
    m = build_model(ModelConfig(model, config_overrides=overrides or {}), "classification", seed=0)
    expect = torch_masks(m, amount)
    masks = {("module." if data_parallel else "") + k: v for k, v in m.state_dict().items() if "mask" in k}
    torch.save(masks, path)
    return expect


def test_reference_mask_file_imports_to_the_same_1bit_mask(tmp_path, tiny_run_config):
    expect = reference_mask_file(tmp_path / "mask.pt")
    assert next(iter(torch.load(tmp_path / "mask.pt"))) == "bert.encoder.layer.0.attention.self.query.weight_mask"
    assert import_main([str(tmp_path / "mask.pt"), str(tmp_path / "t.safetensors"), "--model", "tiny-bert"]) == 0
    got = Mask.load(tmp_path / "t.safetensors")
    assert set(got) == set(expect) and all(torch.equal(got[k], expect[k]) for k in expect)
    assert got.sparsity == pytest.approx(0.3, abs=1e-4)
    reference_mask_file(tmp_path / "dp.pt", data_parallel=True)  # saved from a DataParallel-wrapped model
    dp = import_reference_mask(tmp_path / "dp.pt", "tiny-bert")
    assert all(torch.equal(dp[k], expect[k]) for k in expect)
    # a published ticket, transferred here
    d = driver.run(tiny_run_config(kind="transfer", mask_path=str(tmp_path / "t.safetensors")))
    assert load_runs(d)["sparsity"].tolist() == pytest.approx([0.3], abs=1e-4)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("case, message", [
    ("code", "torch.load.weights_only=True. refused it.*unsupported GLOBAL"),
    ("list", "holds a list, not a dict of mask tensors"),
    ("ints", "entry 'a' is a int, not a tensor"),
    ("text", "torch.load.weights_only=True. refused it"),
    ("weights", "has no '\\*_mask' entries"),
    ("values", "holds values other than 0 and 1"),
    ("deeper", "does not fit BertModel: mask has no entry for the model.s prunable weight .encoder.layer.1"),
    ("wider", "does not fit BertModel: mask entry 'encoder.layer.0.attention.self.query.weight' has shape"),
])
def test_bad_mask_files_are_one_line_and_write_nothing(tmp_path, capsys, case, message):
    path, marker = tmp_path / "mask.pt", tmp_path / "ran"
    if case == "code":
        torch.save({"a": _RunsCode(str(marker))}, path)
    elif case == "list":
        torch.save([torch.ones(2)], path)
    elif case == "ints":
        torch.save({"a": 1}, path)
    elif case == "text":
        path.write_text("not a pickle at all\n")
    elif case == "weights":
        torch.save({"bert.encoder.layer.0.attention.self.query.weight": torch.ones(4, 4)}, path)
    elif case == "values":
        reference_mask_file(path)
        masks = torch.load(path)
        next(iter(masks.values()))[0, 0] = 0.5
        torch.save(masks, path)
    else:  # a 1-layer or a 96-wide tiny-bert vs the 2-layer, 64-wide one
        reference_mask_file(path, overrides={"num_hidden_layers": 1} if case == "deeper" else
                            {"hidden_size": 96, "intermediate_size": 128, "num_attention_heads": 2})
    out = tmp_path / "out.safetensors"
    assert import_main([str(path), str(out), "--model", "tiny-bert"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    import re
    assert re.search(message, err), err
    assert not out.exists() and not marker.exists()
    with pytest.raises((MaskFileError, MaskFitError)):
        import_reference_mask(path, "tiny-bert")


def test_a_sweep_takes_the_new_kinds_from_the_registry(tmp_path):
    from tickets_core.sweep import SweepError, plan_sweep

    text = f"""\
output_root: {tmp_path / 'runs'}
figures_dir: {tmp_path / 'figs'}
defaults: {{model: tiny-bert, max_steps: 1}}
trunks:
  - {{name: imp, kind: imp, tasks: [rotten_tomatoes], seeds: [0, 1], levels: 2}}
  - {{kind: random_magnitude, tasks: [rotten_tomatoes], seeds: [0], levels: 2}}
branches:
  - {{kinds: [shuffled], trunk: imp, source_levels: [2]}}
  - {{kinds: [noised], trunk: imp, source_levels: [2], noise_scale: 0.3}}
"""
    (tmp_path / "s.yaml").write_text(text)
    plan = plan_sweep(tmp_path / "s.yaml")
    labels = sorted(j.label for j in plan.jobs)
    assert labels == ["imp rotten_tomatoes seed 0", "imp rotten_tomatoes seed 1", "noised rotten_tomatoes seed 0",
                      "noised rotten_tomatoes seed 1", "random_magnitude rotten_tomatoes seed 0",
                      "shuffled rotten_tomatoes seed 0", "shuffled rotten_tomatoes seed 1"]
    assert {j.parameters.get("noise_scale") for j in plan.jobs if j.label.startswith("noised")} == {0.3}
    # a kind's own parameter on other kinds is refused at the line that set it
    (tmp_path / "s.yaml").write_text(text.replace("[shuffled], trunk: imp,", "[shuffled], trunk: imp, noise_scale: 0.3,"))
    with pytest.raises(SweepError, match=r"s.yaml:8: shuffled .*noise_scale is for kind 'noised'"):
        plan_sweep(tmp_path / "s.yaml")
