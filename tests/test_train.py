"""The training/evaluation loop: learning, exact repeats, mask hooks, schedule, batching, every head type."""

import time

import pytest
import torch

from tickets_core.core.config import DataConfig, ModelConfig, TrainConfig
from tickets_core.pruning.masks import Mask
from tickets_core.models.build import build_model, load_tokenizer
from tickets_core.tasks import get_task
from tickets_core.training.loop import batch_order, evaluate, fine_tune, linear_schedule, make_optimizer

from tickets_core.tasks.fixtures import write_glue, write_squad, write_text

TINY = ModelConfig("tiny-bert")
FAST = dict(progress=False, batch_size=8, learning_rate=3e-3)


@pytest.fixture(scope="module")
def glue_root(tmp_path_factory):
    return write_glue(tmp_path_factory.mktemp("glue"), n_train=96, n_dev=32)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _load(name, root, tokenizer, cache, **kw):
    return get_task(name).load(DataConfig(task=name, data_dir=str(root), cache_dir=cache, **kw), tokenizer)


def _train_loss(model, data):
    model.eval()
    with torch.no_grad():
        return model(**data.collate(data.train[:96])).loss.item()


def test_fine_tune_learns_and_repeats_bit_for_bit(glue_root, tokenizer, cache):
    data = _load("sst2", glue_root, tokenizer, cache)
    cfg = TrainConfig(max_steps=24, eval_every=12, **FAST)
    runs = []
    for seed in (0, 0, 1):
        model = build_model(TINY, "classification", 2, seed=0)
        before = _train_loss(model, data)
        steps = []
        res = fine_tune(model, data, cfg, seed=seed, on_step=lambda s, m: steps.append(s))
        runs.append((model.state_dict(), res, before, _train_loss(model, data)))
        assert steps == list(range(1, 25))
    (sd0, r0, before, after), (sd1, r1, _, _), (sd2, _, _, _) = runs
    assert after < 0.7 * before  # the cue word is learnable: the loss falls
    assert r0["eval"]["accuracy"] >= 0.9
    assert (r0["steps"], r0["examples"]) == (24, 24 * 8)
    assert [h["step"] for h in r0["history"]] == [12, 24] and r0["history"][-1]["accuracy"] == r0["eval"]["accuracy"]
    assert set(r0) == {"train_loss", "steps", "examples", "time_s", "eval", "history", "fast_path"}
    assert r0["fast_path"]["describe"].startswith("plain loop") and r0["fast_path"]["compiled"] is False
    # same seed: identical weights and metrics; another seed: different weights
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    assert r0["train_loss"] == r1["train_loss"] and r0["history"] == r1["history"]
    assert not all(torch.equal(sd0[k], sd2[k]) for k in sd0)


def test_bound_mask_keeps_pruned_weights_zero(glue_root, tokenizer, cache):
    data = _load("sst2", glue_root, tokenizer, cache)
    model = build_model(TINY, "classification", 2, seed=0)
    g = torch.Generator().manual_seed(0)
    mask = Mask({k: torch.rand(v.shape, generator=g) > 0.5 for k, v in Mask.ones_like(model).items()})
    bound = mask.bind(model)
    params = dict(model.base_model.named_parameters())
    initial = {k: params[k].detach().clone() for k in mask}
    fine_tune(model, data, TrainConfig(max_steps=5, weight_decay=0.1, **FAST), seed=0, bound_mask=bound)
    for k, keep in mask.items():
        assert torch.all(params[k][~keep] == 0)
        assert not torch.equal(params[k][keep], initial[k][keep])


def test_schedule_and_optimizer_groups():
    total, warm = 10, 2
    factors = [linear_schedule(s, warm, total) for s in range(total + 1)]
    assert factors[0] < factors[1] < factors[2] == 1.0
    assert all(a > b for a, b in zip(factors[2:], factors[3:])) and factors[-1] == 0.0
    model = build_model(TINY, "classification", 2)
    opt = make_optimizer(model, TrainConfig(weight_decay=0.01))
    decay, plain = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in plain["params"])
    assert len(decay["params"]) + len(plain["params"]) == len(names)


