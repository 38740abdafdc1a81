"""tickets_core.analysis and tickets_core.plots: matching, overlap, transfer tables, figures.

Reference values come from numpy/sklearn (Jaccard), a Monte-Carlo simulation
(random-mask IoU) and hand-computed tables; run folders are written per the
contract of docs/ARCHITECTURE.md and read back through tickets_core.results.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tickets_core import analysis
from tickets_core.analysis import AnalysisError


def row(task, kind, seed, level, sparsity, score, source_task=None, run=None):
    return {"run": run or f"{kind}-{task}-{seed}", "run_dir": f"/runs/{run or f'{kind}-{task}-{seed}'}",
            "kind": kind, "task": task, "model": "tiny-bert", "seed": seed, "level": level, "sparsity": sparsity,
            "main_metric": "accuracy", "score": score, "source_run": None, "source_task": source_task,
            "source_level": None}


@pytest.fixture
def runs() -> pd.DataFrame:
    """Task A: dense seeds 0.80/0.82/0.84 (threshold 0.80); IMP over 2 seeds; random pruning."""
    rows = [row("A", "dense", s, 0, 0.0, v) for s, v in enumerate([0.80, 0.82, 0.84])]
    imp = {0: (0.0, [0.83, 0.81]), 1: (0.2, [0.82, 0.80]), 2: (0.36, [0.79, 0.78]), 3: (0.488, [0.81, 0.80]),
           4: (0.59, [0.70, 0.72])}
    for level, (sp, scores) in imp.items():
        rows += [row("A", "imp", s, level, sp, v) for s, v in enumerate(scores)]
        rows += [row("A", "random_prune", s, level, sp, v - 0.05) for s, v in enumerate(scores)]
    return pd.DataFrame(rows)


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


def random_mask(density: float, seed: int, shapes=((64, 32), (32, 16), (100,))):
    from tickets_core.masks import Mask

    g = torch.Generator().manual_seed(seed)
    return Mask({f"m{i}": torch.rand(s, generator=g) < density for i, s in enumerate(shapes)})


def test_mask_overlap_matches_sklearn_jaccard(tmp_path):
    from sklearn.metrics import jaccard_score

    from tickets_core.masks import Mask, MaskFitError

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


# ---------------------------------------------------------------------------
# Run folders written per the contract, read through tickets_core.results
# ---------------------------------------------------------------------------


def write_run(root, kind, task, seed, levels: dict[int, tuple[float, float]], *, source_task=None, masks=None):
    """A run folder as docs/ARCHITECTURE.md describes it; ``levels``: level -> (sparsity, score)."""
    from tickets_core.config import RunConfig

    cfg = RunConfig.from_flat(kind=kind, task=task, seed=seed, model="tiny-bert", output_root=str(root),
                              **({"source_run": f"imp-{source_task}"} if source_task else {}))
    cfg.data.fingerprint = "fixture"  # written by hand, not resolved: tasks here are made-up names
    d = root / cfg.run_name()
    d.mkdir(parents=True)
    (d / "config.json").write_text(cfg.to_json())
    (d / "status.json").write_text(json.dumps({"state": "done", "levels_done": sorted(levels), "levels_planned":
                                               len(levels), "error": None, "updated": "2026-01-01T00:00:00+00:00"}))
    for level, (sp, score) in levels.items():
        ld = d / f"level_{level:02d}"
        ld.mkdir()
        if masks and level in masks:
            masks[level].save(ld / "mask.safetensors")
            (ld / "sparsity.json").write_text(json.dumps(masks[level].report()))
        src = {"run": f"imp-{source_task}", "task": source_task, "level": level} if source_task else None
        (ld / "metrics.json").write_text(json.dumps({
            "level": level, "sparsity": sp, "main_metric": "accuracy", "score": score,
            "eval": {"accuracy": score}, "train": {"steps": 1}, "source": src, "seed": seed, "task": task,
            "kind": kind}))
    return d


@pytest.fixture
def run_root(tmp_path):
    """Two tasks: dense (2 seeds), IMP (levels 0-2), transfers both ways at levels 1-2."""
    root = tmp_path / "runs"
    for task, dense in (("rotten_tomatoes", (0.80, 0.84)), ("imdb", (0.90, 0.90))):
        for seed, v in enumerate(dense):
            write_run(root, "dense", task, seed, {0: (0.0, v)})
    write_run(root, "imp", "rotten_tomatoes", 0, {0: (0.0, 0.82), 1: (0.2, 0.81), 2: (0.36, 0.79)})
    write_run(root, "imp", "imdb", 0, {0: (0.0, 0.90), 1: (0.2, 0.91), 2: (0.36, 0.88)})
    write_run(root, "transfer", "imdb", 0, {1: (0.2, 0.90), 2: (0.36, 0.85)}, source_task="rotten_tomatoes")
    write_run(root, "transfer", "rotten_tomatoes", 0, {1: (0.2, 0.80), 2: (0.36, 0.70)}, source_task="imdb")
    return root


def test_transfer_matrix_from_run_folders(run_root):
    from tickets_core import results

    runs = results.load_runs(run_root)
    t = analysis.transfer_matrix(runs, level=2).set_index(["source_task", "target_task"])
    cell = t.loc[("rotten_tomatoes", "imdb")]
    assert cell["score"] == pytest.approx(0.85)
    assert cell["vs_dense"] == pytest.approx(0.85 - 0.90)
    assert cell["vs_imp"] == pytest.approx(0.85 - 0.88)
    assert not cell["matching"]  # imdb: threshold 0.90 - 0 std
    cell = t.loc[("imdb", "rotten_tomatoes")]
    assert cell["threshold"] == pytest.approx(0.82 - np.std([0.80, 0.84], ddof=1))
    assert cell["vs_imp"] == pytest.approx(0.70 - 0.79) and not cell["matching"]
    diag = t.loc[("rotten_tomatoes", "rotten_tomatoes")]  # the IMP ticket itself
    assert diag["score"] == pytest.approx(0.79) and diag["vs_imp"] == pytest.approx(0.0)
    lvl1 = analysis.transfer_matrix(runs, sparsity=0.2).set_index(["source_task", "target_task"])
    assert lvl1.loc[("rotten_tomatoes", "imdb"), "matching"]  # 0.90 >= 0.90 - 0
    assert lvl1.loc[("imdb", "rotten_tomatoes"), "matching"]  # 0.80 >= 0.82 - 0.0283
    assert len(analysis.transfer_matrix(runs)) == 4  # default: highest common level (2), with diagonal
    with pytest.raises(AnalysisError, match="no transfer run reached level 7"):
        analysis.transfer_matrix(runs, level=7)
    with pytest.raises(AnalysisError, match="no transfer runs"):
        analysis.transfer_matrix(runs[runs["kind"] != "transfer"])


def test_pick_levels_and_overlap_from_run_folders(tmp_path):
    from tickets_core import results
    from tickets_core.masks import Mask

    root = tmp_path / "runs"
    shapes = ((16, 8), (8, 8))
    ma = {1: Mask(random_mask(0.8, 1, shapes)), 2: Mask(random_mask(0.6, 2, shapes))}
    mb = {1: Mask(random_mask(0.8, 3, shapes)), 2: Mask(random_mask(0.6, 4, shapes))}
    write_run(root, "imp", "a", 0, {0: (0.0, 0.5), 1: (ma[1].sparsity, 0.5), 2: (ma[2].sparsity, 0.5)}, masks=ma)
    write_run(root, "imp", "b", 0, {0: (0.0, 0.5), 1: (mb[1].sparsity, 0.5), 2: (mb[2].sparsity, 0.5)}, masks=mb)
    runs = results.load_runs(root)
    picked = analysis.pick_levels(runs, tol=0.1)  # default: the highest sparsity both reached
    assert picked["level"].tolist() == [2, 2]
    masks = {r.task: results.load_masks(r.run_dir)[r.level] for r in picked.itertuples()}
    m = analysis.overlap_matrix(masks)
    assert m.loc["a", "b"] == pytest.approx(ma[2].overlap(mb[2]))
    sp = results.load_sparsity(root)
    prof = analysis.layer_profile(analysis.matrix_rows(sp, picked.iloc[0]["run"], 2))
    assert prof.notna().sum().sum() >= 1
    with pytest.warns(UserWarning, match="no 'imp' level"), pytest.raises(AnalysisError, match="no task"):
        analysis.pick_levels(runs, 0.99, tol=0.01)


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def _font_sizes(fig) -> list[float]:
    from matplotlib.text import Text

    return [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


def test_figures_are_readable_and_saved_as_png_and_pdf(runs, run_root, tmp_path):
    import matplotlib.pyplot as plt

    from tickets_core import plots, results

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = analysis.dense_baselines(runs)
        high = analysis.highest_matching_sparsity(runs)
    figs = {
        "curves": plots.sparsity_curves(analysis.add_method(runs[runs.kind != "dense"]), base, high, width="single"),
        "transfer": plots.transfer_heatmaps(analysis.transfer_matrix(results.load_runs(run_root))),
        "overlap": plots.overlap_heatmaps(*(lambda m: (analysis.overlap_matrix(m), analysis.random_overlap_matrix(
            {k: v.density for k, v in m.items()})))({"A": random_mask(.4, 1), "B": random_mask(.4, 2)})),
    }
    for name, fig in figs.items():
        sizes = _font_sizes(fig)
        assert sizes and min(sizes) >= plots.MIN_FONT_PT, name
        paths = plots.save_figure(fig, name, tmp_path / "figs")
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
        plt.close(fig)
    assert figs["curves"].get_size_inches()[0] == pytest.approx(plots.WIDTHS["single"])
    assert not list((tmp_path / "figs").glob(".*"))  # no temporary files left
    with pytest.raises(AnalysisError, match="plain file name"):
        plots.save_figure(figs["curves"], "../escape", tmp_path)
    with pytest.raises(AnalysisError, match="unknown figure width"):
        plots.figure_width("triple")


def test_report_tables_from_run_folders(run_root, capsys):
    from tickets_core import report

    write_run(run_root, "random_prune", "rotten_tomatoes", 0, {1: (0.2, 0.75), 2: (0.36, 0.60)},
              source_task="rotten_tomatoes")
    assert report.main([str(run_root), "--level", "2"]) == 0
    text = capsys.readouterr().out
    # rotten_tomatoes: dense 0.80/0.84 -> threshold 0.82 - 0.0283 = 0.7917; IMP matches at 20% (0.81), not 36% (0.79)
    assert "| rotten_tomatoes | accuracy | 2 | 0.8200 ± 0.0283 | 0.7917 |" in text
    assert "| rotten_tomatoes | 36% | 20% | none |" in text  # random pruning never reaches 0.7917
    assert "| imdb | 36% | 20% | - |" in text               # imdb has no random-pruning run
    assert "| rotten_tomatoes | 20% | 0.810 | 0.750 | +0.060 |" in text
    assert "| rotten_tomatoes | 36% | 0.790 | 0.600 | +0.190 |" in text
    # transfer at level 2: rotten_tomatoes' mask on imdb scores 0.85, 0.05 below imdb's dense mean 0.90
    assert "| rotten_tomatoes | 0.850 (-0.050) | 0.790 (-0.030) |" in text  # diagonal: the IMP ticket itself
    assert "| imdb | 0.880 (-0.020) | 0.700 (-0.120) |" in text


def test_report_on_an_empty_folder_is_one_line_error(tmp_path, capsys):
    from tickets_core import report

    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
