"""Run kinds: one registry entry per kind of experiment.

An entry says what a kind *is*: its display name in the analysis, whether it
is a trunk (starts from theta0 and follows the pruning schedule) or a branch
(reads the masks of a source run, one level per source level, same
numbers), which notebook runs it, and, for the docs, what each level starts
from and what it leaves for the next level.  What a level *does* is the
kind's function in :mod:`tickets_core.lottery.levels` (registered under the same
name).  Adding a kind is one :func:`register` call here plus one function
there; the config, the driver, the sweep and the analysis read this table.

This module imports only :mod:`~tickets_core.core.registry` and no third-party code,
so the config and the analysis can use it without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Registry


@dataclass(frozen=True)
class RunKind:
    name: str
    label: str                 # the method's name in tables and figures
    role: str                  # "trunk" | "branch"
    help: str                  # one sentence for RunConfig.kind's help text
    levels: str = "schedule"   # "schedule": levels 0..prune.levels | "single": level 0 | "source": the source's levels
    source: str = "none"       # "none" | "run" (source_run) | "run_or_mask" (source_run or mask_path)
    notebook: str = "experiment"
    starts_from: str = ""      # what a level's weights and mask are
    leaves: str = ""           # what a level writes for the next one, before it counts as done
    params: tuple[str, ...] = ()  # flat parameters only this kind reads (every other kind leaves them at default)
    early_bird: bool = False   # its levels honour the early_bird_* options (they prune the weights they trained)
    copies: int = 1            # fine-tunings per level (the plan line's estimate; stability trains two)
    line_points: bool = False  # each level also evaluates stability_points points on a line (the estimate)
    dense_level: bool = False  # a level under the dense mask is the dense fine-tuning from theta0 with the run seed
                               # (what level 0 of an imp trunk trains): dense_level_from may copy it from one

    @property
    def is_branch(self) -> bool:
        return self.role == "branch"


KINDS: Registry[RunKind] = Registry("run kind", param="kind")


def register(kind: RunKind) -> RunKind:
    """Add ``kind`` to the registry (names are unique)."""
    if kind.role not in ("trunk", "branch") or kind.levels not in ("schedule", "single", "source"):
        raise ValueError(f"run kind {kind.name!r}: bad role {kind.role!r} or levels {kind.levels!r}")
    if (kind.role == "branch") != (kind.source != "none"):
        raise ValueError(f"run kind {kind.name!r}: branches, and only branches, read a source")
    return KINDS.register(kind.name, kind)


#: The registered kind ``name``; an unknown name is a one-line ConfigError naming the closest one.
get_kind = KINDS.lookup


register(RunKind(
    "imp", "IMP", "trunk",
    "the IMP trunk: fine-tune, prune the trained weights, rewind the survivors, repeat",
    starts_from="level 0: theta0, dense; level k: the mask level k-1 left, survivors rewound to theta0 "
                "(or theta_i), the head reset (or carried over with reset_head false)",
    leaves="the next level's mask (magnitude of the trained weights); the trained head when reset_head is false",
    early_bird=True,
))
register(RunKind(
    "dense", "dense", "trunk", "level 0 only: the dense fine-tuning (a seed of the matching baseline)",
    levels="single", starts_from="theta0, dense",
    dense_level=True,
))
register(RunKind(
    "oneshot", "one-shot", "trunk", "prune theta0 itself to each level's sparsity (no training before pruning)",
    starts_from="theta0 pruned by prune.strategy to the level's sparsity",
    dense_level=True,
))
register(RunKind(
    "standard", "standard pruning", "trunk", "prune the fine-tuned model and keep its weights (no rewind)",
    starts_from="level 0: theta0, dense; level k: the weights level k-1 trained, pruned by the mask it left",
    leaves="the next level's mask and the trained weights (whole model)",
    dense_level=True,
))
register(RunKind(
    "random_magnitude", "random pruning (random-init magnitude)", "trunk",
    "the reference code's random pruning: magnitude-prune a randomly initialised model to each level's sparsity, "
    "fine-tune theta0 under that mask",
    starts_from="theta0 and the mask prune.strategy gives the architecture's own random init at the level's "
                "sparsity (one-shot, seeded by the run seed)",
    dense_level=True,
))
register(RunKind(
    "random_prune", "random pruning", "branch",
    "random masks with the source mask's per-matrix sparsities, from theta0",
    levels="source", source="run", starts_from="theta0 and a random mask with the source level's per-matrix sparsities",
    dense_level=True,
))
register(RunKind(
    "random_reinit", "random re-init", "branch", "the source mask on freshly initialised weights",
    levels="source", source="run", starts_from="the source level's mask on base weights from the architecture's own init",
))
register(RunKind(
    "shuffled", "shuffled weights", "branch",
    "the source mask on theta0 whose prunable matrices are each randomly permuted (an ablation of the paper)",
    levels="source", source="run_or_mask",
    starts_from="the source level's mask (or the mask file's) on theta0 with every prunable matrix's entries "
                "shuffled within the matrix (seeded by the run seed, the same for every level)",
))
register(RunKind(
    "noised", "weights + noise", "branch",
    "the source mask on theta0 plus Gaussian noise (noise_scale x each matrix's std; an ablation of the paper)",
    levels="source", source="run_or_mask", params=("noise_scale",),
    starts_from="the source level's mask (or the mask file's) on theta0 whose prunable matrices get Gaussian "
                "noise of std noise_scale x the matrix's std (seeded by the run seed, the same for every level)",
))
register(RunKind(
    "transfer", "transfer", "branch", "the source mask fine-tuned on this run's task from theta0",
    levels="source", source="run_or_mask",
    starts_from="theta0 and the source level's mask (or the mask file's, as level 0)",
    dense_level=True,
))

register(RunKind(
    "retrain", "retrained mask", "branch",
    "the source level's mask fine-tuned from theta0 on the source's task with this run's full budget "
    "(scores the masks of an early-bird trunk, whose levels stop early)",
    levels="source", source="run", starts_from="theta0 and the source level's mask",
    dense_level=True,
))
register(RunKind(
    "stability", "stability", "branch",
    "linear mode connectivity: per source level, two copies trained from the rewind point under the source mask "
    "with different data orders, evaluated along the line between them",
    levels="source", source="run", copies=2, line_points=True,
    starts_from="the source level's mask on theta0 (rewind_step 0) or theta_i (this run's own first i steps of "
                "dense fine-tuning, as an imp trunk with that rewind_step and seed computes them)",
))


def table() -> str:
    """The registered kinds, one line each: name, trunk or branch, what it runs."""
    width = max(len(k) for k in KINDS) + 1
    return "\n".join(f"{k.name:<{width}} {k.role:<7} {k.help}" for k in KINDS.values())
