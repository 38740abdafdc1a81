"""One run in memory: its model, theta0, data and run folder, and the moves every level is made of.

:class:`Experiment` is what a kind's level function (:mod:`tickets_core.lottery.levels`)
works with: put weights into the model (:meth:`load`), take them out
(:meth:`snapshot`), read the masks and weights earlier levels left
(:meth:`stored_mask`, :meth:`carried`), fine-tune under a mask
(:meth:`train`), and leave the next level its mask and weights
(:meth:`leave_next`).  Every tensor it keeps is a real copy (theta0 is
cloned, never a view of the live weights: the reference MLM code's
"rewind" was an alias and never rewound).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..models import build as models
from ..training import loop as train
from ..core.config import RunConfig
from ..pruning.early_bird import EarlyBird, EarlyCut, window_for
from ..core.errors import ConfigError, RunStoreError
from ..core.seeds import derived_seed
from ..core.strategies import STRATEGY_SPECS
from ..core.fsio import atomic_write_bytes, read_json
from ..pruning import units
from ..pruning.masks import Mask
from ..pruning.shrink import expand_into, shrink, shrinkable
from ..training.mlm_warmup import warm_head
from ..models.prunable import base_model, prunable_parameters
from ..pruning.strategies import prune
from ..runs.paths import RunPaths
from ..runs.store import Run

State = dict[str, torch.Tensor]



def stored_level(path: Path) -> str | None:
    """The ``level`` metadata of a state file (:meth:`Experiment.save_state`): the level it was written for."""
    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("level")


def load_level_state(path: Path, level: int) -> State:
    """The tensors of the state file ``path``, which must have been written for ``level`` (else a one-line error)."""
    saved = stored_level(path)
    if saved != str(level):
        raise RunStoreError(f"{path} holds the state of level {saved}, not level {level}")
    return st_load(path.read_bytes())


def finished_level_mask(paths: RunPaths, level: int) -> Mask | None:
    """The mask finished level ``level`` of the run in ``paths`` trained with, or None for a dense level (it has no
    mask file); the file missing for a level that was pruned (its metrics.json says so) is a one-line error."""
    path = paths.mask(level)
    if path.is_file():
        return Mask.load(path)
    if read_json(paths.metrics(level)).get("sparsity", 0.0) > 0.0:
        raise RunStoreError(f"{path} is missing, but level {level} of {paths.root.name} was pruned "
                            "(its metrics.json says so): the run folder is damaged")
    return None


@dataclass
class Level:
    """One level to run; branches carry the source mask and where it came from."""

    level: int
    last: bool = False
    source_mask: Mask | None = None
    source: dict | None = None


class Experiment:
    """Model, theta0 and data of one run, and the operations its levels are made of."""

    def __init__(self, cfg: RunConfig, task) -> None:
        self.cfg, self.task = cfg, task
        self.run: Run | None = None
        self.model = models.build_model(cfg.model, task.head, task.num_labels, seed=cfg.seed)
        models.check_seq_length(self.model, cfg.data.max_seq_length, cfg.model.name_or_path)
        base_ids = {id(t) for t in base_model(self.model).state_dict(keep_vars=True).values()}
        live = self.model.state_dict(keep_vars=True)
        self.base_keys = [k for k, t in live.items() if id(t) in base_ids]
        self.head_keys = [k for k, t in live.items() if id(t) not in base_ids]
        self.all_keys = self.base_keys + self.head_keys
        prunable_ids = {id(p) for p in prunable_parameters(self.model, cfg.model.include_pooler).values()}
        self.prunable_keys = [k for k, t in live.items() if id(t) in prunable_ids]
        self._data = None
        self._rewind: State | None = None
        self._reinit: State | None = None
        self._perturbed: dict[str, State] = {}
        self.head_warmup: dict | None = None
        if cfg.model.mlm_head_warmup_steps:  # an MLM task: identity.resolve checks
            self.head_warmup = warm_head(self.model, cfg, task, lambda: models.load_tokenizer(cfg.model),
                                         self.base_keys, self.head_keys)
        # theta0: a real copy (clone), never a view of the live weights.
        self.theta0: State = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @property
    def data(self):
        if self._data is None:
            tokenizer = models.load_tokenizer(self.cfg.model)
            self._data = self.task.load(self.cfg.data, tokenizer)
        return self._data

    @property
    def paths(self) -> RunPaths:
        return self.run.paths

    # -- masks --------------------------------------------------------------------

    def dense_mask(self) -> Mask:
        return Mask.ones_like(self.model, self.cfg.model.include_pooler)

    def fit(self, mask: Mask) -> Mask:
        """``mask`` adapted to this run's model (pooler entries dropped or kept dense)."""
        return mask.fitted(self.model, self.cfg.model.include_pooler)

    def stored_mask(self, level: int) -> Mask:
        """The mask the level before ``level`` left for it."""
        path = self.paths.mask(level)
        if not path.is_file():
            raise RunStoreError(f"{path} is missing (level {level - 1} writes it); "
                                f"delete {self.run.root} to start the run again")
        return self.fit(Mask.load(path))

    def prune_trained(self, mask: Mask, level: int) -> Mask:
        """The mask of ``level``: ``prune.strategy`` applied to the current weights, from ``mask``."""
        batches = None
        if STRATEGY_SPECS.lookup(self.cfg.prune.strategy).needs_data:  # structured_importance
            gen = torch.Generator().manual_seed(derived_seed(self.cfg.seed, "importance"))
            batches = train.sample_batches(self.model, self.data, self.cfg.train.batch_size,
                                           self.cfg.prune.importance_batches, gen)
        return prune(self.model, mask, self.cfg.prune, level, self.cfg.seed, batches=batches, loss=self.task.loss)

    # -- weights ------------------------------------------------------------------

    def load(self, state: State, keys: list[str]) -> None:
        """Copy ``state[k]`` into the model's tensors for ``keys`` (in place, on the model's device)."""
        live = self.model.state_dict()
        with torch.no_grad():
            for k in keys:
                live[k].copy_(state[k])

    def snapshot(self, keys: list[str]) -> State:
        live = self.model.state_dict()
        return {k: live[k].detach().to("cpu", copy=True) for k in keys}

    def save_state(self, path: Path, state: State, level: int) -> None:
        atomic_write_bytes(path, st_save(state, metadata={"level": str(level)}))

    def load_state(self, path: Path, level: int) -> State:
        if not path.is_file():
            raise RunStoreError(f"{path} is missing (an earlier level writes it); "
                                f"delete {self.run.root} to start the run again")
        return load_level_state(path, level)

    def carried(self, level: int) -> State:
        """The weights the level before ``level`` left for it (``level_KK/carry.safetensors``)."""
        return self.load_state(self.paths.carry(level), level)

    def rewind_state(self) -> State:
        """theta_i for ``rewind_step = i > 0``, else theta0."""
        if self.cfg.prune.rewind_step == 0:
            return self.theta0
        if self._rewind is None:
            self._rewind = self.load_state(self.paths.rewind(), 0)
        return self._rewind

    def capture_rewind(self, step: int, model) -> None:
        """``on_step`` hook of level 0: save theta_i when step ``rewind_step`` is reached."""
        if step == self.cfg.prune.rewind_step:
            self._rewind = self.snapshot(self.base_keys)
            self.save_state(self.paths.rewind(), self._rewind, 0)

    def compute_rewind(self, level: int = 0) -> State:
        """theta_i for a run that has no level 0 of its own (a stability branch): the first ``rewind_step`` steps
        of the dense fine-tuning from theta0, with this run's seed and level-0 schedule (so the same theta_i as an
        imp trunk with this seed and rewind_step); saved to ``rewind.safetensors`` like the trunk's."""
        if self.cfg.prune.rewind_step == 0 or self.paths.rewind().is_file():
            return self.rewind_state()
        self.load(self.theta0, self.all_keys)
        rewind = self.cfg.prune.rewind_step

        def capture_then_stop(step: int, model) -> bool:
            self.capture_rewind(step, model)
            return step >= rewind

        result = train.fine_tune(self.model, self.data, dataclasses.replace(self.cfg.train, eval_every=None),
                                 seed=self.cfg.seed, on_step=capture_then_stop, desc="rewind point",
                                 schedule_span=self.schedule_span, checkpoint=self.checkpointer(level, "rewind"))
        self.require_rewind_captured(result)
        return self.rewind_state()

    def require_rewind_captured(self, result: dict) -> None:
        """After a level that was to capture theta_i: a one-line error if it ended before step ``rewind_step``."""
        if not self.paths.rewind().is_file():
            raise ConfigError(f"rewind_step {self.cfg.prune.rewind_step} exceeds the {result['steps']} steps of a "
                              "level", param="rewind_step")

    def reinit_state(self) -> State:
        """Base weights freshly initialised by the architecture's own init (seeded; the same for every level)."""
        if self._reinit is None:
            cfg = self.cfg
            fresh = models.build_model(dataclasses.replace(cfg.model, random_init=True), self.task.head,
                                       self.task.num_labels, seed=derived_seed(cfg.seed, "reinit"))
            state = fresh.state_dict()
            self._reinit = {k: state[k].detach().clone() for k in self.base_keys}
        return self._reinit

    def perturbed_state(self, how: str) -> State:
        """theta0's prunable matrices, ``how`` = "shuffled" (entries permuted within each matrix) or "noised"
        (plus Gaussian noise of std ``noise_scale`` x the matrix's std); seeded by the run seed, the same for
        every level (the weight ablations of the paper)."""
        if how not in self._perturbed:
            gen = torch.Generator().manual_seed(derived_seed(self.cfg.seed, "perturb"))
            out = {}
            for k in self.prunable_keys:  # in module order, one draw per matrix
                w = self.theta0[k]
                if how == "shuffled":
                    out[k] = w.reshape(-1)[torch.randperm(w.numel(), generator=gen)].reshape(w.shape)
                else:
                    noise = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.dtype)
                    out[k] = w + noise * (self.cfg.model.noise_scale * w.float().std()).to(w.dtype)
            self._perturbed[how] = out
        return self._perturbed[how]

    # -- training and what a level leaves -----------------------------------------

    @property
    def schedule_span(self) -> int:
        """How many levels' steps the linear LR decay of a level spans (``train.fine_tune``'s ``schedule_span``):
        ``prune.levels + 1`` with ``lr_schedule: across_levels``, else 1."""
        return self.cfg.prune.levels + 1 if self.cfg.train.lr_schedule == "across_levels" else 1

    def train(self, level: int, mask: Mask, on_step=None, *, seed: int | None = None, save: bool = True) -> dict:
        """Fine-tune the model as it is now under ``mask`` (pruned weights zeroed first and kept at 0).

        ``seed`` (default: the run's) sets data order and dropout.  With ``save_weights`` (``save_dense_weights``:
        under the dense mask only) the trained weights are written to :meth:`RunPaths.weights` unless ``save`` is
        False (a second copy of the same level).
        With ``lr_schedule: across_levels`` the level runs the first steps of a linear schedule
        ``prune.levels + 1`` times as long (the reference code's schedule), for every kind alike.
        """
        bound = mask.bind(self.model) if mask.nonzero < mask.numel else None
        if bound is not None:
            bound.apply_()
        seed = self.cfg.seed if seed is None else seed
        if self.cfg.train.train_shrunk and on_step is None and shrinkable(self.model, mask):
            # The pruned units removed, not zeroed: the shrunk model trains, then its weights go back.
            small = shrink(self.model, mask)
            result = train.fine_tune(small, self.data, self.cfg.train, seed=seed, desc=f"level {level}",
                                     schedule_span=self.schedule_span)
            expand_into(self.model, small, mask)
            result["shrunk"] = {"parameters": sum(p.numel() for p in small.parameters()),
                                "parameters_full": sum(p.numel() for p in self.model.parameters())}
        else:
            result = train.fine_tune(self.model, self.data, self.cfg.train, seed=seed, bound_mask=bound,
                                     on_step=on_step, desc=f"level {level}", schedule_span=self.schedule_span,
                                     checkpoint=self.checkpointer(level, "" if seed == self.cfg.seed else f"seed{seed}"))
        if save and (self.cfg.save_weights or (self.cfg.save_dense_weights and bound is None)):
            self.save_state(self.paths.weights(level), self.snapshot(self.all_keys), level)
        return result

    def checkpointer(self, level: int, tag: str = ""):
        """The :class:`~tickets_core.training.checkpoint.Checkpointer` of a fine-tuning inside ``level`` (``tag``
        tells a level's fine-tunings apart), with the run's ``checkpoint_every`` / ``checkpoint_minutes``."""
        from ..training.checkpoint import Checkpointer

        t = self.cfg.train
        return Checkpointer(self.paths.checkpoint(level, tag), every=t.checkpoint_every, minutes=t.checkpoint_minutes,
                            identity={"run": self.cfg.run_name(), "level": level, "tag": tag, "seed": self.cfg.seed})

    def early_stop(self, mask: Mask, level: int) -> EarlyBird | EarlyCut | None:
        """The early-stopping hook of a level trained under ``mask``: :class:`EarlyBird` with ``early_bird_every``
        (it watches the mask of level ``level + 1``, pruned from the live weights as :meth:`leave_next` does),
        :class:`EarlyCut` with ``early_cut_fraction``, else None."""
        p = self.cfg.prune
        if p.early_bird_every is None and p.early_cut_fraction is None:
            return None
        total = train.total_steps(self.data, self.cfg.train)
        min_step = max(p.rewind_step if level == 0 else 0, math.ceil(p.early_bird_min_fraction * total))
        if p.early_cut_fraction is not None:
            return EarlyCut(max(min_step, math.ceil(p.early_cut_fraction * total)), p.early_cut_fraction, total)
        window = p.early_bird_window if p.early_bird_span is None else \
            window_for(p.early_bird_span, p.early_bird_every, total)
        return EarlyBird(lambda: self.prune_trained(mask, level + 1), every=p.early_bird_every,
                         eps=p.early_bird_eps, window=window, min_step=min_step, span=p.early_bird_span,
                         total_steps=total)

    def along_line(self, a: State, b: State, points: int) -> list[dict]:
        """Evaluate the model at ``points`` evenly spaced points of the segment from state ``a`` to ``b``
        (every floating-point tensor interpolated; the rest taken from ``a``): ``[{"alpha", **metrics}]``."""
        from tqdm.auto import tqdm

        keys = [k for k in self.all_keys if a[k].is_floating_point()]
        out = []
        for i in tqdm(range(points), desc="along the line", disable=not self.cfg.train.progress, leave=False):
            alpha = i / (points - 1)
            self.load({k: torch.lerp(a[k], b[k], alpha) for k in keys}, keys)
            out.append({"alpha": alpha, **train.evaluate(self.model, self.data, self.cfg.train)})
        self.load(a, self.all_keys)
        return out

    def leave_next(self, level: int, mask: Mask, carry: list[str] | None = None) -> None:
        """Write what level ``level + 1`` starts from: its mask, pruned from the trained weights, and
        (``carry``) the trained tensors it keeps.  Called before level ``level`` is marked done; nothing is written
        when level ``level + 1`` is done already (a level run again to repair a deleted one keeps what a finished
        level trained with)."""
        if (level + 1) in self.paths.levels(verify=True):
            return
        self.prune_trained(mask, level + 1).save(self.paths.mask(level + 1))
        if carry:
            self.save_state(self.paths.carry(level + 1), self.snapshot(carry), level + 1)

    def metrics(self, level: int, mask: Mask, result: dict, source: dict | None) -> dict:
        ev = result["eval"]
        main = self.task.main_metric
        if main not in ev:
            raise ConfigError(f"evaluation of task {self.task.name!r} did not report its main metric {main!r}")
        return {
            "level": level,
            "sparsity": mask.sparsity,
            "main_metric": main,
            "score": ev[main],
            "eval": ev,
            "train": {k: v for k, v in result.items() if k not in ("eval", "fast_path", "reused_from")},
            "fast_path": result.get("fast_path"),
            "source": source,
            "seed": self.cfg.seed,
            "task": self.task.name,
            "kind": self.cfg.kind,
            **({"mlm_head_warmup": self.head_warmup} if self.head_warmup else {}),
            **({"reused_from": result["reused_from"]} if "reused_from" in result else {}),  # lottery/reuse.py
            **({"units": units} if (units := self.unit_counts(mask)) else {}),
        }

    def unit_counts(self, mask: Mask) -> dict | None:
        """Heads and FFN neurons ``mask`` keeps (:func:`tickets_core.pruning.units.unit_counts`) when it is
        structured (whole units kept or pruned) and pruned, or the run's strategy is structured; else None."""
        if mask.nonzero == mask.numel and not STRATEGY_SPECS.lookup(self.cfg.prune.strategy).structured:
            return None
        try:
            lay = units.layout(self.model)
            fitted = self.fit(mask)
            return units.unit_counts(fitted, lay) if units.is_structured(fitted, lay) else None
        except units.UnitError:
            return None

    def plan_change(self, finished: list[int]) -> str | None:
        """One line when this process would train with another fast-path plan or torch than the ``finished``
        levels recorded (their ``metrics.json`` ``fast_path``; levels from before it was recorded are left out)."""
        from ..training.fastpath import Plan

        now = {"plan": train.plan_for(self.data, self.cfg.train).as_dict(), "torch": torch.__version__}
        other: dict[str, list[int]] = {}
        for k in finished:
            rec = read_json(self.paths.metrics(k)).get("fast_path") or {}
            was = {"plan": rec.get("plan"), "torch": rec.get("torch")}
            if rec.get("plan") and was != now:
                other.setdefault(f"{Plan(**was['plan']).describe()} (torch {was['torch']})", []).append(k)
        if not other:
            return None
        before = "; ".join(f"level{'s' if len(ks) > 1 else ''} {', '.join(map(str, ks))} with {d}"
                           for d, ks in other.items())
        return (f"{self.cfg.run_name()}: finished {before}; the rest now trains with "
                f"{Plan(**now['plan']).describe()} (torch {now['torch']}): its levels mix the two")
