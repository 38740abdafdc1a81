"""What one level of each run kind does: one function per kind of :mod:`tickets_core.core.kinds`.

A level function gets the :class:`~tickets_core.lottery.experiment.Experiment` and
the :class:`~tickets_core.lottery.experiment.Level` to run.  It puts the level's
starting weights into the model, fine-tunes under the level's mask, writes
what the next level needs (:meth:`Experiment.leave_next`), and returns the
mask and the training result; the driver (:mod:`tickets_core.lottery.driver`) then
writes the level's mask, sparsity report and metrics, the last being the
level's done marker.  Every level uses the run seed, so a level killed
anywhere and run again repeats exactly.

To add a kind: register it in :mod:`tickets_core.core.kinds`, then write its
function here under ``@level_function("<name>")``.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..core.registry import Registry
from ..core.seeds import derived_seed
from .barriers import barriers
from ..pruning.early_bird import EarlyCut, chain
from .experiment import Experiment, Level
from .reuse import reused_dense_level
from ..pruning import units
from ..pruning.masks import Mask
from ..pruning.strategies import get_strategy, level_generator

LevelFunction = Callable[[Experiment, Level], "tuple[Mask, dict]"]
LEVEL_FUNCTIONS: Registry[LevelFunction] = Registry("run kind with a level function", param="kind")
#: ``@level_function("<kind>")`` registers the decorated function as what one level of that kind does.
level_function = LEVEL_FUNCTIONS.decorator


def _tune(x: Experiment, item: Level, mask: Mask, *, weights: bool = False) -> tuple[Mask, dict]:
    """Fine-tune the model (theta0, loaded by the caller) under ``mask``.  Under the dense mask of a run with
    ``dense_level_from`` that run's level 0 is copied instead (:mod:`.reuse`; ``weights``: its trained weights
    too, for a kind that continues from them)."""
    if x.cfg.dense_level_from and mask.nonzero == mask.numel:
        return mask, reused_dense_level(x, load_weights=weights)
    return mask, x.train(item.level, mask)


def _dense_from_theta0(x: Experiment, item: Level, *, weights: bool = False) -> tuple[Mask, dict]:
    x.load(x.theta0, x.all_keys)
    return _tune(x, item, x.dense_mask(), weights=weights)


@level_function("imp")
def imp_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    k, keep_head = item.level, not x.cfg.prune.reset_head
    rewind = x.cfg.prune.rewind_step if k == 0 else 0
    if k == 0:
        mask = x.dense_mask()
        x.load(x.theta0, x.all_keys)
    else:
        mask = x.stored_mask(k)
        x.load(x.rewind_state(), x.base_keys)
        x.load(x.carried(k) if keep_head else x.theta0, x.head_keys)
    # Early-bird (off by default): stop once the next mask has converged (or, the control, at a fixed fraction of
    # the level); the last level has no next mask.
    bird = None if item.last else x.early_stop(mask, k)
    result = x.train(k, mask, chain(x.capture_rewind if rewind else None, bird))
    if rewind:
        x.require_rewind_captured(result)
    if bird is not None:
        result["early_cut" if isinstance(bird, EarlyCut) else "early_bird"] = bird.record()
    if not item.last:
        x.leave_next(k, mask, carry=x.head_keys if keep_head else None)
    return mask, result


@level_function("dense")
def dense_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    return _dense_from_theta0(x, item)


@level_function("oneshot")
def oneshot_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    x.load(x.theta0, x.all_keys)
    mask = x.prune_trained(x.dense_mask(), item.level)  # the "trained" weights are theta0 itself
    return _tune(x, item, mask)


@level_function("standard")
def standard_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    k = item.level
    if k == 0:
        mask, result = _dense_from_theta0(x, item, weights=True)  # a copied level 0 brings its trained weights
    else:
        mask = x.stored_mask(k)
        x.load(x.carried(k), x.all_keys)
        result = x.train(k, mask)
    if not item.last:
        x.leave_next(k, mask, carry=x.all_keys)
    return mask, result


@level_function("random_magnitude")
def random_magnitude_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    x.load(x.reinit_state(), x.base_keys)  # the architecture's own random init, seeded by the run seed
    mask = x.prune_trained(x.dense_mask(), item.level)  # one-shot, straight to the level's sparsity
    x.load(x.theta0, x.all_keys)
    return _tune(x, item, mask)


@level_function("random_prune")
def random_prune_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    template = item.source_mask
    # A random strategy reads only the shapes of the weights it is given.
    dense = Mask({n: torch.ones_like(v) for n, v in template.items()})
    # A structured source (whole heads and neurons pruned) gets random units with its per-layer counts, which
    # also keeps its per-matrix sparsities; any other mask random weights with its per-matrix sparsities.
    lay = structured_layout(x, template)
    name, extra = ("structured_random", {"layout": lay}) if lay is not None else ("random_layerwise", {})
    mask = get_strategy(name)(dict(template), dense, 0.0, generator=level_generator(x.cfg.seed, item.level),
                              layer_sparsities=template.layer_sparsities(), **extra)
    x.load(x.theta0, x.all_keys)
    return _tune(x, item, mask)


def structured_layout(x: Experiment, mask: Mask):
    """The model's head/neuron layout when ``mask`` prunes whole units (and some), else None."""
    if mask.nonzero == mask.numel:
        return None
    try:
        lay = units.layout(x.model)
        return lay if units.is_structured(mask, lay) else None
    except units.UnitError:
        return None


