"""Compiled training (tickets_core.training.fastpath.Steps) on the CPU: fall-back at any step, what a level
records, no recompile from a one-row last batch, and the fast path through Inductor across two levels.

Measured facts these rest on (torch 2.13 CPU): with ``dynamic=True`` new batch widths and batch sizes >= 2
reuse the first graph, a one-row batch compiles a second one (Dynamo specializes size 1; guard
``2 <= attention_mask.size()[0]``); a new ``torch.compile`` wrapper of the same model at the next level
reuses the graphs.  Compiling tiny-bert with Inductor takes ~15 s with a warm on-disk cache, ~70 s cold.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from tickets_core.core.config import DataConfig, ModelConfig, TrainConfig
from tickets_core.models.build import build_model
from tickets_core.pruning.masks import Mask
from tickets_core.tasks import get_task
from tickets_core.training import fastpath
from tickets_core.training.loop import batch_order, fine_tune

from tickets_core.tasks.fixtures import write_glue
from zero_checks import train_checked

TINY = ModelConfig("tiny-bert", config_overrides={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
CPU = dict(progress=False, batch_size=8, learning_rate=3e-3, device="cpu", fast_path="on")


def _sst2(tmp_path_factory, tokenizer, n_train: int):
    root = write_glue(tmp_path_factory.mktemp("glue"), n_train=n_train, n_dev=32)
    cfg = DataConfig(task="sst2", data_dir=str(root), cache_dir=str(tmp_path_factory.mktemp("cache")))
    return get_task("sst2").load(cfg, tokenizer)


@pytest.fixture(scope="module")
def sst2_96(tmp_path_factory, tokenizer):
    return _sst2(tmp_path_factory, tokenizer, 96)


@pytest.fixture(scope="module")
def sst2_97(tmp_path_factory, tokenizer):
    """97 = 12 x 8 + 1: an epoch of batch 8 ends in a one-row batch."""
    return _sst2(tmp_path_factory, tokenizer, 97)


def _mask(model, seed=0, p=0.5) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({k: torch.rand(v.shape, generator=g) > p for k, v in Mask.ones_like(model).items()})


def _tightened(mask: Mask, seed=1, p=0.3) -> Mask:
    """``mask`` with a further ``p`` of its kept entries pruned (a next IMP level's mask)."""
    g = torch.Generator().manual_seed(seed)
    return Mask({k: v & (torch.rand(v.shape, generator=g) > p) for k, v in mask.items()})


def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------
# one-row last batches
# ---------------------------------------------------------------------------


def test_batch_order_merges_a_one_row_last_batch_only_when_asked():
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    lengths = [i % 17 for i in range(97)]
    for lens in (None, lengths):
        plain = batch_order(97, 8, gen(), lens)
        merged = batch_order(97, 8, gen(), lens, merge_single_row=True)
        assert sorted(len(b) for b in plain) == [1] + [8] * 12
        assert sorted(len(b) for b in merged) == [8] * 11 + [9]
        assert sorted(i for b in merged for i in b) == list(range(97))
    assert batch_order(96, 8, gen(), merge_single_row=True) == batch_order(96, 8, gen())
    assert batch_order(1, 8, gen(), merge_single_row=True) == [[0]]
    assert len(batch_order(5, 1, gen(), merge_single_row=True)) == 5
    # group_by_length: a last chunk of one row joins the last batch of the chunk before
    big = batch_order(8 * 50 + 1, 8, gen(), [1] * 401, merge_single_row=True)
    assert sorted(len(b) for b in big) == [8] * 49 + [9]


def test_a_one_row_last_batch_is_merged_so_nothing_recompiles(sst2_97):
    """Compiled (Dynamo with its 'eager' backend: the graph capture, which is what specializes sizes): the
    97th row joins a batch; without the merge the one-row batch recompiles (and the record says so)."""
    cfg = TrainConfig(**CPU, num_epochs=1.0, compile="eager")
    res = fine_tune(build_model(TINY, "classification", 2, seed=0), sst2_97, cfg, seed=0)
    rec = res["fast_path"]
    assert (res["steps"], res["examples"]) == (12, 97)
    assert rec["compiled"] and rec["recompiles"] == 0 and rec["graphs"] <= 1
    unmerged = TrainConfig(**CPU, max_steps=13, compile="eager")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fastpath.Plan, "merge_single_row", property(lambda self: False))
        res = fine_tune(build_model(TINY, "classification", 2, seed=0), sst2_97, unmerged, seed=0)
    assert res["examples"] == 97 and res["fast_path"]["recompiles"] == 1


