"""Run folders written per the contract of docs/ARCHITECTURE.md, read back through tickets_core.analysis.results:
transfer matrices, overlap, the figures and the report."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tickets_core import analysis
from tickets_core.analysis import AnalysisError
from analysis_fixtures import random_mask, write_run


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


