"""What a setting means for comparing runs: one definition of "trained like dense", for the sweep and the analysis.

A run's *settings* are its result-changing parameters (declared ``hashed`` in
:data:`~tickets_core.core.config.PARAMS`), by flat name.  Two fine-tunings are
*trained alike* when they agree on every setting that can change a dense
fine-tuning (:func:`dense_settings`): everything outside the pruning section,
except ``include_pooler`` (a dense model prunes nothing) and parameters only
some kinds read; plus the early-bird options (an early-bird trunk stops its
dense level early) and, under ``lr_schedule: across_levels``, the number of
``levels`` (it sets the length of the one learning-rate schedule every
fine-tuning of the run restarts, the reference code's schedule).

The analysis groups dense baselines by this key
(:func:`tickets_core.analysis.methods.run_methods`) and the sweep looks for the
dense baseline of a ``highest_matching`` source with it
(:mod:`tickets_core.sweep.deferred`), so both compare the same way.  Torch- and
pandas-free.
"""

from __future__ import annotations

from typing import Any, Mapping

from .config import PARAMS
from .kinds import KINDS

#: Parameters that never make two runs different methods: the seed (averaged over), the task (the tables' other
#: axis), the kind itself, and which source run and levels a branch reads (its rows say).
NOT_A_SETTING = ("seed", "task", "kind", "source_run", "source_levels")
#: The value of a transfer's ``source_levels`` (sweeps) and of an analysis' ``level`` that means each source's
#: highest matching level (the sweep resolves it with the analysis' own function).
HIGHEST = "highest_matching"
#: The early-stopping options of an IMP trunk: the early-bird criterion and its control, the fixed cut.
EARLY_STOP_SETTINGS = ("early_bird_every", "early_bird_eps", "early_bird_window", "early_bird_span",
                       "early_bird_min_fraction", "early_cut_fraction")
#: Pruning settings that change level 0 too: an early-bird (or early-cut) trunk stops its dense level early.
DENSE_PRUNE_SETTINGS = EARLY_STOP_SETTINGS
#: Settings that change a dense fine-tuning only under ``lr_schedule: across_levels``.
ACROSS_LEVELS_SETTINGS = ("levels",)


def kind_only() -> set[str]:
    """Parameters that only some kinds read (``RunKind.params``)."""
    return {name for k in KINDS.values() for name in k.params}


def dense_relevant(name: str, settings: Mapping[str, Any] | None = None) -> bool:
    """Whether setting ``name`` can change a dense fine-tuning of a run with ``settings`` (see the docstring).

    Without ``settings`` the answer ignores ``lr_schedule`` (``levels`` counts only with ``across_levels``)."""
    if name in DENSE_PRUNE_SETTINGS:
        return True
    if name in ACROSS_LEVELS_SETTINGS:
        return settings is not None and settings.get("lr_schedule", PARAMS["lr_schedule"].default) == "across_levels"
    p = PARAMS.get(name)
    return p is not None and p.section not in ("prune", None) and name != "include_pooler" and name not in kind_only()


def dense_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a run (its flat parameters, or the analysis' ``config`` column) that can change its dense
    fine-tuning: runs with equal values are trained alike.  Parameters at their default may be absent."""
    out = {}
    for name, p in PARAMS.items():
        if p.hashed and name not in NOT_A_SETTING and dense_relevant(name, settings):
            out[name] = settings.get(name, p.default)
    return out


#: Exit status of a process stopped by a walltime signal after writing its checkpoint (EX_TEMPFAIL): the walltime
#: guard (tickets_core.sweep.walltime) exits with it and requeues its SLURM job.
REQUEUE_STATUS = 75
