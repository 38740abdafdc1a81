"""Stability and early-bird tables (tickets_core.analysis.curves) on in-memory runs."""

from __future__ import annotations

import pandas as pd
import pytest

from tickets_core.runs.walk import RunFolders


def stability_curves(rows) -> pd.DataFrame:
    """A :func:`curves.load_stability` table: (run, task, seed, source_kind, setting, errors along the path)."""
    from tickets_core.analysis import curves
    out = [{"run": run, "task": task, "model": "tiny-bert", "seed": seed, "level": 1, "sparsity": 0.2,
            "source_run": "src", "source_kind": kind, "rewind_step": 0, "setting": key, "alpha": a / 2,
            "error": e, "loss": float("nan")}
           for run, task, seed, kind, key, errors in rows for a, e in enumerate(errors)]
    return pd.DataFrame(out, columns=curves.STABILITY_COLUMNS)


def test_figures_say_which_seed_or_how_many_seeds(run_root):
    import matplotlib.pyplot as plt

    from tickets_core.analysis import curves

    from tickets_core import plots

    prof = pd.DataFrame([[0.5, 0.9]], index=pd.Index(["0"], name="layer"), columns=["query", "ffn_in"])
    fig = plots.layer_profile_heatmaps({"a": prof, "b": prof}, seeds={"a": 0, "b": 3})
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a (seed 0)", "b (seed 3)"]
    plt.close(fig)
    paths = curves.stability_methods(stability_curves([("a0", "A", 0, "imp", "h", (0.1, 0.3, 0.1)),
                                                       ("a1", "A", 1, "imp", "h", (0.1, 0.2, 0.1))]))
    fig = plots.interpolation_plot(paths)
    assert fig.axes[0].get_title() == "A\nIMP, rewind to theta0 (2 seeds)"
    plt.close(fig)


def test_stability_labels_name_a_setting_only_where_one_task_has_two():
    from tickets_core.analysis import curves
    # the setting hash includes the task: two tasks with one IMP setting each need no hash in the label
    paths = stability_curves([
        ("a0", "A", 0, "imp", "h1", (0.1, 0.3, 0.1)),
        ("b0", "B", 0, "imp", "h2", (0.2, 0.2, 0.2)), ("b1", "B", 1, "imp", "h2", (0.2, 0.4, 0.2)),
        ("c0", "C", 0, "imp", "h3", (0.1, 0.1, 0.1)), ("c1", "C", 0, "imp", "h4", (0.1, 0.5, 0.1))])
    labelled = curves.stability_methods(paths)
    assert set(labelled.loc[labelled["task"] != "C", "method"]) == {"IMP, rewind to theta0"}
    assert set(labelled.loc[labelled["task"] == "C", "method"]) == {"IMP, rewind to theta0 [h3]",
                                                                    "IMP, rewind to theta0 [h4]"}
    # labelled on the whole folder, then filtered (the notebook's order): the table keeps those labels
    table = curves.stability_table(labelled[labelled["run"] != "c1"])
    assert table.set_index("task")["method"].to_dict() == {"A": "IMP, rewind to theta0", "B": "IMP, rewind to theta0",
                                                           "C": "IMP, rewind to theta0 [h3]"}
    assert table.set_index("task")["n_seeds"].to_dict() == {"A": 1, "B": 2, "C": 1}
    assert table.set_index("task").loc["B", "error_barrier"] == pytest.approx(0.1)


def test_stability_labels_name_the_setting_that_sets_runs_apart():
    """One labelling rule for every table (analysis.methods.label_runs): a setting that differs between the
    stability runs of a task is named, the rewind point once; the hash remains only for what no setting tells
    (see the test above, whose runs have no settings)."""
    from tickets_core.analysis import curves
    paths = stability_curves([("c0", "C", 0, "imp", "h3", (0.1, 0.1, 0.1)), ("c1", "C", 0, "imp", "h4", (0.1, 0.5, 0.1)),
                              ("d0", "D", 0, "imp", "h5", (0.1, 0.2, 0.1))])
    configs = {"c0": {"learning_rate": 1e-4, "rewind_step": 0}, "c1": {"learning_rate": 2e-5, "rewind_step": 0},
               "d0": {"learning_rate": 1e-4, "rewind_step": 0}}
    paths["config"] = paths["run"].map(configs)
    labels = curves.stability_methods(paths).drop_duplicates("run").set_index("run")["method"].to_dict()
    # named wherever it varies in the table, so a legend means the same in every panel (D's run too)
    assert labels == {"c0": "IMP, rewind to theta0, lr 0.0001", "c1": "IMP, rewind to theta0, lr 2e-05",
                      "d0": "IMP, rewind to theta0, lr 0.0001"}


def test_early_bird_variants_that_differ_only_in_their_options_stay_apart():
    from tickets_core.analysis import curves
    from tickets_core.core.config import RunConfig

    def cfg(seed, **kw):
        return RunConfig.from_flat(task="rotten_tomatoes", seed=seed, **kw).to_dict()

    def levels(seed, steps, scores):
        return [(k, {"task": "rotten_tomatoes", "seed": seed, "score": s, "sparsity": 0.2 * k,
                     "train": {"steps": steps, "time_s": 1.0}}) for k, s in enumerate(scores)]

    runs = {}
    for seed in (0, 1):  # prune settings at their defaults: the IMP trunk's hashed config has no prune section
        runs[f"imp-{seed}"] = (cfg(seed), levels(seed, 10, (0.8, 0.7)))
        for every in (2, 4):  # two early-bird trunks of one setting and seed, apart only in early_bird_every
            trunk = f"eb{every}-{seed}"
            runs[trunk] = (cfg(seed, early_bird_every=every), levels(seed, every, (0.5, 0.5)))
            runs[f"rt{every}-{seed}"] = (cfg(seed, kind="retrain", source_run=f"/runs/{trunk}"),
                                         levels(seed, 10, (0.8, 0.6 + every / 100)))
    folders = RunFolders.in_memory(runs)
    pairs = curves.early_bird_runs(folders)
    assert len(pairs) == 4 and pairs["setting"].nunique() == 2
    assert sorted(pairs["early_bird"]) == ["eb2-0", "eb2-1", "eb4-0", "eb4-1"]
    assert all(r.retrain == "rt" + r.early_bird[2:] and r.imp == f"imp-{r.seed}" for r in pairs.itertuples())
    summary = curves.early_bird_summary(curves.early_bird_table(folders))
    birds = summary[summary["method"] != "IMP"].set_index(["method", "level"])
    assert birds.loc[("early-bird (every 2, eps 0.01, window 3)", 1), "score"] == pytest.approx(0.62)
    assert birds.loc[("early-bird (every 4, eps 0.01, window 3)", 1), "score"] == pytest.approx(0.64)
    assert birds.loc[("early-bird (every 4, eps 0.01, window 3)", 1), "steps"] == 4 + 10
    assert (summary["n_seeds"] == 2).all()  # each variant beside IMP, both over the two seeds
    assert (summary[summary["method"] == "IMP"].groupby("setting")["score"].apply(list) == [[0.8, 0.7]] * 2).all()
