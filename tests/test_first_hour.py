"""Issue 21, a researcher's first hour, without notebooks: numbers written 3e-4, papermill's injected names,
analysis values checked first, presets, the plan line and its CPU limit, trackers, the offline hub error,
tickets-run's command line, figure names and legends.  The notebook executions are in test_notebook_paths.py."""

from __future__ import annotations

import json

import pytest

from tickets_core.core.config import PARAMS, RunConfig
from tickets_core.core.errors import ConfigError

# ---------------------------------------------------------------------------
# Numbers written 3e-4
# ---------------------------------------------------------------------------


def test_3e_4_is_a_number_in_sweep_files_configs_and_the_command_line(make_sweep):
    from tickets_core.sweep.run import parse_value
    from tickets_core.sweep.yamlfile import load_yaml

    path = make_sweep("""\
        output_root: {root}
        defaults: {{model: tiny-bert, learning_rate: 3e-4, max_train_samples: 10}}
        trunks:
          - {{name: imp, kind: imp, tasks: [rotten_tomatoes], seeds: [0]}}
        """)
    data, _ = load_yaml(path)
    assert data["defaults"]["learning_rate"] == 3e-4 and data["defaults"]["max_train_samples"] == 10
    from tickets_core.sweep import plan_sweep

    assert plan_sweep(path).jobs[0].parameters["learning_rate"] == 3e-4
    assert RunConfig.from_flat(learning_rate="3e-4", warmup_ratio="0.1").train.learning_rate == 3e-4
    assert parse_value("3e-4") == 3e-4 and parse_value("None") is None and parse_value("[tensorboard]") == [
        "tensorboard"]
    with pytest.raises(ConfigError, match="learning_rate must be a number, got 'fast'"):
        RunConfig.from_flat(learning_rate="fast")


# ---------------------------------------------------------------------------
# Notebook parameters
# ---------------------------------------------------------------------------


def papermill_history(*extra: str) -> dict:
    """A kernel namespace as papermill leaves it: the parameters cell, then the cell it injected."""
    return {"In": ["", "from tickets_core import analysis", 'sparsity = None  # a fraction\nwidth = "double"',
                   "# Parameters\n" + "\n".join(extra) + "\n"]}


def test_an_injected_name_the_notebook_does_not_declare_is_one_line_naming_the_closest():
    from tickets_core.sweep.parameters import check_injected

    check_injected(papermill_history("sparsity = 0.5"))  # declared: fine
    check_injected({"In": ["", "x = 1"]})  # nothing injected (Jupyter): nothing to check
    with pytest.raises(ConfigError, match="unknown parameter 'sparsty'; did you mean 'sparsity'?") as e:
        check_injected(papermill_history("sparsity = 0.5", "sparsty = 0.6"))
    assert e.value.param == "sparsty" and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="'learning_rat'; did you mean 'learning_rate'"):
        check_injected(papermill_history("learning_rat = 0.0003"), PARAMS)


def test_analysis_values_are_checked_and_converted_before_anything_is_read(tmp_path):
    from tickets_core.sweep.parameters import analysis

    runs = tmp_path / "runs"
    runs.mkdir()
    ns = {"runs_root": str(runs), "figures_dir": None, "figure_formats": "svg", "sparsity": "0.6", "n_std": 1,
          "width": "double", "tasks": "rotten_tomatoes"}
    given = analysis(ns)
    assert (given.runs_root, given.figures_dir, given.formats) == (runs, runs / "figures", ("svg",))
    assert ns["sparsity"] == 0.6 and ns["tasks"] == ["rotten_tomatoes"]
    for key, value, message in (("sparsity", 1.5, r"sparsity must be a fraction in \[0, 1\)"),
                                ("figure_formats", ["png", "jpg"], "figure_formats must be a list of png, pdf, svg"),
                                ("level", -1, "level must be a level number"),
                                ("width", "wide", "width must be 'single', 'double' or inches"),
                                ("runs_root", str(tmp_path / "nowhere"), "is not a folder")):
        with pytest.raises(ConfigError, match=message):
            analysis({**ns, key: value})


