"""Run store: folder naming, atomic writes, resume bookkeeping, config mismatch."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tickets_core.core.config import RunConfig
from tickets_core.core.fsio import atomic_write_json
from tickets_core.lottery.identity import resolve
from tickets_core.pruning.masks import Mask
from tickets_core.runs.paths import RunPaths, is_run_dir
from tickets_core.runs.store import Run, RunStoreError


def cfg_at(tmp_path, **kw) -> RunConfig:
    return resolve(RunConfig.from_flat(output_root=str(tmp_path), model="tiny-bert", **kw))


def test_paths_have_one_method_per_artifact(tmp_path):
    p = RunPaths(tmp_path / "r")
    assert p.mask(3) == tmp_path / "r" / "level_03" / "mask.safetensors"
    assert p.metrics(12).parent.name == "level_12"
    assert {p.config().name, p.status().name, p.rewind().name, p.sparsity(0).name} == {
        "config.json", "status.json", "rewind.safetensors", "sparsity.json"}


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / "a" / "x.json"
    atomic_write_json(path, {"v": 1})
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        atomic_write_json(path, {"v": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(path.parent) == ["x.json"]


def test_open_creates_resumes_and_tracks_levels(tmp_path):
    cfg = cfg_at(tmp_path, kind="imp", levels=2)
    run = Run.open(cfg, levels_planned=3)
    assert run.root == tmp_path / cfg.run_name() and run.root.name.startswith("imp-rotten_tomatoes-")
    assert is_run_dir(run.root)
    assert RunConfig.from_dict(json.loads(run.paths.config().read_text())).hashed_dict() == cfg.hashed_dict()
    assert run.status["state"] == "running" and run.status["levels_done"] == []
    mask = Mask({"w": torch.tensor([True, False, True, True])})
    run.write_level(0, Mask({"w": torch.ones(4, dtype=torch.bool)}), {"level": 0})
    run.write_level(1, mask, {"level": 1})
    assert not run.paths.mask(0).exists()  # a dense level stores no mask
    assert torch.equal(Mask.load(run.paths.mask(1))["w"], mask["w"])
    assert json.loads(run.paths.sparsity(1).read_text())["total"]["sparsity"] == 0.25
    # A half-finished level (mask but no metrics) does not count as done.
    mask.save(run.paths.mask(2))
    again = Run.open(cfg, levels_planned=3)
    assert [again.level_done(k) for k in range(3)] == [True, True, False]
    assert again.status["levels_done"] == [0, 1]
    again.set_state("failed", error="RuntimeError: boom")
    assert again.status["state"] == "failed" and again.status["error"] == "RuntimeError: boom"


def test_non_result_fields_may_change_on_resume_but_a_different_config_is_an_error(tmp_path):
    cfg = cfg_at(tmp_path, seed=1)
    run = Run.open(cfg)
    Run.open(cfg_at(tmp_path, seed=1, device="cpu", progress=False))  # same hash, only non-hashed fields
    stored = json.loads(run.paths.config().read_text())
    stored["seed"] = 2
    run.paths.config().write_text(json.dumps(stored))
    with pytest.raises(RunStoreError, match="different config"):
        Run.open(cfg)
    run.paths.config().write_text("{not json")  # damaged: the folder's name (the config's hash) says what it was
    lines = []
    Run.open(cfg, say=lines.append)
    assert json.loads(run.paths.config().read_text())["seed"] == 1 and len(lines) == 1 and "unreadable" in lines[0]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """Shared run folders stay readable: atomic writes get what a plain open() would give."""
    old = os.umask(umask)
    try:
        path = atomic_write_json(tmp_path / f"x{umask}.json", {"v": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