def test_length_grouped_batches_and_dynamic_padding(glue_root, tokenizer, cache):
    lengths = list(torch.randint(5, 100, (1000,), generator=torch.Generator().manual_seed(0)).tolist())
    a = batch_order(1000, 8, torch.Generator().manual_seed(1), lengths)
    b = batch_order(1000, 8, torch.Generator().manual_seed(1), lengths)
    assert a == b and sorted(i for batch in a for i in batch) == list(range(1000))
    plain = batch_order(1000, 8, torch.Generator().manual_seed(1))
    spread = lambda bs: sum(max(lengths[i] for i in x) - min(lengths[i] for i in x) for x in bs)
    assert spread(a) < 0.2 * spread(plain)
    data = _load("sst2", glue_root, tokenizer, cache, max_seq_length=128)
    batch = data.collate(data.train[:4])
    assert batch["input_ids"].shape[1] == max(data.train[:4]["length"]) < 128
    assert torch.equal(batch["attention_mask"].sum(1), torch.tensor(data.train[:4]["length"]))


def test_every_head_evaluates(glue_root, tokenizer, cache, tmp_path):
    cfg = TrainConfig(max_steps=3, **FAST)
    stsb = _load("stsb", glue_root, tokenizer, cache)
    res = fine_tune(build_model(TINY, "regression", 1), stsb, cfg)
    assert set(res["eval"]) == {"pearson", "spearmanr", "pearson_spearman_mean", "loss"}
    mnli = _load("mnli", glue_root, tokenizer, cache)
    assert set(evaluate(build_model(TINY, "classification", 3), mnli, cfg)) == {"accuracy", "accuracy_mm", "loss",
                                                                               "loss_mm"}
    distil = evaluate(build_model(ModelConfig("tiny-distilbert"), "classification", 2),
                      _load("rte", glue_root, tokenizer, cache), cfg)  # no token_type_ids in its forward
    assert 0.0 <= distil["accuracy"] <= 1.0
    squad = _load("squad", write_squad(tmp_path / "squad"), tokenizer, cache, max_seq_length=48)
    res = fine_tune(build_model(TINY, "qa"), squad, cfg)
    assert set(res["eval"]) == {"exact_match", "f1"} and 0.0 <= res["eval"]["f1"] <= 100.0
    mlm = _load("mlm", write_text(tmp_path / "txt"), tokenizer, cache, max_seq_length=32)
    model = build_model(TINY, "mlm")
    first = evaluate(model, mlm, cfg)
    assert first == evaluate(model, mlm, cfg)  # fixed evaluation masks
    assert first["perplexity"] == pytest.approx(torch.tensor(first["mlm_loss"]).exp().item(), rel=1e-5)
    res = fine_tune(model, mlm, TrainConfig(max_steps=20, progress=False, batch_size=8, learning_rate=3e-3))
    assert res["eval"]["mlm_loss"] < first["mlm_loss"]


@pytest.mark.slow
def test_minilm_learns_rotten_tomatoes(tmp_path):
    """The real pre-trained MiniLM, 1,536 training sentences: validation accuracy well above chance."""
    cfg_model = ModelConfig("minilm")
    tok = load_tokenizer(cfg_model)
    data = get_task("rotten_tomatoes").load(
        DataConfig(task="rotten_tomatoes", max_seq_length=64, max_train_samples=1536, max_eval_samples=300,
                   cache_dir=str(tmp_path)), tok)
    model = build_model(cfg_model, "classification", 2, seed=0)
    start = time.perf_counter()
    res = fine_tune(model, data, TrainConfig(learning_rate=1e-4, batch_size=32, num_epochs=1, warmup_ratio=0.1,
                                             progress=False), seed=0)
    print(f"minilm rotten_tomatoes: accuracy {res['eval']['accuracy']:.3f} in {time.perf_counter() - start:.1f}s")
    assert res["eval"]["accuracy"] >= 0.70


def test_fresh_mlm_head_is_seeded_and_tied():
    """all-MiniLM-L6-v2 ships no MLM head: build_model creates one from the seed, decoder tied to the embeddings."""
    heads = [build_model(ModelConfig("minilm"), "mlm", seed=s) for s in (0, 0, 1)]
    for m in heads:
        assert m.get_output_embeddings().weight is m.get_input_embeddings().weight
    dense = [dict(m.named_parameters())["cls.predictions.transform.dense.weight"] for m in heads]
    assert torch.equal(dense[0], dense[1]) and not torch.equal(dense[0], dense[2])
    base = build_model(ModelConfig("minilm"), "base")
    assert torch.equal(heads[0].get_input_embeddings().weight, base.get_input_embeddings().weight)  # pre-trained