def test_sizes_equal_by_chance_do_not_recompile():
    """A first batch of 8 rows x 8 tokens: with Dynamo's duck sizing its graph holds rows == width and the next
    width recompiles (measured: 1 recompile without fastpath.distinct_sizes); kept apart, widths and batch sizes
    >= 2 share one graph."""
    import contextlib

    torch._dynamo.reset()  # no graph of an earlier test to hit
    model = build_model(TINY, "classification", 2, seed=0)
    steps = fastpath.Steps(get_task("sst2"), model, fastpath.Plan(on=True, compile="eager"))
    g = torch.Generator().manual_seed(0)
    for i, (rows, width) in enumerate([(8, 8), (8, 16), (5, 24), (8, 8)]):
        ids = torch.randint(1000, 2000, (rows, width), generator=g)
        steps({"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
               "labels": torch.randint(0, 2, (rows,), generator=g)}, contextlib.nullcontext(), i + 1)
        model.zero_grad(set_to_none=True)
    steps.close()
    rec = steps.record()
    assert rec["compiled"] and (rec["graphs"], rec["recompiles"]) == (1, 0)


def test_compile_counters_read_torchs_counters_and_callbacks():
    """What a CUDA run would feed them, fed by hand: graph and skip counters, CUDA-graph recording callbacks."""
    from torch._dynamo.callback import CallbackArgs, CallbackTrigger
    from torch._dynamo.utils import counters

    before = len(torch._dynamo.callback_handler.start_callbacks)
    c = fastpath.CompileCounters(cudagraphs=True)
    counters["stats"]["unique_graphs"] += 2
    counters["inductor"]["cudagraph_skips"] += 1
    for trigger in (CallbackTrigger.CUDAGRAPH_RECORDING, CallbackTrigger.DYNAMO, CallbackTrigger.CUDAGRAPH_RECORDING):
        torch._dynamo.callback_handler.run_start_callbacks(CallbackArgs(trigger, "0/0"))
    assert (c.graphs() - c.graphs0, c.skips(), c.recorded) == (2, 1, 2)
    c.close()
    assert len(torch._dynamo.callback_handler.start_callbacks) == before
    assert fastpath.CompileCounters(cudagraphs=False).recorded is None


# ---------------------------------------------------------------------------
# falling back at any step
# ---------------------------------------------------------------------------


class FailsInBackward(torch.nn.Module):
    """Runs ``inner`` eagerly; on call ``at`` its backward fails after the head's gradients have accumulated
    (as a CUDA-graph capture or a compiled backward failing mid-step would leave them)."""

    def __init__(self, inner, at: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, **batch):
        self.calls += 1
        if self.calls != self.at:
            return self.inner(**batch)

        def boom(grad):
            raise RuntimeError("graph capture failed")

        def arm(module, args, out) -> None:
            out[0].register_hook(boom)
        hook = self.inner.base_model.encoder.register_forward_hook(arm)
        try:
            return self.inner(**batch)
        finally:
            hook.remove()


def test_a_failure_at_any_step_continues_the_level_eagerly(sst2_96, monkeypatch):
    """Step 3's compiled backward fails: one warning, its partial gradients dropped, the same batch trained
    eagerly; the level equals an eager one bit for bit; later levels of the model train eagerly at once."""
    cfg = TrainConfig(**CPU, max_steps=6)
    eager_model = build_model(TINY, "classification", 2, seed=0)
    eager = fine_tune(eager_model, sst2_96, cfg, seed=0)
    assert eager["fast_path"]["compiled"] is False and eager["fast_path"]["graphs"] is None
    compiles = []

    def fake_compile(module, mode):
        compiles.append(mode)
        return FailsInBackward(module, at=3)

    monkeypatch.setattr(fastpath, "compile_model", fake_compile)
    model = build_model(TINY, "classification", 2, seed=0)
    with pytest.warns(RuntimeWarning, match="failed at step 3 .*graph capture failed.*training eagerly") as w:
        res = fine_tune(model, sst2_96, TrainConfig(**CPU, max_steps=6, compile="default"), seed=0)
    assert len([x for x in w if issubclass(x.category, RuntimeWarning)]) == 1
    assert res["train_loss"] == eager["train_loss"] and res["steps"] == 6
    assert all(torch.equal(a, b) for a, b in zip(_weights(model).values(), _weights(eager_model).values()))
    rec = res["fast_path"]
    assert (rec["compiled"], rec["fell_back_at_step"], rec["plan"]["compile"]) == (False, 3, "default")
    assert rec["error"] == "RuntimeError: graph capture failed"
    with pytest.warns(RuntimeWarning, match="failed earlier in this process.*training eagerly"):
        again = fine_tune(model, sst2_96, TrainConfig(**CPU, max_steps=2, compile="default"), seed=0)
    assert compiles == ["default"] and again["fast_path"]["fell_back_at_step"] == 1
    assert again["fast_path"]["error"].startswith("failed earlier in this process")


