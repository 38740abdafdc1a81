"""SQuAD v1.1 extractive question answering.

Sources: the hub's ``rajpurkar/squad``, or ``data_dir`` holding the
official ``train-v1.1.json`` and ``dev-v1.1.json``.

Features: each (question, context) pair becomes one or more sliding
windows over the context (``truncation="only_second"``) of at most
``max_length`` tokens overlapping by ``stride`` tokens.  Defaults are the
standard 384 / 128; when ``DataConfig.max_seq_length`` is changed from its
default (128) it sets ``max_length`` and the stride becomes
``max_length // 3``.  A training window whose context does not contain the
answer points at the CLS token (position 0).

Evaluation: the n-best (20) start and end logits of every window are
combined into spans inside the context of at most 30 tokens; the highest
start+end score over an example's windows is its answer text, cut from the
context with the offsets mapping.  Exact match and F1 (in percent) use the
official v1.1 answer normalization, the maximum over the gold answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import DataConfig
from .metrics import squad_scores
from .common import (DataError, Evaluator, Source, Task, TaskData, file_fingerprint, hub_dataset, limit_eval,
                     limit_train)

HUB_DATASET = "rajpurkar/squad"
DEFAULT_MAX_LENGTH, DEFAULT_STRIDE = 384, 128
N_BEST, MAX_ANSWER_LENGTH = 20, 30
FILES = {"train": "train-v1.1.json", "eval": "dev-v1.1.json"}


def window(cfg: DataConfig) -> tuple[int, int]:
    """(max_length, stride) of the sliding windows for ``cfg`` (see the module docstring)."""
    default = DataConfig.__dataclass_fields__["max_seq_length"].default
    if cfg.max_seq_length == default:
        return DEFAULT_MAX_LENGTH, DEFAULT_STRIDE
    return cfg.max_seq_length, cfg.max_seq_length // 3


def read_squad_json(path: Path, task: str = "squad") -> dict[str, list]:
    """One SQuAD v1.1 JSON file -> columns id, question, context, answers (texts), answer_starts."""
    if not path.is_file():
        raise DataError(f"{task}: missing data file {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        cols: dict[str, list] = {"id": [], "question": [], "context": [], "answers": [], "answer_starts": []}
        for article in doc["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    answers = qa["answers"]
                    if not answers:
                        raise DataError(f"{task}: {path}: question {qa['id']} has no answer (SQuAD v1.1 has one per question)")
                    cols["id"].append(str(qa["id"]))
                    cols["question"].append(qa["question"])
                    cols["context"].append(para["context"])
                    cols["answers"].append([a["text"] for a in answers])
                    cols["answer_starts"].append([int(a["answer_start"]) for a in answers])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{task}: {path} is not valid JSON ({e})") from None
    except (KeyError, TypeError) as e:
        raise DataError(f"{task}: {path} is not in the SQuAD v1.1 layout (missing {e})") from None
    if not cols["id"]:
        raise DataError(f"{task}: {path} holds no questions")
    return cols


class SquadTask(Task):
    name = "squad"
    head = "qa"
    num_labels = 0
    main_metric = "f1"
    metric_names = ("exact_match", "f1")
    description = "SQuAD v1.1 (hub rajpurkar/squad, or data_dir with train-v1.1.json / dev-v1.1.json)"

    def source(self, cfg: DataConfig) -> Source:
        if cfg.data_dir is None:
            return Source(f"hub:{HUB_DATASET}", _read_hub)
        root = Path(cfg.data_dir).expanduser()
        paths = {split: root / f for split, f in FILES.items()}
        for p in paths.values():
            if not p.is_file():
                raise DataError(f"squad: missing data file {p}")
        return Source(file_fingerprint(*paths.values()),
                      lambda: {split: read_squad_json(p) for split, p in paths.items()})

    def cache_options(self, cfg: DataConfig) -> dict:
        return {**super().cache_options(cfg), "window": window(cfg)}

    def tokenize(self, raw: dict[str, dict[str, list]], cfg: DataConfig, tokenizer) -> dict[str, Any]:
        import datasets

        max_length, stride = window(cfg)
        train = limit_train(raw["train"], cfg.max_train_samples)
        ev = limit_eval(raw["eval"], cfg.max_eval_samples)
        out = {
            "train": datasets.Dataset.from_dict(_features(train, tokenizer, max_length, stride, training=True)),
            "eval": datasets.Dataset.from_dict(_features(ev, tokenizer, max_length, stride, training=False)),
            "eval_examples": datasets.Dataset.from_dict({"id": ev["id"], "context": ev["context"],
                                                         "answers": ev["answers"]}),
        }
        return out

    def add_targets(self, batch: dict, rows: dict[str, list], data: TaskData, generator) -> None:
        import torch

        if "start_positions" in rows:  # training windows; evaluation windows carry offsets instead
            batch["start_positions"] = torch.tensor(rows["start_positions"], dtype=torch.long)
            batch["end_positions"] = torch.tensor(rows["end_positions"], dtype=torch.long)

    def evaluator(self, data: TaskData, ds) -> Evaluator:
        return _Spans(data.eval_examples, ds)


class _Spans(Evaluator):
    """Start/end logits of every window, turned into answer texts and scored with SQuAD's EM and F1."""

    def __init__(self, examples, features) -> None:
        self.examples, self.features, self.starts, self.ends = examples, features, [], []

    def add(self, outputs, batch: dict, rows: dict) -> None:
        for i, n in enumerate(rows["length"]):
            self.starts.append(outputs.start_logits[i, :n].float().cpu().numpy())
            self.ends.append(outputs.end_logits[i, :n].float().cpu().numpy())

    def result(self) -> dict[str, float]:
        answers = postprocess(self.examples, self.features, self.starts, self.ends)
        return squad_scores([answers[i] for i in self.examples["id"]], list(self.examples["answers"]))