def test_relative_notebook_paths_are_relative_to_the_checkout_whatever_the_working_directory(monkeypatch, tmp_path):
    from tickets_core.sweep import notebook
    from tickets_core.sweep.parameters import anchored, project_root

    root = notebook.NOTEBOOKS_DIR.parent
    monkeypatch.chdir(tmp_path)
    assert project_root() == root and anchored("runs/x") == root / "runs" / "x"
    assert anchored("/abs/path") == notebook.Path("/abs/path") and anchored(None) is None
    monkeypatch.setenv("TICKETS_ROOT", str(tmp_path))
    assert anchored("runs") == tmp_path / "runs"


# ---------------------------------------------------------------------------
# Presets, the plan line, the CPU limit
# ---------------------------------------------------------------------------


def test_the_quick_preset_sets_what_is_still_at_its_default():
    from tickets_core.core.config import PRESETS

    quick = RunConfig.from_flat(preset="quick", levels=2)
    assert quick.prune.levels == 2  # given: kept
    assert {k: v for k, v in quick.changed().items() if k in PRESETS["quick"]} == {
        **PRESETS["quick"], "levels": 2}
    again = RunConfig.from_dict(json.loads(quick.to_json()))
    assert again == quick  # applied once: reading config.json back changes nothing
    with pytest.raises(ConfigError, match="unknown preset 'quik'; did you mean 'quick'"):
        RunConfig.from_flat(preset="quik")


def test_every_run_prints_its_plan_line_before_training(tiny_run_config, capsys):
    from tickets_core.lottery import driver

    run_dir = driver.run(tiny_run_config(levels=1, max_steps=3))
    out = capsys.readouterr().out
    plan = [line for line in out.splitlines() if line.startswith("plan: ")]
    assert len(plan) == 1 and plan[0].startswith(f"plan: {run_dir.name}: 2 levels x 3 steps (batch 8) + 2 evaluations")
    assert " on cpu about " in plan[0] and "timed warm-up step" in plan[0]
    assert out.index("plan: ") < out.index("level 0: sparsity 0.0%") < out.index("level 1: sparsity 20.0%")
    driver.run(tiny_run_config(levels=1, max_steps=3))  # done: nothing to plan
    assert "plan: " not in capsys.readouterr().out


def test_a_cpu_run_estimated_over_max_cpu_hours_stops_before_writing_anything(tiny_run_config, tmp_path):
    from tickets_core.lottery import driver

    with pytest.raises(ConfigError) as e:
        driver.run(tiny_run_config(max_cpu_hours=1e-9))
    msg = str(e.value)
    assert msg.startswith("plan: imp-rotten_tomatoes-") and e.value.param == "max_cpu_hours"
    assert "stopped: over max_cpu_hours" in msg and "max_cpu_hours to None" in msg and "preset to 'quick'" in msg
    assert not (tmp_path / "runs").exists()


def test_the_warm_up_leaves_weights_gradients_and_random_states_as_they_were(tiny_run_config):
    import torch

    from tickets_core.lottery.experiment import Experiment
    from tickets_core.tasks import get_task
    from tickets_core.training.estimate import estimate

    cfg = tiny_run_config(max_steps=5)
    exp = Experiment(cfg, get_task(cfg.data.task))
    before = {k: v.clone() for k, v in exp.model.state_dict().items()}
    torch.manual_seed(123)
    rng = torch.random.get_rng_state()
    est = estimate(exp.model, exp.data, cfg.train, levels=4)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in exp.model.state_dict().items())
    assert all(p.grad is None for p in exp.model.parameters())
    assert est.steps == 5 and est.levels == 4 and est.total_s > 0 and est.warmup_steps >= 1


# ---------------------------------------------------------------------------
# Trackers
# ---------------------------------------------------------------------------


