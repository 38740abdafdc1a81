"""No run trains what another run already trained: dense levels come from the run that trains them.

Level 0 of an IMP trunk is the dense fine-tuning from theta0 with its seed.
Level 0 of a one-shot, standard-pruning or random-init magnitude trunk, a
random-pruning branch at the IMP trunk's level 0, and a ``dense`` run with the
IMP trunk's seed all train exactly that again when they are trained alike
(:func:`tickets_core.core.settings.dense_settings`, the analysis' definition
too).  After the sections are planned, :func:`share_dense_levels` gives each
such job ``dense_level_from``: the run that trains the level (an ``imp`` run
first, else a ``dense`` run; planned in this sweep or finished on disk), as a
dependency.  The run then copies that level (:mod:`tickets_core.lottery.reuse`)
and writes its own level folder as usual, so the run-folder contract and the
analysis' seed counting (a ``dense`` seed that is also an IMP trunk's level 0
counts once) are unchanged.  Standard pruning continues from the trained
weights: the owner is told to keep them (``save_dense_weights``); an owner
finished without them is not used, and the run trains its own level 0.

Both parameters are outside the run hash (a copied level is the same
fine-tuning), so run names do not change and a finished run is still found.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.config import RunConfig
from ..core.kinds import get_kind
from ..core.settings import dense_settings
from ..runs.paths import RunPaths

#: Kinds whose level 0 is trained by the run itself and may serve others, in order of preference.
OWNERS = ("imp", "dense")


def dense_key(cfg: RunConfig) -> tuple:
    """Runs with equal keys train the same dense fine-tuning: task, seed and every setting that can change it."""
    return cfg.data.task, cfg.seed, json.dumps(dense_settings(cfg.flat()), sort_keys=True, default=str)


def has_dense_level(cfg: RunConfig, source: RunConfig | None) -> bool:
    """Whether run ``cfg`` trains a level under the dense mask from theta0 (its level 0, or a branch's level at its
    source's level 0, when the source run's level 0 is dense)."""
    kind = get_kind(cfg.kind)
    if not kind.dense_level:
        return False
    if not kind.is_branch:
        return True
    if cfg.mask_path or source is None or get_kind(source.kind).is_branch:
        return False
    return cfg.source_levels is None or 0 in cfg.source_levels


def share_dense_levels(planner) -> int:
    """Give every planned job that repeats a dense level ``dense_level_from`` (see the module docstring); returns
    how many jobs now copy their dense level."""
    owners: dict[tuple, str] = {}
    for kind in OWNERS:
        for job in planner.jobs.values():
            if job.is_run and job.resolver is None and job.parameters.get("kind") == kind:
                owners.setdefault(dense_key(planner.config_of(job.name)), job.name)
        for cfg in planner.finished_runs(kind):
            if not cfg.dense_level_from:
                owners.setdefault(dense_key(cfg), cfg.run_name())
    shared = 0
    for job in list(planner.jobs.values()):
        if not job.is_run or job.resolver is not None or job.parameters.get("dense_level_from"):
            continue
        cfg = _config(planner, job.name)  # None: a highest_matching job resolved at plan time (never dense)
        if cfg is None:
            continue
        source = _config(planner, cfg.source_run)
        owner = owners.get(dense_key(cfg))
        if owner is None or owner == job.name or not has_dense_level(cfg, source):
            continue
        if cfg.kind == "standard" and not _weights_kept(planner, owner):
            continue
        job.parameters["dense_level_from"] = owner
        if owner in planner.jobs and planner.state(owner) != "done" and owner not in job.deps:
            job.deps.append(owner)
        shared += 1
    return shared


def _config(planner, name: str | None) -> RunConfig | None:
    """The config of the planned run (or the trunk run on disk the sweep planned against) ``name``."""
    try:
        return planner.config_of(Path(name).name) if name else None
    except KeyError:
        return None


def _weights_kept(planner, owner: str) -> bool:
    """Make ``owner`` keep its dense level's weights for a standard-pruning run; False when it finished that level
    without them (the run then trains its own)."""
    paths = RunPaths(Path(planner.output_root) / owner)
    if paths.weights(0).is_file():
        return True
    if 0 in paths.levels():
        return False
    if owner in planner.jobs:
        planner.jobs[owner].parameters["save_dense_weights"] = True
        return True
    return False
