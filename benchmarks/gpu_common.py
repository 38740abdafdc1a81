"""What the GPU benchmarks share (bench_gpu, gpu_packed, gpu_check): device, model, data, one fine-tuning call.

Needs only what a bare GPU machine has (torch, transformers, numpy; see ../shared/device/README.md): no
``datasets``, no papermill, no offline data packages.  Data come as a :class:`Table` (the few
``datasets.Dataset`` methods ``fine_tune`` and ``evaluate`` use), read from Rotten Tomatoes sentences in
the GLUE SST-2 layout when a folder of them is there (``.dev/glue/SST-2``, written by the device pack),
else synthetic token ids with Rotten Tomatoes' length profile (said so in every result).

``SETUP`` holds the device and model size: CUDA and bert-base by default; :func:`cpu_mode` switches to
the CPU and a tiny BERT, so the benchmarks' logic can be checked without a GPU.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .common import ROOT, sync

BATCH = 32
SPARSITY = 0.5
LONG = 128
RT_DIR = ROOT / ".dev" / "glue" / "SST-2"  # Rotten Tomatoes in the SST-2 layout (../shared/device/pack.sh)
TINY_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
VOCAB = 30522  # bert-base-uncased's (and the MiniLM tokenizer's) vocabulary


@dataclass
class Setup:
    device: str = "cuda"
    model_kw: dict = field(default_factory=dict)  # BertConfig overrides ({}: bert-base)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


SETUP = Setup()

# The fine_tune variants the benchmarks time (TrainConfig fast-path options).
VARIANTS = {
    "plain": dict(fast_path="off"),
    "fast eager": dict(fast_path="on", compile="off"),
    "fast compiled": dict(fast_path="on", compile="reduce-overhead"),
}


def cpu_mode() -> None:
    """The CPU and a tiny BERT instead of a GPU and bert-base (checks the benchmarks' logic; numbers meaningless)."""
    SETUP.device = "cpu"
    SETUP.model_kw.update(TINY_BERT)
    VARIANTS["fast compiled"] = dict(fast_path="on", compile="aot_eager")


def device_sync() -> None:
    sync(SETUP.device)


def reset_peak() -> int:
    """Reset CUDA's peak-memory counter; the bytes allocated now (0 off CUDA)."""
    if not SETUP.cuda:
        return 0
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_gb(before: int = 0) -> float:
    return (torch.cuda.max_memory_allocated() - before) / 2 ** 30 if SETUP.cuda else float("nan")


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


class Table:
    """Columns of equal length: the part of ``datasets.Dataset`` the training loop and evaluation use."""

    def __init__(self, columns: dict[str, list]) -> None:
        self.columns = columns

    @classmethod
    def from_rows(cls, rows: list[dict]) -> "Table":
        return cls({k: [r[k] for r in rows] for k in rows[0]})

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.columns[key]
        if isinstance(key, slice):
            return {k: v[key] for k, v in self.columns.items()}
        return {k: [v[i] for i in key] for k, v in self.columns.items()}

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def select(self, indices) -> "Table":
        return Table(self[list(indices)])

    def select_columns(self, names) -> "Table":
        return Table({k: self.columns[k] for k in names})

    def to_dict(self) -> dict[str, list]:
        return dict(self.columns)


class Vocab:
    """Stands in for a tokenizer where only its size and pad id matter (synthetic token ids)."""

    pad_token_id = 0

    def __len__(self) -> int:
        return VOCAB


def _row(ids: list[int], label: int) -> dict:
    return {"input_ids": ids, "token_type_ids": [0] * len(ids), "labels": label, "length": len(ids)}


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` rows of random token ids whose lengths follow Rotten Tomatoes' (mean ~27 wordpieces, 6-80)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = min(80, 6 + int(rng.gammavariate(4.0, 21.0 / 4.0)))
        out.append(_row([101] + [rng.randrange(1000, VOCAB) for _ in range(length - 2)] + [102], rng.randrange(2)))
    return out


def rt_rows(n: int, tokenizer, folder: Path = RT_DIR, split: str = "train") -> list[dict]:
    """The first ``n`` sentences of ``folder/{split}.tsv`` (SST-2 layout), tokenized (at most 128 wordpieces)."""
    with open(folder / f"{split}.tsv", newline="", encoding="utf-8") as f:
        lines = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    enc = tokenizer([x["sentence"] for x in lines], truncation=True, max_length=LONG)
    return [_row(ids, int(x["label"])) for ids, x in zip(enc["input_ids"], lines)]


def long_rows(rows: list[dict], n: int) -> list[dict]:
    """``n`` rows of exactly :data:`LONG` tokens: the bodies of ``rows`` joined and cut (the L128 data)."""
    out, i = [], 0
    while len(out) < n:
        body, first = [], i
        while len(body) < LONG - 2:
            body += rows[i % len(rows)]["input_ids"][1:-1]
            i += 1
        out.append(_row([101] + body[: LONG - 2] + [102], rows[first % len(rows)]["labels"]))
    return out


def load_rows(n_train: int, n_eval: int, synthetic: bool = False) -> tuple[list[dict], list[dict], object, str]:
    """(train rows, eval rows, tokenizer, where they came from): Rotten Tomatoes when :data:`RT_DIR` and the
    MiniLM tokenizer are there (unless ``synthetic``), else synthetic ids with its length profile."""
    if not synthetic and (RT_DIR / "train.tsv").is_file():
        try:
            from tickets_core.core.config import ModelConfig
            from tickets_core.models.build import load_tokenizer

            tok = load_tokenizer(ModelConfig("minilm"))
            return (rt_rows(n_train, tok), rt_rows(n_eval, tok, split="dev"), tok,
                    f"Rotten Tomatoes sentences ({RT_DIR.relative_to(ROOT)}), MiniLM tokenizer")
        except Exception as e:  # no tokenizer there: say so in the source
            why = f"{type(e).__name__}: {str(e)[:120]}"
    else:
        why = "asked for" if synthetic else f"no {RT_DIR.relative_to(ROOT)}/train.tsv"
    return (synthetic_rows(n_train), synthetic_rows(n_eval, seed=1), Vocab(),
            f"synthetic token ids with Rotten Tomatoes' lengths ({why})")


def task_data(train: list[dict], eval_rows: list[dict], tokenizer):
    """A TaskData of the SST-2 task (binary classification) over ``train`` and ``eval_rows``."""
    from tickets_core.tasks import get_task
    from tickets_core.tasks.common import TaskData

    return TaskData(task=get_task("sst2"), tokenizer=tokenizer, train=Table.from_rows(train),
                    eval=Table.from_rows(eval_rows))


def make_data(n_rows: int, synthetic: bool = False):
    """(RT TaskData, L128 TaskData, tokenizer, source) over ``n_rows`` training rows each, 64 eval rows."""
    train, ev, tok, source = load_rows(n_rows * 4, 64, synthetic)
    return (task_data(train[:n_rows], ev, tok), task_data(long_rows(train, n_rows), ev, tok), tok, source)


# ---------------------------------------------------------------------------
# model and one fine-tuning
# ---------------------------------------------------------------------------


def make_model(dropout: bool = True, seed: int = 0, num_labels: int = 2, sparsity: float = SPARSITY):
    """bert-base architecture (``SETUP.model_kw`` applied), random init, on ``SETUP.device``, with its
    ``sparsity`` global-magnitude mask applied; (model, mask).  ``dropout=False``: dropout 0."""
    from transformers import BertConfig, BertForSequenceClassification

    from tickets_core.models.prunable import prunable_parameters
    from tickets_core.pruning.masks import Mask
    from tickets_core.pruning.strategies import magnitude_global

    kw = dict(SETUP.model_kw, problem_type="single_label_classification")  # as build_model sets it: else the
    if not dropout:  # model sets it in its first forward, and a graph compiled there recompiles at the next step
        kw.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(num_labels=num_labels, **kw)).to(SETUP.device)
    weights = {k: p.detach() for k, p in prunable_parameters(model).items()}
    mask = magnitude_global(weights, Mask.ones_like(model), sparsity)
    mask.bind(model).apply_()
    return model, mask


def train_config(variant: str | dict, **kw):
    """The TrainConfig of a benchmark call: batch 32, bf16, 1 epoch, lr 2e-5, ``variant``'s fast-path options."""
    from tickets_core.core.config import TrainConfig

    options = VARIANTS[variant] if isinstance(variant, str) else variant
    base = dict(batch_size=BATCH, num_epochs=1.0, learning_rate=2e-5, progress=False, device=SETUP.device,
                precision="bf16", eval_batch_size=64)
    return TrainConfig(**{**base, **options, **kw})


def project_call(model, mask, data, variant: str, clock=None, max_steps=None) -> dict:
    """``fine_tune`` of ``model`` under ``mask`` on ``data`` as ``variant`` runs it (seed 0)."""
    from tickets_core.training.loop import fine_tune

    return fine_tune(model, data, train_config(variant, max_steps=max_steps), seed=0, bound_mask=mask.bind(model),
                     on_step=clock)
