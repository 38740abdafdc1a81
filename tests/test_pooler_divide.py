"""Masks across the pooler divide: a BERT classifier's masks have a pooler entry, its MLM and QA models' do not.
Overlap and transfer compare them on the matrices both have, and say so."""

from __future__ import annotations

import pytest
import torch

from tickets_core import analysis
from tickets_core.pruning.masks import Mask, MaskFitError
from analysis_fixtures import random_mask, write_run

SHAPES = ((64, 32), (32, 16))
POOLER = "pooler.dense.weight"


def with_pooler(mask: Mask, density: float, seed: int) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({**dict(mask), POOLER: torch.rand((32, 32), generator=g) < density})


def test_overlap_is_over_the_matrices_both_masks_have():
    from sklearn.metrics import jaccard_score

    enc_a, enc_b = random_mask(0.4, 1, SHAPES), random_mask(0.6, 2, SHAPES)
    glue, mlm = with_pooler(enc_a, 0.9, 3), enc_b  # a classifier's mask, an MLM model's
    flat = lambda m: torch.cat([m[k].reshape(-1) for k in sorted(m)]).numpy()  # noqa: E731
    assert glue.overlap(mlm) == mlm.overlap(glue) == pytest.approx(jaccard_score(flat(enc_a), flat(enc_b)))
    a, b = glue.common(mlm)
    assert set(a) == set(b) == set(enc_a) and a.density == pytest.approx(enc_a.density)
    with pytest.raises(MaskFitError, match="a pooler may be missing from one.*'m1' is in one mask only"):
        glue.overlap(Mask({"m0": enc_b["m0"]}))
    masks = {"sst2": glue, "mlm": mlm, "stsb": with_pooler(random_mask(0.5, 4, SHAPES), 0.2, 5)}
    observed, expected = analysis.overlap_matrix(masks), analysis.expected_overlap_matrix(masks)
    assert observed.loc["sst2", "mlm"] == pytest.approx(glue.overlap(mlm))
    # random masks of the densities each pair has where both are compared (the pooler's left out against mlm)
    assert expected.loc["sst2", "mlm"] == pytest.approx(analysis.random_iou(enc_a.density, enc_b.density))
    assert expected.loc["sst2", "stsb"] == pytest.approx(analysis.random_iou(masks["sst2"].density,
                                                                            masks["stsb"].density))
    assert analysis.common_set_note(masks) == ("IoU over the matrices both masks have: mlm (no pooler) against "
                                               "sst2, stsb leaves their pooler out")
    assert analysis.common_set_note({"sst2": glue, "stsb": masks["stsb"]}) is None


def test_seeds_vs_tasks_says_which_pairs_leave_the_pooler_out():
    import pandas as pd

    masks = {("sst2", "IMP", s): with_pooler(random_mask(0.5, s, SHAPES), 0.5, 10 + s) for s in (0, 1)}
    masks.update({("mlm", "IMP", s): random_mask(0.5, 20 + s, SHAPES) for s in (0, 1)})
    picked = pd.DataFrame([{"task": t, "method": m, "seed": s} for t, m, s in masks])
    table = analysis.seeds_vs_tasks(picked, masks).set_index(["pair", "task_a", "task_b"])
    assert table.loc[("between", "mlm", "sst2"), "matrices"] == "without the pooler"
    assert table.loc[("within", "sst2", "sst2"), "matrices"] == "all"
    assert table.loc[("between", "mlm", "sst2"), "iou_mean"] == pytest.approx(
        sum(masks[("mlm", "IMP", s)].overlap(masks[("sst2", "IMP", s)]) for s in (0, 1)) / 2)


def test_a_transfer_across_the_pooler_is_compared_at_the_tickets_sparsity(tmp_path):
    """An MLM ticket at 20% leaves a classifier's pooler dense: 18.8% over the classifier's weights.  It is
    compared with the classifier's own ticket at 20% (its level 2), not with nothing (1.2 points off)."""
    from tickets_core.analysis import results

    root = tmp_path / "runs"
    mlm = write_run(root, "imp", "mlm", 0, {0: (0.0, 0.30), 1: (0.1, 0.29), 2: (0.2, 0.28)})
    write_run(root, "imp", "sst2", 0, {0: (0.0, 0.90), 1: (0.1, 0.89), 2: (0.2, 0.88)})
    write_run(root, "dense", "sst2", 1, {0: (0.0, 0.86)})
    write_run(root, "transfer", "sst2", 0, {2: (0.188, 0.80)}, source_task="mlm", source_run=mlm.name,
              source_levels=[2])
    runs = results.load_runs(root)
    cell = analysis.transfer_matrix(runs, level=2).set_index(["source", "target_task"]).loc[("mlm", "sst2")]
    assert cell["sparsity"] == pytest.approx(0.188) and cell["source_sparsity"] == pytest.approx(0.2)
    assert cell["imp_score"] == pytest.approx(0.88) and cell["vs_imp"] == pytest.approx(0.80 - 0.88)
    note = analysis.transfer_note(analysis.transfer_matrix(runs, level=2))
    assert note.startswith("sparsity over each target's prunable weights") and "mlm -> sst2: 20.0% -> 18.8%" in note
