"""Typed experiment configuration.

Every experiment is described by one :class:`RunConfig` made of smaller
dataclasses, each field with its help text.  Notebooks turn their papermill
``parameters`` cell into a ``RunConfig`` (see :func:`RunConfig.from_flat`),
and the run store hashes the resolved config into the run folder's name, so
identical configs share a folder and a re-run resumes instead of repeating.

Validation happens in ``__post_init__``: a bad value fails at once with a
one-line :class:`ConfigError`, before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid (one-line message)."""


def _help(text: str, *, hashed: bool = True) -> dict:
    # ``hashed=False`` marks fields that do not change results (paths, logging,
    # throughput knobs): they are left out of the run hash.
    return {"help": text, "hashed": hashed}


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


@dataclass
class ModelConfig:
    name_or_path: str = field(
        default="minilm",
        metadata=_help(
            "Model to start from: an alias ('minilm' = the offline all-MiniLM-L6-v2 "
            "package; 'tiny-bert', 'tiny-roberta', 'tiny-distilbert', 'tiny-electra' = "
            "small random configs for tests), a Hugging Face hub id such as "
            "'bert-base-uncased', or a local directory with config + weights."
        ),
    )
    tokenizer: str | None = field(
        default=None,
        metadata=_help("Tokenizer (alias, hub id or directory); defaults to the model's own."),
    )
    random_init: bool = field(
        default=False,
        metadata=_help("Build the architecture from its config with random weights (no pre-trained weights)."),
    )
    config_overrides: dict = field(
        default_factory=dict,
        metadata=_help("Overrides applied to the model config, e.g. {'num_hidden_layers': 2}."),
    )
    include_pooler: bool = field(
        default=True,
        metadata=_help("Count the pooler's dense layer as prunable when the model has one (the paper does)."),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name_or_path, str) or not self.name_or_path:
            raise ConfigError("model.name_or_path must be a non-empty string")
        if not isinstance(self.config_overrides, dict):
            raise ConfigError("model.config_overrides must be a dict")


# ---------------------------------------------------------------------------
# Data / task
# ---------------------------------------------------------------------------