def test_tensorboard_and_mlflow_get_every_step_and_every_level(tiny_run_config):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tickets_core.lottery import driver

    run_dir = driver.run(tiny_run_config(levels=2, max_steps=4, warmup_ratio=0.0,
                                         report_to=["tensorboard", "mlflow"]))
    events = EventAccumulator(str(run_dir / "tracking" / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 13))  # level k's step s at k * 4 + s
    lr = [e.value for e in events.Scalars("train/learning_rate")]
    assert lr[0] == pytest.approx(1e-3) and lr[3] == pytest.approx(1e-3 / 4)  # linear decay within each level
    levels = {e.step: e.value for e in events.Scalars("level/sparsity")}
    metrics = {k: json.loads((run_dir / f"level_{k:02d}" / "metrics.json").read_text()) for k in range(3)}
    assert levels == pytest.approx({k: m["sparsity"] for k, m in metrics.items()})
    assert [e.value for e in events.Scalars("level/score")] == pytest.approx([m["score"] for m in metrics.values()])
    client = MlflowClient(tracking_uri=(run_dir / "tracking" / "mlruns").as_uri())
    (mlrun,) = client.search_runs([client.get_experiment_by_name("tickets_core").experiment_id])
    assert mlrun.info.run_name == run_dir.name and mlrun.data.params["learning_rate"] == "0.001"
    history = client.get_metric_history(mlrun.info.run_id, "train/loss")
    assert [m.step for m in history] == [e.step for e in loss]
    assert [m.value for m in history] == pytest.approx([e.value for e in loss])