@level_function("random_reinit")
def random_reinit_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    x.load(x.theta0, x.head_keys)
    x.load(x.reinit_state(), x.base_keys)
    return item.source_mask, x.train(item.level, item.source_mask)


@level_function("transfer")
def transfer_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    x.load(x.theta0, x.all_keys)
    return _tune(x, item, item.source_mask)


def _perturbed_level(x: Experiment, item: Level, how: str) -> tuple[Mask, dict]:
    x.load(x.theta0, x.all_keys)
    x.load(x.perturbed_state(how), x.prunable_keys)
    return item.source_mask, x.train(item.level, item.source_mask)


@level_function("shuffled")
def shuffled_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    return _perturbed_level(x, item, "shuffled")


@level_function("noised")
def noised_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    return _perturbed_level(x, item, "noised")


@level_function("retrain")
def retrain_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    """A transfer onto the source's own task (:func:`tickets_core.lottery.driver.source_levels` checks the task)."""
    return transfer_level(x, item)


@level_function("stability")
def stability_level(x: Experiment, item: Level) -> tuple[Mask, dict]:
    """Two copies from the rewind point under the source mask (seeds: the run's, and shifted by
    :func:`~tickets_core.core.seeds.derived_seed` ``stability_copy``), then ``stability_points`` evaluations on the line between them."""
    start = x.compute_rewind(item.level)  # theta0, or theta_i
    copies = []
    for seed in (x.cfg.seed, derived_seed(x.cfg.seed, "stability_copy")):
        x.load(start, x.base_keys)
        x.load(x.theta0, x.head_keys)
        result = x.train(item.level, item.source_mask, seed=seed, save=not copies)
        copies.append((seed, result, x.snapshot(x.all_keys)))
    (seed_a, result, state_a), (seed_b, other, state_b) = copies
    scale = 100.0 if x.task.head == "qa" else 1.0  # SQuAD scores are percentages
    points = [{**p, "error": 1.0 - p[x.task.main_metric] / scale}
              for p in x.along_line(state_a, state_b, x.cfg.stability_points)]
    result["stability"] = {
        "seeds": [seed_a, seed_b], "rewind_step": x.cfg.prune.rewind_step, "points": points,
        "other_copy": {k: other[k] for k in ("train_loss", "steps", "time_s", "eval")},
        **barriers(points),
    }
    return item.source_mask, result  # the model holds copy A (the run's seed), whose metrics the level reports
