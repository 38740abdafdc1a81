"""tickets_core: lottery-ticket experiments on pre-trained transformers.

The configuration (:mod:`tickets_core.core.config`, every parameter declared once),
masks and pruning (:mod:`tickets_core.pruning.masks`, :mod:`tickets_core.pruning.strategies`),
the run kinds and what their levels do (:mod:`tickets_core.core.kinds`,
:mod:`tickets_core.lottery.levels`) and the driver (:mod:`tickets_core.lottery.driver`), tasks and
training (:mod:`tickets_core.tasks`, :mod:`tickets_core.training.loop`), the run store
and its pandas loader (:mod:`tickets_core.runs.store`, :mod:`tickets_core.analysis.results`),
analysis and figures (:mod:`tickets_core.analysis`, :mod:`tickets_core.plots.figures`,
:mod:`tickets_core.analysis.report`) and the papermill sweep runner
(:mod:`tickets_core.sweep`).  docs/ARCHITECTURE.md has the contracts.

Importing the package is cheap: submodules are imported on first use, and
the analysis side (results, analysis, plots, report) never imports torch.
"""

__version__ = "0.2.0"