def _features(cols: dict[str, list], tokenizer, max_length: int, stride: int, *, training: bool) -> dict[str, list]:
    questions = [q.lstrip() for q in cols["question"]]
    pad_right = tokenizer.padding_side == "right"
    enc = tokenizer(questions if pad_right else cols["context"], cols["context"] if pad_right else questions,
                    truncation="only_second" if pad_right else "only_first", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    ctx_id = 1 if pad_right else 0
    out: dict[str, list] = {"input_ids": enc["input_ids"], "length": [len(x) for x in enc["input_ids"]]}
    if "token_type_ids" in enc:
        out["token_type_ids"] = enc["token_type_ids"]
    sample = enc["overflow_to_sample_mapping"]
    if training:
        starts, ends = [], []
        for i, offsets in enumerate(enc["offset_mapping"]):
            seq = enc.sequence_ids(i)
            ex = sample[i]
            a_start = cols["answer_starts"][ex][0]
            a_end = a_start + len(cols["answers"][ex][0])
            ctx = [k for k, s in enumerate(seq) if s == ctx_id]
            if offsets[ctx[0]][0] > a_start or offsets[ctx[-1]][1] < a_end:
                starts.append(0)
                ends.append(0)
                continue
            s = next(k for k in ctx if offsets[k][1] > a_start)
            e = next(k for k in reversed(ctx) if offsets[k][0] < a_end)
            starts.append(s)
            ends.append(e)
        out["start_positions"], out["end_positions"] = starts, ends
    else:
        out["example_id"] = [cols["id"][ex] for ex in sample]
        out["offsets"] = [
            [list(o) if s == ctx_id else [-1, -1] for o, s in zip(offsets, enc.sequence_ids(i))]
            for i, offsets in enumerate(enc["offset_mapping"])
        ]
    return out


def postprocess(examples, features, start_logits: list[np.ndarray], end_logits: list[np.ndarray],
                n_best: int = N_BEST, max_answer_length: int = MAX_ANSWER_LENGTH) -> dict[str, str]:
    """Best answer text per example id from the windows' start/end logits (one array per feature, unpadded)."""
    ids = list(examples["id"])
    contexts = dict(zip(ids, list(examples["context"])))
    best: dict[str, tuple[float, str]] = {i: (-np.inf, "") for i in ids}
    for feat_id, offsets, s_log, e_log in zip(list(features["example_id"]), list(features["offsets"]),
                                              start_logits, end_logits):
        context = contexts[feat_id]
        top_s = np.argsort(s_log)[::-1][:n_best]
        top_e = np.argsort(e_log)[::-1][:n_best]
        for s in top_s:
            if offsets[s][0] < 0:
                continue
            for e in top_e:
                if offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(s_log[s] + e_log[e])
                if score > best[feat_id][0]:
                    best[feat_id] = (score, context[offsets[s][0]: offsets[e][1]])
    return {i: text for i, (_, text) in best.items()}


def _read_hub() -> dict[str, dict[str, list]]:
    ds = hub_dataset("squad", (HUB_DATASET,), "a folder with train-v1.1.json and dev-v1.1.json")
    out = {}
    for split, hub_split in (("train", "train"), ("eval", "validation")):
        d = ds[hub_split]
        out[split] = {"id": list(d["id"]), "question": list(d["question"]), "context": list(d["context"]),
                      "answers": [a["text"] for a in d["answers"]],
                      "answer_starts": [a["answer_start"] for a in d["answers"]]}
    return out
