"""The phases of benchmarks/gpu_check.py; each sets its entries of the report (see gpu_check.py's docstring)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from tickets_core.training import fastpath
from tickets_core.training.loop import batch_order, fine_tune

from .gpu_common import (BATCH, SETUP, device_sync, load_rows, long_rows, make_model, peak_gb, reset_peak,
                         task_data, train_config)

LOSS_REL = 1e-2  # compiled vs eager per-step training losses (issue 19)
LOGITS_REL = 2e-2  # compiled vs eager logits, as a fraction of the largest |logit| (bf16; an estimate)
MEMORY_SLACK_GB = 0.0625  # "memory flat": a later level may allocate at most this much more


@dataclass
class Context:
    """What the phases share: the bert-base model under its 50% mask, theta0, data, what the first level saw."""

    mode: str
    steps: int
    synthetic: bool
    model: object = None
    mask: object = None
    theta0: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    eval_rows: list = field(default_factory=list)
    data: object = None
    source: str = ""
    measured: dict = field(default_factory=dict)

    def setup(self) -> None:
        if self.model is not None:
            return
        n = BATCH * self.steps
        n_eval = 64 if SETUP.cuda else 8
        self.rows, self.eval_rows, tok, self.source = load_rows(max(n, 4 * BATCH + 1), n_eval, self.synthetic)
        self.data = task_data(self.rows[:n], self.eval_rows, tok)
        self.model, self.mask = make_model(dropout=False)
        self.theta0 = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def rewind(self, mask) -> None:
        """theta0 back into the same parameter tensors (compiled graphs keep them), pruned under ``mask``."""
        self.model.load_state_dict(self.theta0)
        mask.bind(self.model).apply_()

    def options(self, compiled: bool) -> dict:
        return dict(fast_path="on", compile=self.mode if compiled else "off")


class LossLog:
    """A task whose training loss is the wrapped task's, each step's value kept (cloned: CUDA-graph outputs
    are overwritten by the next replay)."""

    def __init__(self, task) -> None:
        self.task, self.losses = task, []

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, model, batch, compiled=None):
        loss = self.task.loss(model, batch, compiled=compiled)
        self.losses.append(loss.detach().float().clone())
        return loss


class ZeroWatch:
    """``on_step`` callback counting nonzero pruned entries after every step: fp32 master weights, bf16 compute
    copies; and after every optimizer step: the gradients it used, its AdamW moments, the weights it wrote."""

    def __init__(self, model, mask) -> None:
        self.model = model
        params = dict(model.base_model.named_parameters())
        full = {id(p): n for n, p in model.named_parameters()}
        self.pruned = [(params[k], full[id(params[k])], ~keep.to(params[k].device)) for k, keep in mask.items()
                       if not bool(keep.all())]
        self.ids = {id(p) for p, _, _ in self.pruned}
        self.nonzero = {"master": 0, "compute": 0, "grad": 0, "moments": 0, "stepped weight": 0}
        self.steps = self.optimizer_steps = 0
        self.first_step_s = self.t_first = self.t_last = None
        self.t0 = time.perf_counter()
        self._hook = register_optimizer_step_post_hook(self._after_optimizer_step)

    @staticmethod
    def _count(pairs) -> int:
        counts = [torch.count_nonzero(t.detach().ne(0).logical_and_(off)) for t, off in pairs]
        return int(torch.stack(counts).sum()) if counts else 0

    def __call__(self, step, model) -> None:
        computes = fastpath.compute_copies(self.model)
        self.nonzero["master"] += self._count([(p, off) for p, _, off in self.pruned])
        self.nonzero["compute"] += self._count([(computes[n], off) for _, n, off in self.pruned if n in computes])
        self.steps = step
        device_sync()
        now = time.perf_counter()
        if step == 1:
            self.first_step_s, self.t_first = now - self.t0, now
        self.t_last = now

    def _after_optimizer_step(self, opt, args, kwargs) -> None:
        if not any(id(p) in self.ids for g in opt.param_groups for p in g["params"]):
            return
        self.optimizer_steps += 1
        self.nonzero["grad"] += self._count([(p.grad, off) for p, _, off in self.pruned])
        moments = [(opt.state[p][k], off) for p, _, off in self.pruned for k in ("exp_avg", "exp_avg_sq")]
        self.nonzero["moments"] += self._count(moments)
        self.nonzero["stepped weight"] += self._count([(p, off) for p, _, off in self.pruned])

    def close(self) -> dict:
        self._hook.remove()
        warm = (self.t_last - self.t_first) / (self.steps - 1) if self.steps > 1 else None
        return {"nonzero_pruned": dict(self.nonzero), "steps_checked": self.steps,
                "optimizer_steps_checked": self.optimizer_steps, "first_step_s": self.first_step_s,
                "warm_step_s": warm}


def level(ctx: Context, mask, compiled: bool, steps: int, data=None) -> tuple[dict, list[float], dict]:
    """One fine-tuning of the context's model under ``mask``: (result, per-step losses, ZeroWatch summary)."""
    data = data or ctx.data
    log = LossLog(data.task)
    watch = ZeroWatch(ctx.model, mask)
    try:
        res = fine_tune(ctx.model, dataclasses.replace(data, task=log), train_config(ctx.options(compiled),
                        max_steps=steps), seed=0, bound_mask=mask.bind(ctx.model), on_step=watch)
    finally:
        seen = watch.close()
    return res, torch.stack(log.losses).tolist() if log.losses else [], seen


