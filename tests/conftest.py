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
    from tickets_core.lottery import driver
    return driver.run(tiny_config_factory(tmp_path_factory.mktemp("tiny_trunk"), levels=2))


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


@pytest.fixture
def runs():
    """A results table (the analysis tests). Task A: dense seeds 0.80/0.82/0.84 (threshold 0.80); IMP over 2 seeds; random pruning."""
    from analysis_fixtures import row

    rows = [row("A", "dense", s, 0, 0.0, v) for s, v in enumerate([0.80, 0.82, 0.84])]
    imp = {0: (0.0, [0.83, 0.81]), 1: (0.2, [0.82, 0.80]), 2: (0.36, [0.79, 0.78]), 3: (0.488, [0.81, 0.80]),
           4: (0.59, [0.70, 0.72])}
    for level, (sp, scores) in imp.items():
        rows += [row("A", "imp", s, level, sp, v) for s, v in enumerate(scores)]
        rows += [row("A", "random_prune", s, level, sp, v - 0.05) for s, v in enumerate(scores)]
    import pandas as pd

    return pd.DataFrame(rows)


@pytest.fixture
def run_root(tmp_path):
    """Two tasks: dense (2 seeds), IMP (levels 0-2), transfers both ways at levels 1-2."""
    from analysis_fixtures import write_run

    root = tmp_path / "runs"
    for task, dense in (("rotten_tomatoes", (0.80, 0.84)), ("imdb", (0.90, 0.90))):
        for seed, v in enumerate(dense):
            write_run(root, "dense", task, seed, {0: (0.0, v)})
    write_run(root, "imp", "rotten_tomatoes", 0, {0: (0.0, 0.82), 1: (0.2, 0.81), 2: (0.36, 0.79)})
    write_run(root, "imp", "imdb", 0, {0: (0.0, 0.90), 1: (0.2, 0.91), 2: (0.36, 0.88)})
    write_run(root, "transfer", "imdb", 0, {1: (0.2, 0.90), 2: (0.36, 0.85)}, source_task="rotten_tomatoes")
    write_run(root, "transfer", "rotten_tomatoes", 0, {1: (0.2, 0.80), 2: (0.36, 0.70)}, source_task="imdb")
    return root


@pytest.fixture
def make_sweep(tmp_path):
    """``make(text=BASE) -> Path``: a sweep file in tmp_path ({root}/{figs} filled in)."""

    import textwrap

    from sweep_fixtures import BASE

    def make(text: str = BASE) -> Path:
        p = tmp_path / "sweep.yaml"
        p.write_text(textwrap.dedent(text).format(root=tmp_path / "runs", figs=tmp_path / "figs"))
        return p

    return make
