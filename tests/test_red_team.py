"""The faults a red team found by trying tickets_core as an attacker and a careless user would (issue 23), each one
line naming the culprit, or repaired by a rerun.  Seconds: tiny configs, no notebooks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_reliability import SWEEP, copy_of, one_line, snapshot

from tickets_core.core.config import ConfigError, RunConfig
from tickets_core.lottery import driver
from tickets_core.runs.paths import RunPaths
from tickets_core.runs.status import read_status, run_state, whole


def test_a_sweep_file_that_is_not_utf8_names_the_file_and_line(tmp_path):
    from tickets_core import sweep

    path = tmp_path / "s.yaml"
    path.write_bytes(SWEEP.format(root=tmp_path / "runs").replace("seeds: [0]", "seeds: [0] # caf\xe9").encode("latin-1"))
    with pytest.raises(sweep.SweepError) as e:
        sweep.plan_sweep(path)
    assert one_line(e.value).startswith(f"{path}:7: not utf-8 text (byte 0xe9 at column ")


@pytest.mark.parametrize("flat,message", [
    ({"learning_rate": float("inf")}, "learning_rate must be > 0 and finite, got inf"),
    ({"weight_decay": -1.0}, "weight_decay must be >= 0 and finite, got -1.0"),
    ({"seed": 2**70}, f"seed must be in [0, 2**32), got {2**70}"),
    ({"seed": -1}, "seed must be in [0, 2**32), got -1"),
    ({"config_overrides": {"hidden_size": -1}}, "config_overrides hidden_size: -1 must be >= 0 and finite"),
    ({"num_epochs": float("inf")}, "num_epochs must be > 0 and finite, got inf"),
])
def test_values_that_failed_late_or_passed_silently_are_one_line_up_front(flat, message):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_flat(**flat)
    assert one_line(e.value) == message


@pytest.mark.parametrize("flat,message", [
    ({"config_overrides": {"num_hidden_layers": 0}},
     "config_overrides: num_hidden_layers must be a whole number >= 1 (the model's is 2), got 0"),
    ({"config_overrides": {"hidden_size": 64.5}},
     "config_overrides: hidden_size must be a whole number >= 1 (the model's is 64), got 64.5"),
    ({"max_seq_length": 100000}, "max_seq_length must be <= 512, the positions 'tiny-bert' embeds, got 100000"),
    ({"max_seq_length": 514, "model": "tiny-roberta"},  # positions start after pad_token_id (0 here)
     "max_seq_length must be <= 513, the positions 'tiny-roberta' embeds, got 514"),
])
def test_model_limits_are_checked_before_anything_is_written(flat, message, tiny_run_config, tmp_path):
    cfg = tiny_run_config(**flat)
    with pytest.raises(ConfigError) as e:
        driver.run(cfg)
    assert one_line(e.value) == message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("config.json"))


def test_a_level_whose_loss_is_not_finite_fails_in_one_line(tiny_run_config, tmp_path):
    cfg = tiny_run_config(learning_rate=1e30, levels=1, max_steps=3)  # finite, but the loss overflows
    before = snapshot(tmp_path) if (tmp_path / "runs").exists() else {}
    with pytest.raises(FloatingPointError) as e:
        driver.run(cfg)
    assert one_line(e.value).startswith("level 0: the training loss is nan (not finite) after 3 steps at learning_rate "
                                        "1e+30; lower the learning rate"), str(e.value)
    run = tmp_path / "runs" / cfg.run_name()
    assert not (run / "level_00" / "metrics.json").exists() and before == {}


def _files(run: Path) -> dict:
    """Each level's mask (as bytes of its tensors) and sparsity report."""
    from tickets_core.analysis.results import load_masks

    out = {k: {n: t.numpy().tobytes() for n, t in m.items()} for k, m in load_masks(run).items()}
    out.update({p.parent.name: p.read_text() for p in run.glob("level_*/sparsity.json")})
    return out


