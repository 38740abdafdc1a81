"""Small data folders in the real file layouts: GLUE (as the GLUE download script writes it), SQuAD v1.1 and
plain text for MLM.

The tests write them and so does the paper grid's miniature
(:mod:`tickets_core.sweep.miniature`), which runs the grid's shape on them.  Texts carry their label in a word
("good"/"bad", ...) so a tiny model can learn them; everything is drawn from a seeded ``random.Random``, so the
same call writes the same bytes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = "the movie was long and the actors were in it with a plot about people".split()


def sentence(rng: random.Random, cue: str) -> str:
    words = rng.sample(WORDS, 6)
    words.insert(rng.randrange(len(words) + 1), cue)
    return " ".join(words) + "."


def _write(path: Path, header: list[str] | None, rows: list[list], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")


MNLI_TRAIN_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                     "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]
NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")
CUES = {0: "bad", 1: "good", 2: "odd"}


def write_glue(root: Path, n_train: int = 48, n_dev: int = 16, seed: int = 0) -> Path:
    """Write all nine GLUE task folders under ``root`` (the GLUE root); returns ``root``."""
    rng = random.Random(seed)

    def rows(n: int, make) -> list[list]:
        return [make(i, i % 2) for i in range(n)]

    for split, n in (("train", n_train), ("dev", n_dev)):
        f = f"{split}.tsv"
        _write(root / "CoLA" / f, None, rows(n, lambda i, y: ["gj04", y, "" if y else "*", sentence(rng, CUES[y])]))
        _write(root / "SST-2" / f, ["sentence", "label"], rows(n, lambda i, y: [sentence(rng, CUES[y]), y]))
        _write(root / "MRPC" / f, ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
               rows(n, lambda i, y: [y, 1000 + i, 2000 + i, sentence(rng, CUES[y]), sentence(rng, "")]), bom=True)
        _write(root / "STS-B" / f, ["index", "genre", "filename", "year", "old_index", "source1", "source2",
                                    "sentence1", "sentence2", "score"],
               [[i, "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", sentence(rng, CUES[i % 2]),
                 sentence(rng, ""), f"{(i % 2) * 4 + rng.random():.3f}"] for i in range(n)])
        _write(root / "QQP" / f, ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
               rows(n, lambda i, y: [i, 2 * i, 2 * i + 1, sentence(rng, CUES[y]) + "?", sentence(rng, "") + "?", y]))
        _write(root / "QNLI" / f, ["index", "question", "sentence", "label"],
               rows(n, lambda i, y: [i, sentence(rng, "") + "?", sentence(rng, CUES[y]), NLI2[y]]))
        _write(root / "RTE" / f, ["index", "sentence1", "sentence2", "label"],
               rows(n, lambda i, y: [i, sentence(rng, CUES[y]), sentence(rng, ""), NLI2[y]]))
        _write(root / "WNLI" / f, ["index", "sentence1", "sentence2", "label"],
               rows(n, lambda i, y: [i, sentence(rng, CUES[y]), sentence(rng, ""), y]))

    def mnli_row(i: int, dev: bool) -> list:
        y = NLI3[i % 3]
        s1, s2 = sentence(rng, CUES[i % 3]), sentence(rng, "")
        labels = [y] * (5 if dev else 1)
        return [i, 1000 + i, f"{1000 + i}e", "fiction", f"( {s1} )", f"( {s2} )", f"(ROOT {s1})", f"(ROOT {s2})",
                s1, s2, *labels, y]

    _write(root / "MNLI" / "train.tsv", MNLI_TRAIN_HEADER, [mnli_row(i, False) for i in range(n_train)])
    for name in ("dev_matched.tsv", "dev_mismatched.tsv"):
        _write(root / "MNLI" / name, MNLI_DEV_HEADER, [mnli_row(i, True) for i in range(n_dev)])
    return root


def write_squad(root: Path, n_train: int = 24, n_dev: int = 8, seed: int = 0) -> Path:
    """Write train-v1.1.json and dev-v1.1.json (official layout) under ``root``."""
    rng = random.Random(seed)
    cities = ["Paris", "Berlin", "Madrid", "Rome", "Vienna", "Lisbon", "Prague", "Warsaw"]
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        paragraphs = []
        for i in range(n):
            city = cities[i % len(cities)]
            filler = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
            context = f"{filler.capitalize()}. The meeting took place in {city} last year. {filler}."
            start = context.index(city)
            answers = [{"text": city, "answer_start": start}]
            if split == "dev":
                answers.append({"text": f"in {city}", "answer_start": start - 3})
            paragraphs.append({"context": context, "qas": [
                {"id": f"{split}{i}", "question": "Where did the meeting take place?", "answers": answers}]})
        doc = {"version": "1.1", "data": [{"title": "Fixture", "paragraphs": paragraphs}]}
        (root / f"{split}-v1.1.json").write_text(json.dumps(doc), encoding="utf-8")
    return root


def write_text(root: Path, n_train: int = 200, n_valid: int = 40, seed: int = 0) -> Path:
    """Write train.txt and validation.txt (one sentence per line) under ``root``."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.txt", n_train), ("validation.txt", n_valid)):
        (root / name).write_text("\n".join(sentence(rng, "") for _ in range(n)) + "\n", encoding="utf-8")
    return root
