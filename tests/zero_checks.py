"""Exact-zero checks for training runs under a mask (tests/test_fastpath*.py): weights, compute copies,
gradients and AdamW moments at pruned entries, after every step."""

from __future__ import annotations

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from tickets_core.training import fastpath
from tickets_core.training.loop import fine_tune


def train_checked(model, mask, data, cfg, on_step=None, seed: int = 0):
    """``fine_tune(model, data, cfg)`` under ``mask``, checking pruned entries after every step; (result, steps).

    After every optimizer step (a global post-step hook): the gradients it stepped with, its AdamW moments
    and the weights it wrote are 0 at pruned entries (no ``apply_`` needed: zero weight, gradient and
    moments make a zero update).  After every step (``on_step``): the fp32 (master) weights the callback
    sees and the bf16 compute copies (``fastpath.compute_copies``) are 0 there.  After the call: the
    model holds its own fp32 parameters again, without gradients, pruned entries 0.
    """
    params = dict(model.base_model.named_parameters())
    full = {id(p): n for n, p in model.named_parameters()}
    pruned = {k: ~keep.to(params[k].device) for k, keep in mask.items() if not bool(keep.all())}
    ids = {id(params[k]) for k in pruned}
    seen, stepped = [], []

    def check(step, m):
        computes = fastpath.compute_copies(model)
        now = dict(m.base_model.named_parameters())
        for k, off in pruned.items():
            p = now[k]
            assert p.dtype == torch.float32  # callbacks see the fp32 (master) weights
            assert bool((p.detach()[off] == 0).all()), (step, k)
            c = computes.get(full[id(params[k])])
            assert c is None or bool((c.detach()[off] == 0).all()), ("bf16 compute copy", step, k)
        seen.append(step)
        return on_step(step, m) if on_step is not None else None

    def after_optimizer_step(opt, args, kwargs):
        if not any(id(p) in ids for g in opt.param_groups for p in g["params"]):
            return  # another model's optimizer
        for k, off in pruned.items():
            p, state = params[k], opt.state[params[k]]
            assert bool((p.grad[off] == 0).all()), ("gradient", k)
            assert bool((state["exp_avg"][off] == 0).all()) and bool((state["exp_avg_sq"][off] == 0).all()), k
            assert bool((p.detach()[off] == 0).all()), ("weight after the optimizer step", k)
        stepped.append(1)

    hook = register_optimizer_step_post_hook(after_optimizer_step)
    try:
        res = fine_tune(model, data, cfg, seed=seed, bound_mask=mask.bind(model), on_step=check)
    finally:
        hook.remove()
    assert seen == list(range(1, res["steps"] + 1)) and len(stepped) == res["steps"]
    assert all(p is dict(model.base_model.named_parameters())[k] for k, p in params.items())  # same objects back
    assert all(p.dtype == torch.float32 and p.grad is None for p in model.parameters())
    for k, off in pruned.items():
        assert bool((params[k].detach()[off] == 0).all())
    return res, seen
