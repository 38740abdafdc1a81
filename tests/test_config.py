"""Config dataclasses: validation, flat notebook parameters, and pinned run-folder hashes."""

from __future__ import annotations

import json

import pytest

from tickets_core.config import ConfigError, PruneConfig, RunConfig, TrainConfig, describe


def test_run_folder_hashes_are_pinned():
    # A run folder's name is part of the on-disk contract: an accidental change to
    # the hashed fields (or their defaults) would orphan every existing run.
    assert RunConfig().run_name() == "imp-rotten_tomatoes-7aaef520"
    cfg = RunConfig.from_flat(kind="transfer", task="sst2", source_run="imp-mnli-0000", source_levels=[3],
                              model__name_or_path="bert-base-uncased")
    assert cfg.run_name() == "transfer-sst2-4cf0ce15"


def test_fields_that_do_not_change_results_do_not_change_the_hash():
    base = RunConfig()
    moved = RunConfig.from_flat(output_root="/elsewhere", device="cpu", progress=False, eval_batch_size=7,
                                cache_dir="/tmp/cache")
    assert moved.run_name() == base.run_name()
    assert RunConfig.from_flat(learning_rate=3e-5).run_name() != base.run_name()
    assert RunConfig.from_flat(seed=1).run_name() != base.run_name()


def test_json_round_trip_keeps_the_name():
    cfg = RunConfig.from_flat(kind="imp", task="cola", levels=3, rate=0.2, schedule="geometric",
                              config_overrides={"num_hidden_layers": 2})
    again = RunConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.run_name() == cfg.run_name()


@pytest.mark.parametrize("params, message", [
    ({"no_such_thing": 1}, "unknown parameter 'no_such_thing'"),
    ({"train__nope": 1}, "unknown parameter 'train__nope'"),
    ({"kind": "lottery"}, "unknown run kind 'lottery'"),
    ({"strategy": "snip"}, "unknown pruning strategy 'snip'"),
    ({"schedule": "cosine"}, "unknown pruning schedule 'cosine'"),
    ({"rate": 1.0}, r"prune.rate must be in \(0, 1\)"),
    ({"levels": 10, "rate": 0.1}, "sparsity must stay below 1"),
    ({"learning_rate": 0}, "learning_rate must be > 0"),
    ({"precision": "fp8"}, "precision must be"),
    ({"kind": "random_prune"}, "needs source_run"),
    ({"max_seq_length": 4}, "max_seq_length must be >= 8"),
])
def test_bad_values_fail_at_once_with_one_line(params, message):
    with pytest.raises(ConfigError, match=message) as info:
        RunConfig.from_flat(**params)
    assert "\n" not in str(info.value)


def test_flat_names_resolve_to_their_section():
    cfg = RunConfig.from_flat(learning_rate=1e-4, levels=4, task="mrpc", model__name_or_path="tiny-bert",
                              **{"data.max_seq_length": 64})
    assert cfg.train.learning_rate == 1e-4 and cfg.prune.levels == 4
    assert cfg.data.task == "mrpc" and cfg.data.max_seq_length == 64 and cfg.model.name_or_path == "tiny-bert"


def test_unknown_nested_key_is_rejected():
    with pytest.raises(ConfigError, match="unknown config key 'train.lr'"):
        RunConfig.from_dict({"train": {"lr": 1.0}})


def test_describe_lists_every_field_with_help():
    text = describe(PruneConfig)
    for name in ("strategy", "schedule", "rate", "levels", "rewind_step", "reset_head"):
        assert f"\n{name} = " in "\n" + text
    assert "warm-up" in describe(TrainConfig)
