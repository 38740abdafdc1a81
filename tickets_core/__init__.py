"""tickets_core: lottery-ticket experiments on pre-trained transformers.

Masks and pruning (:mod:`tickets_core.masks`, :mod:`tickets_core.pruning`),
the IMP driver (:mod:`tickets_core.imp`), tasks and training
(:mod:`tickets_core.tasks`, :mod:`tickets_core.train`), the run store and its
pandas loader (:mod:`tickets_core.store`, :mod:`tickets_core.results`),
analysis and figures (:mod:`tickets_core.analysis`, :mod:`tickets_core.plots`)
and the papermill sweep runner (:mod:`tickets_core.sweep`).

Importing the package is cheap: submodules are imported on first use, so an
analysis notebook that needs only :mod:`tickets_core.results` never loads
the training stack.
"""

__version__ = "0.1.0"
