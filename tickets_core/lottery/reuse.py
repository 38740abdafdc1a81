"""A dense level copied, not trained again: ``dense_level_from``.

Level 0 of an IMP trunk is the dense fine-tuning from theta0 with the run
seed.  Several kinds train exactly that at their dense level (a kind with
``dense_level`` in :mod:`tickets_core.core.kinds`: a ``dense`` run, level 0 of
one-shot, standard pruning and random-init magnitude pruning, a branch at a
dense source level).  A run whose ``dense_level_from`` names a run that trained
it already (an ``imp`` or ``dense`` run of the same task and seed, trained
alike: :func:`tickets_core.core.settings.dense_settings`, the one definition the
analysis uses too) copies that run's level-0 result instead: the same
evaluation and training record, ``time_s`` 0 (the time was spent once, there)
and ``reused_from`` naming the run.  Standard pruning continues from the trained
weights, so it also loads them (the other run kept them: ``save_dense_weights``).

Anything that does not fit is a one-line :class:`~tickets_core.core.errors.ConfigError`
naming ``dense_level_from``: the run missing, its level 0 unfinished or pruned,
another task, seed or setting, or its weights not kept.
"""

from __future__ import annotations

from ..core.config import RunConfig
from ..core.errors import ConfigError
from ..core.fsio import read_json
from ..core.settings import dense_settings
from ..runs.paths import RunPaths
from ..runs.plan import find_source, source_candidates


def _fail(msg: str) -> ConfigError:
    return ConfigError(f"dense_level_from: {msg}", param="dense_level_from")


def trained_alike(mine: RunConfig, theirs: RunConfig) -> str:
    """Why ``theirs``' level 0 is not ``mine``'s dense fine-tuning ("" when it is): task, seed or a setting that
    can change a dense fine-tuning differs."""
    if theirs.kind not in ("imp", "dense"):
        return f"it is a {theirs.kind!r} run (an imp or dense run trains the dense level)"
    for what, a, b in (("task", theirs.data.task, mine.data.task), ("seed", theirs.seed, mine.seed)):
        if a != b:
            return f"its {what} is {a!r}, this run's {b!r}"
    a, b = dense_settings(theirs.flat()), dense_settings(mine.flat())
    off = next((k for k in a if a[k] != b.get(k)), None)
    return "" if off is None else f"it was trained with {off} {a[off]!r}, this run with {b.get(off)!r}"


def reused_dense_level(x, load_weights: bool = False) -> dict:
    """The training result of ``x``'s dense level, copied from ``x.cfg.dense_level_from``'s level 0 (see the module
    docstring); with ``load_weights`` its trained weights are put into ``x``'s model."""
    cfg = x.cfg
    src = find_source(cfg, x.run.root if x.run is not None else None, run=cfg.dense_level_from)
    if src is None:
        raise _fail(f"run {cfg.dense_level_from!r} not found (no run folder "
                    f"{' or '.join(map(str, source_candidates(cfg, run=cfg.dense_level_from)))})")
    paths = RunPaths(src)
    theirs = RunConfig.from_dict(read_json(paths.config()))
    why = trained_alike(cfg, theirs)
    if why:
        raise _fail(f"{src.name}'s level 0 is not this run's dense level: {why}")
    if 0 not in paths.levels():
        raise _fail(f"{src.name} has not finished its level 0")
    metrics = read_json(paths.metrics(0))
    if metrics.get("sparsity", 0.0) > 0.0:
        raise _fail(f"{src.name}'s level 0 was pruned (sparsity {metrics['sparsity']:.3f})")
    if load_weights:
        if not paths.weights(0).is_file():
            raise _fail(f"{src.name} kept no level-0 weights ({paths.weights(0)}): run it with save_dense_weights, "
                        "or leave dense_level_from unset to train the dense level here")
        x.load(x.load_state(paths.weights(0), 0), x.all_keys)
    train = metrics.get("train", {})
    return {**train, "time_s": 0.0, "eval": metrics["eval"],
            "reused_from": {"run": src.name, "level": 0, "time_s": train.get("time_s")}}