def max_rel(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


def _zeros_ok(seen: dict, steps: int) -> bool:
    return not any(seen["nonzero_pruned"].values()) and seen["steps_checked"] == steps == seen["optimizer_steps_checked"]


def train_levels(ctx: Context, report) -> None:
    """Eager, then compiled, first level from theta0 under the 50% mask; sets compiled_warm, zeros, losses."""
    ctx.setup()
    eager, eager_losses, _ = level(ctx, ctx.mask, False, ctx.steps)
    ctx.rewind(ctx.mask)
    reset_peak()
    res, losses, seen = level(ctx, ctx.mask, True, ctx.steps)
    ctx.measured.update(peak1_gb=peak_gb(), alloc1=torch.cuda.memory_allocated() if SETUP.cuda else 0,
                        cold_compile_s=(seen["first_step_s"] or 0) - (seen["warm_step_s"] or 0))
    rec = res["fast_path"]
    ok = rec["compiled"] and rec["recompiles"] == 0 and rec["graphs"] <= 2 and rec["cudagraph_skips"] in (0, None)
    report.set("compiled_warm", "pass" if ok else "fail",
               f"{ctx.mode}, {ctx.steps} steps on {ctx.source}: {rec['graphs']} Dynamo graphs, {rec['recompiles']} "
               f"recompiles after warm-up, {rec['cudagraphs']} CUDA graphs, {rec['cudagraph_skips']} cudagraph skips"
               + (f"; fell back at step {rec['fell_back_at_step']}: {rec['error']}" if rec["fell_back_at_step"] else ""),
               record=rec, cold_compile_s=ctx.measured["cold_compile_s"], **seen)
    report.set("zeros", "pass" if _zeros_ok(seen, ctx.steps) else "fail",
               f"nonzero pruned entries over {seen['steps_checked']} steps: {seen['nonzero_pruned']}", **seen)
    rel = max_rel(losses, eager_losses)
    report.set("losses", "pass" if rel <= LOSS_REL and len(losses) == len(eager_losses) == ctx.steps else "fail",
               f"max relative difference of {len(losses)} per-step losses, compiled vs eager: {rel:.2e} "
               f"(tolerance {LOSS_REL:g})", max_rel=rel, compiled=losses, eager=eager_losses,
               eager_record=eager["fast_path"])


def _fixed_logits(ctx: Context, compiled) -> torch.Tensor:
    """Logits of the first training batch (padded to 16) as a training step computes them (bf16 compute copies,
    train mode, labels in), forward and backward; ``compiled``: the compiled module, else eager."""
    from tickets_core.training.fastpath import mark_step, pad_batch

    batch = ctx.data.collate(ctx.data.train[list(range(BATCH))])
    batch = {k: v.to(SETUP.device) for k, v in pad_batch(batch, 16, ctx.data.pad_id).items()}
    masters = fastpath.MasterWeights(ctx.model)
    ctx.model.train()
    try:
        if compiled is not None and SETUP.cuda:
            mark_step()
        with torch.autocast(device_type=SETUP.device, dtype=torch.bfloat16), fastpath.distinct_sizes():
            out = (ctx.model if compiled is None else compiled)(**batch)
        logits = out.logits.detach().float().clone()
        out.loss.backward()
    finally:
        ctx.model.zero_grad(set_to_none=True)
        masters.close()
    return logits


def tightened_level(ctx: Context, report) -> None:
    """Weights rewound in place, mask tightened to 60% by magnitude: compiled logits = eager, then a level."""
    from tickets_core.models.prunable import prunable_parameters
    from tickets_core.pruning.strategies import magnitude_global

    if ctx.model is None:
        raise RuntimeError("the first level did not run")
    weights = {k: p.detach() for k, p in prunable_parameters(ctx.model).items()}
    new = magnitude_global(weights, ctx.mask, 0.6)
    ctx.rewind(ctx.mask)
    old_logits = _fixed_logits(ctx, None)
    ctx.rewind(new)
    counters = fastpath.CompileCounters(cudagraphs=False)
    compiled = fastpath.compile_model(ctx.data.task.compile_target(ctx.model), ctx.mode)
    eager_logits, comp_logits = _fixed_logits(ctx, None), _fixed_logits(ctx, compiled)
    check_graphs = counters.graphs() - counters.graphs0
    scale = float(eager_logits.abs().max())
    err_new = float((comp_logits - eager_logits).abs().max()) / scale
    err_old = float((comp_logits - old_logits).abs().max()) / scale
    moved = float((old_logits - eager_logits).abs().max()) / scale
    steps = max(2, ctx.steps * 2 // 5)
    _, eager_losses, _ = level(ctx, new, False, steps)
    ctx.rewind(new)
    reset_peak()
    res, losses, seen = level(ctx, new, True, steps)
    rec, m = res["fast_path"], ctx.measured
    mem = {}
    if SETUP.cuda:
        mem = {"peak_gb": [m["peak1_gb"], peak_gb()], "allocated_gb": [m["alloc1"] / 2 ** 30,
                                                                         torch.cuda.memory_allocated() / 2 ** 30]}
    flat = not mem or (mem["peak_gb"][1] <= mem["peak_gb"][0] + MEMORY_SLACK_GB
                       and mem["allocated_gb"][1] <= mem["allocated_gb"][0] + MEMORY_SLACK_GB)
    logits_ok = err_new <= LOGITS_REL and (moved <= 2 * LOGITS_REL or err_new < err_old)
    ok = (logits_ok and check_graphs == 0 and rec["compiled"] and rec["graphs"] == 0 and rec["recompiles"] == 0
          and flat and _zeros_ok(seen, steps))
    report.set("mask_tightened", "pass" if ok else "fail",
               f"50% -> 60%: compiled vs eager logits {err_new:.1e} of max |logit| (old mask's {moved:.1e}); "
               f"{check_graphs} + {rec['graphs']} new graphs, {rec['recompiles']} recompiles; memory "
               f"{'flat' if flat else 'grew'} {mem or '(not measured off CUDA)'}; "
               f"{steps}-step level losses vs eager {max_rel(losses, eager_losses):.1e}",
               logits_rel_err=err_new, logits_rel_err_old_mask=err_old, old_vs_new_mask=moved,
               check_graphs=check_graphs, record=rec, memory=mem, zeros=seen,
               losses_max_rel=max_rel(losses, eager_losses))


def one_row(ctx: Context, report) -> None:
    """4 x 32 + 1 rows, one epoch, compiled: 4 steps (the last row merged), no recompile, no new graph."""
    if ctx.model is None:
        raise RuntimeError("the first level did not run")
    rows = ctx.rows[: 4 * BATCH + 1]
    data = task_data(rows, ctx.eval_rows, ctx.data.tokenizer)
    cfg = train_config(ctx.options(True), num_epochs=1.0)
    res = fine_tune(ctx.model, data, cfg, seed=0, bound_mask=ctx.mask.bind(ctx.model))
    rec = res["fast_path"]
    ok = (res["steps"], res["examples"]) == (4, len(rows)) and rec["compiled"] and rec["recompiles"] == 0
    report.set("one_row_last_batch", "pass" if ok and rec["graphs"] == 0 else "fail",
               f"{len(rows)} rows in {res['steps']} steps, {rec['recompiles']} recompiles, {rec['graphs']} new graphs",
               record=rec, steps=res["steps"], examples=res["examples"])


def dropout_rng(ctx: Context, report) -> None:
    """A small BERT with dropout 0.1, compiled: four training steps on one batch (no optimizer step) give four
    different outputs, none the dropout-free one; on CUDA the later calls are CUDA-graph replays."""
    from tickets_core.training.fastpath import CompileCounters, compile_model, mark_step

    if ctx.model is None:
        ctx.setup()
    size = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    keep = dict(SETUP.model_kw)
    SETUP.model_kw.update({} if not SETUP.cuda else size)
    try:
        model, _ = make_model(dropout=True, seed=3)
    finally:
        SETUP.model_kw.clear()
        SETUP.model_kw.update(keep)
    batch = ctx.data.collate(ctx.data.train[list(range(BATCH))])
    batch = {k: v.to(SETUP.device) for k, v in batch.items()}
    auto = torch.autocast(device_type=SETUP.device, dtype=torch.bfloat16)
    with torch.no_grad(), auto:
        clean = model.eval()(**batch).logits.float()
    model.train()
    counters = CompileCounters(cudagraphs=SETUP.cuda and ctx.mode in fastpath.CUDAGRAPH_MODES)
    compiled = compile_model(model, ctx.mode)
    outs = []
    for _ in range(4):
        if SETUP.cuda:
            mark_step()
        with auto, fastpath.distinct_sizes():
            out = compiled(**batch)
        outs.append(out.logits.detach().float().clone())
        out.loss.backward()
        model.zero_grad(set_to_none=True)
    counters.close()
    same = [(i, j) for i in range(4) for j in range(i + 1, 4) if torch.equal(outs[i], outs[j])]
    clean_like = [i for i in range(4) if torch.equal(outs[i], clean)]
    graphs_ok = counters.recorded is None or counters.recorded >= 1
    ok = not same and not clean_like and graphs_ok and counters.skips() == 0
    report.set("dropout_rng", "pass" if ok else "fail",
               f"4 compiled training calls on one batch: equal pairs {same or 'none'}, dropout-free outputs "
               f"{clean_like or 'none'}; {counters.recorded} CUDA graphs recorded, {counters.skips()} skips",
               equal_pairs=same, cudagraphs=counters.recorded, cudagraph_skips=counters.skips())


def prefetch_equal(ctx: Context, report) -> None:
    """The batches of one epoch, collated inline vs on the prefetch thread (pinned on CUDA): same checksums."""
    from tickets_core.training.fastpath import pad_batch
    from tickets_core.training.prefetch import Prefetcher, pin

    ctx.setup()
    data = ctx.data
    lengths = list(data.train["length"])

    def batches():
        for idx in batch_order(len(data.train), BATCH, torch.Generator().manual_seed(0), lengths):
            b = pad_batch(data.collate(data.train[idx]), 16, data.pad_id)
            yield pin(b) if SETUP.cuda else b

    def checksum(b) -> torch.Tensor:
        return torch.stack([(t.to(SETUP.device, non_blocking=True).long()
                             * torch.arange(1, t.numel() + 1, device=SETUP.device).view(t.shape)).sum()
                            for _, t in sorted(b.items())]).sum()

    inline = torch.stack([checksum(b) for b in batches()]).tolist()
    pinned, got = True, []
    pf = Prefetcher(batches(), 2)
    try:
        for b in pf:
            pinned &= all(t.is_pinned() for t in b.values()) if SETUP.cuda else True
            got.append(checksum(b))
    finally:
        pf.close()
    got = torch.stack(got).tolist()
    ok = got == inline and pinned
    report.set("prefetch", "pass" if ok else "fail",
               f"{len(inline)} batches: checksums {'equal' if got == inline else 'differ'}"
               + (f", pinned: {pinned}" if SETUP.cuda else " (CPU: not pinned)"), batches=len(inline))


def semi_structured(ctx: Context, report) -> None:
    from .gpu_check_speed import semi_structured_check

    semi_structured_check(report)


def throughput(ctx: Context, report) -> None:
    from .gpu_check_speed import throughput_check

    ctx.setup()
    long = task_data(long_rows(ctx.rows, len(ctx.data.train)), ctx.eval_rows, ctx.data.tokenizer)
    throughput_check(ctx, report, {"RT": ctx.data, "L128": long})


def packed_pair(ctx: Context, report, left_s: float) -> None:
    from .gpu_packed import packed

    seconds = 8.0 if SETUP.cuda else 1.0
    res = packed([1, 2], seconds, "fast eager", BATCH * 10, time.time() + left_s - 5, smoke=not SETUP.cuda)
    rounds = res["rounds"]
    agg = {n: r["aggregate"] for n, r in rounds.items() if isinstance(r, dict)}
    if len(agg) < len(rounds):  # a round skipped for time: not measured, not failed
        report.set("packed_pair", "skipped", why=f"time budget: {rounds}", **res)
        return
    report.set("packed_pair", "pass",
               ", ".join(f"{n} run{'s' if n > 1 else ''}: {a:,.0f} examples/s" for n, a in agg.items())
               + (f" ({agg[2] / agg[1]:.2f}x)" if len(agg) == 2 else f"; {rounds}"), **res)
