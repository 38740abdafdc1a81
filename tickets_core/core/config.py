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
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError
from .registry import unknown
from .kinds import KINDS, get_kind
from .strategies import STRATEGY_SPECS, strategies_help
from .params import Param, check_fields, describe, flat_params, hashed_view, param, require

__all__ = ["ConfigError", "ModelConfig", "DataConfig", "TrainConfig", "PruneConfig", "RunConfig", "PARAMS",
           "SCHEDULES", "LR_SCHEDULES", "PRESETS", "TRACKERS", "describe", "from_dict"]

SCHEDULES = ("linear", "geometric")
#: ``preset``: named budgets; each sets these parameters where they are still at their defaults.  ``quick`` is
#: the offline demo's classification budget (sweeps/demo.yaml): minutes per run on a laptop-class CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"max_train_samples": 1024, "max_eval_samples": 400, "max_seq_length": 64, "num_epochs": 1.0,
              "learning_rate": 3e-4, "warmup_ratio": 0.1, "include_pooler": False, "levels": 3, "rate": 0.2},
}
#: ``report_to``: the experiment trackers :mod:`tickets_core.training.tracking` knows.
TRACKERS = ("tensorboard", "mlflow", "wandb")
LR_SCHEDULES = ("per_level", "across_levels")
MLM_HEAD_WARMUP_LR = 1e-3


class _Checked:
    """Runs the field checks declared by :func:`param`, then the class's own :meth:`check`."""

    def __post_init__(self) -> None:
        check_fields(self)
        self.check()

    def check(self) -> None:
        pass


@dataclass
class ModelConfig(_Checked):
    name_or_path: str = param(
        "minilm", flat="model",
        help="Model to start from: an alias ('minilm' = the offline all-MiniLM-L6-v2 package; 'tiny-bert', "
             "'tiny-roberta', 'tiny-distilbert', 'tiny-electra' = small random configs for tests), a Hugging "
             "Face hub id such as 'bert-base-uncased', or a local directory with config + weights.")
    tokenizer: str | None = param(None, help="Tokenizer (alias, hub id or directory); defaults to the model's own.")
    random_init: bool = param(False, help="Build the architecture from its config with random weights.")
    config_overrides: dict = param(factory=dict,
                                   help="Overrides applied to the model config, e.g. {'num_hidden_layers': 2}.")
    include_pooler: bool = param(True, help="Count the pooler's dense layer as prunable when the model has one "
                                            "(the paper does).")
    noise_scale: float = param(0.1, help="kind 'noised': std of the Gaussian noise added to each prunable matrix of "
                                         "theta0, as a multiple of that matrix's own std.")
    mlm_head_warmup_steps: int = param(
        0, help="MLM tasks on a checkpoint without an MLM head: train the fresh head this many steps with the "
                "encoder frozen before level 0, on the task's whole training split, from a fixed seed; the warmed "
                "head is theta0's head for every level and seed (cached under cache_dir). 0: none.")
    mlm_head_warmup_lr: float = param(
        MLM_HEAD_WARMUP_LR, help="Peak learning rate of the MLM head warm-up (AdamW, linear decay to 0, no LR warm-up).")

    def check(self) -> None:
        require(bool(self.name_or_path), "model", "must be a non-empty string")
        require(self.noise_scale > 0, "noise_scale", f"must be > 0, got {self.noise_scale}")
        require(self.mlm_head_warmup_steps >= 0, "mlm_head_warmup_steps",
                f"must be >= 0, got {self.mlm_head_warmup_steps}")
        require(self.mlm_head_warmup_lr > 0, "mlm_head_warmup_lr", f"must be > 0, got {self.mlm_head_warmup_lr}")
        require(self.mlm_head_warmup_steps > 0 or self.mlm_head_warmup_lr == MLM_HEAD_WARMUP_LR,
                "mlm_head_warmup_lr", "is for the MLM head warm-up; set mlm_head_warmup_steps too")


@dataclass
class DataConfig(_Checked):
    task: str = param(
        "rotten_tomatoes",
        help="Task name from the registry (tickets_core.tasks.TASKS): GLUE (cola, sst2, mrpc, stsb, qqp, mnli, "
             "qnli, rte, wnli), squad, mlm, and the offline tasks (rotten_tomatoes, imdb, tweet_sentiment, ptb_mlm).")
    data_dir: str | None = param(
        None, hashed=False, path=True,
        help="Local data in the task's standard layout (GLUE TSV folder, SQuAD JSON folder, plain-text folder "
             "for MLM). None = the hub (GLUE/SQuAD/MLM) or the installed offline package. Identified by the "
             "files' content, not their path.")
    max_seq_length: int = param(
        128, help="Truncate inputs to this many tokens (MLM: block length). SQuAD left at this default uses its "
                  "standard 384-token windows with stride 128; any other value sets the window (stride = value // 3).")
    max_train_samples: int | None = param(None, help="Use only the first N training examples (after the "
                                                     "deterministic shuffle).")
    max_eval_samples: int | None = param(None, help="Evaluate on only the first N validation examples.")
    mlm_probability: float = param(0.15, help="Fraction of tokens masked for MLM (80/10/10).")
    cache_dir: str | None = param(None, hashed=False, path=True,
                                  help="Where tokenized datasets are cached (default: ~/.cache/tickets_core).")
    fingerprint: str | None = param(None, internal=True,
                                    help="What the data are: the files' content hash, a package version or a hub id.")

    def check(self) -> None:
        require(self.max_seq_length >= 8, "max_seq_length", f"must be >= 8, got {self.max_seq_length}")
        for name in ("max_train_samples", "max_eval_samples"):
            v = getattr(self, name)
            require(v is None or v >= 1, name, f"must be >= 1 or None, got {v}")
        require(0.0 < self.mlm_probability < 1.0, "mlm_probability", f"must be in (0, 1), got {self.mlm_probability}")