@dataclass
class DataConfig:
    task: str = field(
        default="rotten_tomatoes",
        metadata=_help(
            "Task name from the registry (tickets_core.tasks.TASKS): GLUE (cola, sst2, mrpc, "
            "stsb, qqp, mnli, qnli, rte, wnli), squad, mlm, and the offline tasks "
            "(rotten_tomatoes, imdb, tweet_sentiment, ptb_mlm)."
        ),
    )
    data_dir: str | None = field(
        default=None,
        metadata=_help(
            "Local data in the task's standard layout (GLUE TSV folder, SQuAD JSON folder, "
            "plain-text folder for MLM). None = the hub (GLUE/SQuAD/MLM) or the installed "
            "offline package.",
            hashed=True,
        ),
    )
    max_seq_length: int = field(
        default=128,
        metadata=_help(
            "Truncate inputs to this many tokens (MLM: block length). SQuAD left at this default uses its "
            "standard 384-token windows with stride 128; any other value sets the window (stride = value // 3)."
        ),
    )
    max_train_samples: int | None = field(
        default=None, metadata=_help("Use only the first N training examples (after the deterministic shuffle).")
    )
    max_eval_samples: int | None = field(
        default=None, metadata=_help("Evaluate on only the first N validation examples.")
    )
    mlm_probability: float = field(default=0.15, metadata=_help("Fraction of tokens masked for MLM (80/10/10)."))
    cache_dir: str | None = field(
        default=None,
        metadata=_help("Where tokenized datasets are cached (default: ~/.cache/tickets_core).", hashed=False),
    )

    def __post_init__(self) -> None:
        if self.max_seq_length < 8:
            raise ConfigError(f"data.max_seq_length must be >= 8, got {self.max_seq_length}")
        for name in ("max_train_samples", "max_eval_samples"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"data.{name} must be >= 1 or None, got {v}")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError(f"data.mlm_probability must be in (0, 1), got {self.mlm_probability}")


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass
class TrainConfig:
    learning_rate: float = field(default=2e-5, metadata=_help("Peak AdamW learning rate."))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay (not applied to biases/LayerNorm)."))
    warmup_ratio: float = field(default=0.0, metadata=_help("Fraction of a level's steps spent in linear warm-up."))
    batch_size: int = field(default=32, metadata=_help("Training batch size (per device)."))
    eval_batch_size: int = field(default=64, metadata=_help("Evaluation batch size.", hashed=False))
    num_epochs: float = field(default=3.0, metadata=_help("Epochs per IMP level (ignored when max_steps is set)."))
    max_steps: int | None = field(default=None, metadata=_help("Optimizer steps per level; overrides num_epochs."))
    eval_every: int | None = field(
        default=None, metadata=_help("Also evaluate every N steps (None: only at the end of the level).")
    )
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient clipping norm (0 disables)."))
    group_by_length: bool = field(
        default=True, metadata=_help("Batch examples of similar length together (less padding, faster).")
    )
    precision: str = field(
        default="auto", metadata=_help("'fp32', 'bf16', or 'auto' (bf16 on a GPU that supports it, else fp32).")
    )
    device: str = field(default="auto", metadata=_help("'auto', 'cpu', 'cuda', 'cuda:1', ...", hashed=False))
    progress: bool = field(default=True, metadata=_help("Show tqdm progress bars.", hashed=False))
    # -- throughput: the GPU fast path (tickets_core.fastpath); speed only, never in the run hash --
    fast_path: str = field(
        default="auto",
        metadata=_help(
            "GPU fast path of the training loop: 'auto' (on for CUDA, off on the CPU, where it was measured "
            "not to pay), 'on', 'off' (the plain loop). On: batches padded to a multiple of "
            "pad_to_multiple_of, masks applied with multi-tensor ops, bf16 copies of the Linear weights "
            "(fp32 master weights in the optimizer) instead of per-step autocast casts, prefetched "
            "pinned batches, and torch.compile per `compile`.", hashed=False),
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata=_help(
            "Pad each training batch's width up to a multiple of N so that few shapes recur (not QA, whose "
            "loss counts padded positions). None: 16 with the fast path, else 1 (no extra padding).",
            hashed=False),
    )
    compile: str = field(
        default="auto",
        metadata=_help(
            "torch.compile the training forward/backward: 'auto' ('reduce-overhead' = Inductor + CUDA "
            "graphs, with the fast path on CUDA for levels of at least fastpath.COMPILE_MIN_STEPS steps; "
            "else off), 'off', 'default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs', "
            "or the debug backends 'aot_eager' / 'eager'.", hashed=False),
    )
    master_weights: str = field(
        default="auto",
        metadata=_help(
            "Under bf16: keep bf16 copies of the Linear weights for compute and fp32 master weights in the "
            "optimizer (same numbers as autocast, without its per-step weight casts). 'auto' (with the fast "
            "path), 'on', 'off'.", hashed=False),
    )
    prefetch_batches: int | None = field(
        default=None,
        metadata=_help(
            "Collate this many training batches ahead on a background thread (pinned memory on CUDA). "
            "None: 2 with the fast path on CUDA, else 0 (collate in the loop).", hashed=False),
    )

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("train.batch_size and train.eval_batch_size must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1 or None, got {self.max_steps}")
        if self.num_epochs <= 0:
            raise ConfigError(f"train.num_epochs must be > 0, got {self.num_epochs}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"train.precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        for name in ("fast_path", "master_weights"):
            if getattr(self, name) not in ("auto", "on", "off"):
                raise ConfigError(f"train.{name} must be 'auto', 'on' or 'off', got {getattr(self, name)!r}")
        modes = ("auto", "off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs",
                 "aot_eager", "eager")
        if self.compile not in modes:
            raise ConfigError(f"train.compile must be one of {', '.join(modes)}, got {self.compile!r}")
        for name, low in (("pad_to_multiple_of", 1), ("prefetch_batches", 0)):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise ConfigError(f"train.{name} must be an integer >= {low} or None, got {v!r}")


# ---------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------

STRATEGIES = ("magnitude_global", "magnitude_layerwise", "random_global", "random_layerwise")
SCHEDULES = ("linear", "geometric")


@dataclass
class PruneConfig:
    strategy: str = field(
        default="magnitude_global",
        metadata=_help(
            "How each level picks the weights to remove: 'magnitude_global' (rank |w| across all "
            "prunable matrices), 'magnitude_layerwise' (rank within each matrix), 'random_global', "
            "'random_layerwise' (random, matching given per-matrix sparsities)."
        ),
    )
    schedule: str = field(
        default="linear",
        metadata=_help(
            "'linear': level k has sparsity k*rate of the original prunable weights (the paper: "
            "10%, 20%, ...); 'geometric': each level removes `rate` of the remaining weights."
        ),
    )
    rate: float = field(default=0.1, metadata=_help("Pruning rate per level (see schedule)."))
    levels: int = field(default=9, metadata=_help("Number of pruning levels after the dense level 0."))
    rewind_step: int = field(
        default=0,
        metadata=_help("Rewind survivors to theta_i, the weights after step i of level 0 (0 = theta0, the pre-trained weights)."),
    )
    reset_head: bool = field(
        default=True,
        metadata=_help("Reset the task head to its initial values at each level (False keeps the trained head, as the reference code does)."),
    )

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown pruning strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown pruning schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 < self.rate < 1.0:
            raise ConfigError(f"prune.rate must be in (0, 1), got {self.rate}")
        if self.levels < 0:
            raise ConfigError(f"prune.levels must be >= 0, got {self.levels}")
        if self.schedule == "linear" and self.levels * self.rate >= 1.0 - 1e-9:
            raise ConfigError(
                f"linear schedule with rate {self.rate} reaches sparsity {self.levels * self.rate:.2f} "
                f"at level {self.levels}; sparsity must stay below 1"
            )
        if self.rewind_step < 0:
            raise ConfigError(f"prune.rewind_step must be >= 0, got {self.rewind_step}")


# ---------------------------------------------------------------------------
# A whole run
# ---------------------------------------------------------------------------

KINDS = ("imp", "dense", "random_prune", "random_reinit", "oneshot", "standard", "transfer")
BRANCH_KINDS = ("random_prune", "random_reinit", "transfer")  # read masks from a source run


@dataclass
class RunConfig:
    kind: str = field(
        default="imp",
        metadata=_help(
            "'imp' (the trunk), 'dense' (level 0 only, one seed), 'oneshot' (magnitude-prune theta0, "
            "no training before pruning), 'standard' (prune the fine-tuned model, keep its weights), "
            "and the branches that read a source run's masks: 'random_prune' (random masks with the "
            "source's sparsities), 'random_reinit' (source mask, random weights), 'transfer' "
            "(source mask fine-tuned on this task from theta0)."
        ),
    )
    seed: int = field(default=0, metadata=_help("Seed of head init, data order, dropout and masking."))
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    source_run: str | None = field(
        default=None,
        metadata=_help("Branches: the source run folder (path, or its name under output_root)."),
    )
    source_levels: list | None = field(
        default=None, metadata=_help("Branches: which source levels to use (None = all finished levels).")
    )
    mask_path: str | None = field(
        default=None, metadata=_help("Transfer from a single mask file instead of a source run.")
    )
    output_root: str = field(default="runs", metadata=_help("Folder holding the run folders.", hashed=False))

    def __post_init__(self) -> None:
        for name, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig), ("prune", PruneConfig)):
            v = getattr(self, name)
            if isinstance(v, dict):
                setattr(self, name, from_dict(cls, v, prefix=name + "."))
        if self.kind not in KINDS:
            raise ConfigError(f"unknown run kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind in BRANCH_KINDS and not (self.source_run or (self.kind == "transfer" and self.mask_path)):
            raise ConfigError(f"a {self.kind!r} run needs source_run" + (" or mask_path" if self.kind == "transfer" else ""))
        if self.source_levels is not None:
            self.source_levels = [int(x) for x in self.source_levels]

    # -- (de)serialisation --------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return from_dict(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_flat(cls, **params: Any) -> "RunConfig":
        """Build a config from flat notebook parameters.

        Keys are either top-level fields (``kind``, ``seed`` ...) or
        ``section__field`` / ``section.field`` (``train__learning_rate``), or
        a bare field name that is unique across sections (``learning_rate``).
        Unknown names raise :class:`ConfigError`.
        """
        top = {f.name for f in fields(cls)}
        sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "prune": PruneConfig}
        owner: dict[str, list[str]] = {}
        for sec, sc in sections.items():
            for f in fields(sc):
                owner.setdefault(f.name, []).append(sec)
        out: dict[str, Any] = {s: {} for s in sections}
        for key, value in params.items():
            k = key.replace(".", "__")
            if "__" in k:
                sec, name = k.split("__", 1)
                if sec not in sections or name not in {f.name for f in fields(sections[sec])}:
                    raise ConfigError(f"unknown parameter {key!r}")
                out[sec][name] = value
            elif k in top and k not in sections:
                out[k] = value
            elif k in owner:
                if len(owner[k]) > 1:
                    raise ConfigError(f"parameter {key!r} is ambiguous; write one of " + ", ".join(f"{s}__{k}" for s in owner[k]))
                out[owner[k][0]][k] = value
            else:
                raise ConfigError(f"unknown parameter {key!r}")
        return from_dict(cls, out)

    # -- hashing --------------------------------------------------------------

    def hashed_dict(self) -> dict:
        """The config restricted to fields that change results."""
        return _hashed(self)

    def config_hash(self, length: int = 8) -> str:
        blob = json.dumps(self.hashed_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:length]

    def run_name(self) -> str:
        """Folder name: ``<kind>-<task>-<hash>``."""
        return f"{self.kind}-{self.data.task}-{self.config_hash()}"


def _hashed(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in fields(obj):
            if not f.metadata.get("hashed", True):
                continue
            out[f.name] = _hashed(getattr(obj, f.name))
        return out
    if isinstance(obj, dict):
        return {str(k): _hashed(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_hashed(v) for v in obj]
    return obj


def from_dict(cls, d: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a (possibly nested) dict; unknown keys are an error."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__} must be a mapping, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}")
    return cls(**d)


def describe(cls) -> str:
    """Human-readable help for every field of a config dataclass."""
    lines = []
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if dataclasses.is_dataclass(default):
            default = type(default).__name__ + "()"
        lines.append(f"{f.name} = {default!r}: {f.metadata.get('help', '')}")
    return "\n".join(lines)
