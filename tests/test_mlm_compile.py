"""torch.compile on MLM: the compiled module is the one the task's loss runs (CPU, 'aot_eager' debug backend).

``MlmTask.loss`` calls the encoder and the head itself (logits at the masked positions only), never the
model's forward; through ``torch.compile``'s attribute forwarding ``compiled.base_model`` is the uncompiled
encoder.  So the task names what to compile (``compile_target``: the encoder) and the loss runs the
compiled encoder: these tests check that it is called on every step, that it changes no number, and that
the compile-failure fallback reaches MLM too.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from tickets_core.training import fastpath
from tickets_core.core.config import DataConfig, ModelConfig, TrainConfig
from tickets_core.models.build import build_model, load_tokenizer
from tickets_core.tasks import get_task
from tickets_core.tasks.masking import mlm_head
from tickets_core.training.loop import fine_tune

from tickets_core.tasks.fixtures import write_text

TINY = ModelConfig("tiny-bert", config_overrides={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
FAST = dict(progress=False, batch_size=8, learning_rate=3e-3, max_steps=4, device="cpu", fast_path="on")


@pytest.fixture(scope="module")
def mlm_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlm")
    return get_task("mlm").load(DataConfig(task="mlm", data_dir=str(write_text(tmp / "txt")),
                                           cache_dir=str(tmp / "c"), max_seq_length=20), load_tokenizer(TINY))


def _train(data, **kw):
    model = build_model(TINY, "mlm", 0, seed=0)
    res = fine_tune(model, data, TrainConfig(**{**FAST, **kw}), seed=0)
    return model, res, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_attribute_forwarding_reaches_the_uncompiled_encoder():
    """Why the MLM task must name its compile target: the compiled wrapper's submodules are the eager ones."""
    model = build_model(TINY, "mlm", 0, seed=0)
    assert mlm_head(model) is not None
    assert torch.compile(model, backend="eager").base_model is model.base_model
    task = get_task("mlm")
    assert task.compile_target(model) is model.base_model
    assert get_task("sst2").compile_target(model) is model


def test_the_compiled_encoder_runs_every_step_and_changes_no_number(mlm_data, monkeypatch):
    real = fastpath.compile_model
    targets, calls = [], []

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args, **kwargs):
            calls.append(1)
            return self.inner(*args, **kwargs)

    def counting_compile(module, mode):
        targets.append(module)
        return Counting(real(module, mode))

    _, eager, w_eager = _train(mlm_data, precision="bf16")
    monkeypatch.setattr(fastpath, "compile_model", counting_compile)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the compile fallback would make this vacuous
        model, compiled, w_comp = _train(mlm_data, precision="bf16", compile="aot_eager")
    assert len(targets) == 1 and targets[0] is model.base_model
    assert len(calls) == compiled["steps"] == 4
    assert compiled["train_loss"] == eager["train_loss"]
    assert max(float((w_comp[k].double() - w_eager[k].double()).abs().max()) for k in w_eager) == 0.0


def test_a_compiler_failure_on_the_first_mlm_step_falls_back_to_eager(mlm_data, monkeypatch):
    class Broken(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("inductor blew up")

    _, eager, w_eager = _train(mlm_data)
    monkeypatch.setattr(fastpath, "compile_model", lambda module, mode: Broken())
    with pytest.warns(RuntimeWarning, match="inductor blew up"):
        _, fell_back, w_fb = _train(mlm_data, compile="default")
    assert fell_back["train_loss"] == eager["train_loss"]
    assert all(torch.equal(w_fb[k], w_eager[k]) for k in w_eager)
