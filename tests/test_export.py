"""Tickets others can load: export to a Hugging Face folder, bad input, and the 2:4 semi-structured strategy."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tickets_core.lottery import driver

from tickets_core.training import loop as train
from tickets_core.core.config import ConfigError, RunConfig
from tickets_core.core.errors import RunStoreError
from tickets_core.interop.export import export, is_2to4, main, semi_structured
from tickets_core.pruning.masks import Mask
from tickets_core.models.build import build_model
from tickets_core.models.prunable import prunable_parameters
from tickets_core.pruning.strategies import PruningError, magnitude_2to4, prune
from tickets_core.runs.paths import RunPaths
from tickets_core.tasks import get_task


@pytest.fixture(scope="module")
def run(tiny_config_factory, tmp_path_factory):
    """A tiny IMP run that kept its trained weights (save_weights), levels 0 and 1."""
    cfg = tiny_config_factory(tmp_path_factory.mktemp("export_runs"), levels=1, max_steps=2, save_weights=True)
    return cfg, driver.run(cfg)


def test_the_exported_ticket_loads_with_transformers_and_scores_as_the_run(run, tmp_path):
    cfg, run_dir = run
    out = export(run_dir, 1, tmp_path / "ticket")
    model = AutoModelForSequenceClassification.from_pretrained(out)  # plain transformers, no tickets_core
    tokenizer = AutoTokenizer.from_pretrained(out)
    data = get_task("rotten_tomatoes").load(cfg.data, tokenizer)
    recorded = json.loads(RunPaths(run_dir).metrics(1).read_text())
    assert train.evaluate(model, data, cfg.train) == recorded["eval"]  # the same eval set, the same numbers
    mask = Mask.load(RunPaths(run_dir).mask(1))
    assert Mask.load(out / "mask.safetensors").keys() == mask.keys()
    params = prunable_parameters(model)
    assert all(torch.count_nonzero(params[k].detach()[~m]) == 0 for k, m in mask.items())  # pruned: exactly 0
    assert all(torch.equal(Mask.load(out / "mask.safetensors")[k], m) for k, m in mask.items())
    assert model.config.id2label == {0: "negative", 1: "positive"}
    card = (out / "README.md").read_text()
    ticket = json.loads((out / "ticket.json").read_text())
    assert ticket["weights"] == "trained" and ticket["run"] == run_dir.name and ticket["seed"] == 0
    assert f"{100 * mask.sparsity:.2f}% of the {mask.numel:,} prunable weights" in card
    layer0 = {k: v for k, v in mask.report()["matrices"].items() if v["layer"] == 0}
    row = next(line for line in card.splitlines() if line.startswith("| 0 |"))
    assert row.count("%") == len(layer0) and f"{100 * layer0[next(iter(layer0))]['sparsity']:.1f}%" in row
    assert "rotten_tomatoes" in card and f"accuracy {recorded['score']:.4f}" in card and "Note." not in card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ticket"]  # no temporary folder left


def test_without_trained_weights_the_export_is_theta0_times_the_mask_with_a_note(run, tmp_path):
    cfg, run_dir = run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    RunPaths(copy).weights(1).unlink()
    out = export(copy, 1, tmp_path / "ticket")
    model = AutoModelForSequenceClassification.from_pretrained(out)
    theta0 = build_model(cfg.model, "classification", 2, seed=cfg.seed).state_dict()
    mask = Mask.load(RunPaths(copy).mask(1))
    for k, v in model.state_dict().items():
        expect = theta0[k]
        name = k.removeprefix(model.base_model_prefix + ".")
        if name in mask:
            expect = expect * mask[name]
        assert torch.equal(v, expect), k
    assert "**Note.**" in (out / "README.md").read_text()
    assert json.loads((out / "ticket.json").read_text())["weights"] == "theta0 x mask"


def test_bad_exports_fail_in_one_line_and_write_nothing(run, tmp_path, capsys, monkeypatch):
    _, run_dir = run
    cases = [(tmp_path, 0, "is not a run folder"), (run_dir, 2, "level 2 of .* is not done .finished levels: 0, 1")]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    cases.append((run_dir, 1, "exists and is not an empty folder"))
    for src, level, message in cases:
        target = tmp_path / ("full" if "empty" in message else "out")
        with pytest.raises(RunStoreError, match=message) as info:
            export(src, level, target)
        assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    assert main([str(run_dir), str(tmp_path / "out"), "--level", "7"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "level 7" in err and not (tmp_path / "out").exists()
    # a failure while writing leaves neither the folder nor its temporary copy
    monkeypatch.setattr(Mask, "save", lambda self, path: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        export(run_dir, 1, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    monkeypatch.undo()
    assert main([str(run_dir), str(tmp_path / "ok"), "--level", "0"]) == 0  # an empty folder is fine too
    assert (tmp_path / "ok" / "model.safetensors").is_file()


def test_a_damaged_run_folder_fails_in_one_line_and_writes_nothing(run, tmp_path):
    _, run_dir = run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    paths = RunPaths(copy)
    shutil.copyfile(paths.weights(0), paths.weights(1))
    with pytest.raises(RunStoreError, match=r"^\S+level_01/weights.safetensors holds the state of level 0, not level 1$"):
        export(copy, 1, tmp_path / "out")
    paths.mask(1).unlink()
    with pytest.raises(RunStoreError, match=r"^\S+level_01/mask.safetensors is missing, but level 1 of \S+ was pruned "
                                            r"\(its metrics.json says so\): the run folder is damaged$"):
        export(copy, 1, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [copy.name]


def reference_2to4(w: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Row by row, group by group: prune already-pruned weights first, then the smallest |w| (earlier on ties)."""
    out = keep.clone()
    for i in range(w.shape[0]):
        for j in range(0, w.shape[1], 4):
            order = sorted(range(4), key=lambda t: (bool(keep[i, j + t]), abs(float(w[i, j + t])), t))
            for t in order[:2]:
                out[i, j + t] = False
    return out


