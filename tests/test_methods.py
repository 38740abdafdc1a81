"""Variants of a method in one folder (tickets_core.analysis.methods): kept apart everywhere, only seeds averaged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tickets_core import analysis
from tickets_core.analysis import AnalysisError
from analysis_fixtures import random_mask, row, write_run


IMP_A = {"rewind 0": {0: (0.0, [0.83, 0.81]), 1: (0.2, [0.82, 0.80]), 2: (0.36, [0.81, 0.81])},
         "rewind 2": {0: (0.0, [0.83, 0.81]), 1: (0.2, [0.79, 0.79]), 2: (0.36, [0.70, 0.72])}}


@pytest.fixture
def rewind_root(tmp_path):
    """Task A: dense over 3 seeds (threshold 0.80); IMP with rewind_step 0 and 2 (2 seeds each), a random-pruning
    branch of each (same own settings), transfers of each to task B, where IMP also runs with both rewind steps."""
    from tickets_core.pruning.masks import Mask

    root = tmp_path / "runs"
    for seed, v in enumerate([0.80, 0.82, 0.84]):
        write_run(root, "dense", "A", seed, {0: (0.0, v)})
    for seed, v in enumerate([0.90, 0.90]):
        write_run(root, "dense", "B", seed, {0: (0.0, v)})
    shapes = ((16, 8), (8, 8))
    src = {}
    for r, (variant, levels) in enumerate(IMP_A.items()):
        rewind = int(variant.split()[1])
        for seed in (0, 1):
            masks = {k: Mask(random_mask(1 - sp, 10 * r + seed + k, shapes)) for k, (sp, _) in levels.items() if k}
            d = write_run(root, "imp", "A", seed, {k: (sp, v[seed]) for k, (sp, v) in levels.items()}, masks=masks,
                          rewind_step=rewind)
            src[(rewind, seed)] = d.name
        write_run(root, "random_prune", "A", 0, {1: (0.2, 0.70 + 0.05 * r), 2: (0.36, 0.60 + 0.05 * r)},
                  source_task="A", source_run=src[(rewind, 0)])
        masks = {k: Mask(random_mask(1 - sp, 50 + r + k, shapes)) for k, sp in ((1, 0.2), (2, 0.36))}
        write_run(root, "imp", "B", 0, {0: (0.0, 0.90), 1: (0.2, 0.90 - 0.02 * r), 2: (0.36, 0.88 - 0.04 * r)},
                  masks=masks, rewind_step=rewind)
        write_run(root, "transfer", "B", 0, {2: (0.36, 0.85 - 0.10 * r)}, source_task="A",
                  source_run=src[(rewind, 0)], rewind_step=rewind)
    return root


def test_rewind_variants_stay_apart_everywhere(rewind_root):
    import matplotlib.pyplot as plt

    from tickets_core import plots

    from tickets_core.analysis import report

    from tickets_core.analysis import results
    runs = analysis.add_method(results.load_runs(rewind_root))
    methods = {k: sorted(g["method"].unique()) for k, g in runs.groupby("kind")}
    assert methods == {"dense": ["dense"], "imp": ["IMP, rewind 0", "IMP, rewind 2"],
                       "random_prune": ["random pruning (of IMP, rewind 0)", "random pruning (of IMP, rewind 2)"],
                       "transfer": ["transfer from A, rewind 0", "transfer from A, rewind 2"]}
    # curves: each variant averaged over its own 2 seeds, never with the other's
    curves = analysis.curve_table(runs).set_index(["task", "method", "level"])
    for variant, levels in IMP_A.items():
        for level, (sp, scores) in levels.items():
            c = curves.loc[("A", f"IMP, {variant}", level)]
            assert (c["mean"], c["sparsity"], c["n_seeds"]) == (pytest.approx(np.mean(scores)), sp, 2)
            assert c["std"] == pytest.approx(np.std(scores, ddof=1))
    # highest matching (threshold 0.80): rewind 0 matches up to 36%, rewind 2 only dense; pooled would say 20%
    high = analysis.highest_matching_sparsity(runs).set_index(["task", "method"])
    assert high.loc[("A", "IMP, rewind 0"), "sparsity"] == pytest.approx(0.36)
    assert high.loc[("A", "IMP, rewind 2"), "sparsity"] == 0.0
    assert set(high["n_seeds"]) == {1, 2} and set(high["dense_method"]) == {"dense"}
    assert high.loc[("A", "IMP, rewind 2"), "threshold"] == pytest.approx(0.80)
    # transfer matrix: one row per source method, compared with the target's ticket of that same method
    tm = analysis.transfer_matrix(runs, level=2).set_index(["source", "target_task"])
    assert tm.loc[("A, rewind 0", "B"), "score"] == pytest.approx(0.85)
    assert tm.loc[("A, rewind 0", "B"), "vs_imp"] == pytest.approx(0.85 - 0.88)
    assert tm.loc[("A, rewind 2", "B"), "vs_imp"] == pytest.approx(0.75 - 0.84)
    assert tm.loc[("B, rewind 2", "B"), "score"] == pytest.approx(0.84)  # diagonal: B's own "IMP, rewind 2"
    assert tm.loc[("A, rewind 2", "A"), "score"] == pytest.approx(0.71) and tm.loc[("A, rewind 2", "A"), "n_seeds"] == 2
    hm = analysis.transfer_matrix(runs, level="highest_matching")  # A's rewind-0 ticket matches at 36%, rewind 2 never
    assert set(zip(hm["source"], hm["target_task"])) >= {("A, rewind 0", "B")}
    assert ("A, rewind 2", "B") not in set(zip(hm["source"], hm["target_task"]))
    # mask overlap: one mask per task and method, one seed each
    picked = analysis.pick_levels(runs, 0.36, tol=0.01)
    assert sorted(picked["label"]) == ["A: IMP, rewind 0", "A: IMP, rewind 2", "B: IMP, rewind 0", "B: IMP, rewind 2"]
    assert set(picked["seed"]) == {0} and set(picked["level"]) == {2}
    one = analysis.pick_levels(runs, 0.36, method="IMP, rewind 2", tol=0.01)
    assert list(one["label"]) == ["A", "B"] and set(one["method"]) == {"IMP, rewind 2"}
    # report: both variants, with their seeds
    text = report.report(str(rewind_root), level=2)
    assert "| A | IMP, rewind 0 | 2 | 36% | 36% |" in text and "| A | IMP, rewind 2 | 2 | 36% | 0% |" in text
    assert "| A | IMP, rewind 2 / random pruning (of IMP, rewind 2) | 36% | 0.710 (2) | 0.650 (1) | +0.060 |" in text
    assert "| A, rewind 0 | 36% |" in text and "| A, rewind 2 | 36% |" in text
    # figures: one legend entry per method, saying over how many seeds (2 on task A, 1 on task B)
    fig = plots.sparsity_curves(runs[runs["kind"] != "dense"], analysis.dense_baselines(runs), high.reset_index())
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "IMP, rewind 0 (1-2 seeds)" in legend and "IMP, rewind 2 (1-2 seeds)" in legend
    assert "random pruning (of IMP, rewind 2) (1 seed)" in legend
    plt.close(fig)
    fig = plots.transfer_heatmaps(tm.reset_index())
    assert "(1-2 seeds)" in fig.axes[0].get_title()
    plt.close(fig)


def test_schedule_variants_keep_their_own_sparsities(tmp_path):
    from tickets_core.analysis import results
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "dense", "B", seed, {0: (0.0, 0.7)})
        write_run(root, "imp", "B", seed, {0: (0.0, 0.7), 1: (0.2, 0.7), 2: (0.4, 0.6)}, rate=0.2, levels=2)
        write_run(root, "imp", "B", seed, {0: (0.0, 0.7), 1: (0.2, 0.7), 2: (0.36, 0.7)}, rate=0.2, levels=2,
                  schedule="geometric")
    runs = results.load_runs(root)
    curves = analysis.curve_table(runs)
    assert sorted(curves["method"].unique()) == ["IMP, geometric 0.2", "IMP, linear 0.2"]
    level2 = curves[curves["level"] == 2].set_index("method")["sparsity"]
    assert level2.to_dict() == {"IMP, geometric 0.2": pytest.approx(0.36), "IMP, linear 0.2": pytest.approx(0.4)}
    assert 0.38 not in set(curves["sparsity"].round(2))  # no level at a sparsity that no run had
    high = analysis.highest_matching_sparsity(runs).set_index("method")["sparsity"]
    assert high.to_dict() == {"IMP, geometric 0.2": pytest.approx(0.36), "IMP, linear 0.2": pytest.approx(0.2)}


def test_pooler_variants_share_their_dense_baseline(tmp_path):
    from tickets_core.analysis import results
    root = tmp_path / "runs"
    write_run(root, "dense", "C", 5, {0: (0.0, 0.66)})
    for pooler, score in ((True, 0.5), (False, 0.7)):
        for seed in (0, 1):
            write_run(root, "imp", "C", seed, {0: (0.0, 0.68 + 0.02 * seed), 1: (0.3, score)}, include_pooler=pooler)
    runs = results.load_runs(root)
    high = analysis.highest_matching_sparsity(runs).set_index("method")
    assert sorted(high.index) == ["IMP, pooler dense", "IMP, pooler pruned"]
    # include_pooler cannot change a dense fine-tuning: one dense variant of 3 seeds (dense seed 5, IMP seeds 0 and 1)
    assert set(high["dense_method"]) == {"dense"} and set(high["n_dense_seeds"]) == {3}
    assert high.loc["IMP, pooler dense", "sparsity"] == pytest.approx(0.3)
    assert high.loc["IMP, pooler pruned", "sparsity"] == 0.0
    assert analysis.dense_baseline(runs, "C").mean == pytest.approx(np.mean([0.66, 0.68, 0.70]))


def test_dense_variants_follow_the_training_settings(tmp_path):
    from tickets_core.analysis import results
    root = tmp_path / "runs"
    for seed, (hi, lo) in enumerate([(0.80, 0.70), (0.82, 0.72)]):
        write_run(root, "dense", "D", seed, {0: (0.0, hi)}, learning_rate=1e-4)
        write_run(root, "dense", "D", seed, {0: (0.0, lo)}, learning_rate=2e-5)
    write_run(root, "imp", "D", 5, {0: (0.0, 0.84), 1: (0.5, 0.80)}, learning_rate=1e-4)
    write_run(root, "random_prune", "D", 5, {1: (0.5, 0.75)}, source_task="D", learning_rate=3e-5)
    runs = analysis.add_method(results.load_runs(root))
    base = analysis.dense_baselines(runs).set_index("method")
    assert sorted(base.index) == ["dense, lr 0.0001", "dense, lr 2e-05"]
    assert (base.loc["dense, lr 0.0001", "n_seeds"], base.loc["dense, lr 2e-05", "n_seeds"]) == (3, 2)
    assert base.loc["dense, lr 0.0001", "mean"] == pytest.approx(np.mean([0.80, 0.82, 0.84]))  # with IMP's level 0
    # labels name what differs between runs of a kind: one IMP run is just "IMP"; its dense variant is found
    # by its settings all the same
    assert analysis.dense_baseline(runs, "D", method="IMP").method == "dense, lr 0.0001"
    with pytest.raises(AnalysisError, match="2 dense variants"):
        analysis.dense_baseline(runs, "D")
    # random pruning trained at lr 3e-5: no dense fine-tuning like it, so no threshold (and a warning)
    with pytest.warns(UserWarning, match="no dense baseline trained like random pruning on D"):
        high = analysis.highest_matching_sparsity(runs, kind="random_prune")
    assert np.isnan(high.loc[0, "threshold"]) and high.loc[0, "dense_method"] is None
    with pytest.raises(AnalysisError, match="no dense fine-tuning was trained like"):
        analysis.dense_baseline(runs, "D", method="random pruning")


def test_under_across_levels_the_level_count_separates_dense_baselines(tmp_path):
    """lr_schedule: across_levels makes ``levels`` set every fine-tuning's LR span, dense runs too: dense seeds of
    2 and 8 levels are two baselines (the sweep's deferred planning uses the same definition, core.settings)."""
    from tickets_core.analysis import results
    from tickets_core.core.settings import dense_settings

    root = tmp_path / "runs"
    for levels, scores in ((2, (0.80, 0.82)), (8, (0.70, 0.72))):
        for seed, v in enumerate(scores):
            write_run(root, "dense", "A", seed, {0: (0.0, v)}, lr_schedule="across_levels", levels=levels)
    for seed, v in enumerate((0.60, 0.62)):  # per-level schedule: the level count changes no dense fine-tuning
        write_run(root, "dense", "B", seed, {0: (0.0, v)}, levels=2 + 6 * seed)
    base = analysis.dense_baselines(analysis.add_method(results.load_runs(root))).set_index(["task", "method"])
    assert sorted(base.index) == [("A", "dense, 2 levels"), ("A", "dense, 8 levels"), ("B", "dense")]
    assert base.loc[("A", "dense, 2 levels"), "mean"] == pytest.approx(0.81)
    assert base.loc[("B", "dense"), "n_seeds"] == 2
    assert "levels" in dense_settings({"lr_schedule": "across_levels", "levels": 2})
    assert "levels" not in dense_settings({"lr_schedule": "per_level", "levels": 2})


def test_labels_name_any_parameter():
    assert analysis.describe_settings({"schedule": "geometric", "rate": 0.2, "rewind_step": 2},
                                      ["rate", "schedule", "rewind_step"]) == ["geometric 0.2", "rewind 2"]
    assert analysis.describe_settings({"rate": 0.15, "schedule": "linear"}, ["rate"]) == ["linear 0.15"]
    # a parameter this module knows nothing about (e.g. one added later) is named generically, after known ones
    assert analysis.describe_settings({"zeta_knob": "on", "alpha_knob": 0.5, "rewind_step": 2},
                                      ["zeta_knob", "alpha_knob", "rewind_step"]) == ["rewind 2", "alpha_knob 0.5",
                                                                                      "zeta_knob on"]
    df = pd.DataFrame([dict(row("A", "imp", s, 0, 0.0, 0.5), run=f"r{s}",
                            config={"lr_schedule": v, "seed": s, "learning_rate": 2e-5})
                       for s, v in ((0, "per_level"), (1, "across_levels"), (2, "per_level"))])
    labels = analysis.add_method(df).set_index("run")["method"]
    assert labels.to_dict() == {"r0": "IMP, lr_schedule per_level", "r1": "IMP, lr_schedule across_levels",
                                "r2": "IMP, lr_schedule per_level"}


def test_a_ticket_transferred_to_mlm_is_scored_by_the_mlm_task(tiny_config_factory, tmp_path):
    """MLM as a target: a classifier's ticket fine-tuned on MLM is scored with masked-token accuracy, against
    MLM's own dense model and ticket, in the transfer matrix."""
    from tickets_core.tasks.fixtures import write_text

    from tickets_core.lottery import driver

    from tickets_core.analysis import results
    root = tmp_path / "runs"
    mlm = {"task": "mlm", "data_dir": str(write_text(tmp_path / "txt", n_train=40, n_valid=16)), "max_seq_length": 32}
    source = driver.run(tiny_config_factory(root, levels=1, rate=0.3))  # rotten_tomatoes, with a pooler
    driver.run(tiny_config_factory(root, levels=1, rate=0.3, **mlm))     # MLM's own ticket (its level 0: the dense)
    d = driver.run(tiny_config_factory(root, kind="transfer", source_run=source.name, **mlm))
    runs = results.load_runs(root)
    tr = runs[runs["kind"] == "transfer"]
    assert set(tr["main_metric"]) == {"mlm_accuracy"} and (tr["score"] == tr["eval_mlm_accuracy"]).all()
    assert "pooler.dense.weight" not in results.load_masks(d)[1]  # an MLM model has no pooler
    cell = analysis.transfer_matrix(runs, level=1).set_index(["source", "target_task"]).loc[("rotten_tomatoes", "mlm")]
    assert cell["score"] == tr[tr["level"] == 1]["score"].iloc[0]
    mlm_imp = runs[(runs["kind"] == "imp") & (runs["task"] == "mlm")].set_index("level")["score"]
    assert cell["dense_mean"] == mlm_imp[0] and cell["imp_score"] == mlm_imp[1]


def test_an_early_bird_trunks_level_0_is_no_seed_of_the_plain_dense_baseline(tmp_path):
    """Its level 0 stopped early: counting it would pull the matching threshold down for every method."""
    from tickets_core.analysis import results
    root = tmp_path / "runs"
    for seed, score in enumerate([0.80, 0.82]):
        write_run(root, "dense", "E", seed, {0: (0.0, score)})
    write_run(root, "imp", "E", 0, {0: (0.0, 0.82), 1: (0.5, 0.80)})
    write_run(root, "imp", "E", 0, {0: (0.0, 0.55), 1: (0.5, 0.79)}, early_bird_every=2)
    runs = analysis.add_method(results.load_runs(root))
    assert set(runs["method"]) == {"dense", "IMP", "IMP, early-bird every 2"}
    plain = analysis.dense_baseline(runs, "E", method="IMP")
    assert plain.n_seeds == 2 and plain.mean == pytest.approx(0.81)  # dense seeds 0 and 1 (IMP level 0 is seed 0 again)
    assert analysis.dense_baseline(runs, "E", method="IMP, early-bird every 2").mean == pytest.approx(0.55)


def test_seeds_vs_tasks_sets_the_iou_between_tasks_beside_the_iou_between_seeds():
    """Two tasks whose masks differ only as much as two seeds do: no task structure, and the table shows it."""
    base = random_mask(0.5, 0)

    def flip(mask, fraction, seed):  # a copy of ``mask`` with ``fraction`` of its entries flipped
        g = torch.Generator().manual_seed(seed)
        return type(mask)({k: v ^ (torch.rand(v.shape, generator=g) < fraction) for k, v in mask.items()})

    masks = {(t, "IMP", s): flip(base, 0.05, 10 * i + s) for i, t in enumerate(("A", "B")) for s in (0, 1)}
    masks[("C", "IMP", 0)] = flip(base, 0.4, 99)  # a task with a mask of its own
    picked = pd.DataFrame([{"task": t, "method": m, "seed": s} for t, m, s in masks])
    table = analysis.seeds_vs_tasks(picked, masks)
    within = table[table["pair"] == "within"].set_index("task_a")
    between = table[table["pair"] == "between"].set_index(["task_a", "task_b"])
    assert list(within.index) == ["A", "B"] and (within["n_pairs"] == 1).all()  # C has one seed
    assert within.loc["A", "iou_mean"] == pytest.approx(masks[("A", "IMP", 0)].overlap(masks[("A", "IMP", 1)]))
    assert between.loc[("A", "B"), "n_pairs"] == 2 and between.loc[("A", "C"), "n_pairs"] == 1
    assert (within["n_seeds"] == 2).all()  # the seeds each row rests on, beside the number of pairs
    assert between.loc[("A", "B"), "n_seeds"] == 2 and between.loc[("A", "C"), "n_seeds"] == 1
    # A vs B is as close as two seeds of A; C stands apart
    assert abs(between.loc[("A", "B"), "iou_mean"] - within.loc["A", "iou_mean"]) < 0.02
    assert between.loc[("A", "C"), "iou_mean"] < within.loc["A", "iou_mean"] - 0.2