@pytest.mark.parametrize("damage", ["delete level_01", "truncate level_02's mask", "bad level_01 metrics.json"])
def test_a_deleted_or_damaged_finished_level_is_run_again_and_the_rest_kept(damage, tiny_trunk, tmp_path,
                                                                           tiny_config_factory):
    cfg, run = copy_of(tiny_trunk, tmp_path, tiny_config_factory)
    masks = _files(run)
    paths = RunPaths(run)
    kept = {0: paths.metrics(0), 1: paths.metrics(1), 2: paths.metrics(2)}
    if damage == "delete level_01":
        shutil.rmtree(paths.level_dir(1))
        redone = {0, 1}  # level 1's mask lay in its folder: level 0 writes it again
    elif damage == "truncate level_02's mask":
        raw = paths.mask(2).read_bytes()
        paths.mask(2).write_bytes(raw[: len(raw) // 2])
        redone = {1, 2}
    else:
        paths.metrics(1).write_text('{"level": 1, "spars')
        redone = {1}
    assert not whole(run)  # a sweep runs it again instead of counting it done
    if damage == "delete level_01":  # the status says so too
        assert run_state(run) == "interrupted" and "a rerun redoes the others" in read_status(run)["error"]
    before = {k: p.stat().st_mtime_ns for k, p in kept.items() if p.is_file()}
    driver.run(cfg)
    assert run_state(run) == "done" and paths.levels() == [0, 1, 2]
    assert _files(run) == masks  # the same masks, bit for bit
    assert {k for k, p in kept.items() if before.get(k) != p.stat().st_mtime_ns} == redone


def test_report_skips_an_unreadable_run_with_one_line(tiny_trunk, tmp_path, capsys):
    from tickets_core.analysis.report import report

    good, bad = tmp_path / "runs" / tiny_trunk.name, tmp_path / "runs" / "imp-rotten_tomatoes-0badc0de"
    shutil.copytree(tiny_trunk, good)
    shutil.copytree(tiny_trunk, bad)
    (bad / "config.json").write_text('{"kind": "imp", "da')
    expected = report(str(good))
    capsys.readouterr()
    assert report(str(tmp_path / "runs")) == expected
    err = capsys.readouterr().err.splitlines()
    assert err == [f"skipping run {bad.name}: cannot read {bad / 'config.json'}: "
                   f"{err[0].split('config.json: ')[1]}"] and "\n" not in err[0]


def test_the_tokenized_cache_folder_honours_the_umask(tmp_path, movie_csv_dir, tokenizer):
    import os

    from tickets_core.core.config import DataConfig
    from tickets_core.tasks import get_task

    old = os.umask(0o002)  # a group-shared cache
    try:
        get_task("rotten_tomatoes").load(DataConfig(task="rotten_tomatoes", data_dir=str(movie_csv_dir),
                                                    cache_dir=str(tmp_path / "cache"), max_seq_length=16), tokenizer)
    finally:
        os.umask(old)
    folders = [p for p in (tmp_path / "cache").rglob("*") if p.is_dir()]
    assert folders and {oct(p.stat().st_mode & 0o777) for p in folders} == {oct(0o775)}


def test_an_unreachable_scheduler_fails_in_one_line_within_seconds():
    import socket
    import time

    pytest.importorskip("dask.distributed")
    from tickets_core.sweep.cluster import SCHEDULER_TIMEOUT_S, dask_engine
    from tickets_core.sweep.yamlfile import SweepError

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(SweepError) as e:
        dask_engine(f"tcp://127.0.0.1:{port}")
    assert one_line(e.value).startswith(f"cannot reach the Dask scheduler tcp://127.0.0.1:{port}: ")
    assert time.monotonic() - start < SCHEDULER_TIMEOUT_S + 10


def test_partial_notebooks_a_killed_attempt_left_are_removed(tmp_path):
    import concurrent.futures as cf

    import nbformat

    from test_sweep_runner import finish_run, jobs

    from tickets_core.core.fsio import partial_name
    from tickets_core.sweep import execute
    from tickets_core.sweep.worker import publish_notebook

    done, retried = jobs(tmp_path, 2)
    finish_run(done)  # finished by a kernel that outlived its sweep: no notebook.ipynb, its partial left
    partial_name(done.output).write_text('{"cells": [')
    with cf.ThreadPoolExecutor(1) as ex:
        assert [o.status for o in execute.run_plan([done], ex, progress=False, log=lambda s: None)] == ["done"]
    assert list(done.run_dir.iterdir()) and not list(done.run_dir.glob(".*partial*"))
    retried.run_dir.mkdir(parents=True)
    partial_name(retried.output).write_text('{"cells": [')  # the killed attempt's (Dask ran it again)
    tmp = partial_name(retried.output)
    nbformat.write(nbformat.v4.new_notebook(metadata={"papermill": {}}), tmp)
    publish_notebook(tmp, retried.output)
    assert [p.name for p in retried.run_dir.iterdir()] == ["notebook.ipynb"]


@pytest.mark.parametrize("key,value,message", [
    ("sparsity", 1.5, "sparsity must be a fraction in [0, 1) (e.g. 0.6 for 60%) or None, got 1.5"),
    ("sparsity", "-0.1", "sparsity must be a fraction in [0, 1) (e.g. 0.6 for 60%) or None, got -0.1"),
    ("level", -1, "level must be a level number >= 0, 'highest_matching' or None, got -1"),
    ("level", 2.5, "level must be a level number >= 0, 'highest_matching' or None, got 2.5"),
])
def test_analysis_notebooks_range_check_sparsity_and_level_in_one_line(key, value, message, tmp_path):
    from tickets_core.sweep import parameters

    with pytest.raises(ConfigError) as e:
        parameters.analysis({"runs_root": str(tmp_path), "sparsity": None, "level": None, key: value})
    assert one_line(e.value) == message and e.value._render_traceback_() == [f"ConfigError: {message}"]


def test_over_seeds_keeps_transfers_from_different_source_seeds_apart():
    import pandas as pd

    from tickets_core.analysis.common import over_seeds

    rows = pd.DataFrame({"task": ["rte"] * 4, "seed": [0, 0, 0, 1], "sparsity": [0.5] * 4,
                         "source_run": ["imp-sst2-s0", "imp-sst2-s0", "imp-sst2-s1", "imp-sst2-s0"],
                         "score": [0.6, 0.6, 0.8, 0.7]})  # rows 0 and 1: one level read by two transfer runs
    out = over_seeds(rows, ["task"], "score").iloc[0]
    assert out["n_seeds"] == 3 and out["mean"] == pytest.approx(0.7) and out["std"] == pytest.approx(0.1)
    plain = over_seeds(rows.drop(columns="source_run"), ["task"], "score").iloc[0]
    assert plain["n_seeds"] == 2  # without the column: by seed, as before


def test_an_unknown_hub_id_without_the_hub_fails_in_one_line_within_seconds():
    """Without HF_HUB_OFFLINE the hub library retries an unreachable hub for ~25 s; the probe makes it one line at
    once (the probe's answer is fixed to 'unreachable' here, so the test is the same with or without a network)."""
    import os
    import subprocess
    import sys

    code = ("import time\n"
            "from tickets_core.models import build\n"
            "from tickets_core.core.config import ModelConfig\n"
            "build._HUB['huggingface.co'] = False\n"
            "t = time.monotonic()\n"
            "try:\n"
            "    build.load_config(ModelConfig('no-such-org/no-such-model'))\n"
            "except Exception as e:\n"
            "    print(f'{type(e).__name__}: {e}')\n"
            "print(f'{time.monotonic() - t:.1f}')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")
           and "PROXY" not in k.upper()}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("ConfigError: model 'no-such-org/no-such-model' is neither"), lines
    assert lines[0].endswith("the hub is unreachable from here (set HF_HUB_OFFLINE=1 to say so)")
    assert float(lines[1]) < 5.0


@pytest.mark.parametrize("legacy", [False, True])
def test_a_mask_saved_with_pickle_protocol_4_imports_and_code_in_one_is_refused(legacy, tmp_path, capsys):
    import torch
    from test_reference import _RunsCode, reference_mask_file

    from tickets_core.interop.importers import import_reference_mask, main as import_main

    expect = reference_mask_file(tmp_path / "p2.pt")
    masks = torch.load(tmp_path / "p2.pt")
    kw = {"pickle_protocol": 4, **({"_use_new_zipfile_serialization": False} if legacy else {})}
    torch.save(masks, tmp_path / "p4.pt", **kw)
    got = import_reference_mask(tmp_path / "p4.pt", "tiny-bert")
    assert set(got) == set(expect) and all(torch.equal(got[k], expect[k]) for k in expect)
    marker = tmp_path / "ran"
    torch.save({"a": _RunsCode(str(marker))}, tmp_path / "evil.pt", **kw)
    capsys.readouterr()
    assert import_main([str(tmp_path / "evil.pt"), str(tmp_path / "out.safetensors"), "--model", "tiny-bert"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused it" in err and "Unsupported global: posix.mkdir" in err, err
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_local_model_folders_are_named_by_content_not_by_path(tmp_path, movie_csv_dir):
    from tickets_core.lottery.identity import resolve

    one, two = tmp_path / "ckpt", tmp_path / "elsewhere" / "copy"
    one.mkdir()
    (one / "config.json").write_text('{"model_type": "bert", "hidden_size": 64}')
    (one / "model.safetensors").write_bytes(b"weights" * 100)
    shutil.copytree(one, two)

    def name(folder) -> str:
        return resolve(RunConfig.from_flat(model=str(folder), data_dir=str(movie_csv_dir))).run_name()

    assert name(one) == name(two) and name(one) != resolve(RunConfig.from_flat(data_dir=str(movie_csv_dir))).run_name()
    (two / "config.json").write_text('{"model_type": "bert", "hidden_size": 96}')  # edited: another model
    assert name(two) != name(one)
    hub = resolve(RunConfig.from_flat(model="bert-base-uncased", data_dir=str(movie_csv_dir)))
    assert hub.model.fingerprint is None and hub.hashed_dict()["model"] == {"name_or_path": "bert-base-uncased"}



def test_a_damaged_config_json_is_written_again_by_a_rerun(tiny_trunk, tmp_path, tiny_config_factory, capsys):
    cfg, run = copy_of(tiny_trunk, tmp_path, tiny_config_factory)
    good = (run / "config.json").read_text()
    (run / "config.json").write_text(good[: len(good) // 2])
    assert not whole(run)  # a sweep runs it again instead of counting it done
    before = {p: p.stat().st_mtime_ns for p in run.glob("level_*/metrics.json")}
    capsys.readouterr()
    driver.run(cfg)
    from tickets_core.core.fsio import read_json
    from tickets_core.runs.store import config_difference

    assert config_difference(read_json(run / "config.json"), cfg) == "" and whole(run)
    assert f"{run / 'config.json'} was unreadable; wrote it again" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in run.glob("level_*/metrics.json")} == before  # no level redone
