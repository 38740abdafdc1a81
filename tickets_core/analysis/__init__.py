"""Analysis of finished runs: methods, matching, highest matching sparsity, mask overlap, transfer.

Pure functions on the DataFrames of :mod:`tickets_core.analysis.results` (one row per
run and level, columns documented in ``docs/ARCHITECTURE.md``) and on
:class:`tickets_core.pruning.masks.Mask` objects that the caller loaded.  Nothing
here trains, loads a model or imports torch; the analysis notebooks call
these functions and hand the tables to :mod:`tickets_core.plots.figures`.

* :mod:`.methods`: what is averaged over seeds -- a run kind plus every
  result-changing setting that sets its runs apart (``add_method``).
* :mod:`.matching`: dense baselines, the matching criterion of Chen et al.
  (NeurIPS 2020), sparsity curves, the highest matching sparsity.
* :mod:`.overlap`: IoU of masks against random masks, per-layer profiles.
* :mod:`.transfer`: the source x target transfer matrix.

Every table is per method and says over how many seeds it averages
(``n_seeds``); nothing averages runs that differ in anything but the seed.
"""

from .common import SPARSITY_TOL, AnalysisError, filter_runs, over_seeds
from .matching import (BASELINE_COLUMNS, HIGHEST_COLUMNS, DenseBaseline, baseline_of, curve_table, dense_baseline,
                       dense_baselines, dense_rows, dense_threshold, dense_variant, highest_matching_sparsity,
                       is_matching, matching_rules)
from .methods import (NOT_A_SETTING, add_method, describe_settings, method_label, only_imp_method,
                      run_methods)
from .overlap import (check_comparable, common_set_note, expected_overlap_matrix, layer_profile, matrix_rows,
                      overlap_matrix, pick_levels, pick_seeds, random_iou, random_overlap_matrix, seeds_vs_tasks)
from .transfer import HIGHEST, TRANSFER_COLUMNS, transfer_matrix, transfer_note

__all__ = ["SPARSITY_TOL", "AnalysisError", "filter_runs", "over_seeds", "BASELINE_COLUMNS", "HIGHEST_COLUMNS",
           "DenseBaseline", "baseline_of", "curve_table", "dense_baseline", "dense_baselines", "dense_rows",
           "dense_threshold", "dense_variant", "highest_matching_sparsity", "is_matching", "matching_rules",
           "NOT_A_SETTING", "add_method", "describe_settings", "method_label", "only_imp_method", "run_methods",
           "check_comparable", "common_set_note", "expected_overlap_matrix", "layer_profile", "matrix_rows",
           "overlap_matrix", "pick_levels", "pick_seeds", "random_iou", "random_overlap_matrix", "seeds_vs_tasks",
           "HIGHEST", "TRANSFER_COLUMNS", "transfer_matrix", "transfer_note"]
