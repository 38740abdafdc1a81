"""What a figure calls things: display names of tasks and metrics (``ptb_mlm`` -> "PTB (masked LM)",
``mlm_accuracy`` -> "masked-token accuracy").  Tables and files keep the registry names; only figures use these.
A name without an entry is shown with its underscores as spaces.
"""

from __future__ import annotations

import re
from typing import Iterable

TASK_NAMES: dict[str, str] = {
    "cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI", "qnli": "QNLI",
    "rte": "RTE", "wnli": "WNLI", "squad": "SQuAD v1.1", "mlm": "masked LM (WikiText-103)",
    "rotten_tomatoes": "Rotten Tomatoes", "imdb": "IMDB", "tweet_sentiment": "tweet sentiment",
    "ptb_mlm": "PTB (masked LM)",
}
METRIC_NAMES: dict[str, str] = {
    "score": "score", "accuracy": "accuracy", "mlm_accuracy": "masked-token accuracy", "mlm_loss": "masked-LM loss",
    "perplexity": "perplexity", "matthews_correlation": "Matthews correlation", "pearson": "Pearson correlation",
    "spearman": "Spearman correlation", "f1": "F1", "exact_match": "exact match", "loss": "evaluation loss",
    "accuracy_mm": "accuracy (mismatched)", "error_barrier": "error barrier", "loss_barrier": "loss barrier",
}
#: Matrix components (:data:`tickets_core.models.components.COMPONENTS`) in the layer profile.
COMPONENT_NAMES: dict[str, str] = {"attn_out": "attn. out", "ffn_in": "FFN in", "ffn_out": "FFN out"}
_TASK_WORDS = re.compile(r"\b(" + "|".join(sorted(map(re.escape, TASK_NAMES), key=len, reverse=True)) + r")\b")


def task_name(name: str) -> str:
    """A task's display name."""
    return TASK_NAMES.get(name, str(name).replace("_", " "))


def metric_name(name: str) -> str:
    """A metric's display name (``eval_`` prefixes dropped)."""
    name = str(name).removeprefix("eval_")
    return METRIC_NAMES.get(name, name.replace("_", " "))


def metric_names(names: Iterable[str]) -> str:
    """Several metrics (one per task) in one axis label."""
    return " / ".join(dict.fromkeys(metric_name(n) for n in names))


def label(text: str) -> str:
    """A label (a method, "task: method", a transfer's "from ptb_mlm") with every task name in it displayed
    (a matrix component's name alone: its display name)."""
    if text in COMPONENT_NAMES:
        return COMPONENT_NAMES[text]
    return _TASK_WORDS.sub(lambda m: task_name(m.group(1)), str(text))
