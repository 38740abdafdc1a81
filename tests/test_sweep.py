"""tickets_core.sweep: expansion, ordering, validation with line numbers, resume, failure reporting.

These tests plan sweeps against the real notebooks' parameters cells but
replace the papermill execution with a fake runner on a thread pool, so they
take seconds.  The real end-to-end sweep through papermill (every notebook,
tiny-bert, fixture data) is in tests/test_notebooks.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import textwrap

import pytest

from tickets_core import sweep
from tickets_core.core.config import RunConfig
from tickets_core.lottery.identity import resolve
from tickets_core.sweep import SweepError

from sweep_fixtures import BASE, FakeRunner, run


# ---------------------------------------------------------------------------
# Expansion
# ---------------------------------------------------------------------------


def test_expansion_counts_names_and_dependencies(make_sweep, tmp_path):
    plan = sweep.plan_sweep(make_sweep())
    labels = [j.label for j in plan.jobs]
    # 2 tasks x 2 seeds imp + 1 dense + 2 kinds x 1 task x 2 seeds + 2 sources x 2 targets - 2 self + 2 analysis
    assert len(plan.jobs) == 4 + 1 + 4 + 2 + 2
    assert "transfer rotten_tomatoes->imdb seed 0" in labels and "transfer imdb->imdb seed 0" not in labels
    # Each run's folder name is the one RunConfig gives for the same values (independent of the notebooks).
    expected = resolve(RunConfig.from_flat(kind="imp", task="imdb", seed=1, model="tiny-bert", max_steps=2,
                                           levels=2, rate=0.3)).run_name()
    trunk = next(j for j in plan.jobs if j.label == "imp imdb seed 1")
    assert trunk.name == expected and trunk.run_dir == tmp_path / "runs" / expected
    assert trunk.output == trunk.run_dir / "notebook.ipynb" and trunk.notebook.name == "experiment.ipynb"
    assert trunk.parameters["output_root"] == str(tmp_path / "runs") and trunk.parameters["progress"] is False
    branch = next(j for j in plan.jobs if j.label == "random_reinit imdb seed 1")
    # a branch names its trunk by run name (resolved under output_root), so the folder can move
    assert branch.deps == [trunk.name] and branch.parameters["source_run"] == trunk.name
    assert branch.notebook.name == "experiment.ipynb"
    assert {k: branch.parameters[k] for k in ("levels", "rate", "max_steps")} == {"levels": 2, "rate": 0.3,
                                                                                  "max_steps": 2}
    tr = next(j for j in plan.jobs if j.label == "transfer imdb->rotten_tomatoes seed 0")
    src = next(j for j in plan.jobs if j.label == "imp imdb seed 0")
    assert tr.deps == [src.name] and tr.parameters["source_levels"] == [1, 2]
    assert tr.parameters["task"] == "rotten_tomatoes" and tr.name.startswith("transfer-rotten_tomatoes-")
    ana = plan.job("analysis:mask_overlap")
    assert ana.after_all and ana.parameters == {"sparsity": 0.3, "runs_root": str(tmp_path / "runs"),
                                                "figures_dir": str(tmp_path / "figs")}
    assert ana.output == tmp_path / "runs" / "_analysis" / "mask_overlap.ipynb"


def test_duplicate_runs_are_planned_once(make_sweep):
    text = BASE.replace("  - kind: dense\n    tasks: [rotten_tomatoes]",
                        "  - name: again\n    kind: imp\n    levels: 2\n    rate: 0.3\n    tasks: [imdb]")
    plan = sweep.plan_sweep(make_sweep(text))
    assert len([j for j in plan.jobs if j.label == "imp imdb seed 0"]) == 1


def test_trunk_on_disk_is_used_without_dependency(make_sweep, tmp_path):
    text = BASE.split("branches:")[0] + textwrap.dedent("""\
        branches:
          - kinds: [random_prune]
            trunk:
              kind: imp
              levels: 4
            tasks: [imdb]
            seeds: [5]
        """)
    name = resolve(RunConfig.from_flat(kind="imp", task="imdb", seed=5, model="tiny-bert", max_steps=2,
                                       levels=4)).run_name()
    with pytest.raises(SweepError, match=rf"sweep.yaml:17: random_prune imdb seed 5: its trunk run {name} "
                                         r"\(imp imdb seed 5\) is neither in this sweep nor on disk"):
        sweep.plan_sweep(make_sweep(text))
    (tmp_path / "runs" / name).mkdir(parents=True)
    (tmp_path / "runs" / name / "status.json").write_text('{"state": "running"}')
    with pytest.raises(SweepError, match="is on disk but not finished"):
        sweep.plan_sweep(make_sweep(text))
    (tmp_path / "runs" / name / "status.json").write_text('{"state": "done"}')
    job = next(j for j in sweep.plan_sweep(make_sweep(text)).jobs if j.label.startswith("random_prune"))
    assert job.deps == [] and job.parameters["source_run"] == name


# ---------------------------------------------------------------------------
# Validation: one line, naming the line of the sweep file
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("old,new,line,message", [
    ("figures_dir:", "figure_dir:", 2, "unknown key 'figure_dir'"),
    ("  max_steps: 2", "  max_step: 2", 5, "unknown key 'max_step'"),
    ("    tasks: [rotten_tomatoes, imdb]", "    tasks: [rotten_tomatoes,\n      imbd]", 10,
     "unknown task 'imbd'"),
    ("    trunk: imp\n    tasks: [imdb]", "    trunk: impp\n    tasks: [imdb]", 18, "unknown trunk 'impp'"),
    ("  max_steps: 2", "  max_steps: 2\n  seed: 3", 6, "'seed' is set by the sweep"),
    ("  max_steps: 2", "  max_steps: 2\n  max_steps: 3", 6, "duplicate key 'max_steps'"),
    ("  - sparsity_curves", "  - notebook: sparsity_curves\n    levels: 3", 27, "unknown key 'levels'"),
    ("  - sparsity_curves", "  - no_such_notebook", 26, "no notebook"),
    ("  - kinds: [random_prune, random_reinit]", "  - kinds: [transfer]", 17, "transfers have their own section"),
    ("    seeds: [0, 1]", "    seeds: [0, one]", 10, "seeds must be integers"),
    ("trunks:", "trunks: [\n", 8, "invalid YAML"),
])
def test_bad_sweep_files_fail_naming_the_line(make_sweep, old, new, line, message):
    assert old in BASE
    path = make_sweep(BASE.replace(old, new, 1))
    with pytest.raises(SweepError) as e:
        sweep.plan_sweep(path)
    text = str(e.value)
    assert text.startswith(f"{path}:{line}: ") and message in text and "\n" not in text


@pytest.mark.parametrize("old,new,line,message", [
    ("    rate: 0.3", "    rate: 3", 12, "imp rotten_tomatoes seed 0: rate must be in (0, 1)"),
    ("    levels: 2", "    levels: two", 11, "imp rotten_tomatoes seed 0: levels must be an integer, got 'two'"),
    ("  max_steps: 2", "  max_steps: 2.5", 5, "max_steps must be an integer or None, got 2.5"),
    ("  max_steps: 2", "  max_steps: 2\n  train.learning_rate: -1", 6, "learning_rate must be > 0"),
])
def test_bad_values_are_reported_by_the_config_at_the_line_that_set_them(make_sweep, old, new, line, message):
    test_bad_sweep_files_fail_naming_the_line(make_sweep, old, new, line, message)


def test_cli_reports_bad_file_before_running(make_sweep, capsys, monkeypatch):
    called = []
    monkeypatch.setattr(sweep.execute, "process_executor", lambda *a: called.append(a))
    status = sweep.main([str(make_sweep(BASE.replace("figures_dir:", "figure_dir:")))])
    assert status == 2 and not called
    assert "sweep.yaml:2: unknown key 'figure_dir'" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Execution order, resume, failures
# ---------------------------------------------------------------------------


def test_trunks_run_before_their_branches_and_analysis_last(make_sweep):
    plan = sweep.plan_sweep(make_sweep())
    runner = FakeRunner()
    outcomes = run(plan, runner, workers=3)
    assert [o.status for o in outcomes] == ["ok"] * len(plan.jobs)
    pos = {name: i for i, name in enumerate(runner.calls)}
    for job in plan.jobs:
        for dep in job.deps:
            assert pos[dep] < pos[job.name]
    runs = [pos[j.name] for j in plan.jobs if j.is_run]
    assert all(pos[j.name] > max(runs) for j in plan.jobs if not j.is_run)


def test_finished_runs_are_skipped_so_a_sweep_resumes(make_sweep):
    plan = sweep.plan_sweep(make_sweep())
    first = FakeRunner(fail=("random_prune",))
    run(plan, first)
    second = FakeRunner()
    outcomes = {o.job.label: o.status for o in run(sweep.plan_sweep(make_sweep()), second)}
    assert outcomes["imp imdb seed 0"] == "done" and outcomes["random_prune imdb seed 0"] == "ok"
    assert sorted(second.calls) == sorted(j.name for j in plan.jobs
                                          if j.label.startswith("random_prune") or not j.is_run)


def test_failures_skip_dependents_and_are_reported(make_sweep):
    plan = sweep.plan_sweep(make_sweep())
    runner = FakeRunner(fail=("imp imdb seed 0",))
    outcomes = {o.job.label: o for o in run(plan, runner)}
    assert outcomes["imp imdb seed 0"].status == "failed"
    for label in ("random_prune imdb seed 0", "random_reinit imdb seed 0", "transfer imdb->rotten_tomatoes seed 0"):
        assert outcomes[label].status == "skipped" and "which failed" in outcomes[label].error
    assert outcomes["random_prune imdb seed 1"].status == "ok"         # other seed unaffected
    assert outcomes["analysis sparsity_curves"].status == "ok"          # analysis still runs on what finished
    text, status = sweep.report(list(outcomes.values()))
    assert status == 1
    assert text.splitlines()[0] == f"sweep: {len(plan.jobs) - 4} ran, 0 already done, 1 failed, 3 skipped"
    assert "  FAILED imp imdb seed 0: RuntimeError: boom in imp imdb seed 0" in text


def test_main_runs_and_reports_with_exit_status(make_sweep, monkeypatch, capsys):
    monkeypatch.setattr(sweep.execute, "process_executor", lambda workers, gpus: cf.ThreadPoolExecutor(workers))
    monkeypatch.setattr(sweep.execute, "execute_job", FakeRunner(fail=("analysis",)))
    assert sweep.main([str(make_sweep()), "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert "2 failed, 0 skipped" in out and "FAILED analysis mask_overlap: RuntimeError: boom" in out
    monkeypatch.setattr(sweep.execute, "execute_job", FakeRunner())
    assert sweep.main([str(make_sweep()), "--only", "analysis*"]) == 0
    assert "sweep: 2 ran, 0 already done" in capsys.readouterr().out


def test_dry_run_and_only(make_sweep, capsys):
    path = make_sweep()
    assert sweep.main([str(path), "--dry-run", "--only", "random_prune imdb seed 1"]) == 0
    out = capsys.readouterr().out
    lines, cost = out.split("\n\nCost")[0].splitlines(), out.split("\n\nCost")[1].splitlines()
    # the selected branch and the unfinished trunk it needs, trunk first; then their cost (sweep/estimate.py)
    assert len(lines) == 2 and "imp imdb seed 1" in lines[0] and "random_prune imdb seed 1" in lines[1]
    # 2 runs, 5 fine-tunings: IMP's levels 0-2, random pruning's 1-2; its level 0 is IMP's, copied
    assert cost[-2].split()[:4] == ["total", "2", "5", "1"]
    assert "[   todo]" in lines[0] and "after imp-imdb-" in lines[1]
    assert sweep.main([str(path), "--dry-run", "--only", "nothing*"]) == 2


def test_one_line_error_of_a_notebook_failure():
    from papermill.exceptions import PapermillExecutionError

    e = PapermillExecutionError(cell_index=3, exec_count=3, source="x", ename="ConfigError",
                                evalue="unknown task 'foo'\nsecond line", traceback=["..."])
    assert sweep.one_line_error(e) == "ConfigError: unknown task 'foo'"
    assert sweep.one_line_error(ValueError("a" * 400)).endswith("...")


def test_gpu_assignment(monkeypatch):
    import os

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert sweep.detect_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sweep.detect_gpus() == []

    class Slots:
        def get(self):
            return "7"

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "x")  # records the variable's state, so the test restores it afterwards
        monkeypatch.delenv(var)
    sweep.execute._init_worker(Slots(), 3)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7" and os.environ["OMP_NUM_THREADS"] == "3"


def _visible(barrier) -> tuple[int, str]:
    import os

    barrier.wait(timeout=60)  # both tasks run at once, so each runs in its own worker
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES", "")


def test_process_workers_each_get_a_gpu():
    import multiprocessing as mp

    with mp.get_context("spawn").Manager() as manager, sweep.process_executor(2, ["3", "4"]) as ex:
        barrier = manager.Barrier(2)
        seen = [f.result() for f in [ex.submit(_visible, barrier) for _ in range(2)]]
    assert len({pid for pid, _ in seen}) == 2 and sorted(gpu for _, gpu in seen) == ["3", "4"]


def test_transfer_from_a_mask_file(make_sweep, tmp_path):
    text = BASE.split("transfers:")[0] + textwrap.dedent("""\
        transfers:
          - mask_path: {mask}
            targets: [imdb]
            seeds: [0, 1]
        """).replace("{mask}", str(tmp_path / "m.safetensors"))
    with pytest.raises(SweepError, match=r"sweep.yaml:21: transfer m.safetensors->imdb seed 0: mask file .* "
                                         r"does not exist"):
        sweep.plan_sweep(make_sweep(text))
    (tmp_path / "m.safetensors").write_bytes(b"x")
    jobs = [j for j in sweep.plan_sweep(make_sweep(text)).jobs if j.label.startswith("transfer")]
    assert [j.label for j in jobs] == ["transfer m.safetensors->imdb seed 0", "transfer m.safetensors->imdb seed 1"]
    assert all(j.deps == [] and j.parameters["mask_path"] == str(tmp_path / "m.safetensors") for j in jobs)


def test_run_progress_reads_levels_from_status(tmp_path):
    from tickets_core.runs.status import run_progress

    assert run_progress(tmp_path / "missing") == "starting"
    (tmp_path / "status.json").write_text(json.dumps({"state": "running", "levels_done": [0, 1, 2],
                                                      "levels_planned": 5}))
    for k in (0, 1):  # the level folders are the truth, not the list in status.json
        (tmp_path / f"level_0{k}").mkdir()
        (tmp_path / f"level_0{k}" / "metrics.json").write_text("{}")
    assert run_progress(tmp_path) == "2/5 levels"
    (tmp_path / "status.json").write_text("{not json")  # rebuilt from the level folders
    assert run_progress(tmp_path) == "2 levels"
