"""Masks and how they are chosen: the :class:`~tickets_core.pruning.masks.Mask` type, pruning strategies, and the
early-bird criterion."""
