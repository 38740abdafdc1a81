"""Checkpoints inside a level: what writing and reading one costs, beside one training step (the baseline).

MiniLM (the offline pre-trained all-MiniLM-L6-v2, classification head) with
AdamW state after a few steps, batch 32 of real Rotten Tomatoes sentences.
Alternated after a warm-up: one training step (forward, backward, clip,
AdamW step), writing a checkpoint (``Checkpointer.save(capture(...))``: the
model, optimizer, scheduler and RNG states, SHA-256, atomic write with
fsync) and reading it back (``Checkpointer.load``: digest checked, weights
only).  The ratios say how many training steps one checkpoint costs; the
default cadence (``checkpoint_minutes: 20``) writes one per 20 minutes of
training, so its overhead is the write time over 1200 s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .common import Result, cli, interleaved, machine, md_table, median

NAME = "bench_checkpoint"


def run(quick: bool) -> Result:
    from tickets_core.core.config import ModelConfig
    from tickets_core.models.build import build_model, load_tokenizer
    from tickets_core.training import checkpoint as ckpt
    from .data import dynamic_batch, rt_rows

    res = Result(NAME, "Checkpoint write and read vs one training step (MiniLM, batch 32)", quick, machine())
    repeats = 3 if quick else 9
    mcfg = ModelConfig("minilm")
    tok = load_tokenizer(mcfg)
    rows, source = rt_rows(tok, 32 * 2, seed=1)
    batches = [dynamic_batch(rows[i * 32:(i + 1) * 32], tok.pad_token_id) for i in range(2)]
    model = build_model(mcfg, "classification", num_labels=2, seed=0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = {"i": 0}

    def step():
        b = batches[state["i"] % len(batches)]
        state["i"] += 1
        model(**b).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    step()  # AdamW has its state from here on
    folder = Path(tempfile.mkdtemp(prefix="bench_checkpoint."))
    saver = ckpt.Checkpointer(folder / "checkpoint.pt", identity={"bench": 1})

    def save():
        saver.save(ckpt.capture(step=state["i"], examples=0, loss_sum=torch.zeros(()), history=[], elapsed_s=0.0,
                                model=model, optimizer=opt, scheduler=sched, mask_state=torch.Generator().get_state(),
                                hook=None))

    def load():
        assert saver.load(model) is not None

    save()
    times = interleaved({"training step": step, "write a checkpoint": save, "read it back": load},
                        repeats=repeats, warmup=1)
    base = median(times["training step"])
    size = saver.path.stat().st_size
    rows_md = [[k, f"{median(v) * 1000:.0f}", f"{min(v) * 1000:.0f}-{max(v) * 1000:.0f}", f"{median(v) / base:.2f}"]
               for k, v in times.items()]
    n_params = sum(p.numel() for p in model.parameters())
    res.add(f"Data: {source}; MiniLM, {n_params / 1e6:.1f} M parameters; checkpoint {size / 1e6:.1f} MB "
            f"(weights + AdamW moments + RNG states). {repeats} rounds, alternated after a warm-up.")
    res.add(md_table(["what", "median ms", "range ms", "ratio to a training step"], rows_md))
    write = median(times["write a checkpoint"])
    res.add(f"At the default cadence (one checkpoint per 20 minutes of training) writing costs "
            f"{write / 1200:.4%} of the training time on this machine.")
    res.data = {"times_s": times, "size_bytes": size, "n_params": n_params}
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    return res


if __name__ == "__main__":
    cli(NAME, __doc__.splitlines()[0], run)
