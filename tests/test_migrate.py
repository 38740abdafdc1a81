"""tickets_core.interop.migrate: run folders named the old way (path-dependent hashes) get today's names."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save

from tickets_core.lottery import driver

from tickets_core.interop import migrate
from tickets_core.analysis.results import load_masks, load_runs
from tickets_core.runs.paths import RunPaths


def legacy(d, new_name, source_path=None):
    """Turn a run folder into what the old code wrote: another name, no fingerprint, a source by path."""
    cfg = json.loads((d / "config.json").read_text())
    cfg["data"].pop("fingerprint")
    if source_path is not None:
        cfg["source_run"] = str(source_path)
        for k in RunPaths(d).levels():
            m = json.loads(RunPaths(d).metrics(k).read_text())
            m["source"]["run"] = source_path.name
            RunPaths(d).metrics(k).write_text(json.dumps(m))
    (d / "config.json").write_text(json.dumps(cfg))
    return d.rename(d.parent / new_name)


def test_migrate_renames_runs_and_their_references(tiny_run_config, tmp_path, capsys):
    trunk_cfg = tiny_run_config(levels=1)
    trunk = driver.run(trunk_cfg)
    branch = driver.run(tiny_run_config(kind="transfer", source_run=trunk.name, levels=1))
    names, before = (trunk.name, branch.name), load_runs(trunk.parent)
    old_trunk = legacy(trunk, "imp-rotten_tomatoes-0ld0ld00")
    legacy(branch, "transfer-rotten_tomatoes-0ld0ld01", source_path=old_trunk)
    # the old layout's carry file (root of the run folder), for a level that is done: not needed any more
    (old_trunk / "carry.safetensors").write_bytes(save({"w": torch.zeros(2)}, metadata={"level": "1"}))

    assert migrate.main([str(trunk.parent), "--dry-run"]) == 0
    assert "2 run folder(s) would be renamed" in capsys.readouterr().out
    assert sorted(p.name for p in trunk.parent.iterdir()) == ["imp-rotten_tomatoes-0ld0ld00",
                                                               "transfer-rotten_tomatoes-0ld0ld01"]
    renamed = migrate.migrate(trunk.parent, log=lambda s: None)
    assert sorted(renamed.values()) == sorted(names)
    after = load_runs(trunk.parent)
    assert sorted(after["run"].unique()) == sorted(names)
    assert after["score"].tolist() == before["score"].tolist()
    row = after[after["kind"] == "transfer"].iloc[0]
    assert row["source_run"] == trunk.name
    assert json.loads((branch / "config.json").read_text())["source_run"] == trunk.name
    assert all(torch.equal(a, b) for a, b in zip(load_masks(trunk)[1].values(), load_masks(branch)[1].values()))
    # a finished run opened with today's config resumes as done, nothing to do
    assert not (trunk / "carry.safetensors").exists() and not RunPaths(trunk).carry(1).exists()
    assert driver.run(trunk_cfg) == trunk and migrate.migrate(trunk.parent, log=lambda s: None) == {}


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert migrate.main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nowhere'} is not a folder\n"
    run = tmp_path / "imp-rotten_tomatoes-0ld0ld00"
    run.mkdir()
    (run / "status.json").write_text("{}")
    (run / "config.json").write_text('{"kind": "imp",\n  "seed": ')  # cut short
    assert migrate.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read {run / 'config.json'}: ") and err.count("\n") == 1
