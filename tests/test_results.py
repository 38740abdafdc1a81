"""Results loader: run folders -> pandas, without importing training code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tickets_core.core.config import RunConfig
from tickets_core.lottery.identity import resolve
from tickets_core.pruning.masks import Mask
from tickets_core.analysis.results import RUN_COLUMNS, load_masks, load_runs, load_sparsity
from tickets_core.runs.store import Run, RunStoreError

NAMES = ("encoder.layer.0.attention.self.query.weight", "pooler.dense.weight")


def fake_run(root, kind="imp", seed=0, levels=2, **kw) -> Run:
    """A run folder written through the store API, with made-up metrics (no training)."""
    cfg = resolve(RunConfig.from_flat(output_root=str(root), kind=kind, seed=seed, model="tiny-bert", **kw))
    run = Run.open(cfg, levels_planned=levels)
    for k in range(levels):
        keep = torch.arange(16).reshape(4, 4) >= 4 * k  # level k prunes k rows
        mask = Mask({NAMES[0]: keep, NAMES[1]: torch.ones(4, 4, dtype=torch.bool)})
        source = {"run": "imp-x", "task": "sst2", "level": k} if kind == "transfer" else None
        run.write_level(k, mask, {"level": k, "sparsity": mask.sparsity, "main_metric": "accuracy",
                                  "score": 0.9 - 0.1 * k, "eval": {"accuracy": 0.9 - 0.1 * k, "loss": 0.5},
                                  "train": {"steps": 3}, "source": source, "seed": seed,
                                  "task": cfg.data.task, "kind": kind})
    run.set_state("done")
    return run


def test_load_runs_one_row_per_run_and_level(tmp_path):
    fake_run(tmp_path, seed=0)
    fake_run(tmp_path, kind="transfer", source_run="imp-x", levels=1)
    (tmp_path / "notes").mkdir()  # not a run: skipped
    (tmp_path / "README.txt").write_text("hello")
    df = load_runs(tmp_path)
    assert set(RUN_COLUMNS) <= set(df.columns) and {"eval_accuracy", "eval_loss"} <= set(df.columns)
    assert len(df) == 3
    imp_rows = df[df["kind"] == "imp"]
    assert imp_rows["level"].tolist() == [0, 1]
    assert imp_rows["sparsity"].tolist() == pytest.approx([0.0, 4 / 32])
    assert imp_rows["score"].tolist() == pytest.approx([0.9, 0.8])
    assert set(imp_rows["model"]) == {"tiny-bert"} and set(imp_rows["strategy"]) == {"magnitude_global"}
    tr = df[df["kind"] == "transfer"].iloc[0]
    assert (tr["source_run"], tr["source_task"], tr["source_level"]) == ("imp-x", "sst2", 0)
    assert set(df["state"]) == {"done"}
    assert load_runs(tmp_path / "notes").empty


def test_load_sparsity_and_masks(tmp_path):
    run = fake_run(tmp_path, levels=3)
    sp = load_sparsity(tmp_path)
    assert len(sp) == 3 * 2
    row = sp[(sp["level"] == 2) & (sp["name"] == NAMES[0])].iloc[0]
    assert (row["layer"], row["component"], row["numel"], row["nonzero"]) == (0, "query", 16, 8)
    masks = load_masks(run.root)
    assert sorted(masks) == [1, 2]  # level 0 is dense: no mask file
    assert int(masks[2][NAMES[0]].sum()) == 8


def test_malformed_metrics_is_a_one_line_error_naming_the_file(tmp_path):
    run = fake_run(tmp_path)
    path = run.paths.metrics(1)
    path.write_text("{truncated")
    with pytest.raises(RunStoreError) as info:
        load_runs(tmp_path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    path.write_text(json.dumps({"level": 1}))
    with pytest.raises(RunStoreError, match="metrics.json"):
        load_runs(tmp_path)


def test_results_imports_no_training_code():
    code = ("import sys, tickets_core.analysis.results, tickets_core.analysis, tickets_core.analysis.report; "
            "bad = [m for m in ('torch', 'transformers', 'tickets_core.training.loop', 'tickets_core.lottery.driver') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_row_carries_the_result_changing_config(tmp_path):
    from tickets_core.core.config import PARAMS

    fake_run(tmp_path, rewind_step=2, learning_rate=1e-4, eval_batch_size=7)
    fake_run(tmp_path, kind="dense", seed=1, levels=1, task="imdb")
    df = load_runs(tmp_path)
    cfg = df[df["kind"] == "imp"].iloc[0]["config"]
    assert set(cfg) == {n for n, p in PARAMS.items() if p.hashed} | {"mask_fingerprint"}
    assert (cfg["rewind_step"], cfg["learning_rate"], cfg["seed"], cfg["reset_head"]) == (2, 1e-4, 0, True)
    assert "eval_batch_size" not in cfg and "output_root" not in cfg and "data_dir" not in cfg  # not hashed
    # only some tasks: the other runs' levels are not read
    assert set(load_runs(tmp_path, tasks=["imdb"])["task"]) == {"imdb"}
    assert len(load_runs(tmp_path, tasks="nothing")) == 0
    # a config.json that is not a run config is a one-line error naming it
    d = df[df["kind"] == "dense"].iloc[0]["run_dir"]
    bad = json.loads((tmp_path / d / "config.json").read_text())
    bad["train"]["learning_rate"] = "fast"
    (tmp_path / d / "config.json").write_text(json.dumps(bad))
    with pytest.raises(RunStoreError, match=r"config.json is not a run config: learning_rate must be a number"):
        load_runs(tmp_path)
