"""The IMP driver: runs every kind of experiment into its run folder, resumably.

Kinds (``RunConfig.kind``), each writing level folders ``level_KK``:

* ``imp`` (the trunk): level 0 fine-tunes the dense model from theta0.  At the
  end of level k the trained weights are pruned with ``cfg.prune`` (strategy,
  schedule) into the mask of level k+1, which is saved at once.  Level k+1
  then rewinds every base-model weight to theta0 (a real copy taken at the
  start), or to theta_i when ``prune.rewind_step = i > 0`` (captured after
  step i of level 0 and saved as ``rewind.safetensors``), resets the head to
  its initial values (unless ``prune.reset_head`` is False: then the trained
  head is carried over in ``carry.safetensors``), and fine-tunes with the
  mask bound, a fresh optimizer and a schedule that decays to zero within
  the level.
* ``dense``: level 0 only.
* ``oneshot``: level k prunes theta0 itself to level k's sparsity
  (``cfg.prune``, starting from the dense mask), then fine-tunes.
* ``standard``: no rewind: level k+1 starts from level k's trained weights
  (head included; saved in ``carry.safetensors``), pruned, and fine-tunes on.
* branches reading a source run's masks (one level per source level, same
  numbers): ``random_prune`` (random mask with the source mask's per-matrix
  sparsities, theta0), ``random_reinit`` (source mask, base weights freshly
  initialised by the model's own init), ``transfer`` (source mask, theta0,
  this run's task; or one mask file from ``mask_path``, written as level 0).

Every level uses the run seed for ``fine_tune``, so a run killed anywhere
and started again with the same config repeats the unfinished level exactly.
Anything a later level needs (its mask, theta_i, carried weights) is written
before the level that produces it is marked done.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from . import models, train
from .config import ConfigError, RunConfig
from .masks import Mask
from .pruning import get_strategy, level_generator, prune, target_sparsity
from .prunable import base_model
from .store import Run, RunPaths, atomic_write_bytes, is_run_dir, read_json

State = dict[str, torch.Tensor]

# random_reinit draws its weights from the run seed shifted by this offset, so
# they differ from a tiny random "pre-trained" model built from the same seed.
REINIT_SEED_OFFSET = 1_000_003


@dataclass
class _Level:
    """One level to run; branches carry the source mask and where it came from."""

    level: int
    source_mask: Mask | None = None
    source: dict | None = None


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def run(cfg: RunConfig) -> Path:
    """Run (or resume) the experiment ``cfg`` and return its run folder.

    Bad input (unknown task or strategy, missing source, a mask that does
    not fit the model) fails before anything is written.  An error during
    the run marks ``status.json`` as failed with the error, then re-raises.
    """
    from tqdm.auto import tqdm

    from .tasks import get_task

    get_strategy(cfg.prune.strategy)
    task = get_task(cfg.data.task)
    plan = _plan(cfg)
    exp = _Experiment(cfg, task)
    for item in plan:
        if item.source_mask is not None:
            item.source_mask = item.source_mask.fitted(exp.model, cfg.model.include_pooler)

    run_ = Run.open(cfg, levels_planned=len(plan))
    exp.run = run_
    try:
        todo = [item for item in plan if not run_.level_done(item.level)]
        with tqdm(total=len(plan), initial=len(plan) - len(todo), desc=cfg.run_name(),
                  disable=not cfg.train.progress, unit="level") as bar:
            for item in todo:
                exp.run_level(item, last=plan[-1].level)
                bar.update(1)
        run_.set_state("done")
    except BaseException as e:
        text = str(e).splitlines()[0] if str(e) else ""
        run_.set_state("failed", error=f"{type(e).__name__}: {text}".rstrip(": "))
        raise
    return run_.root


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------


def _plan(cfg: RunConfig) -> list[_Level]:
    """The levels a run consists of; branches load their source masks here."""
    if cfg.kind == "dense":
        return [_Level(0)]
    if cfg.kind in ("imp", "oneshot", "standard"):
        for k in range(cfg.prune.levels + 1):  # validates every level's sparsity up front
            target_sparsity(k, cfg.prune.schedule, cfg.prune.rate)
        return [_Level(k) for k in range(cfg.prune.levels + 1)]
    if cfg.kind == "transfer" and cfg.mask_path:
        mask = Mask.load(cfg.mask_path)
        return [_Level(0, mask, {"run": None, "task": None, "level": None, "path": str(cfg.mask_path)})]
    return _source_levels(cfg)


def resolve_source(cfg: RunConfig) -> Path:
    """The source run folder of a branch: a path, or a run name under ``output_root``."""
    candidates = [Path(cfg.source_run), Path(cfg.output_root) / cfg.source_run]
    for c in candidates:
        if is_run_dir(c):
            return c
    raise ConfigError(f"source run {cfg.source_run!r} not found (no run folder at {candidates[0]} or {candidates[1]})")


def _source_levels(cfg: RunConfig) -> list[_Level]:
    src = resolve_source(cfg)
    paths = RunPaths(src)
    src_task = read_json(paths.config()).get("data", {}).get("task")
    done = paths.levels()
    levels = cfg.source_levels if cfg.source_levels is not None else done
    if not levels:
        raise ConfigError(f"source run {src} has no finished level")
    out = []
    for k in levels:
        if k not in done:
            raise ConfigError(f"source run {src} has no finished level {k}")
        mask = Mask.load(paths.mask(k)) if paths.mask(k).is_file() else None  # no file: a dense level
        out.append(_Level(k, mask, {"run": src.name, "task": src_task, "level": k}))
    return out


# ---------------------------------------------------------------------------
# One experiment
# ---------------------------------------------------------------------------


class _Experiment:
    """Model, theta0 and data of one run, and the per-kind level logic."""

    def __init__(self, cfg: RunConfig, task) -> None:
        self.cfg, self.task = cfg, task
        self.run: Run | None = None
        self.model = models.build_model(cfg.model, task.head, task.num_labels, seed=cfg.seed)
        # theta0: a real copy (clone), never a view of the live weights.
        self.theta0: State = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        base_ids = {id(t) for t in base_model(self.model).state_dict(keep_vars=True).values()}
        live = self.model.state_dict(keep_vars=True)
        self.base_keys = [k for k, t in live.items() if id(t) in base_ids]
        self.head_keys = [k for k, t in live.items() if id(t) not in base_ids]
        self._data = None
        self._rewind: State | None = None
        self._reinit: State | None = None

    # -- helpers --------------------------------------------------------------

    @property
    def data(self):
        if self._data is None:
            from .tasks import get_task

            tokenizer = models.load_tokenizer(self.cfg.model)
            self._data = get_task(self.cfg.data.task).load(self.cfg.data, tokenizer)
        return self._data

    @property
    def paths(self) -> RunPaths:
        return self.run.paths

    def dense_mask(self) -> Mask:
        return Mask.ones_like(self.model, self.cfg.model.include_pooler)

    def copy_in(self, state: State, keys: list[str]) -> None:
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

    def load_state(self, path: Path, level: int | None = None) -> State:
        if not path.is_file():
            raise ConfigError(f"{path} is missing (an earlier level writes it); delete {self.run.root} to start the run again")
        data = path.read_bytes()
        if level is not None:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                saved = (f.metadata() or {}).get("level")
            if saved != str(level):
                raise ConfigError(f"{path} holds the state for level {saved}, not level {level}")
        return st_load(data)

    def rewind_state(self) -> State:
        """theta_i for ``rewind_step = i > 0``, else theta0."""
        if self.cfg.prune.rewind_step == 0:
            return self.theta0
        if self._rewind is None:
            self._rewind = self.load_state(self.paths.rewind())
        return self._rewind

    def fine_tune(self, level: int, mask: Mask, on_step=None) -> dict:
        bound = mask.bind(self.model) if mask.nonzero < mask.numel else None
        if bound is not None:
            bound.apply_()
        return train.fine_tune(self.model, self.data, self.cfg.train, seed=self.cfg.seed, bound_mask=bound,
                               on_step=on_step, desc=f"level {level}")

    # -- levels -----------------------------------------------------------------

    def run_level(self, item: _Level, last: int) -> None:
        cfg, k = self.cfg, item.level
        kind = cfg.kind
        on_step = None
        if kind in ("imp", "standard", "dense", "oneshot") and k == 0:
            mask = self.dense_mask()
            self.copy_in(self.theta0, self.base_keys + self.head_keys)
            if kind == "imp" and cfg.prune.rewind_step > 0:
                on_step = self._capture_rewind
        elif kind == "imp":
            mask = Mask.load(self.paths.mask(k)).fitted(self.model, cfg.model.include_pooler)
            self.copy_in(self.rewind_state(), self.base_keys)
            if cfg.prune.reset_head:
                self.copy_in(self.theta0, self.head_keys)
            else:
                self.copy_in(self.load_state(self.paths.carry(), level=k), self.head_keys)
        elif kind == "standard":
            mask = Mask.load(self.paths.mask(k)).fitted(self.model, cfg.model.include_pooler)
            self.copy_in(self.load_state(self.paths.carry(), level=k), self.base_keys + self.head_keys)
        elif kind == "oneshot":
            self.copy_in(self.theta0, self.base_keys + self.head_keys)
            mask = prune(self.model, self.dense_mask(), cfg.prune, k, cfg.seed)
        elif kind == "random_prune":
            template = item.source_mask or self.dense_mask()
            # A random strategy reads only the shapes of the weights it is given.
            dense = Mask({n: torch.ones_like(v) for n, v in template.items()})
            mask = get_strategy("random_layerwise")(dict(template), dense, 0.0,
                                                    generator=level_generator(cfg.seed, k),
                                                    layer_sparsities=template.layer_sparsities())
            self.copy_in(self.theta0, self.base_keys + self.head_keys)
        elif kind == "random_reinit":
            mask = item.source_mask or self.dense_mask()
            self.copy_in(self.theta0, self.head_keys)
            self.copy_in(self.reinit_state(), self.base_keys)
        elif kind == "transfer":
            mask = item.source_mask or self.dense_mask()
            self.copy_in(self.theta0, self.base_keys + self.head_keys)
        else:  # pragma: no cover - RunConfig validates kinds
            raise ConfigError(f"unknown run kind {kind!r}")

        result = self.fine_tune(k, mask, on_step)
        if kind == "imp" and k == 0 and cfg.prune.rewind_step > 0 and not self.paths.rewind().is_file():
            raise ConfigError(f"prune.rewind_step {cfg.prune.rewind_step} exceeds the {result['steps']} steps of level 0")

        if kind in ("imp", "standard") and k < last:
            # Everything level k+1 needs is saved before level k counts as done.
            nxt = prune(self.model, mask, cfg.prune, k + 1, cfg.seed)
            nxt.save(self.paths.mask(k + 1))
            if kind == "standard":
                self.save_state(self.paths.carry(), self.snapshot(self.base_keys + self.head_keys), k + 1)
            elif not cfg.prune.reset_head:
                self.save_state(self.paths.carry(), self.snapshot(self.head_keys), k + 1)
        self.run.write_level(k, mask, self.metrics(k, mask, result, item.source))

    def _capture_rewind(self, step: int, model) -> None:
        if step == self.cfg.prune.rewind_step:
            self._rewind = self.snapshot(self.base_keys)
            self.save_state(self.paths.rewind(), self._rewind, 0)

    def reinit_state(self) -> State:
        """Base weights freshly initialised by the architecture's own init (seeded; the same for every level)."""
        if self._reinit is None:
            cfg = self.cfg
            fresh = models.build_model(dataclasses.replace(cfg.model, random_init=True), self.task.head,
                                       self.task.num_labels, seed=cfg.seed + REINIT_SEED_OFFSET)
            state = fresh.state_dict()
            self._reinit = {k: state[k].detach().clone() for k in self.base_keys}
        return self._reinit

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
            "train": {k: v for k, v in result.items() if k != "eval"},
            "source": source,
            "seed": self.cfg.seed,
            "task": self.task.name,
            "kind": self.cfg.kind,
        }