@dataclass
class TrainConfig(_Checked):
    learning_rate: float = param(2e-5, help="Peak AdamW learning rate.")
    lr_schedule: str = param(
        "per_level", choices=LR_SCHEDULES,
        help="'per_level': each level's linear warm-up/decay reaches 0 at the level's last step; 'across_levels' "
             "(the reference code's): each level restarts a linear schedule (levels + 1) times as long as the "
             "level, so its LR ends at peak * levels / (levels + 1) (2e-5 -> 1.8e-5 for 9 levels).")
    weight_decay: float = param(0.0, help="AdamW weight decay (not applied to biases/LayerNorm).")
    warmup_ratio: float = param(0.0, help="Fraction of a level's steps spent in linear warm-up.")
    batch_size: int = param(32, help="Training batch size (per device).")
    eval_batch_size: int = param(64, hashed=False, help="Evaluation batch size.")
    num_epochs: float = param(3.0, help="Epochs per level (ignored when max_steps is set).")
    max_steps: int | None = param(None, help="Optimizer steps per level; overrides num_epochs.")
    eval_every: int | None = param(None, help="Also evaluate every N steps (None: only at the end of the level).")
    max_grad_norm: float = param(1.0, help="Gradient clipping norm (0 disables).")
    group_by_length: bool = param(True, help="Batch examples of similar length together (less padding, faster).")
    precision: str = param("auto", choices=("auto", "fp32", "bf16"),
                           help="'fp32', 'bf16', or 'auto' (bf16 on a GPU that supports it, else fp32).")
    device: str = param("auto", hashed=False, help="'auto' (a GPU when present), 'cpu', 'cuda', 'cuda:1', ...")
    progress: bool = param(True, hashed=False, help="Show tqdm progress bars.")
    # -- throughput: the GPU fast path (tickets_core.training.fastpath); speed only, never in the run hash --
    fast_path: str = param(
        "auto", hashed=False, choices=("auto", "on", "off"),
        help="GPU fast path of the training loop: 'auto' (on for CUDA, off on the CPU, where it was measured not "
             "to pay), 'on', 'off' (the plain loop). On: batches padded to a multiple of pad_to_multiple_of, masks "
             "applied with multi-tensor ops, bf16 copies of the Linear weights (fp32 master weights in the "
             "optimizer) instead of per-step autocast casts, prefetched pinned batches, torch.compile only if "
             "`compile` asks for it.")
    pad_to_multiple_of: int | None = param(
        None, hashed=False,
        help="Pad each training batch's width up to a multiple of N so that few shapes recur (not QA, whose loss "
             "counts padded positions). None: 16 with the fast path, else 1 (no extra padding).")
    compile: str = param(
        "auto", hashed=False,
        choices=("auto", "off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs",
                 "aot_eager", "eager"),
        help="torch.compile is opt-in until a committed GPU measurement shows it correct and faster. "
             "torch.compile of the training forward/backward: 'auto' (off until then: fastpath.AUTO_COMPILE), "
             "'off', 'default' (Inductor), 'reduce-overhead' (Inductor + CUDA graphs), 'max-autotune', "
             "'max-autotune-no-cudagraphs', or the debug backends 'aot_eager' / 'eager'. A step that fails to "
             "compile continues eagerly; each level's metrics.json records what ran (fast_path).")
    master_weights: str = param(
        "auto", hashed=False, choices=("auto", "on", "off"),
        help="Under bf16: keep bf16 copies of the Linear weights for compute and fp32 master weights in the "
             "optimizer (same numbers as autocast, without its per-step weight casts). 'auto' (with the fast "
             "path), 'on', 'off'.")
    prefetch_batches: int | None = param(
        None, hashed=False,
        help="Collate this many training batches ahead on a background thread (pinned memory on CUDA). None: 2 "
             "with the fast path on CUDA, else 0 (collate in the loop).")
    train_shrunk: bool = param(
        False, help="A level under a structured mask (whole heads and FFN neurons pruned) trains the shrunk model "
                    "itself, the pruned units removed rather than zeroed, so its steps get cheaper as sparsity grows; "
                    "the trained weights are copied back. The same function as masked training; dropout draws "
                    "differ, so equal in distribution, not bit for bit. Not with early-bird or rewind capture.")

    def check(self) -> None:
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        require(self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be >= 1 or None, got {self.max_steps}")
        require(self.eval_every is None or self.eval_every >= 1, "eval_every", f"must be >= 1 or None, got {self.eval_every}")
        require(self.num_epochs > 0, "num_epochs", f"must be > 0, got {self.num_epochs}")
        require(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        require(self.max_grad_norm >= 0, "max_grad_norm", f"must be >= 0, got {self.max_grad_norm}")
        require(self.pad_to_multiple_of is None or self.pad_to_multiple_of >= 1, "pad_to_multiple_of",
                f"must be >= 1 or None, got {self.pad_to_multiple_of}")
        require(self.prefetch_batches is None or self.prefetch_batches >= 0, "prefetch_batches",
                f"must be >= 0 or None, got {self.prefetch_batches}")


@dataclass
class PruneConfig(_Checked):
    strategy: str = param(
        "magnitude_global",
        help=f"How each level picks the weights to remove: {strategies_help()}.")
    schedule: str = param("linear", choices=SCHEDULES,
                          help="'linear': level k has sparsity k*rate of the original prunable weights (the paper: "
                               "10%, 20%, ...); 'geometric': each level removes `rate` of the remaining weights.")
    rate: float = param(0.1, help="Pruning rate per level (see schedule).")
    levels: int = param(9, help="Number of pruning levels after the dense level 0.")
    rewind_step: int = param(0, help="Rewind survivors to theta_i, the weights after step i of level 0 "
                                     "(0 = theta0, the pre-trained weights).")
    reset_head: bool = param(True, help="Reset the task head to its initial values at each level (False keeps "
                                        "the trained head, as the reference code does).")
    early_bird_every: int | None = param(
        None, help="Early-bird stopping (You et al., ICLR 2020), imp only: every N optimizer steps compute the next "
                   "level's mask from the current weights; None (default) trains every level to the end.")
    early_bird_eps: float = param(0.01, help="Early-bird: the mask has converged when the fraction of prunable "
                                             "weights whose mask bit changed between successive checks stays "
                                             "below this.")
    early_bird_window: int = param(3, help="Early-bird: stop the level once this many successive checks stayed "
                                           "below early_bird_eps.")
    min_heads_per_layer: int = param(1, help="Structured strategies: heads every layer keeps (0 lets a layer lose "
                                             "all its heads).")
    importance_batches: int = param(16, help="structured_importance: training batches (train.batch_size each) the "
                                             "head and neuron importance is summed over.")

    def check(self) -> None:
        require(0.0 < self.rate < 1.0, "rate", f"must be in (0, 1), got {self.rate}")
        require(self.levels >= 0, "levels", f"must be >= 0, got {self.levels}")
        require(self.rewind_step >= 0, "rewind_step", f"must be >= 0, got {self.rewind_step}")
        require(self.early_bird_every is None or self.early_bird_every >= 1, "early_bird_every",
                f"must be >= 1 or None, got {self.early_bird_every}")
        require(0.0 < self.early_bird_eps < 1.0, "early_bird_eps", f"must be in (0, 1), got {self.early_bird_eps}")
        require(self.early_bird_window >= 1, "early_bird_window", f"must be >= 1, got {self.early_bird_window}")
        require(self.min_heads_per_layer >= 0, "min_heads_per_layer", f"must be >= 0, got {self.min_heads_per_layer}")
        require(self.importance_batches >= 1, "importance_batches", f"must be >= 1, got {self.importance_batches}")
        spec = STRATEGY_SPECS.lookup(self.strategy)
        require(self.early_bird_every is None or not spec.random, "early_bird_every",
                f"needs a magnitude strategy: the next mask of {self.strategy!r} does not depend on the weights")
        if spec.sparsity is not None:
            off = next((k for k in range(1, self.levels + 1) if abs(self.sparsity(k) - spec.sparsity) > 1e-9), None)
            require(off is None, "strategy", f"{self.strategy} prunes exactly {spec.sparsity:.0%}, but level "
                                             f"{off} would have sparsity {self.sparsity(off or 0):.2f}: use levels 1 "
                                             f"and rate {spec.sparsity:g}")
        last = self.sparsity(self.levels)
        require(last < 1.0 - 1e-9, "levels", f"{self.levels} with a {self.schedule} rate of {self.rate} reaches "
                                             f"sparsity {last:.2f}; sparsity must stay below 1")

    def sparsity(self, level: int) -> float:
        """Target sparsity of ``level``: ``level * rate`` (linear) or ``1 - (1 - rate) ** level`` (geometric)."""
        if self.schedule == "linear":
            return level * self.rate
        return 1.0 - (1.0 - self.rate) ** level


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
        require(self.prune.early_bird_every is None or kind.early_bird, "early_bird_every",
                f"applies to kinds whose levels read the next mask off the weights they train "
                f"({', '.join(k.name for k in KINDS.values() if k.early_bird)}); {self.kind!r} has no next mask")
        require(self.stability_points >= 3, "stability_points", f"must be >= 3, got {self.stability_points}")
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
        """The config restricted to what changes results."""
        return hashed_view(self)

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


def from_dict(cls, d: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a (possibly nested) dict; unknown keys are an error."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__} must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}", param=unknown[0])
    return cls(**d)
