"""The notebooks: committed clean, and executed for real through papermill by a tiny sweep.

One module-scoped sweep (tiny-bert, a fixture CSV, 2 optimizer steps per
level) executes every notebook once: experiment.ipynb (two IMP trunks, a
random-pruning branch, a transfer), then the three analysis notebooks.  The tests assert on what those executions wrote: run folders with
level metrics, executed notebooks beside them, figures as PNG and PDF.  Takes
about two minutes on two CPU cores (a kernel start costs seconds).
"""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path

import nbformat
import pytest

from tickets_core import sweep
from tickets_core.core.config import PARAMS
from tickets_core.sweep.notebook import (NOTEBOOK_DEFAULTS, check_clean, notebook_parameters, parameters_cells,
                                         parameters_source)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPERIMENT = ("experiment",)
ANALYSIS = ("sparsity_curves", "mask_overlap", "transfer_matrix")
EXTRA = ("stability", "early_bird", "structured")  # analysis notebooks executed by tests/test_stability.py,
# test_early_bird.py and test_structured.py
FIGURES = ("sparsity_curves", "mask_overlap", "layer_profile", "transfer_matrix")


# ---------------------------------------------------------------------------
# Committed notebooks
# ---------------------------------------------------------------------------


def test_every_notebook_is_committed_clean():
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(EXPERIMENT + ANALYSIS + EXTRA)
    for name in names:
        path = NOTEBOOKS / f"{name}.ipynb"
        assert check_clean(path) == [], name  # no outputs, no execution counts, one parameters cell, python3
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        src = parameters_cells(nb)[0].source
        assert all(line.count("=") <= 1 for line in src.splitlines()), \
            f"{name}: papermill skips a parameter line with a second '=', even in its comment"
        params = notebook_parameters(path)
        if name in ANALYSIS + EXTRA:
            assert {"runs_root", "figures_dir", "width"} <= set(params), name


def test_the_experiment_notebook_takes_every_parameter_from_the_config():
    """Its parameters cell is generated from the config declarations, and its config cell reads them all."""
    nb = nbformat.read(NOTEBOOKS / "experiment.ipynb", as_version=4)
    assert parameters_cells(nb)[0].source == parameters_source(), \
        "regenerate it: python -m tickets_core.sweep.notebook --sync"
    params = notebook_parameters(NOTEBOOKS / "experiment.ipynb")
    assert list(params) == list(PARAMS)
    assert {k: v for k, v in params.items() if v != PARAMS[k].default} == NOTEBOOK_DEFAULTS
    assert any("experiment_config(globals())" in c.source for c in nb.cells if c.cell_type == "code")


# ---------------------------------------------------------------------------
# One real sweep through papermill
# ---------------------------------------------------------------------------


def write_reviews(folder: Path) -> Path:
    """``combined_movie_reviews.csv`` with rotten_tomatoes and imdb rows (the offline tasks' layout)."""
    rng = random.Random(0)
    pos = "good great wonderful moving brilliant funny charming fresh smart warm".split()
    neg = "bad dull boring awful flat tired stale weak messy lazy".split()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "combined_movie_reviews.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label", "source"])
        for source in ("rotten_tomatoes", "imdb"):
            for i in range(64):
                y = i % 2
                w.writerow(["the film is " + " ".join(rng.choices(pos if y else neg, k=rng.randint(3, 8))), y, source])
    return folder


