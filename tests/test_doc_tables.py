"""Every number in the README's and docs' result tables equals the committed data it is generated from.

The README's demo tables and docs/results.md are generated blocks (tickets_core.analysis.doc_tables) computed
from results/demo/levels.csv (the committed record of `make demo`, tickets_core.analysis.record) and
benchmarks/results/bench_early_bird.json; these tests regenerate them and compare, and check that the record
gives the analysis exactly what the run folders give.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from analysis_fixtures import write_run
from tickets_core.analysis import doc_tables, record, report, results

REPO = doc_tables.REPO


@pytest.fixture
def study(tmp_path):
    """A miniature demo: IMP, one-shot, random pruning, dense seeds and transfers over 2 tasks."""
    root = tmp_path / "runs"
    root.mkdir()
    for task, base in (("A", 0.80), ("B", 0.60)):
        for seed in (0, 1):
            e = 0.01 * seed
            write_run(root, "imp", task, seed, {0: (0.0, base + e), 1: (0.2, base - 0.01 + e), 2: (0.4, base - 0.03 + e)})
            write_run(root, "oneshot", task, seed, {0: (0.0, base + e), 1: (0.2, base - 0.03 + e),
                                                    2: (0.4, base - 0.08 + e)})
            write_run(root, "random_prune", task, seed, {1: (0.2, base - 0.05 + e), 2: (0.4, base - 0.15 + e)},
                      source_run=f"imp-{task}")
        write_run(root, "dense", task, 2, {0: (0.0, base + 0.005)})
    write_run(root, "transfer", "B", 0, {2: (0.4, 0.55)}, source_task="A")
    return root


def test_the_record_gives_the_analysis_what_the_run_folders_give(study, tmp_path):
    dest = record.write_record(study, tmp_path / "rec")
    back = record.load_record(dest)
    direct = results.load_runs(study)
    assert report.report_of(back) == report.report_of(direct)
    assert doc_tables.demo_claims(back) == doc_tables.demo_claims(direct)
    assert set(back.columns) == set(direct.columns) - set(record.DROPPED)
    assert not (dest / "levels.csv").read_text().count("/runs/")  # where the runs lay is not a result
    pd.testing.assert_series_equal(back["score"], direct["score"])


def test_the_claims_table_reads_mean_se_and_differences_off_the_rows(study):
    text = doc_tables.demo_claims(results.load_runs(study))
    a = next(line for line in text.splitlines() if line.startswith("| A |"))
    # at 40% over seeds 0, 1: IMP 0.77, 0.78 -> mean 0.775, std 0.00707, SE 0.005; one-shot 0.72, 0.73;
    # random 0.65, 0.66.  IMP - random: 0.120, SE sqrt(2) x 0.005 = 0.00707, t 17.0
    assert "| 40% | 0.775 ± 0.005 (2) | 0.725 ± 0.005 (2) | 0.655 ± 0.005 (2) |" in a
    assert "+0.050 ± 0.007 (t 7.1)" in a and "+0.120 ± 0.007 (t 17.0)" in a
    # dense (std, not SE): IMP level 0 of seeds 0, 1 and the dense seed 2: 0.80, 0.81, 0.805
    assert a.startswith("| A | 0.805 ± 0.005 (3) |")


def test_the_reading_says_significant_only_at_the_t_threshold(study):
    text = doc_tables.demo_reading(results.load_runs(study))
    # at 40%: IMP - random = 0.120 (t 17.0) on both tasks; IMP - one-shot = 0.050 (t 7.1)
    assert "A +0.120 (t 17.0, significant)" in text and "A +0.050 (t 7.1)" in text
    assert "Some of these differences are significant." in text
    assert "at 40% (2 seeds per method): A" in text  # each comparison says what it rests on
    # dense A: 0.80, 0.81, 0.805 -> threshold 0.805 - 0.005 = 0.800; IMP at 20% averages 0.795: only 0% matches
    assert "IMP's highest matching sparsity is 0% on A, 0% on B" in text
    assert "Transfer" not in text  # no MLM source in the fixture: nothing to say about the MLM ticket


def test_two_variants_of_one_kind_are_refused_not_averaged(study):
    from tickets_core.analysis import AnalysisError

    write_run(study, "imp", "A", 0, {0: (0.0, 0.5), 1: (0.2, 0.5)}, learning_rate=1e-3)  # another IMP method
    with pytest.raises(AnalysisError, match="A: several imp methods"):
        doc_tables.demo_claims(results.load_runs(study))


def test_render_replaces_only_generated_blocks_and_names_unknown_ones():
    text = "keep\n<!-- generated:x (cmd) -->\nold\n<!-- /generated:x -->\nkeep too\n"
    assert doc_tables.render(text, {"x": lambda: "new"}) == text.replace("old", "new")
    with pytest.raises(KeyError, match="'y' has no generator"):
        doc_tables.render(text.replace(":x", ":y"), {"x": lambda: "new"}, "README.md")


def test_the_committed_tables_equal_their_committed_data():
    assert (REPO / "results" / "demo" / "levels.csv").is_file(), "results/demo/ is committed by make demo"
    blocks = [m.group("name") for doc in doc_tables.DOCUMENTS
              for m in doc_tables._BLOCK.finditer((REPO / doc).read_text())]
    assert {"demo-claims"} <= set(blocks) and set(blocks) <= set(doc_tables.BLOCKS)
    out = subprocess.run([sys.executable, "-m", "tickets_core.analysis.doc_tables", "--check"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
