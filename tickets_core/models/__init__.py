"""Models: building them (pre-trained, offline alias or tiny random config), task heads, and which weights are
prunable.  Importing this package is cheap; :mod:`~tickets_core.models.build` and
:mod:`~tickets_core.models.prunable` import torch, :mod:`~tickets_core.models.components` and
:mod:`~tickets_core.models.heads` do not."""