def test_magnitude_2to4_prunes_two_of_every_four_like_a_plain_reference():
    g = torch.Generator().manual_seed(0)
    w = {"a": torch.randn(6, 8, generator=g), "b": torch.randint(-2, 3, (4, 12), generator=g).float()}  # ties
    dense = Mask({k: torch.ones_like(v, dtype=torch.bool) for k, v in w.items()})
    half = magnitude_2to4(w, dense, 0.5)
    for k in w:
        assert torch.equal(half[k], reference_2to4(w[k], dense[k])), k
        assert (half[k].reshape(-1, 4).sum(1) == 2).all() and is_2to4(w[k] * half[k])
    assert half.sparsity == 0.5
    pre = Mask({k: torch.rand(v.shape, generator=g) > 0.2 for k, v in w.items()})  # some weights already pruned
    again = magnitude_2to4(w, pre, 0.5)
    assert all(torch.equal(again[k], reference_2to4(w[k], pre[k])) for k in w)
    assert all(not (again[k] & ~pre[k]).any() for k in w)  # nothing revived
    assert all(torch.equal(magnitude_2to4(w, pre, 0.0)[k], pre[k]) for k in w)
    with pytest.raises(PruningError, match="exactly 50%"):
        magnitude_2to4(w, dense, 0.3)
    with pytest.raises(PruningError, match="multiple of 4"):
        magnitude_2to4({"c": torch.randn(3, 6)}, Mask({"c": torch.ones(3, 6, dtype=torch.bool)}), 0.5)
    assert not is_2to4(torch.ones(2, 8)) and not is_2to4(torch.zeros(2, 6))


def test_the_2to4_strategy_in_a_model_and_its_schedule_check(tiny_run_config):
    cfg = tiny_run_config(strategy="magnitude_2to4", levels=1, rate=0.5)
    model = build_model(cfg.model, "classification", 2, seed=0)
    mask = prune(model, Mask.ones_like(model), cfg.prune, 1)
    assert mask.sparsity == 0.5 and all((m.reshape(-1, 4).sum(1) == 2).all() for m in mask.values())
    with pytest.raises(ConfigError, match="but level 1 would have sparsity 0.20: use levels 1 and rate 0.5") as info:
        RunConfig.from_flat(strategy="magnitude_2to4", levels=2, rate=0.2)
    assert info.value.param == "strategy"
    if not torch.cuda.is_available():  # the semi-structured kernels are CUDA-only: refused in one line
        with pytest.raises(ConfigError, match="need a CUDA GPU"):
            semi_structured(model)