SWEEP = """\
output_root: {root}
figures_dir: {figs}
data_dirs:
  rotten_tomatoes: {data}
  imdb: {data}
defaults:
  model: tiny-bert
  max_steps: 2
  batch_size: 8
  eval_batch_size: 16
  max_seq_length: 16
  learning_rate: 0.001
  device: cpu
  cache_dir: {cache}
trunks:
  - name: imp
    kind: imp
    tasks: [rotten_tomatoes, imdb]
    seeds: [0]
    levels: 2
    rate: 0.3
branches:
  - kinds: [random_prune]
    trunk: imp
    tasks: [rotten_tomatoes]
transfers:
  - trunk: imp
    sources: [rotten_tomatoes]
    targets: [imdb]
    source_levels: [1, 2]
analysis:
  - sparsity_curves
  - mask_overlap
  - transfer_matrix
"""


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """Runs the tiny sweep once (2 workers); returns its paths, exit status and output."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("nb_sweep")
    path = tmp / "tiny.yaml"
    path.write_text(SWEEP.format(root=tmp / "runs", figs=tmp / "figures", data=write_reviews(tmp / "data"),
                                 cache=tmp / "cache"))
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = sweep.main([str(path), "--workers", "2"])
    return {"file": path, "root": tmp / "runs", "figures": tmp / "figures", "status": status,
            "out": out.getvalue(), "time_s": time.perf_counter() - start}


@pytest.mark.notebook
def test_sweep_executes_every_notebook(tiny_sweep):
    assert tiny_sweep["status"] == 0, tiny_sweep["out"]
    assert "sweep: 7 ran, 0 already done, 0 failed, 0 skipped" in tiny_sweep["out"]
    plan = sweep.plan_sweep(tiny_sweep["file"])
    assert sorted({j.notebook.stem for j in plan.jobs}) == sorted(EXPERIMENT + ANALYSIS)
    for job in plan.jobs:
        nb = nbformat.read(job.output, as_version=4)  # the executed notebook, beside its run folder
        recorded = nb.metadata["papermill"]["parameters"]
        assert recorded == json.loads(json.dumps(job.parameters))
        assert nb.metadata["papermill"]["exception"] is not True
        if job.is_run:
            assert job.output.parent == job.run_dir
            assert json.loads((job.run_dir / "status.json").read_text())["state"] == "done"
    summary = nbformat.read(plan.jobs[0].output, as_version=4).cells[-1].outputs
    assert "sparsity" in json.dumps(summary) and "score" in json.dumps(summary)


@pytest.mark.notebook
def test_runs_written_by_the_notebooks(tiny_sweep):
    from tickets_core.analysis import results
    runs = results.load_runs(tiny_sweep["root"])
    by_kind = {k: g for k, g in runs.groupby("kind")}
    assert set(by_kind) == {"imp", "random_prune", "transfer"}
    imp = by_kind["imp"]
    for task in ("rotten_tomatoes", "imdb"):
        levels = imp[imp["task"] == task].sort_values("level")
        assert levels["level"].tolist() == [0, 1, 2]
        assert levels["sparsity"].tolist() == pytest.approx([0.0, 0.3, 0.6], abs=1e-3)
        assert levels["score"].between(0, 1).all() and (levels["main_metric"] == "accuracy").all()
    assert {1, 2} <= set(by_kind["random_prune"]["level"])
    transfer = by_kind["transfer"]
    assert sorted(transfer["level"]) == [1, 2]
    assert set(transfer["task"]) == {"imdb"} and set(transfer["source_task"]) == {"rotten_tomatoes"}
    assert transfer["sparsity"].tolist() == pytest.approx([0.3, 0.6], abs=1e-3)


@pytest.mark.notebook
def test_analysis_notebooks_write_png_and_pdf(tiny_sweep):
    for name in FIGURES:
        for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
            f = tiny_sweep["figures"] / f"{name}.{ext}"
            assert f.is_file() and f.read_bytes()[:4] == magic, f


@pytest.mark.notebook
def test_rerunning_the_sweep_skips_finished_runs(tiny_sweep, capsys):
    status = sweep.main([str(tiny_sweep["file"]), "--only", "imp *"])
    out = capsys.readouterr().out
    assert status == 0 and "sweep: 0 ran, 2 already done, 0 failed, 0 skipped" in out


@pytest.mark.notebook
def test_a_failing_notebook_is_reported_in_one_line(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # execute_job may extend it
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("value = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise ValueError(f'bad value {value}\\nsecond line')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "fails.ipynb")
    job = sweep.Job(name="analysis:fails", label="analysis fails", notebook=tmp_path / "fails.ipynb",
                    output=tmp_path / "out" / "fails.ipynb", parameters={"value": 7})
    res = sweep.execute_job(job)
    assert res["ok"] is False and res["error"] == "ValueError: bad value 7"
    assert job.output.is_file()  # the executed notebook, with its traceback, is kept for inspection



@pytest.mark.notebook
def test_a_moved_study_is_found_done_and_gives_the_same_tables(tiny_sweep, tmp_path, capsys):
    """Move the whole study (runs, data, sweep file) elsewhere, rerun the sweep there: nothing runs again
    (run names hash no path: data by content, sources by run name), and the report's tables are the same."""
    import warnings

    from tickets_core.analysis import report
    old = tiny_sweep["root"].parent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = report.report(str(tiny_sweep["root"]))
    new = tmp_path / "moved"
    old.rename(new)
    try:
        sweep_file = new / tiny_sweep["file"].name
        sweep_file.write_text(sweep_file.read_text().replace(str(old), str(new)))
        assert str(old) not in sweep_file.read_text()
        capsys.readouterr()
        assert sweep.main([str(sweep_file), "--only", "* seed *"]) == 0
        out = capsys.readouterr().out
        assert "sweep: 0 ran, 4 already done, 0 failed, 0 skipped" in out, out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            after = report.report(str(new / "runs"))
        assert after == before and "### Transfer" in after and "### Highest matching sparsity" in after
    finally:
        new.rename(old)  # the module's other tests read the sweep where it was
