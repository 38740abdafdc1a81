"""The four sections of a run's configuration: model, data, training, pruning.

Each is a dataclass whose fields are declared once with
:func:`~tickets_core.core.params.param` (default, help, checks, whether it
changes results); :class:`tickets_core.core.config.RunConfig` composes them
with the run-level fields and derives names, hashing and the flat parameter
table from the declarations.  Import them from :mod:`tickets_core.core.config`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .params import check_fields, param, require
from .strategies import STRATEGY_SPECS, strategies_help

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
    fingerprint: str | None = param(None, internal=True,
                                    help="A local model folder's content hash (set by resolve): the run is named by "
                                         "what the folder holds, not by where it lies.")
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
        for key, value in self.config_overrides.items():
            require(not isinstance(value, (int, float)) or isinstance(value, bool) or 0 <= value < math.inf,
                    "config_overrides", f"{key}: {value!r} must be >= 0 and finite")
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
    checkpoint_every: int | None = param(
        None, hashed=False,
        help="Write a checkpoint inside a level every N optimizer steps (its newest only; the same command resumes "
             "from it; docs/reliability.md). None: every checkpoint_minutes.")
    checkpoint_minutes: float | None = param(
        20.0, hashed=False,
        help="Write a checkpoint inside a level once this many minutes of training passed since the last one (so "
             "shorter levels write none); None, with checkpoint_every None: no checkpoints (a walltime signal "
             "still writes one).")
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
        require(0 < self.learning_rate < math.inf, "learning_rate", f"must be > 0 and finite, got {self.learning_rate}")
        require(0 <= self.weight_decay < math.inf, "weight_decay", f"must be >= 0 and finite, got {self.weight_decay}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        require(self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be >= 1 or None, got {self.max_steps}")
        require(self.eval_every is None or self.eval_every >= 1, "eval_every", f"must be >= 1 or None, got {self.eval_every}")
        require(0 < self.num_epochs < math.inf, "num_epochs", f"must be > 0 and finite, got {self.num_epochs}")
        require(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        require(self.max_grad_norm >= 0, "max_grad_norm", f"must be >= 0, got {self.max_grad_norm}")
        require(self.pad_to_multiple_of is None or self.pad_to_multiple_of >= 1, "pad_to_multiple_of",
                f"must be >= 1 or None, got {self.pad_to_multiple_of}")
        require(self.checkpoint_every is None or self.checkpoint_every >= 1, "checkpoint_every",
                f"must be >= 1 or None, got {self.checkpoint_every}")
        require(self.checkpoint_minutes is None or 0 < self.checkpoint_minutes < float("inf"), "checkpoint_minutes",
                f"must be > 0 (and finite) or None, got {self.checkpoint_minutes}")
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
    early_bird_window: int = param(3, help="Early-bird: the queue of the last N checks' masks (You et al.): stop "
                                           "once the current mask is within eps of each of them.")
    early_bird_span: float | None = param(None, help="Early-bird: the queue covers this fraction of the level's "
                                                     "steps instead (e.g. 0.25); None: early_bird_window checks.")
    early_bird_min_fraction: float = param(0.0, help="Early-bird or early cut: no stop before this fraction of "
                                                     "the level's steps.")
    early_cut_fraction: float | None = param(None, help="Early-bird's control (imp): stop every level but the "
                                                        "last at this fraction of its steps, no criterion.")
    min_heads_per_layer: int = param(1, help="Structured strategies: heads each layer keeps (0: may lose all).")
    importance_batches: int = param(16, help="structured_importance: training batches the importance sums over.")

    def check(self) -> None:
        require(0.0 < self.rate < 1.0, "rate", f"must be in (0, 1), got {self.rate}")
        require(self.levels >= 0, "levels", f"must be >= 0, got {self.levels}")
        require(self.rewind_step >= 0, "rewind_step", f"must be >= 0, got {self.rewind_step}")
        require(self.early_bird_every is None or self.early_bird_every >= 1, "early_bird_every",
                f"must be >= 1 or None, got {self.early_bird_every}")
        require(0.0 < self.early_bird_eps < 1.0, "early_bird_eps", f"must be in (0, 1), got {self.early_bird_eps}")
        require(self.early_bird_window >= 1, "early_bird_window", f"must be >= 1, got {self.early_bird_window}")
        require(self.early_bird_span is None or 0.0 < self.early_bird_span <= 1.0, "early_bird_span",
                f"must be in (0, 1] or None, got {self.early_bird_span}")
        require(0.0 <= self.early_bird_min_fraction < 1.0, "early_bird_min_fraction",
                f"must be in [0, 1), got {self.early_bird_min_fraction}")
        require(self.early_cut_fraction is None or 0.0 < self.early_cut_fraction < 1.0, "early_cut_fraction",
                f"must be in (0, 1) or None, got {self.early_cut_fraction}")
        require(self.early_cut_fraction is None or self.early_bird_every is None, "early_cut_fraction",
                "is the control of early-bird stopping (a cut, no criterion): set it or early_bird_every, not both")
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


