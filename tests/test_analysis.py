"""tickets_core.analysis and tickets_core.plots.figures: matching, overlap, transfer tables, figures.

Reference values come from numpy/sklearn (Jaccard), a Monte-Carlo simulation
(random-mask IoU) and hand-computed tables; run folders are written per the
contract of docs/ARCHITECTURE.md and read back through tickets_core.analysis.results.
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
from tickets_core.runs.walk import RunFolders


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


def random_mask(density: float, seed: int, shapes=((64, 32), (32, 16), (100,))):
    from tickets_core.pruning.masks import Mask

    g = torch.Generator().manual_seed(seed)
    return Mask({f"m{i}": torch.rand(s, generator=g) < density for i, s in enumerate(shapes)})


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


# ---------------------------------------------------------------------------
# Run folders written per the contract, read through tickets_core.analysis.results
# ---------------------------------------------------------------------------


def write_run(root, kind, task, seed, level_scores: dict[int, tuple[float, float]], *, source_task=None, masks=None,
              source_run=None, **params):
    """A run folder as docs/ARCHITECTURE.md describes it; ``level_scores``: level -> (sparsity, score).

    ``params``: more flat parameters (a variant); ``source_run``: the source's run name (default: a made-up one).
    """
    from tickets_core.core.config import RunConfig

    source_run = source_run or (f"imp-{source_task}" if source_task else None)
    cfg = RunConfig.from_flat(kind=kind, task=task, seed=seed, model="tiny-bert", output_root=str(root),
                              **({"source_run": source_run} if source_run else {}), **params)
    cfg.data.fingerprint = "fixture"  # written by hand, not resolved: tasks here are made-up names
    d = root / cfg.run_name()
    d.mkdir(parents=True)
    (d / "config.json").write_text(cfg.to_json())
    (d / "status.json").write_text(json.dumps({"state": "done", "levels_done": sorted(level_scores),
                                               "levels_planned": len(level_scores), "error": None,
                                               "updated": "2026-01-01T00:00:00+00:00"}))
    for level, (sp, score) in level_scores.items():
        ld = d / f"level_{level:02d}"
        ld.mkdir()
        if masks and level in masks:
            masks[level].save(ld / "mask.safetensors")
            (ld / "sparsity.json").write_text(json.dumps(masks[level].report()))
        src = {"run": source_run, "task": source_task, "level": level} if source_task else None
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
    from tickets_core.analysis import results
    runs = results.load_runs(run_root)
    t = analysis.transfer_matrix(runs, level=2).set_index(["source_task", "target_task"])
    cell = t.loc[("rotten_tomatoes", "imdb")]
    assert cell["score"] == pytest.approx(0.85)
    assert cell["vs_dense"] == pytest.approx(0.85 - 0.90)
    assert cell["vs_imp"] == pytest.approx(0.85 - 0.88)
    assert not cell["matching"]  # imdb: threshold 0.90 - 0 std
    assert cell["n_dense_seeds"] == 2 and cell["n_seeds"] == 1  # imdb's dense seeds 0, 1 (IMP level 0 is seed 0)
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
    from tickets_core.analysis import results
    from tickets_core.pruning.masks import Mask

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

    from tickets_core import plots

    from tickets_core.analysis import results
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
    legend = [t.get_text() for t in figs["curves"].legends[0].get_texts()]
    assert "dense mean (3 seeds)" in legend and "matching threshold (3 seeds)" in legend
    assert [ax.get_title() for ax in figs["transfer"].axes[:2]] == ["score - dense (1 seed)\ndense mean over 2 seeds",
                                                                    "score - own IMP ticket (1 seed)"]
    assert not list((tmp_path / "figs").glob(".*"))  # no temporary files left
    with pytest.raises(AnalysisError, match="plain file name"):
        plots.save_figure(figs["curves"], "../escape", tmp_path)
    with pytest.raises(AnalysisError, match="unknown figure width"):
        plots.figure_width("triple")


def test_report_tables_from_run_folders(run_root, capsys):
    from tickets_core.analysis import report
    write_run(run_root, "random_prune", "rotten_tomatoes", 0, {1: (0.2, 0.75), 2: (0.36, 0.60)},
              source_task="rotten_tomatoes")
    assert report.main([str(run_root), "--level", "2"]) == 0
    text = capsys.readouterr().out
    # rotten_tomatoes: dense 0.80/0.84 -> threshold 0.82 - 0.0283 = 0.7917; IMP matches at 20% (0.81), not 36% (0.79)
    assert "| rotten_tomatoes | accuracy | 2 | 0.8200 ± 0.0283 | 0.7917 |" in text
    assert "| rotten_tomatoes | IMP | 1 | 36% | 20% |" in text
    assert "| rotten_tomatoes | random pruning | 1 | 36% | none |" in text  # never reaches 0.7917
    assert "| imdb | IMP | 1 | 36% | 20% |" in text and "| imdb | random pruning" not in text
    assert "| rotten_tomatoes | IMP / random pruning | 20% | 0.810 (1) | 0.750 (1) | +0.060 |" in text
    assert "| rotten_tomatoes | IMP / random pruning | 36% | 0.790 (1) | 0.600 (1) | +0.190 |" in text
    # transfer at level 2: rotten_tomatoes' mask on imdb scores 0.85, 0.05 below imdb's dense mean 0.90 (1 seed)
    assert "| rotten_tomatoes | 36% | 0.850 (-0.050, 1) | 0.790 (-0.030, 1) |" in text  # diagonal: the IMP ticket
    assert "| imdb | 36% | 0.880 (-0.020, 1) | 0.700 (-0.120, 1) |" in text
    # each source at its own highest matching level (both IMP tickets match at 20%, level 1)
    assert report.main([str(run_root), "--level", "highest_matching"]) == 0
    text = capsys.readouterr().out
    assert "| rotten_tomatoes | 20% | 0.900 (+0.000, 1) ✓ | 0.810 (-0.010, 1) ✓ |" in text


def test_report_on_an_empty_folder_is_one_line_error(tmp_path, capsys):
    from tickets_core.analysis import report
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


# ---------------------------------------------------------------------------
# Variants of a method in one folder: kept apart everywhere, only seeds averaged
# ---------------------------------------------------------------------------


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
    from glue_fixtures import write_text

    from tickets_core.lottery import driver as imp

    from tickets_core.analysis import results
    root = tmp_path / "runs"
    mlm = {"task": "mlm", "data_dir": str(write_text(tmp_path / "txt", n_train=40, n_valid=16)), "max_seq_length": 32}
    source = imp.run(tiny_config_factory(root, levels=1, rate=0.3))  # rotten_tomatoes, with a pooler
    imp.run(tiny_config_factory(root, levels=1, rate=0.3, **mlm))     # MLM's own ticket (its level 0: the dense)
    d = imp.run(tiny_config_factory(root, kind="transfer", source_run=source.name, **mlm))
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


# ---------------------------------------------------------------------------
# Stability and early-bird tables (tickets_core.analysis.curves) on in-memory runs
# ---------------------------------------------------------------------------


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
