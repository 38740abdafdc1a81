"""Analytic matmul FLOP counts of a BERT-family training step, and the machine's matmul peak.

Per token and layer, the forward pass multiplies the token by every encoder
``Linear`` weight (2 FLOPs per weight: multiply + add) and, in attention,
computes scores ``Q K^T`` and context ``P V`` against all L positions of its
sequence (2 * L * d each, d = hidden size). The pooler and classifier run on
one token per example. Backward costs about twice the forward (gradients
with respect to activations and to weights), so a training step is 3x the
forward. Embedding lookups, LayerNorm, GELU, softmax and the optimizer are
not matmuls and are not counted (they are "the rest" the profile shows).
"""

from __future__ import annotations

import time

import torch
from torch import nn


def encoder_matmul_weights(model: nn.Module) -> int:
    """Weights of every ``nn.Linear`` in the encoder's blocks (the prunable set without the pooler)."""
    from tickets_core.models.prunable import prunable_parameters

    return sum(p.numel() for k, p in prunable_parameters(model, include_pooler=False).items())


def head_matmul_weights(model: nn.Module) -> int:
    """Linear weights applied once per example (pooler, classifier)."""
    from tickets_core.models.prunable import prunable_parameters

    enc = set(id(p) for p in prunable_parameters(model, include_pooler=False).values())
    n = 0
    for mod in model.modules():
        if isinstance(mod, nn.Linear) and id(mod.weight) not in enc:
            n += mod.weight.numel()
    return n


def train_step_flops(model: nn.Module, batch_size: int, seq_len: int) -> float:
    """Matmul FLOPs of one training step on a ``batch_size x seq_len`` (padded) batch."""
    cfg = model.config
    d, layers = cfg.hidden_size, cfg.num_hidden_layers
    tokens = batch_size * seq_len
    fwd = 2 * encoder_matmul_weights(model) * tokens
    fwd += layers * 2 * (2 * seq_len * d) * tokens  # QK^T and PV
    fwd += 2 * head_matmul_weights(model) * batch_size
    return 3.0 * fwd


def matmul_flops_per_s(n: int = 3072, repeats: int = 3) -> list[float]:
    """FLOP/s of an ``n x n @ n x n`` fp32 matmul, one value per repeat."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        out.append(2 * n ** 3 / (time.perf_counter() - t0))
    return out
