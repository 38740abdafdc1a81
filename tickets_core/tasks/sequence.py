"""Sentence and sentence-pair tasks (classification and regression).

Raw splits are column dicts with ``text_a``, optional ``text_b`` and
``label`` (an int class id, or a float score for regression).  Each eval
split other than ``eval`` is scored with its name as a metric suffix (MNLI:
``eval_mm`` -> ``accuracy_mm``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import metrics as M
from ..core.config import DataConfig
from .common import Evaluator, Source, Task, TaskData, limit_eval, limit_train, n_rows

METRIC_FNS: dict[str, Callable[[Any, Any], dict[str, float]]] = {
    "accuracy": lambda p, y: {"accuracy": M.accuracy(p, y)},
    "accuracy_and_f1": M.accuracy_and_f1,
    "matthews_correlation": lambda p, y: {"matthews_correlation": M.matthews_correlation(p, y),
                                          "accuracy": M.accuracy(p, y)},
    "pearson_and_spearman": M.pearson_and_spearman,
}


class SequenceTask(Task):
    """A classification or regression task on one sentence or a sentence pair.

    ``metric_fn`` names an entry of :data:`METRIC_FNS`; ``labels`` are the
    class names in id order (classification) or ``None`` (regression).
    ``read_source`` builds the :class:`Source` for a ``DataConfig``.
    """

    def __init__(self, name: str, *, head: str, labels: tuple[str, ...] | None, metric_fn: str, main_metric: str,
                 read_source: Callable[[DataConfig], Source], description: str) -> None:
        self.name = name
        self.head = head
        self.labels = labels
        self.num_labels = 1 if head == "regression" else len(labels or ())
        self.metric_fn = metric_fn
        self.main_metric = main_metric
        self._read_source = read_source
        self.description = description
        probe = METRIC_FNS[metric_fn](np.array([0, 1]), np.array([0, 1]))
        self.metric_names = tuple(probe) + ("loss",)
        assert main_metric in self.metric_names, (name, main_metric)

    def source(self, cfg: DataConfig) -> Source:
        return self._read_source(cfg)

    def tokenize(self, raw: dict[str, dict[str, list]], cfg: DataConfig, tokenizer) -> dict[str, Any]:
        import datasets

        out = {}
        for split, cols in raw.items():
            cols = limit_train(cols, cfg.max_train_samples) if split == "train" else limit_eval(cols, cfg.max_eval_samples)
            pair = "text_b" in cols
            enc = tokenizer(cols["text_a"], cols["text_b"] if pair else None, truncation=True,
                            max_length=cfg.max_seq_length)
            data = {"input_ids": enc["input_ids"], "length": [len(x) for x in enc["input_ids"]]}
            if "token_type_ids" in enc:
                data["token_type_ids"] = enc["token_type_ids"]
            data["labels"] = cols["label"]
            features = datasets.Features({
                "input_ids": datasets.List(datasets.Value("int32")),
                "length": datasets.Value("int32"),
                **({"token_type_ids": datasets.List(datasets.Value("int8"))} if "token_type_ids" in data else {}),
                "labels": datasets.Value("float32" if self.head == "regression" else "int64"),
            })
            out[split] = datasets.Dataset.from_dict(data, features=features)
            assert n_rows(data) == len(out[split])
        return out

    def add_targets(self, batch: dict, rows: dict[str, list], data: TaskData, generator) -> None:
        import torch

        dtype = torch.float32 if self.head == "regression" else torch.long
        batch["labels"] = torch.tensor(rows["labels"], dtype=dtype)

    def evaluator(self, data: TaskData, ds) -> Evaluator:
        return _Predictions(self)

    def compute_metrics(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return METRIC_FNS[self.metric_fn](predictions, labels)


class _Predictions(Evaluator):
    """Class ids (argmax) or regression scores against the labels, scored by the task's GLUE metric, plus
    ``loss``: the mean loss the model trains with (cross-entropy; mean squared error for regression)."""

    def __init__(self, task: SequenceTask) -> None:
        self.task, self.preds, self.labels, self.loss_sum = task, [], [], 0.0

    def add(self, outputs, batch: dict, rows: dict) -> None:
        import torch.nn.functional as F

        logits, labels = outputs.logits.float().cpu(), batch["labels"]
        if self.task.head == "regression":
            self.preds.append(logits[:, 0])
            self.loss_sum += F.mse_loss(logits[:, 0], labels.float(), reduction="sum").item()
        else:
            self.preds.append(logits.argmax(-1))
            self.loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        self.labels.append(labels)

    def result(self) -> dict[str, float]:
        import torch

        labels = torch.cat(self.labels)
        return {**self.task.compute_metrics(torch.cat(self.preds).numpy(), labels.numpy()),
                "loss": self.loss_sum / max(len(labels), 1)}