def test_a_failing_tracker_is_one_warning_line_and_the_run_goes_on(tiny_run_config, monkeypatch, capsys):
    from tickets_core.lottery import driver
    from tickets_core.training import tracking

    class Broken(tracking._Backend):
        name = "tensorboard"

        def __init__(self, *args):
            pass

        def scalars(self, values, step):
            raise OSError("disk full")

    monkeypatch.setitem(tracking.BACKENDS, "tensorboard", Broken)
    run_dir = driver.run(tiny_run_config(levels=1, max_steps=2, report_to=["tensorboard"]))
    err = [line for line in capsys.readouterr().err.splitlines() if "report_to" in line]
    assert err == ["warning: report_to tensorboard failed (OSError: disk full); the run goes on without it"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"


def test_an_unknown_tracker_is_refused_when_the_config_is_built():
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'; did you mean 'tensorboard'"):
        RunConfig.from_flat(report_to=["tensorbord"])
    assert RunConfig.from_flat(report_to="tensorboard").report_to == ["tensorboard"]


# ---------------------------------------------------------------------------
# Errors users meet first
# ---------------------------------------------------------------------------


def test_a_hub_task_offline_is_one_line_pointing_at_data_dir(monkeypatch):
    import datasets

    from tickets_core.tasks import DataError, get_task
    from tickets_core.tasks.glue import _read_hub

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    from tickets_core.tasks.glue import SPECS

    with pytest.raises(DataError) as e:
        _read_hub("mnli", SPECS["mnli"])
    assert e.value.param == "data_dir" and "\n" not in str(e.value)
    assert str(e.value) == ("task 'mnli' needs nyu-mll/glue/mnli from the Hugging Face hub, not reachable here "
                            "(ConnectionError): set data_dir to a GLUE folder (MNLI/train.tsv, dev_matched.tsv, "
                            "dev_mismatched.tsv), or use an offline task (rotten_tomatoes, imdb, tweet_sentiment, "
                            "ptb_mlm)")
    assert get_task("sst2")  # the registry itself needs no hub


def test_a_misspelled_task_names_the_closest():
    from tickets_core.lottery.identity import resolve

    with pytest.raises(ConfigError, match="unknown task 'rotten_tomato'; did you mean 'rotten_tomatoes'"):
        resolve(RunConfig.from_flat(task="rotten_tomato"))


def test_one_mask_or_one_seed_per_task_is_told_before_anything_is_drawn():
    import pandas as pd

    from tickets_core import analysis

    one = pd.DataFrame([{"task": "rt", "method": "IMP", "label": "rt", "seed": 0, "sparsity": 0.6}])
    with pytest.raises(analysis.AnalysisError, match="only one mask to compare"):
        analysis.check_comparable(one)
    two = pd.concat([one, one.assign(task="tw", label="tw")], ignore_index=True)
    assert analysis.check_comparable(two) is None
    note = analysis.check_comparable(two, two)
    assert note.startswith("seeds vs tasks: not compared: one seed per task at 60% (seeds: 0)")
    with pytest.raises(analysis.AnalysisError, match="compare_seeds=None"):
        analysis.check_comparable(two, two, require_seeds=True)
    assert analysis.check_comparable(two, pd.concat([two, two.assign(seed=1)]), require_seeds=True) is None


# ---------------------------------------------------------------------------
# tickets-run's command line (its execution: test_notebook_paths.py)
# ---------------------------------------------------------------------------


def test_tickets_run_help_is_generated_from_the_declarations(capsys):
    from tickets_core.sweep import run

    with pytest.raises(SystemExit):
        run.main(["--help"])
    text = capsys.readouterr().out
    for p in PARAMS.values():
        assert f"--{p.name} VALUE" in text
    assert "number, default 2e-05. Peak AdamW learning rate." in " ".join(text.split())
    assert "one of linear, geometric" in text


def test_tickets_run_plans_what_a_sweep_plans(make_sweep, tmp_path, capsys, monkeypatch, movie_csv_dir):
    from tickets_core.sweep import plan_sweep, run

    monkeypatch.chdir(tmp_path)
    args = ["model=tiny-bert", "learning_rate=3e-4", "levels=2", f"data_dir={movie_csv_dir}", "--seed", "1"]
    assert run.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    path = make_sweep("""\
        output_root: runs
        defaults: {{model: tiny-bert, learning_rate: 3e-4, levels: 2, data_dir: DATA}}
        trunks:
          - {{name: imp, kind: imp, tasks: [rotten_tomatoes], seeds: [1]}}
        """.replace("DATA", str(movie_csv_dir)))
    job = plan_sweep(path).jobs[0]
    assert f"run {job.name}: imp rotten_tomatoes seed 1; folder {tmp_path / 'runs' / job.name}" in out
    assert run.main(["learning_rat=3e-4"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown parameter 'learning_rat'; did you mean 'learning_rate'?"
    assert run.main(["levels"]) == 2 and "is not KEY=VALUE" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def test_figures_use_display_names_and_keep_the_legend_inside_the_width(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from analysis_fixtures import row
    from tickets_core import analysis, plots

    rows = [row(t, "dense", s, 0, 0.0, 0.7 + 0.01 * s) for t in ("ptb_mlm", "rotten_tomatoes") for s in range(3)]
    for t in ("ptb_mlm", "rotten_tomatoes"):
        for s in range(2):
            rows += [row(t, "imp", s, k, 0.2 * k, 0.72 - 0.01 * k) for k in range(4)]
            rows += [row("rotten_tomatoes", "transfer", s, 3, 0.6, 0.69, source_task="ptb_mlm",
                         run=f"transfer-from-ptb_mlm-{s}")]
    df = analysis.add_method(pd.DataFrame(rows).assign(main_metric=lambda d: d["task"].map(
        {"ptb_mlm": "mlm_accuracy", "rotten_tomatoes": "accuracy"})))
    base = analysis.dense_baselines(df)
    best = analysis.highest_matching_sparsity(df)
    for width in ("single", "double"):
        fig = plots.sparsity_curves(df[df["kind"] != "dense"], base, best, width=width)
        fig.canvas.draw()
        texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        assert "PTB (masked LM)" in " ".join(texts) and "masked-token accuracy" in texts
        assert not any("ptb_mlm" in t or "rotten_tomatoes" in t or "mlm_accuracy" in t for t in texts), texts
        (legend,) = fig.legends
        assert legend.get_window_extent().width <= fig.bbox.width
        paths = plots.save_figure(fig, f"curves_{width}", tmp_path, formats=["svg", "png"])
        assert [p.suffix for p in paths] == [".svg", ".png"] and paths[0].read_text().lstrip().startswith("<?xml")


def test_the_quick_preset_is_the_demos_rotten_tomatoes_imp_trunk(tmp_path, monkeypatch):
    """`tickets-run preset=quick` runs exactly the demo's IMP trunk on Rotten Tomatoes, seed 0 (same run folder
    name), so its time is the one measured for that run in the demo (tests/test_demo_budget.py)."""
    from tickets_core.lottery.identity import resolve
    from tickets_core.sweep import plan_sweep
    from tickets_core.sweep.notebook import NOTEBOOKS_DIR

    monkeypatch.chdir(tmp_path)
    plan = plan_sweep(NOTEBOOKS_DIR.parent / "sweeps" / "demo.yaml")
    demo = next(j for j in plan.jobs if j.label == "imp rotten_tomatoes seed 0")
    assert resolve(RunConfig.from_flat(preset="quick")).run_name() == demo.name
