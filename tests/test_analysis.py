"""tickets_core.analysis: dense baselines, matching, mask overlap against references.

Reference values come from numpy/sklearn (Jaccard), a Monte-Carlo simulation (random-mask IoU) and hand-computed
tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tickets_core import analysis
from tickets_core.analysis import AnalysisError
from analysis_fixtures import random_mask, row

# ---------------------------------------------------------------------------
# Dense baseline and matching
# ---------------------------------------------------------------------------


def test_dense_threshold_is_mean_minus_sample_std(runs):
    scores = np.array([0.80, 0.82, 0.84])
    b = analysis.dense_baseline(runs, "A")
    assert b.n_seeds == 3
    assert b.mean == pytest.approx(scores.mean())
    assert b.std == pytest.approx(scores.std(ddof=1))
    assert analysis.dense_threshold(runs, "A") == pytest.approx(scores.mean() - scores.std(ddof=1))
    assert analysis.dense_threshold(runs, "A", n_std=2.0) == pytest.approx(scores.mean() - 2 * scores.std(ddof=1))
    assert analysis.dense_threshold(runs, "A", n_std=0.0) == pytest.approx(scores.mean())


def test_dense_baseline_single_seed_has_zero_std_and_warns():
    df = pd.DataFrame([row("B", "dense", 0, 0, 0.0, 0.7)])
    with pytest.warns(UserWarning, match="one seed"):
        b = analysis.dense_baseline(df, "B")
    assert (b.std, b.threshold, b.n_seeds) == (0.0, 0.7, 1)


def test_dense_baseline_falls_back_to_imp_level0():
    df = pd.DataFrame([row("C", "imp", 0, 0, 0.0, 0.6), row("C", "imp", 1, 0, 0.0, 0.8),
                       row("C", "imp", 0, 1, 0.2, 0.1)])
    b = analysis.dense_baseline(df, "C")
    assert b.mean == pytest.approx(0.7) and b.n_seeds == 2


def test_dense_baseline_combines_dense_runs_with_imp_level0_once_per_seed():
    # seed 0 only has an IMP run; seeds 1, 2 have dense runs; seed 1's IMP level 0 is not counted twice
    df = pd.DataFrame([row("D", "imp", 0, 0, 0.0, 0.70), row("D", "imp", 1, 0, 0.0, 0.99),
                       row("D", "dense", 1, 0, 0.0, 0.80), row("D", "dense", 2, 0, 0.0, 0.90)])
    b = analysis.dense_baseline(df, "D")
    assert b.n_seeds == 3
    assert b.mean == pytest.approx(0.80)
    assert b.std == pytest.approx(np.std([0.70, 0.80, 0.90], ddof=1))


def test_dense_baseline_errors_are_one_line(runs):
    with pytest.raises(AnalysisError, match="no dense result"):
        analysis.dense_baseline(runs, "missing")
    with pytest.raises(AnalysisError, match="no runs"):
        analysis.dense_baseline(pd.DataFrame(), "A")
    with pytest.raises(AnalysisError, match="unknown metric"):
        analysis.dense_baseline(runs, "A", metric="eval_f1")


def test_is_matching_at_the_boundary():
    assert analysis.is_matching(0.8, 0.8) is True
    assert analysis.is_matching(0.7999, 0.8) is False
    assert analysis.is_matching(float("nan"), 0.8) is False
    s = analysis.is_matching(pd.Series([0.9, 0.5, np.nan]), 0.6)
    assert s.tolist() == [True, False, False]


def test_highest_matching_sparsity(runs):
    table = analysis.highest_matching_sparsity(runs).set_index("task")
    # Level means: 0.82, 0.81, 0.785, 0.805, 0.71 against 0.80: level 3 (48.8%) is the highest matching,
    # although level 2 is not (the paper's rule looks at each sparsity on its own).
    assert table.loc["A", "sparsity"] == pytest.approx(0.488)
    assert table.loc["A", "level"] == 3
    assert table.loc["A", "threshold"] == pytest.approx(0.80)
    strict = analysis.highest_matching_sparsity(runs, n_std=0.0).set_index("task")
    assert strict.loc["A", "sparsity"] == pytest.approx(0.0)  # only the dense level reaches the mean 0.82
    rnd = analysis.highest_matching_sparsity(runs, kind="random_prune").set_index("task")
    assert np.isnan(rnd.loc["A", "sparsity"])


def test_highest_matching_sparsity_counts_the_seeds_of_the_reported_level(runs):
    # a third IMP seed that only reached level 1: level 3 (the highest matching) still rests on 2 seeds
    extra = pd.DataFrame([row("A", "imp", 2, level, sp, 0.81) for level, sp in ((0, 0.0), (1, 0.2))])
    table = analysis.highest_matching_sparsity(pd.concat([runs, extra], ignore_index=True)).set_index("task")
    assert table.loc["A", "level"] == 3 and table.loc["A", "n_seeds"] == 2
    assert table.loc["A", "score"] == pytest.approx(0.805)


def test_highest_matching_sparsity_without_dense_is_nan_with_warning():
    df = pd.DataFrame([row("D", "imp", 0, 1, 0.2, 0.5)])
    with pytest.warns(UserWarning, match="no dense result"):
        table = analysis.highest_matching_sparsity(df)
    assert np.isnan(table.loc[0, "sparsity"]) and table.loc[0, "n_dense_seeds"] == 0
    with pytest.raises(AnalysisError, match="no 'oneshot' runs"):
        analysis.highest_matching_sparsity(df, kind="oneshot")


def test_curve_table_aggregates_over_seeds(runs):
    t = analysis.curve_table(runs)
    imp = t[(t["method"] == "IMP") & (t["level"] == 1)].iloc[0]
    assert (imp["mean"], imp["n_seeds"]) == (pytest.approx(0.81), 2)
    assert imp["std"] == pytest.approx(np.std([0.82, 0.80], ddof=1))
    assert set(t["method"]) == {"IMP", "random pruning"}  # dense is the baseline line, not a curve


def test_filter_runs_and_methods(runs):
    assert len(analysis.filter_runs(runs, model="tiny-bert", tasks="A")) == len(runs)
    with pytest.raises(AnalysisError, match="no runs of model 'bert'"):
        analysis.filter_runs(runs, model="bert")
    assert analysis.method_label("transfer", "sst2") == "transfer from sst2"


# ---------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------


def test_mask_overlap_matches_sklearn_jaccard(tmp_path):
    from sklearn.metrics import jaccard_score

    from tickets_core.pruning.masks import Mask, MaskFitError

    a, b = random_mask(0.4, 1), random_mask(0.7, 2)
    flat = lambda m: torch.cat([m[k].reshape(-1) for k in sorted(m)]).numpy()  # noqa: E731
    assert a.overlap(b) == pytest.approx(jaccard_score(flat(a), flat(b)))
    assert a.overlap(a) == 1.0 and a.density == pytest.approx(flat(a).mean())
    assert Mask.load(a.save(tmp_path / "a.safetensors")).overlap(b) == pytest.approx(a.overlap(b))
    with pytest.raises(MaskFitError, match="same names"):
        a.overlap(Mask({"m0": a["m0"]}))


@pytest.mark.parametrize("d1,d2", [(0.1, 0.1), (0.3, 0.6), (0.9, 0.5)])
def test_random_iou_matches_simulation(d1, d2):
    rng = np.random.default_rng(0)
    n = 2_000_000
    a, b = rng.random(n) < d1, rng.random(n) < d2
    simulated = np.count_nonzero(a & b) / np.count_nonzero(a | b)
    assert analysis.random_iou(d1, d2) == pytest.approx(simulated, abs=3e-3)
    assert analysis.random_iou(d1, d2) == pytest.approx(d1 * d2 / (d1 + d2 - d1 * d2))


def test_overlap_matrices():
    masks = {"A": random_mask(0.4, 1), "B": random_mask(0.4, 2), "C": random_mask(0.2, 3)}
    m = analysis.overlap_matrix(masks)
    assert np.allclose(m.to_numpy(), m.to_numpy().T) and np.allclose(np.diag(m), 1.0)
    assert m.loc["A", "C"] == pytest.approx(masks["A"].overlap(masks["C"]))
    dens = {k: v.density for k, v in masks.items()}
    r = analysis.random_overlap_matrix(dens)
    assert r.loc["A", "C"] == pytest.approx(analysis.random_iou(dens["A"], dens["C"]))
    # independent random masks: observed IoU close to the random expectation
    assert m.loc["A", "B"] == pytest.approx(r.loc["A", "B"], abs=0.05)
    with pytest.raises(AnalysisError, match="no masks"):
        analysis.overlap_matrix({})


def test_layer_profile_pools_matrices_by_weight_count():
    rows = pd.DataFrame([
        {"layer": 0, "component": "query", "numel": 100, "nonzero": 50},
        {"layer": 0, "component": "ffn_in", "numel": 300, "nonzero": 30},
        {"layer": 1, "component": "query", "numel": 100, "nonzero": 100},
        {"layer": 1, "component": "query", "numel": 300, "nonzero": 0},   # pooled with the row above
        {"layer": None, "component": "pooler", "numel": 50, "nonzero": 10},
    ])
    p = analysis.layer_profile(rows)
    assert list(p.index) == ["0", "1", "pooler"]
    assert list(p.columns) == ["query", "ffn_in", "pooler"]
    assert p.loc["0", "query"] == pytest.approx(0.5)
    assert p.loc["0", "ffn_in"] == pytest.approx(0.9)
    assert p.loc["1", "query"] == pytest.approx(0.75)
    assert p.loc["pooler", "pooler"] == pytest.approx(0.8)
    assert np.isnan(p.loc["1", "ffn_in"])


