"""tickets_core: lottery-ticket experiments on pre-trained transformers.

The configuration (:mod:`tickets_core.config`, every parameter declared once),
masks and pruning (:mod:`tickets_core.masks`, :mod:`tickets_core.pruning`),
the run kinds and what their levels do (:mod:`tickets_core.kinds`,
:mod:`tickets_core.levels`) and the driver (:mod:`tickets_core.imp`), tasks and
training (:mod:`tickets_core.tasks`, :mod:`tickets_core.train`), the run store
and its pandas loader (:mod:`tickets_core.store`, :mod:`tickets_core.results`),
analysis and figures (:mod:`tickets_core.analysis`, :mod:`tickets_core.plots`,
:mod:`tickets_core.report`) and the papermill sweep runner
(:mod:`tickets_core.sweep`).  docs/ARCHITECTURE.md has the contracts.

Importing the package is cheap: submodules are imported on first use, and
the analysis side (results, analysis, plots, report) never imports torch.
"""

__version__ = "0.2.0"