# ---------------------------------------------------------------------------
# what a level records; a resumed run whose plan changed
# ---------------------------------------------------------------------------


def test_levels_record_their_plan_and_a_resumed_run_says_when_it_changed(tiny_config_factory, tmp_path, capsys):
    from tickets_core.lottery import driver as imp
    from tickets_core.runs.store import RunPaths

    common = dict(levels=1, max_steps=2)
    root = imp.run(tiny_config_factory(tmp_path, fast_path="off", **common))
    paths = RunPaths(root)
    m = json.loads(paths.metrics(1).read_text())
    rec = m["fast_path"]
    assert "fast_path" not in m["train"] and rec["torch"] == torch.__version__ and rec["device"] == "cpu"
    assert rec["plan"] == fastpath.Plan().as_dict() and rec["describe"].startswith("plain loop")
    assert (rec["compiled"], rec["fell_back_at_step"], rec["recompiles"]) == (False, None, None)
    capsys.readouterr()

    paths.metrics(1).unlink()  # level 1 unfinished: resume it with the same plan, then with another
    imp.run(tiny_config_factory(tmp_path, fast_path="off", **common))
    assert "mix" not in capsys.readouterr().err
    paths.metrics(1).unlink()
    imp.run(tiny_config_factory(tmp_path, fast_path="on", pad_to_multiple_of=8, **common))
    err = [line for line in capsys.readouterr().err.splitlines() if "mix" in line]
    assert len(err) == 1 and "level 0 with plain loop" in err[0] and "pad x8" in err[0], err
    assert json.loads(paths.metrics(1).read_text())["fast_path"]["plan"]["pad_multiple"] == 8


# ---------------------------------------------------------------------------
# Inductor, two levels
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_inductor_fast_path_across_two_levels(sst2_96, sst2_97):
    """The bf16 fast path compiled with Inductor ('default') vs eager, level 0 under a 50% mask, then the
    weights rewound in place and the mask tightened: no recompile after the warm-up step and no new graph at
    the next level (nor for a one-row last batch), pruned entries exactly 0 after every step (weights,
    compute copies, gradients, moments), mean training loss within 1e-2 relative of eager at each level
    (24 steps a level; level 0 reaches accuracy 1.0)."""
    def levels(compile_mode):
        model = build_model(TINY, "classification", 2, seed=0)
        theta0, mask = _weights(model), _mask(model)
        out = []
        for level, m in enumerate((mask, _tightened(mask))):
            if level:
                model.load_state_dict(theta0)  # in place: the compiled graphs keep their parameters
            cfg = TrainConfig(**CPU, precision="bf16", max_steps=24, compile=compile_mode)
            out.append(train_checked(model, m, sst2_96, cfg)[0])
        return model, _tightened(mask), out

    eager = levels("off")[2]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fall-back to eager would make this vacuous
        model, mask, compiled = levels("default")
        cfg = TrainConfig(**CPU, precision="bf16", num_epochs=1.0, compile="default")
        tail = train_checked(model, mask, sst2_97, cfg)[0]
    assert eager[0]["eval"]["accuracy"] == 1.0  # level 0 learns: the losses compared follow a moving trajectory
    for e, c in zip(eager, compiled):  # measured: 6.7e-5 and 3.4e-6 relative
        assert c["fast_path"]["compiled"] and c["fast_path"]["recompiles"] == 0
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-2)
        assert abs(c["eval"]["accuracy"] - e["eval"]["accuracy"]) * 32 <= 1
    assert compiled[0]["fast_path"]["graphs"] >= 1 and compiled[1]["fast_path"]["graphs"] == 0
    assert (tail["steps"], tail["examples"]) == (12, 97)
    assert tail["fast_path"]["graphs"] == 0 and tail["fast_path"]["recompiles"] == 0
