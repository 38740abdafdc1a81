"""Issue 21 through real notebook executions: a notebook's paths mean the same from the repository root and from
notebooks/ (papermill's command line in both), an analysis notebook with its defaults writes beside the runs and
leaves the committed figures alone, a bad parameter stops a notebook in one line before anything is drawn, and
tickets-run executes the experiment notebook into the run folder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.notebook


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TICKETS_ROOT"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def papermill_cli(notebook: str, out: Path, cwd: Path, **params) -> subprocess.CompletedProcess:
    """``papermill <notebook> <out> -p k v ...`` run from ``cwd`` (the path given as a user would type it there)."""
    args = [sys.executable, "-m", "papermill", notebook, str(out), "--log-level", "ERROR", "--no-progress-bar"]
    for key, value in params.items():
        args += ["-p", key, str(value)]
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True)


def execute(name: str, tmp_path: Path, **params):
    """The analysis notebook ``name`` through papermill's API, from notebooks/ as a sweep runs it."""
    import papermill as pm

    from tickets_core.sweep.execute import ensure_importable

    ensure_importable()
    return pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.out.ipynb"),
                               parameters=params, kernel_name="python3", progress_bar=False,
                               cwd=str(ROOT / "notebooks"))


@pytest.mark.slow
def test_experiment_paths_mean_the_same_from_the_repository_root_and_from_notebooks(tmp_path, movie_csv_dir):
    """The same relative paths (relative to the repository root) typed in both places name the same run folder:
    the second execution finds the run done and writes nothing anywhere else."""
    rel = Path(os.path.relpath(tmp_path, ROOT))  # tmp_path, as a path relative to the repository root
    params = dict(model="tiny-bert", max_steps=1, levels=1, rate=0.3, batch_size=8, max_seq_length=16,
                  output_root=rel / "runs", data_dir=Path(os.path.relpath(movie_csv_dir, ROOT)),
                  cache_dir=rel / "cache", device="cpu", progress=False)
    first = papermill_cli("notebooks/experiment.ipynb", tmp_path / "a.ipynb", ROOT, **params)
    assert first.returncode == 0, first.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = run_dir / "level_01" / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    second = papermill_cli("experiment.ipynb", tmp_path / "b.ipynb", ROOT / "notebooks", **params)
    assert second.returncode == 0, second.stderr[-2000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run_dir.name] and metrics.stat().st_mtime_ns == stamp
    assert not (ROOT / "notebooks" / rel).exists()  # where the working directory would have put it


def test_an_analysis_notebook_with_defaults_writes_beside_the_runs_not_into_figures(tmp_path, run_root):
    committed = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROOT / "figures").iterdir()}
    rel = Path(os.path.relpath(run_root, ROOT))
    done = papermill_cli("sparsity_curves.ipynb", tmp_path / "curves.ipynb", ROOT / "notebooks", runs_root=rel)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (run_root / "figures").iterdir()) == ["sparsity_curves.pdf", "sparsity_curves.png"]
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROOT / "figures").iterdir()} == committed


def _error(excinfo) -> str:
    return f"{excinfo.value.ename}: {excinfo.value.evalue}"


def test_bad_analysis_parameters_stop_the_notebook_in_one_line_before_anything_is_drawn(tmp_path, run_root):
    from papermill.exceptions import PapermillExecutionError

    figures = tmp_path / "figs"
    with pytest.raises(PapermillExecutionError) as e:
        execute("transfer_matrix", tmp_path, runs_root=str(run_root), figures_dir=str(figures), sparsty=0.5)
    assert _error(e) == ("ConfigError: unknown parameter 'sparsty'; did you mean 'sparsity'? (papermill passed it; "
                         "this notebook's parameters are in its parameters cell)")
    with pytest.raises(PapermillExecutionError) as e:
        execute("mask_overlap", tmp_path, runs_root=str(run_root), figures_dir=str(figures), sparsity=1.5)
    assert _error(e).startswith("ConfigError: sparsity must be a fraction in [0, 1)")
    assert not figures.exists()


def test_mask_overlap_of_one_task_fails_before_drawing(tmp_path):
    from analysis_fixtures import random_mask, write_run
    from papermill.exceptions import PapermillExecutionError

    root = tmp_path / "runs"
    write_run(root, "imp", "rotten_tomatoes", 0, {0: (0.0, 0.8), 1: (0.2, 0.79)},
              masks={1: random_mask(0.8, 0)})
    with pytest.raises(PapermillExecutionError) as e:
        execute("mask_overlap", tmp_path, runs_root=str(root))
    assert _error(e).startswith("AnalysisError: mask overlap: only one mask to compare (rotten_tomatoes at 20%)")
    assert not (root / "figures").exists()


def test_tickets_run_executes_the_experiment_notebook_into_the_run_folder(tmp_path, movie_csv_dir):
    args = [sys.executable, "-m", "tickets_core.sweep.run", "model=tiny-bert", "max_steps=2", "levels=1", "rate=0.3",
            "batch_size=8", "max_seq_length=16", "device=cpu", f"data_dir={movie_csv_dir}", "cache_dir=cache",
            "report_to=[tensorboard]"]
    done = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()  # output_root: runs, relative to where it ran
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"run {run_dir.name}: imp rotten_tomatoes seed 0; folder {run_dir}")
    assert any(line.startswith(f"plan: {run_dir.name}: 2 levels x 2 steps") for line in lines)
    assert any(line.startswith("level 1: sparsity 30.0%, accuracy") for line in lines)
    executed = json.loads((run_dir / "notebook.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["output_root"] == str(tmp_path / "runs")
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"
    assert (run_dir / "tracking" / "tensorboard").is_dir() and (tmp_path / "cache").is_dir()
    assert "without encryption" not in done.stderr and "Passed unknown parameter" not in done.stderr
    again = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0 and "already done" in again.stdout
