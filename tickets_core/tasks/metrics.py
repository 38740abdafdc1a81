"""Evaluation metrics: GLUE's own, SQuAD v1.1 exact match / F1, masked-LM.

Plain numpy implementations (no scikit-learn/scipy at import time); the
tests check each against scikit-learn / scipy on random predictions.
SQuAD scoring follows the official v1.1 evaluation script: answers are
normalized (lower case, punctuation removed, articles a/an/the removed,
whitespace collapsed) and each prediction scores the maximum over the gold
answers.
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Iterable, Sequence

import numpy as np


def accuracy(predictions, labels) -> float:
    p, y = np.asarray(predictions), np.asarray(labels)
    return float((p == y).mean())


def f1(predictions, labels, positive: int = 1) -> float:
    """Binary F1 of class ``positive`` (0 when there are no true positives)."""
    p, y = np.asarray(predictions) == positive, np.asarray(labels) == positive
    tp = float(np.sum(p & y))
    denom = float(np.sum(p) + np.sum(y))
    return 0.0 if denom == 0 else 2.0 * tp / denom


def accuracy_and_f1(predictions, labels) -> dict[str, float]:
    """MRPC/QQP: accuracy, F1 and their mean (``accuracy_f1_mean``)."""
    acc, f = accuracy(predictions, labels), f1(predictions, labels)
    return {"accuracy": acc, "f1": f, "accuracy_f1_mean": (acc + f) / 2}


def matthews_correlation(predictions, labels) -> float:
    """Matthews correlation coefficient (multi-class form; 0 when undefined), as CoLA reports it."""
    p, y = np.asarray(predictions), np.asarray(labels)
    classes = np.union1d(p, y)
    pi, yi = np.searchsorted(classes, p), np.searchsorted(classes, y)
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (yi, pi), 1)
    t, pk = cm.sum(axis=1), cm.sum(axis=0)
    c, s = np.trace(cm), cm.sum()
    cov_yp = c * s - t @ pk
    cov_pp = s * s - pk @ pk
    cov_yy = s * s - t @ t
    if cov_pp == 0 or cov_yy == 0:
        return 0.0
    return float(cov_yp / math.sqrt(cov_pp * cov_yy))


def pearson(predictions, labels) -> float:
    p, y = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    p, y = p - p.mean(), y - y.mean()
    denom = math.sqrt(float(p @ p) * float(y @ y))
    return 0.0 if denom == 0 else float(p @ y / denom)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy's 'average')."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    ranks = np.empty(len(x), dtype=np.float64)
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0  # mean of ranks s+1 .. e
    return ranks


def spearmanr(predictions, labels) -> float:
    return pearson(_ranks(np.asarray(predictions, dtype=np.float64)), _ranks(np.asarray(labels, dtype=np.float64)))


def pearson_and_spearman(predictions, labels) -> dict[str, float]:
    """STS-B: Pearson, Spearman and their mean (``pearson_spearman_mean``)."""
    pr, sr = pearson(predictions, labels), spearmanr(predictions, labels)
    return {"pearson": pr, "spearmanr": sr, "pearson_spearman_mean": (pr + sr) / 2}


# ---------------------------------------------------------------------------
# SQuAD v1.1
# ---------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Official SQuAD v1.1 normalization: lower case, drop punctuation and articles, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def squad_exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], golds: Sequence[Iterable[str]]) -> dict[str, float]:
    """Mean exact match and F1 (in percent, as the official script reports), each the max over gold answers."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    em = f = 0.0
    for pred, gold in zip(predictions, golds):
        gold = list(gold)
        em += max(squad_exact(pred, g) for g in gold)
        f += max(squad_f1(pred, g) for g in gold)
    n = max(len(predictions), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f / n}


# ---------------------------------------------------------------------------
# Masked LM
# ---------------------------------------------------------------------------


def mlm_metrics(loss_sum: float, correct: int, count: int) -> dict[str, float]:
    """From summed cross-entropy and correct predictions over ``count`` masked tokens."""
    if count == 0:
        return {"mlm_accuracy": 0.0, "mlm_loss": float("nan"), "perplexity": float("nan")}
    loss = loss_sum / count
    return {"mlm_accuracy": correct / count, "mlm_loss": loss, "perplexity": math.exp(min(loss, 700.0))}
