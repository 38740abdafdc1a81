"""MLM: vocabulary logits at masked positions only (equal to the full forward), and the warmed MLM head of theta0."""

from __future__ import annotations

import json

import pytest
import torch

from tickets_core.lottery import driver

from tickets_core.training import loop as train
from tickets_core.core.config import ConfigError, ModelConfig, RunConfig
from tickets_core.lottery.identity import resolve
from tickets_core.models.build import build_model, load_tokenizer
from tickets_core.models.prunable import base_model
from tickets_core.runs.paths import RunPaths
from tickets_core.tasks import get_task
from tickets_core.tasks import masking as mlm_mod

from tickets_core.tasks.fixtures import write_text


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    return write_text(tmp_path_factory.mktemp("text"))


def mlm_config(text_dir, cache, **kw):
    params = dict(kind="dense", task="mlm", data_dir=str(text_dir), cache_dir=str(cache), model="tiny-bert",
                  max_seq_length=16, batch_size=8, eval_batch_size=8, max_steps=2, learning_rate=1e-3,
                  max_train_samples=16, max_eval_samples=12,
                  device="cpu", progress=False)
    params.update(kw)
    return resolve(RunConfig.from_flat(**params))


@pytest.mark.parametrize("family, fast", [("tiny-bert", True), ("tiny-roberta", True),
                                          ("tiny-distilbert", False), ("tiny-electra", False)])
def test_masked_positions_only_equal_the_full_forward(family, fast, text_dir, tmp_path, monkeypatch):
    cfg = mlm_config(text_dir, tmp_path, model=family)
    task = get_task("mlm")
    data = task.load(cfg.data, load_tokenizer(cfg.model))
    model = build_model(cfg.model, "mlm", seed=0)
    assert (mlm_mod.mlm_head(model) is not None) == fast
    batch = data.collate(data.train[list(range(8))], generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    loss = task.loss(model, batch)  # train mode: dropout draws in the same order on both paths
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch.manual_seed(5)
    ref = model(**batch)  # transformers' own forward and loss over every position
    ref.loss.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.loss.detach()), rel=1e-5)
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6)
    if not fast:
        return
    # evaluation: masked-token accuracy and loss equal the full computation's
    fast_eval = train.evaluate(model, data, cfg.train)
    monkeypatch.setattr(mlm_mod, "HEAD_ATTRS", ())
    full_eval = train.evaluate(model, data, cfg.train)
    assert fast_eval["mlm_accuracy"] == full_eval["mlm_accuracy"]
    assert fast_eval["mlm_loss"] == pytest.approx(full_eval["mlm_loss"], rel=1e-5)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """A local 'pre-trained' checkpoint without an MLM head (like all-MiniLM-L6-v2): a tiny BertModel."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ckpt")
    BertModel(BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128)).save_pretrained(d)
    return d


def test_warmed_head_is_theta0_for_every_seed_and_level(text_dir, checkpoint_dir, tmp_path, monkeypatch):
    from tickets_core.lottery.experiment import Experiment

    def make(seed, **kw):
        return mlm_config(text_dir, tmp_path / "cache", model=str(checkpoint_dir), tokenizer="minilm", seed=seed,
                          mlm_head_warmup_steps=4, output_root=str(tmp_path / "runs"), **kw)

    task = get_task("mlm")
    x0 = Experiment(make(0), task)
    pretrained = build_model(make(0).model, "mlm", seed=0)
    fresh = pretrained.state_dict()
    for k in x0.base_keys:  # the encoder (and the tied decoder) stay the checkpoint's, bit for bit
        assert torch.equal(x0.theta0[k], fresh[k]), k
    moved = [k for k in x0.head_keys if not torch.equal(x0.theta0[k], fresh[k])]
    assert "cls.predictions.transform.dense.weight" in moved
    cached = list((tmp_path / "cache" / "mlm_heads").glob("mlm-*.safetensors"))
    assert len(cached) == 1 and x0.head_warmup["steps"] == 4 and "mlm_accuracy" in x0.head_warmup["eval"]
    # another seed: the same head (a checkpoint's head does not depend on the run seed), from the cache
    calls = []
    monkeypatch.setattr(train, "fine_tune", lambda *a, **k: calls.append(1))
    x1 = Experiment(make(1), task)
    assert not calls and all(torch.equal(x1.theta0[k], x0.theta0[k]) for k in x0.head_keys)
    monkeypatch.undo()
    # the cache gone: recomputed bit for bit
    cached[0].unlink()
    x2 = Experiment(make(2), task)
    assert all(torch.equal(x2.theta0[k], x0.theta0[k]) for k in x0.head_keys)
    # every IMP level starts from the warmed head; metrics record the warm-up
    starts = {}
    real = train.fine_tune

    def spy(model, data, cfg, **kw):
        starts[kw["desc"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return real(model, data, cfg, **kw)

    monkeypatch.setattr(train, "fine_tune", spy)
    d = driver.run(make(0, kind="imp", levels=1))
    for desc in ("level 0", "level 1"):
        assert all(torch.equal(starts[desc][k], x0.theta0[k]) for k in x0.head_keys), desc
    record = json.loads(RunPaths(d).metrics(1).read_text())["mlm_head_warmup"]
    assert record["steps"] == 4 and record["eval"] == x0.head_warmup["eval"]


def test_warmup_is_for_mlm_tasks_only(tiny_run_config):
    with pytest.raises(ConfigError, match="^mlm_head_warmup_steps is for MLM tasks; task 'rotten_tomatoes'"):
        driver.run(tiny_run_config(kind="dense", mlm_head_warmup_steps=3))
    with pytest.raises(ConfigError, match="^mlm_head_warmup_lr is for the MLM head warm-up"):
        RunConfig.from_flat(mlm_head_warmup_lr=1e-2)


def test_fresh_tied_head_is_not_part_of_the_frozen_base():
    model = build_model(ModelConfig("tiny-bert"), "mlm", seed=0)
    base = {id(p) for p in base_model(model).parameters()}
    head = [n for n, p in model.named_parameters() if id(p) not in base]
    assert head and all(n.startswith("cls.") for n in head)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied: frozen with the base
