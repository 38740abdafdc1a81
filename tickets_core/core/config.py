"""Typed experiment configuration: the one place where parameters are declared.

Every experiment is one :class:`RunConfig` made of smaller dataclasses.  Each
field is declared once with :func:`~tickets_core.core.params.param` (default,
help, whether it changes results, whether it is a path, its choices), and
everything else derives from that declaration: the type and range checks
(a bad value fails at once with a one-line :class:`ConfigError` naming the
parameter), the flat parameter names of notebooks and sweeps
(:data:`PARAMS`, :meth:`RunConfig.from_flat`), the experiment notebook's
parameters cell, the sweep's path handling and the run-folder name.

Identity: the run folder is ``<kind>-<task>-<hash8>`` over the fields that
change results.  Paths never enter the hash: the data are identified by
their files' fingerprint (``data.fingerprint``), a mask file by its content
(``mask_fingerprint``) and a source run by its run name, all filled in by
:func:`tickets_core.lottery.identity.resolve` and kept in ``config.json``; so a runs
folder can be moved, copied or shared.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .registry import unknown
from .kinds import KINDS, get_kind
from .sections import (LR_SCHEDULES, PRESETS, SCHEDULES, TRACKERS, DataConfig, ModelConfig, PruneConfig,
                       TrainConfig, _Checked)
from .params import Param, describe, flat_params, from_dict, hashed_view, param, require

__all__ = ["ConfigError", "ModelConfig", "DataConfig", "TrainConfig", "PruneConfig", "RunConfig", "PARAMS",
           "SCHEDULES", "LR_SCHEDULES", "PRESETS", "TRACKERS", "describe", "from_dict"]

_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "prune": PruneConfig}


@dataclass
class RunConfig(_Checked):
    kind: str = param("imp", help="What to run: " + "; ".join(f"'{k.name}' ({k.help})" for k in KINDS.values()) + ".")
    seed: int = param(0, help="Seed of head init, data order, dropout and masking.")
    source_run: str | None = param(
        None, hash_as="name",
        help="Branches: the source run, by its run name (looked up under output_root) or its folder; "
             "identified by its name, so runs folders can move.")
    source_levels: list[int] | None = param(None, help="Branches: which source levels to use (None = all "
                                                       "finished levels).")
    mask_path: str | None = param(None, hashed=False, path=True,
                                  help="transfer: one mask file instead of a source run (identified by content).")
    output_root: str = param("runs", hashed=False, path=True, help="Folder holding the run folders.")
    save_weights: bool = param(False, hashed=False,
                               help="Also write each level's trained weights (level_KK/weights.safetensors, the "
                                    "whole model), e.g. for tickets_core.interop.export.")
    stability_points: int = param(11, help="stability: points evaluated on the line between the two copies "
                                           "(ends included).")
    preset: str | None = param(
        None, hashed=False, choices=tuple(PRESETS),
        help="A named budget that sets the parameters still at their defaults: 'quick' = the offline demo's "
             "(1,024 training examples, 400 for evaluation, 64 tokens, 1 epoch per level, lr 3e-4, 10% warm-up, "
             "pooler dense, 3 levels of 20%): minutes per run on a laptop CPU. None: every default as declared.")
    max_cpu_hours: float | None = param(
        1.0, hashed=False,
        help="On a CPU, a run whose estimated time (the plan line printed before training: step count x a "
             "short measured warm-up) exceeds this many hours stops before training. None: no limit.")
    report_to: list[str] = param(
        factory=list, hashed=False,
        help="Experiment trackers, e.g. ['tensorboard']: 'tensorboard', 'mlflow' (a local file store) and 'wandb' "
             "(offline) log per-step loss and learning rate and per-level metrics under the run folder "
             "(tracking/). A tracker that fails warns once and never fails the run.")
    dense_level_from: str | None = param(
        None, hashed=False,
        help="A run (its run name or folder, found like source_run) whose level 0 this run's dense level repeats: "
             "an imp or dense run of the same task and seed trained alike (tickets_core.core.settings.dense_settings). "
             "That level is copied from it (metrics with 'reused_from'; for standard pruning its trained weights, "
             "which it keeps with save_dense_weights), not trained again. Kinds whose dense level is the dense "
             "fine-tuning from theta0 only; the sweep sets it.")
    save_dense_weights: bool = param(False, hashed=False,
                                     help="Write the dense level's trained weights (level_00/weights.safetensors, the "
                                          "whole model) for a run that continues from them (standard pruning with "
                                          "dense_level_from); the sweep sets it.")
    model: ModelConfig = param(factory=ModelConfig, help="The model.")
    data: DataConfig = param(factory=DataConfig, help="The task and its data.")
    train: TrainConfig = param(factory=TrainConfig, help="Fine-tuning, the same at every level.")
    prune: PruneConfig = param(factory=PruneConfig, help="Pruning strategy and schedule.")
    mask_fingerprint: str | None = param(None, internal=True, help="Content hash of mask_path.")

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, from_dict(cls, value, prefix=name + "."))
            elif not isinstance(value, cls):
                raise ConfigError(f"{name} must be a {cls.__name__} or a mapping, got {type(value).__name__}")
        if isinstance(self.report_to, str):  # report_to: tensorboard, as the Trainer takes it
            self.report_to = [] if self.report_to == "none" else [self.report_to]
        self._apply_preset()
        super().__post_init__()

    def _apply_preset(self) -> None:
        """``preset``: its values for every parameter still at its declared default (idempotent)."""
        if self.preset is None:
            return
        if self.preset not in PRESETS:
            raise unknown("preset", self.preset, PRESETS, param="preset")
        for name, value in PRESETS[self.preset].items():
            p = PARAMS[name]
            if p.value(self) == p.default:
                setattr(getattr(self, p.section) if p.section else self, p.field, value)
        for section in _SECTIONS:  # the sections' own checks, with the preset's values
            getattr(self, section).__post_init__()

    def check(self) -> None:
        kind = get_kind(self.kind)
        require(self.prune.early_cut_fraction is None or kind.early_bird, "early_cut_fraction",
                f"applies to kinds whose levels read the next mask off the weights they train "
                f"({', '.join(k.name for k in KINDS.values() if k.early_bird)}); {self.kind!r} has no next mask")
        require(self.prune.early_bird_every is None or kind.early_bird, "early_bird_every",
                f"applies to kinds whose levels read the next mask off the weights they train "
                f"({', '.join(k.name for k in KINDS.values() if k.early_bird)}); {self.kind!r} has no next mask")
        require(self.stability_points >= 3, "stability_points", f"must be >= 3, got {self.stability_points}")
        require(0 <= self.seed < 2**32, "seed", f"must be in [0, 2**32), got {self.seed}")
        require(self.max_cpu_hours is None or self.max_cpu_hours > 0, "max_cpu_hours",
                f"must be > 0 or None, got {self.max_cpu_hours}")
        for name in self.report_to:
            if name not in TRACKERS:
                raise unknown("tracker", name, TRACKERS, param="report_to")
        if kind.source == "none":
            require(self.source_run is None and self.mask_path is None, "source_run",
                    f"is for branches; a {self.kind!r} run reads no source")
        elif kind.source == "run":
            require(bool(self.source_run), "source_run", f"is required: a {self.kind!r} run reads a source run")
            require(self.mask_path is None, "mask_path", f"is for transfers; a {self.kind!r} run reads source_run")
        else:
            require(bool(self.source_run) != bool(self.mask_path), "source_run",
                    f"or mask_path (exactly one) is required: a {self.kind!r} run reads a source run or a mask file")
        require(self.dense_level_from is None or kind.dense_level, "dense_level_from",
                f"is for kinds whose dense level is the dense fine-tuning from theta0 "
                f"({', '.join(k.name for k in KINDS.values() if k.dense_level)}), not {self.kind!r}")
        for other in KINDS.values():  # parameters that only some kinds read stay at their defaults elsewhere
            for name in set(other.params) - set(kind.params):
                p = lookup(name)
                require(p.value(self) == p.default, name, f"is for kind {other.name!r}; a {self.kind!r} run does not use it")

    # -- (de)serialisation ----------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return from_dict(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_flat(cls, **params: Any) -> "RunConfig":
        """A config from flat parameters (``learning_rate=1e-4, levels=4, model='tiny-bert'``).

        Names are those of :data:`PARAMS` (also accepted: ``section.field``
        and ``section__field``).  Unknown names raise :class:`ConfigError`.
        """
        nested: dict[str, Any] = {s: {} for s in _SECTIONS}
        for key, value in params.items():
            p = lookup(key)
            (nested[p.section] if p.section else nested).__setitem__(p.field, value)
        return from_dict(cls, nested)

    def flat(self) -> dict[str, Any]:
        """The inverse of :meth:`from_flat`: every flat parameter and its value."""
        return {p.name: p.value(self) for p in PARAMS.values()}

    def changed(self) -> dict[str, Any]:
        """The flat parameters not at their declared defaults (a preset's values included)."""
        return {name: value for name, value in self.flat().items() if value != PARAMS[name].default}

    # -- identity ---------------------------------------------------------------

    @property
    def resolved(self) -> bool:
        """True once :func:`tickets_core.lottery.identity.resolve` filled in what identifies the data and mask file."""
        return self.data.fingerprint is not None and (self.mask_path is None or self.mask_fingerprint is not None)

    def hashed_dict(self) -> dict:
        """The config restricted to what changes results (a local model folder: its content, not its path)."""
        view = hashed_view(self)
        if self.model.fingerprint is not None:
            view.get("model", {}).pop("name_or_path", None)
        return view

    def config_hash(self, length: int = 8) -> str:
        if not self.resolved:
            raise ConfigError("the config is not resolved (its data are not identified yet): "
                              "use tickets_core.lottery.identity.resolve(cfg)")
        blob = json.dumps(self.hashed_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:length]

    def run_name(self) -> str:
        """Folder name: ``<kind>-<task>-<hash>``."""
        return f"{self.kind}-{self.data.task}-{self.config_hash()}"


#: Every flat parameter, by name, in the order of the declarations.
PARAMS: dict[str, Param] = flat_params(RunConfig, _SECTIONS)
_SPELLINGS: dict[str, Param] = {
    **{f"{p.section}{sep}{p.field}": p for p in PARAMS.values() if p.section for sep in (".", "__")},
    **PARAMS,
}


def lookup(name: str) -> Param:
    """The flat parameter ``name`` (or ``section.field`` / ``section__field``); unknown is a :class:`ConfigError`."""
    try:
        return _SPELLINGS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown parameter {name!r}", param=str(name)) from None

