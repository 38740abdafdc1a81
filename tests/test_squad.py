"""SQuAD v1.1: official answer normalization, EM/F1, sliding windows and span post-processing."""

import json

import numpy as np
import pytest

from tickets_core.core.config import DataConfig
from tickets_core.tasks.metrics import normalize_answer, squad_exact, squad_f1, squad_scores
from tickets_core.tasks import DataError, get_task
from tickets_core.tasks.squad import postprocess, window

from tickets_core.tasks.fixtures import write_squad


@pytest.mark.parametrize("raw, norm", [
    ("The Eiffel Tower", "eiffel tower"),
    ("an apple, a pear & the fig!", "apple pear fig"),
    ("  Theatre   of the absurd. ", "theatre of absurd"),  # 'the' inside a word stays
    ("U.S.A.", "usa"),
    ("A", ""),
])
def test_normalization_matches_official_rules(raw, norm):
    assert normalize_answer(raw) == norm


def test_exact_and_f1_crafted_cases():
    assert squad_exact("the Denver Broncos", "Denver Broncos!") == 1.0
    assert squad_exact("Denver", "Denver Broncos") == 0.0
    # F1 over normalized tokens: pred {denver}, gold {denver, broncos}: P=1, R=1/2
    assert squad_f1("Denver", "the Denver Broncos") == pytest.approx(2 / 3)
    assert squad_f1("Carolina Panthers", "Denver Broncos") == 0.0
    assert squad_f1("a", "the") == 0.0  # both normalize to nothing: no common tokens
    # max over gold answers
    scores = squad_scores(["in Paris", "Rome"], [["Paris", "in Paris."], ["Berlin", "the Rome"]])
    assert scores["exact_match"] == pytest.approx(100.0)
    scores = squad_scores(["Paris France"], [["Paris", "in Paris, France"]])
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(100.0 * max(2 * 0.5 * 1 / 1.5, 2 * 1 * (2 / 3) / (1 + 2 / 3)))


def test_windows_and_planted_answer_span(tmp_path, tokenizer):
    write_squad(tmp_path / "squad")
    cfg = DataConfig(task="squad", data_dir=str(tmp_path / "squad"), max_seq_length=32, cache_dir=str(tmp_path / "c"))
    assert window(cfg) == (32, 10)
    assert window(DataConfig(task="squad")) == (384, 128)
    data = get_task("squad").load(cfg, tokenizer)
    # Long contexts overflow into several windows; every window fits.
    assert len(data.train) > 24 and max(data.train["length"]) <= 32
    # Training targets: where the window holds the answer, the span decodes to the city.
    hits = 0
    for row in data.train:
        s, e = row["start_positions"], row["end_positions"]
        if s > 0:
            hits += 1
            assert tokenizer.decode(row["input_ids"][s: e + 1]).lower() in {c.lower() for c in
                   ["Paris", "Berlin", "Madrid", "Rome", "Vienna", "Lisbon", "Prague", "Warsaw"]}
    assert hits >= 24  # every question has at least one window with its answer
    # Post-processing: plant logits on the answer tokens of one window per example.
    starts, ends = [], []
    planted = set()
    contexts = dict(zip(data.eval_examples["id"], data.eval_examples["context"]))
    for row in data.eval:
        n = row["length"]
        s_log, e_log = np.zeros(n), np.zeros(n)
        ctx = contexts[row["example_id"]]
        city_start = ctx.index("place in ") + len("place in ")
        toks = [k for k, (a, b) in enumerate(row["offsets"]) if a >= city_start and a < ctx.index(" last year")]
        if toks and row["example_id"] not in planted and row["offsets"][toks[0]][0] == city_start:
            s_log[toks[0]], e_log[toks[-1]] = 10.0, 10.0
            planted.add(row["example_id"])
        starts.append(s_log)
        ends.append(e_log)
    answers = postprocess(data.eval_examples, data.eval, starts, ends)
    assert len(planted) == len(data.eval_examples)
    for ex_id, ctx in contexts.items():
        assert answers[ex_id] == ctx[ctx.index("place in ") + 9: ctx.index(" last year")]
    golds = data.eval_examples["answers"]
    assert squad_scores([answers[i] for i in data.eval_examples["id"]], golds)["exact_match"] == 100.0


def test_malformed_squad_json(tmp_path, tokenizer):
    (tmp_path / "train-v1.1.json").write_text(json.dumps({"data": [{"title": "x"}]}))
    (tmp_path / "dev-v1.1.json").write_text("{not json")
    cfg = DataConfig(task="squad", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match="SQuAD v1.1 layout"):
        get_task("squad").load(cfg, tokenizer)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("done.json"))
