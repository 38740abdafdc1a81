"""Every random stream the library draws, and the seed each one takes: one table, so no two streams collide by
accident and a test can pin them.

A run's seed sets its data order (the seed itself) and dropout; every other stream is the run seed plus a fixed
offset (:data:`OFFSETS`), or a constant that is the same for every run (:data:`SPLIT_SEED`,
:data:`WARMUP_SEED`).  The values are part of what a run computes: changing one changes results, so they are
pinned by ``tests/test_architecture.py``.
"""

from __future__ import annotations

#: Offsets added to the run seed, by what the stream is for.
OFFSETS: dict[str, int] = {
    "data_order": 0,            # the order of the training examples and the dropout (training/loop.py)
    "mlm_masking": 1,           # which tokens a training batch masks (training/loop.py)
    "stability_copy": 7_919,    # copy B of a stability level (copy A: the run seed)
    "reinit": 1_000_003,        # random_reinit: fresh weights, apart from a tiny model built from the run seed
    "perturb": 2_000_003,       # the shuffled / noised weight ablations
    "importance": 3_000_017,    # which training batches structured_importance scores units on (and their MLM masks)
}
#: Train/validation splits and the evaluation masks of MLM: the same for every run.
SPLIT_SEED = 1234
#: The MLM head warm-up: the same for every run (the warmed head is part of theta0).
WARMUP_SEED = 0


def derived_seed(seed: int, purpose: str) -> int:
    """The seed of stream ``purpose`` (a key of :data:`OFFSETS`) of a run seeded ``seed``."""
    return int(seed) + OFFSETS[purpose]


def level_seed(seed: int, level: int) -> int:
    """The seed random pruning strategies draw from at ``level`` of a run seeded ``seed``."""
    return int(seed) * 1_000_003 + int(level)
