"""A warmed MLM head as part of theta0, for checkpoints that ship without one.

all-MiniLM-L6-v2, the offline model, has no MLM head: an MLM run starts from
a freshly initialised head (its decoder tied to the word embeddings), which
scores ~0.5% masked-token accuracy and learns slowly while the encoder is
being pruned.  The paper's bert-base starts every MLM level from its
pre-trained head.  ``mlm_head_warmup_steps = N > 0`` stands in for that:
before anything else, the fresh head (initialised from the fixed seed
:data:`WARMUP_SEED`, not the run seed) is trained for N steps on the task's
whole training split (``max_train_samples`` limits the levels, not the
warm-up) with the whole base model frozen (encoder, embeddings and so
the tied decoder stay bit for bit the pre-trained weights), AdamW at
``mlm_head_warmup_lr`` decaying linearly to 0, the run's batch size.  The
warmed head is theta0's head: every level of every run with the same model,
data and warm-up settings starts from it, whatever its seed, as they would
from a checkpoint's pre-trained head.

It is computed once and cached under ``<cache_dir>/mlm_heads/<key>.safetensors``
(``cache_dir`` defaults to ``~/.cache/tickets_core``), keyed by the base
weights' content, the model, the data and the warm-up settings; a missing
cache is recomputed identically (same seed, same data order; bit for bit on
a CPU).  Its evaluation on the task's validation set is kept with it and
recorded in every level's ``metrics.json`` (``mlm_head_warmup``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from ..models import build as models
from . import loop as train
from ..core.config import RunConfig
from ..core.seeds import WARMUP_SEED
from ..core.fsio import atomic_write_bytes
from ..core.params import hashed_view
from ..tasks.common import cache_root

#: Seed of the fresh head the warm-up starts from and of its data order and masking.
CACHE_VERSION = 1


def warmup_config(cfg: RunConfig):
    """The TrainConfig of the warm-up: the run's, with the warm-up's steps and learning rate, no LR warm-up."""
    return dataclasses.replace(cfg.train, learning_rate=cfg.model.mlm_head_warmup_lr,
                               max_steps=cfg.model.mlm_head_warmup_steps, warmup_ratio=0.0, eval_every=None,
                               lr_schedule="per_level")


def warmup_data_config(cfg: RunConfig):
    """The warm-up trains on the task's whole training split (``max_train_samples`` limits the levels only)."""
    return dataclasses.replace(cfg.data, max_train_samples=None)


def cache_path(cfg: RunConfig, base_state: dict[str, torch.Tensor]) -> Path:
    """Where the warmed head of ``cfg`` for these base weights is cached."""
    h = hashlib.sha256()
    for k in sorted(base_state):
        t = base_state[k].detach().to("cpu").contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    m = cfg.model
    key = {"version": CACHE_VERSION, "seed": WARMUP_SEED, "base": h.hexdigest(),
           "model": [m.name_or_path, m.tokenizer, m.random_init, m.config_overrides],
           "data": hashed_view(warmup_data_config(cfg)), "train": hashed_view(warmup_config(cfg))}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return cache_root(cfg.data) / "mlm_heads" / f"{cfg.data.task}-{digest}.safetensors"


def warm_head(model, cfg: RunConfig, task, tokenizer_fn, base_keys: list[str], head_keys: list[str]) -> dict:
    """Put the warmed head into ``model`` (computing and caching it if needed); return the warm-up's record.

    ``tokenizer_fn()`` gives the run's tokenizer (called only when the head is not cached).
    """
    live = model.state_dict()
    path = cache_path(cfg, {k: live[k] for k in base_keys})
    cached = _read(path)
    if cached is not None:
        state, record = cached
    else:
        fresh = models.build_model(cfg.model, task.head, seed=WARMUP_SEED).state_dict()
        with torch.no_grad():
            for k in head_keys:
                live[k].copy_(fresh[k])
        frozen = [p for p in model.base_model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            data = task.load(warmup_data_config(cfg), tokenizer_fn())
            result = train.fine_tune(model, data, warmup_config(cfg), seed=WARMUP_SEED, desc="MLM head warm-up")
        finally:
            for p in frozen:
                p.requires_grad_(True)
        live = model.state_dict()
        state = {k: live[k].detach().to("cpu", copy=True) for k in head_keys}
        record = {"steps": result["steps"], "learning_rate": cfg.model.mlm_head_warmup_lr, "seed": WARMUP_SEED,
                  "train_loss": result["train_loss"], "eval": result["eval"], "cache": path.name}
        atomic_write_bytes(path, st_save(state, metadata={"record": json.dumps(record)}))
    with torch.no_grad():
        for k in head_keys:
            live[k].copy_(state[k])
    return record


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The cached head and its record; None when there is none (or it cannot be read: it is then recomputed)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            record = json.loads((f.metadata() or {})["record"])
            return {k: f.get_tensor(k) for k in f.keys()}, record
    except (OSError, ValueError, KeyError, SafetensorError):
        return None
