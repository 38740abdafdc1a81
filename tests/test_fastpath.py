"""The GPU fast path (tickets_core.training.fastpath) against the plain loop, on the CPU, plus CUDA-only checks.

Tolerances stated here (measured on the CPU with tiny-bert, dropout off so that only arithmetic differs;
24 steps, lr 3e-3, AdamW, a 50% random mask):

* bucketing (pad to a multiple of 16), fp32: mean training loss equal to 1e-6 relative (measured: equal
  to 8 digits), weights within 1e-4 (measured 7e-6), same evaluation metric.  With dropout on, padding
  changes the shape of the dropout draws, so the trajectory differs as with another dropout seed;
  the model's outputs on a padded batch equal those on the unpadded one (1e-5).
* bf16 master weights vs bf16 autocast: bit-identical losses and weights.
* torch.compile with the 'aot_eager' debug backend vs eager: bit-identical (measured fp32 and bf16; tested bf16).
* bf16 (fast path) vs the fp32 plain path: mean training loss within 2% relative (measured 0.9%),
  same evaluation metric.
* multi-tensor masking vs masked_fill: kept weights bit-identical, pruned weights == 0.
* every training run here checks, after every step, that pruned entries are exactly 0 in the fp32
  (master) weights, the bf16 compute copies, the gradients the optimizer steps with and its AdamW moments.
* CUDA only (benchmarks/gpu_check.sh; not yet run on a GPU): the bf16 fast path, eager and compiled with
  CUDA graphs, vs the fp32 CPU loop, dropout off: mean training loss within 3%, evaluation accuracy
  within 2 of 32 examples, evaluation loss within 10% (bf16 on the CPU: 3.6%); with dropout on (another
  dropout stream than the CPU's; basis measured on the CPU, see DROPOUT_TRAIN_REL): accuracy within 2
  examples, training loss within 30%; GPU pruning gives the CPU masks, no slower than global_unstructured
  (1.5x + 10 ms margin for one timed sample).  Compile tests on the CPU (Inductor): test_fastpath_compile.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from tickets_core.training import fastpath, prefetch
from tickets_core.core.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from tickets_core.lottery.identity import resolve
from tickets_core.pruning.masks import Mask
from tickets_core.models.build import build_model
from tickets_core.models.prunable import prunable_parameters
from tickets_core.pruning.strategies import _prune_lowest, magnitude_global
from tickets_core.tasks import get_task

from tickets_core.tasks.fixtures import write_glue, write_text
from zero_checks import train_checked

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
TINY = ModelConfig("tiny-bert", config_overrides=NO_DROPOUT)
FAST = dict(progress=False, batch_size=8, learning_rate=3e-3, max_steps=24, device="cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (benchmarks/gpu_check.sh runs these)")


@pytest.fixture(scope="module")
def sst2(tmp_path_factory, tokenizer):
    root = write_glue(tmp_path_factory.mktemp("glue"), n_train=96, n_dev=32)
    cfg = DataConfig(task="sst2", data_dir=str(root), cache_dir=str(tmp_path_factory.mktemp("cache")))
    return get_task("sst2").load(cfg, tokenizer)


@pytest.fixture(scope="module")
def plain_fp32(sst2):
    """``_train(sst2, fast_path="off")``, the plain fp32 loop (deterministic): what several tests compare with."""
    return _train(sst2, fast_path="off")


@pytest.fixture(scope="module")
def mlm_data(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("mlm")
    return get_task("mlm").load(DataConfig(task="mlm", data_dir=str(write_text(root / "txt")),
                                           cache_dir=str(root / "c"), max_seq_length=20), tokenizer)


def _random_mask(model, seed=0, p=0.5) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({k: torch.rand(v.shape, generator=g) > p for k, v in Mask.ones_like(model).items()})


def _train(data, model_cfg=TINY, head="classification", labels=2, **train_kw):
    """fine_tune a fresh tiny model under a 50% mask, checking after every step that pruned entries are 0 in
    the fp32 (master) weights, the bf16 compute copies, the gradients the optimizer steps with and the AdamW
    moments (no apply_() needed for that: zero weight, gradient and moments make a zero update)."""
    model = build_model(model_cfg, head, labels, seed=0)
    mask = _random_mask(model)
    res, _ = train_checked(model, mask, data, TrainConfig(**{**FAST, **train_kw}))
    return res, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


# ---------------------------------------------------------------------------
# plan, config
# ---------------------------------------------------------------------------


def test_plan_is_plain_on_cpu_by_default_and_the_eager_fast_path_on_cuda(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    plain = fastpath.make_plan(TrainConfig(), cpu, total_steps=10_000, head="classification", bf16=False)
    assert plain == fastpath.Plan()
    on = fastpath.make_plan(TrainConfig(), gpu, total_steps=10_000, head="classification", bf16=True)
    # compile stays opt-in until a committed GPU measurement turns 'auto' on (fastpath.AUTO_COMPILE)
    assert fastpath.AUTO_COMPILE is None
    assert (on.on, on.pad_multiple, on.multi_tensor_masks, on.master_weights, on.compile, on.prefetch,
            on.pin_memory) == (True, 16, True, True, None, 2, True) and not on.cudagraphs
    assert not on.merge_single_row and on.as_dict()["compile"] is None
    monkeypatch.setattr(fastpath, "AUTO_COMPILE", "reduce-overhead")  # what a measurement may set
    long = fastpath.make_plan(TrainConfig(), gpu, total_steps=10_000, head="classification", bf16=True)
    assert long.compile == "reduce-overhead" and long.cudagraphs and long.merge_single_row
    short = fastpath.make_plan(TrainConfig(), gpu, total_steps=fastpath.COMPILE_MIN_STEPS - 1, head="mlm", bf16=False)
    assert short.compile is None and not short.master_weights and short.on
    monkeypatch.undo()
    assert fastpath.make_plan(TrainConfig(), gpu, total_steps=10_000, head="qa", bf16=True).pad_multiple == 1
    forced = fastpath.make_plan(TrainConfig(fast_path="on", compile="reduce-overhead", prefetch_batches=3),
                                cpu, total_steps=5, head="classification", bf16=True)
    assert (forced.compile, forced.prefetch, forced.pin_memory, forced.master_weights) == ("default", 3, False, True)
    off = fastpath.make_plan(TrainConfig(fast_path="off", pad_to_multiple_of=8), gpu, total_steps=10_000,
                             head="classification", bf16=True)
    assert (off.on, off.pad_multiple, off.compile, off.master_weights, off.prefetch) == (False, 8, None, False, 0)
    assert "fast path" in on.describe() and "plain loop" in plain.describe()


def test_fast_path_options_are_validated_and_not_hashed():
    for bad in (dict(fast_path="yes"), dict(compile="inductor"), dict(master_weights=True),
                dict(pad_to_multiple_of=0), dict(prefetch_batches=-1), dict(pad_to_multiple_of=True)):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
    base = resolve(RunConfig())
    other = resolve(RunConfig.from_flat(fast_path="off", pad_to_multiple_of=8, compile="default",
                                        master_weights="on", prefetch_batches=4))
    assert base.config_hash() == other.config_hash()


# ---------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------


def test_pad_batch_pads_every_sequence_tensor_with_its_neutral_value():
    b = {"input_ids": torch.full((2, 5), 7), "attention_mask": torch.ones(2, 5, dtype=torch.long),
         "token_type_ids": torch.ones(2, 5, dtype=torch.long), "labels": torch.tensor([0, 1])}
    out = fastpath.pad_batch(b, 16, pad_id=3)
    assert out["input_ids"].shape == (2, 16) and bool((out["input_ids"][:, 5:] == 3).all())
    assert bool((out["attention_mask"][:, 5:] == 0).all()) and bool((out["token_type_ids"][:, 5:] == 0).all())
    assert torch.equal(out["input_ids"][:, :5], b["input_ids"]) and torch.equal(out["labels"], b["labels"])
    mlm = fastpath.pad_batch({"input_ids": torch.ones(1, 20, dtype=torch.long), "labels": torch.ones(1, 20, dtype=torch.long)}, 8, 0)
    assert mlm["labels"].shape == (1, 24) and bool((mlm["labels"][:, 20:] == -100).all())
    assert fastpath.pad_batch(b, 5, 0) is b  # already a multiple
    assert [fastpath.padded_width(w, 16, cap=40) for w in (1, 16, 17, 33, 40, 45)] == [16, 16, 32, 40, 40, 45]
    with pytest.raises(ValueError, match="position_ids"):
        fastpath.pad_batch({"input_ids": torch.ones(1, 3, dtype=torch.long), "position_ids": torch.ones(1, 3)}, 8, 0)


def test_padded_batches_give_the_same_outputs(sst2):
    model = build_model(ModelConfig("tiny-bert"), "classification", 2, seed=0).eval()
    batch = sst2.collate(sst2.train[:8])
    assert batch["input_ids"].shape[1] % 16 != 0
    padded = fastpath.pad_batch(batch, 16, sst2.tokenizer.pad_token_id)
    with torch.no_grad():
        a, b = model(**batch), model(**padded)
    assert torch.allclose(a.logits, b.logits, atol=1e-5) and abs(a.loss.item() - b.loss.item()) < 1e-5


def test_multi_tensor_masking_equals_masked_fill():
    model = build_model(ModelConfig("tiny-bert"), "classification", 2, seed=0)
    twin = build_model(ModelConfig("tiny-bert"), "classification", 2, seed=0)
    mask = _random_mask(model, seed=3)
    for m in (model, twin):
        for p in m.parameters():
            p.grad = torch.randn_like(p)
    twin.load_state_dict(model.state_dict())
    for p, q in zip(model.parameters(), twin.parameters()):
        q.grad = p.grad.clone()
    a, b = mask.bind(model), mask.bind(twin)
    a.apply_(), a.mask_grads_()
    b.apply_(multi_tensor=True), b.mask_grads_(multi_tensor=True)
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p, q) and torch.equal(p.grad, q.grad), n  # -0.0 == 0.0; kept values bit for bit
        kept = p != 0
        assert torch.equal(p[kept].view(torch.int32), q[kept].view(torch.int32))
    twin.double()  # the float keep-masks follow the parameters' dtype
    b.apply_(multi_tensor=True)
    assert all(p.dtype == torch.float64 for p in twin.parameters())


def test_prefetcher_same_sequence_errors_and_early_close():
    def draws(seed):
        gen = torch.Generator().manual_seed(seed)
        return (torch.randperm(10, generator=gen).tolist() for _ in range(7))
    pf = prefetch.Prefetcher(draws(0), 2)
    assert list(pf) == list(draws(0)) and list(pf) == []

    def boom():
        yield 1
        raise RuntimeError("collate failed")
    pf = prefetch.Prefetcher(boom(), 2)
    assert next(pf) == 1
    with pytest.raises(RuntimeError, match="collate failed"):
        next(pf)
    endless = prefetch.Prefetcher(iter(int, 1), 2)  # never ends
    assert next(endless) == 0
    endless.close()
    assert not endless._thread.is_alive()


def test_torch_selection_gives_the_numpy_masks_ties_included():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 50, (5000,), generator=g).float()  # many ties
    keep = torch.rand(5000, generator=g) > 0.3
    for n in (1, 100, 1234, int(keep.sum())):
        assert torch.equal(_prune_lowest(scores, keep, n, method="numpy"), _prune_lowest(scores, keep, n, method="torch"))


# ---------------------------------------------------------------------------
# the loop: fast path vs plain
# ---------------------------------------------------------------------------


def test_fast_path_fp32_matches_the_plain_loop(sst2, plain_fp32):
    plain, w_plain = plain_fp32
    # Only bucketing changes numbers (matmul shapes); multi-tensor masks and prefetching change none.
    same, w_same = _train(sst2, fast_path="on", pad_to_multiple_of=1, prefetch_batches=2)
    assert same["train_loss"] == plain["train_loss"] and _max_diff(w_same, w_plain) == 0.0
    fast, w_fast = _train(sst2, fast_path="on", prefetch_batches=2)
    assert fast["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-6)
    assert _max_diff(w_fast, w_plain) < 1e-4 and fast["eval"]["accuracy"] == plain["eval"]["accuracy"]
    assert fast["eval"]["loss"] == pytest.approx(plain["eval"]["loss"], rel=1e-5)  # bucketing changes no metric


def test_bf16_master_weights_equal_autocast_and_stay_close_to_fp32(sst2, plain_fp32):
    fp32, _ = plain_fp32
    autocast, w_auto = _train(sst2, fast_path="off", precision="bf16", eval_every=12)
    master, w_master = _train(sst2, fast_path="on", precision="bf16", pad_to_multiple_of=1, eval_every=12)
    assert master["train_loss"] == autocast["train_loss"] and _max_diff(w_master, w_auto) == 0.0
    assert master["history"] == autocast["history"] and len(master["history"]) == 2  # mid-level eval: fp32 weights
    assert master["train_loss"] == pytest.approx(fp32["train_loss"], rel=0.02)
    assert master["eval"]["accuracy"] == fp32["eval"]["accuracy"]
    # evaluated under bf16 too: eval loss within 5% of fp32's (measured 3.6% here), same accuracy
    assert master["eval"]["loss"] == pytest.approx(fp32["eval"]["loss"], rel=0.05)


def test_compiled_step_equals_eager_with_a_debug_backend(sst2):
    """torch.compile (AOTAutograd, the backend-independent half of Inductor) on the bf16 fast path."""
    import warnings

    eager, w_eager = _train(sst2, fast_path="on", precision="bf16", max_steps=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # fine_tune's compile fallback would make this vacuous
        compiled, w_comp = _train(sst2, fast_path="on", precision="bf16", compile="aot_eager", max_steps=6)
    assert compiled["train_loss"] == eager["train_loss"] and _max_diff(w_comp, w_eager) == 0.0


def test_mlm_fast_path_with_a_tied_decoder(mlm_data):
    """MLM: labels padded with -100; the decoder tied to the word embeddings stays fp32 and tied."""
    data = mlm_data
    plain, _ = _train(data, head="mlm", labels=0, fast_path="off", max_steps=4)
    fast, _ = _train(data, head="mlm", labels=0, fast_path="on", precision="bf16", max_steps=4)
    assert fast["train_loss"] == pytest.approx(plain["train_loss"], rel=0.02)
    model = build_model(TINY, "mlm")
    masters = fastpath.MasterWeights(model)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.dtype == torch.float32
    assert all(p.dtype == torch.bfloat16 for k, p in prunable_parameters(model).items())
    masters.close()
    assert all(p.dtype == torch.float32 for p in model.parameters())


# ---------------------------------------------------------------------------
# CUDA only (benchmarks/gpu_check.sh)
# ---------------------------------------------------------------------------


# Across devices (and bf16 vs fp32) numbers agree within tolerances, not bit for bit: the evaluation accuracy
# within EVAL_SLACK of the 32 evaluation examples, losses within a relative tolerance.
EVAL_SLACK = 2


# Dropout on, 48 steps (both runs reach accuracy 1.0 on the fixture): two dropout streams' mean training losses
# differed by 5-21% relative over seeds 0-3 on the CPU (the plain loop vs the fast path, whose padding to 16
# draws other masks; fp32 and bf16 alike); evaluation losses near 0 by then differed by 15-70%, so they are
# not compared.
DROPOUT = dict(max_steps=48)
DROPOUT_TRAIN_REL = 0.3


def _close_across_devices(fast: dict, ref: dict, train_rel: float, eval_rel: float | None, n_eval: int = 32) -> None:
    assert fast["train_loss"] == pytest.approx(ref["train_loss"], rel=train_rel)
    assert abs(fast["eval"]["accuracy"] - ref["eval"]["accuracy"]) * n_eval <= EVAL_SLACK + 1e-9
    if eval_rel is not None:
        assert fast["eval"]["loss"] == pytest.approx(ref["eval"]["loss"], rel=eval_rel)


def test_two_dropout_streams_agree_within_the_cuda_tolerances(sst2):
    """The CPU basis of test_cuda_fast_path_with_dropout_tracks_the_cpu_loop: another dropout stream (the fast
    path pads to 16, so its dropout draws differ) stays within its tolerances, and does differ."""
    plain, _ = _train(sst2, ModelConfig("tiny-bert"), fast_path="off", **DROPOUT)
    other, _ = _train(sst2, ModelConfig("tiny-bert"), fast_path="on", **DROPOUT)
    assert other["train_loss"] != plain["train_loss"]
    _close_across_devices(other, plain, train_rel=DROPOUT_TRAIN_REL, eval_rel=None)


@cuda
@pytest.mark.parametrize("compile_mode,pad", [("off", None), ("reduce-overhead", 2)])
def test_cuda_fast_path_keeps_pruned_weights_zero_and_tracks_fp32(sst2, plain_fp32, compile_mode, pad):
    """bf16 fast path on CUDA (pad 2: several shapes, so several CUDA graphs) vs the fp32 CPU loop, dropout off:
    pruned entries exactly 0 after every step (weights, compute copies, gradients, moments: see _train)."""
    import warnings

    ref, _ = plain_fp32
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a compile fallback fails the test
        fast, _ = _train(sst2, fast_path="on", device="cuda", precision="bf16", compile=compile_mode,
                         pad_to_multiple_of=pad)
    _close_across_devices(fast, ref, train_rel=0.03, eval_rel=0.1)
    rec = fast["fast_path"]
    assert rec["device"].startswith("cuda") and rec["fell_back_at_step"] is None
    if compile_mode != "off":
        assert rec["compiled"] and rec["recompiles"] == 0 and rec["cudagraph_skips"] == 0
        assert rec["graphs"] <= 2 and (rec["cudagraphs"] is None or rec["cudagraphs"] >= 1)


@cuda
def test_cuda_fast_path_with_dropout_tracks_the_cpu_loop(sst2):
    """Dropout on: CUDA draws other dropout masks than the CPU, so the runs agree as two dropout streams do.
    Tolerances from the CPU (test_two_dropout_streams_agree_within_the_cuda_tolerances)."""
    cpu, _ = _train(sst2, ModelConfig("tiny-bert"), fast_path="off", **DROPOUT)
    gpu, _ = _train(sst2, ModelConfig("tiny-bert"), fast_path="on", device="cuda", precision="bf16", **DROPOUT)
    _close_across_devices(gpu, cpu, train_rel=DROPOUT_TRAIN_REL, eval_rel=None)


@cuda
def test_cuda_compiled_mlm(mlm_data):
    import warnings

    data = mlm_data
    ref, _ = _train(data, head="mlm", labels=0, fast_path="off", max_steps=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fast, _ = _train(data, head="mlm", labels=0, fast_path="on", device="cuda", precision="bf16",
                         compile="reduce-overhead", max_steps=6)
    assert fast["train_loss"] == pytest.approx(ref["train_loss"], rel=0.03)
    assert fast["fast_path"]["compiled"] and fast["fast_path"]["recompiles"] == 0


@cuda
def test_cuda_pruning_is_the_cpu_mask_and_not_slower_than_global_unstructured(bert_base_cls):
    import copy
    import time

    from torch.nn.utils import prune as torch_prune

    from tickets_core.models.prunable import base_model

    cpu_w = {k: p.detach() for k, p in prunable_parameters(bert_base_cls).items()}
    ones = Mask.ones_like(bert_base_cls)
    want = magnitude_global(cpu_w, ones, 0.5)
    gpu_model = copy.deepcopy(bert_base_cls).cuda()
    gpu_w = {k: p.detach() for k, p in prunable_parameters(gpu_model).items()}
    magnitude_global(gpu_w, ones, 0.1)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    got = magnitude_global(gpu_w, ones, 0.5)
    ours = time.perf_counter() - t0
    assert all(torch.equal(got[k], want[k]) for k in want)
    mods = dict(base_model(gpu_model).named_modules())
    targets = [(mods[k[: -len(".weight")]], "weight") for k in gpu_w]
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=0.1)  # warm-up
    for m, _ in targets:
        torch_prune.remove(m, "weight")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=0.5)
    torch.cuda.synchronize()
    ref = time.perf_counter() - t0
    print(f"GPU pruning: ours {ours * 1000:.1f} ms, global_unstructured {ref * 1000:.1f} ms")
    assert ours <= 1.5 * ref + 0.01  # target: no slower; margin for timer noise on one sample


def test_imp_run_on_the_fast_path_writes_the_plain_runs_results(tiny_config_factory, tmp_path):
    """A whole IMP trunk (rewind to theta_1: on_step sees fp32 weights) with bf16 master weights, multi-tensor
    masks and prefetching writes the same masks, theta_1 and metrics as the bf16 autocast loop."""
    from safetensors.torch import load_file

    from tickets_core.lottery import driver
    from tickets_core.runs.paths import RunPaths

    common = dict(levels=2, rewind_step=1, max_steps=2, precision="bf16")
    runs = [driver.run(tiny_config_factory(tmp_path / "plain", fast_path="off", **common)),
            driver.run(tiny_config_factory(tmp_path / "fast", fast_path="on", pad_to_multiple_of=1, prefetch_batches=2,
                                        **common))]
    assert runs[0].name == runs[1].name  # the fast-path options are not part of the run's identity
    plain, fast = (RunPaths(r) for r in runs)
    for level in (0, 1, 2):
        a, b = (json.loads(p.metrics(level).read_text()) for p in (plain, fast))
        assert a["eval"] == b["eval"] and a["train"]["train_loss"] == b["train"]["train_loss"]
    for level in (1, 2):
        ma, mb = Mask.load(plain.mask(level)), Mask.load(fast.mask(level))
        assert all(torch.equal(ma[k], mb[k]) for k in ma)
    ta, tb = load_file(str(plain.rewind())), load_file(str(fast.rewind()))
    assert all(tb[k].dtype == torch.float32 and torch.equal(ta[k], tb[k]) for k in ta)


def test_a_compiler_failure_on_the_first_step_falls_back_to_eager(sst2, monkeypatch):
    class Broken(torch.nn.Module):
        def forward(self, **batch):
            raise RuntimeError("inductor blew up")

    eager, w_eager = _train(sst2, fast_path="on", max_steps=4)
    monkeypatch.setattr(fastpath, "compile_model", lambda model, mode: Broken())
    with pytest.warns(RuntimeWarning, match="inductor blew up"):
        fell_back, w_fb = _train(sst2, fast_path="on", compile="default", max_steps=4)
    assert fell_back["train_loss"] == eager["train_loss"] and _max_diff(w_fb, w_eager) == 0.0
