"""The driver: runs any kind of experiment into its run folder, resumably.

``run(cfg)`` resolves the config (:mod:`tickets_core.lottery.identity`), plans the
levels from the kind's registry entry (:mod:`tickets_core.core.kinds`: the
schedule's levels, level 0 alone, or one level per source level), opens the
run folder (:mod:`tickets_core.runs.store`) and runs every unfinished level with
the kind's level function (:mod:`tickets_core.lottery.levels`).  The semantics of
each kind are documented in those two modules and in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from pathlib import Path

from ..core.config import RunConfig
from ..core.errors import ConfigError, RunStoreError, first_line
from .experiment import Experiment, Level, finished_level_mask
from ..core.fsio import read_json
from .identity import resolve
from ..core.kinds import RunKind, get_kind
from .levels import LEVEL_FUNCTIONS
from ..core.locks import Lock, describe, say
from ..pruning.masks import Mask
from ..runs.plan import find_source, level_numbers, source_candidates
from ..runs.paths import RunPaths, whole_safetensors
from ..runs.store import Run
from ..tasks import get_task
from ..training.checkpoint import WalltimeReached, clear_request, install_walltime_handler, stop_requested
from ..training.tracking import Trackers


def run(cfg: RunConfig) -> Path:
    """Run (or resume) the experiment ``cfg`` and return its run folder.

    Bad input (unknown task or strategy, missing source, a mask that does
    not fit the model) fails before anything is written.  The run holds its
    folder's writer lock (``run.lock``, :mod:`tickets_core.core.locks`) while it
    writes: a second process running the same config waits for it, then
    finds the finished levels done.  An error during the run marks
    ``status.json`` as failed (``interrupted`` for Ctrl-C) with the error,
    then re-raises.
    """
    from tqdm.auto import tqdm

    cfg = cfg if cfg.resolved else resolve(cfg)
    kind = get_kind(cfg.kind)
    level_fn = LEVEL_FUNCTIONS[kind.name]
    plan = plan_levels(cfg, kind)
    exp = Experiment(cfg, get_task(cfg.data.task))
    if kind.is_branch:  # source masks fitted to this run's model; a dense source level gives the dense mask
        for item in plan:
            item.source_mask = exp.dense_mask() if item.source_mask is None else exp.fit(item.source_mask)

    install_walltime_handler()  # SIGUSR1 (SLURM's --signal): checkpoint at the end of the step, then stop
    # Only one process writes a run folder at a time: another one waits here, saying for whom.
    root = Run.check(cfg).root
    done = RunPaths(root).levels(verify=True)
    announce(exp, kind, [item.level for item in plan if item.level not in done])
    with Lock(RunPaths(root).run_lock(), "writing the run").acquire(
            on_wait=lambda h: say(f"{root.name}: waiting for {describe(h)}, which is writing it")) as lock:
        if lock.previous:
            say(f"{root.name}: taking over from {describe(lock.previous)}, which stopped without releasing it")
        run_ = exp.run = Run.open(cfg, levels_planned=len(plan))
        try:
            redo = levels_to_run(exp, kind, [item.level for item in plan])
            todo = [item for item in plan if item.level in redo]
            finished = [item.level for item in plan if item.level not in redo]
            if todo and finished and (note := exp.plan_change(finished)):
                say(note)  # a resumed run whose fast path (or torch) changed says so in one line
            with tqdm(total=len(plan), initial=len(plan) - len(todo), desc=cfg.run_name(),
                      disable=not cfg.train.progress, unit="level") as bar, \
                    Trackers(cfg.report_to, run_.root, cfg.run_name(), cfg.flat()) as trackers:
                for item in todo:
                    trackers.start_level(item.level)
                    mask, result = level_fn(exp, item)
                    metrics = exp.metrics(item.level, mask, result, item.source)
                    run_.write_level(item.level, mask, metrics)
                    trackers.end_level(item.level, metrics)
                    bar.write(f"level {item.level}: sparsity {metrics['sparsity']:.1%}, {metrics['main_metric']} "
                              f"{metrics['score']:.4f} ({result.get('time_s', 0.0):.0f} s)")
                    bar.update(1)
                    if stop_requested() and item is not todo[-1]:  # the signal came after the level's last step
                        clear_request()
                        raise WalltimeReached(None)
            run_.set_state("done")
        except BaseException as e:
            state = "interrupted" if isinstance(e, (KeyboardInterrupt, WalltimeReached)) else "failed"
            try:
                run_.set_state(state, error=f"{type(e).__name__}: {first_line(e)}".rstrip(": "))
            except (OSError, KeyboardInterrupt):  # e.g. the disk is full: readers rebuild the state from the levels
                pass
            raise
    return run_.root


def levels_to_run(exp: Experiment, kind: RunKind, planned: list[int]) -> set[int]:
    """The planned levels that are not done (:meth:`RunPaths.levels`: deleted or damaged ones included) and, for
    a kind whose levels leave the next one what it starts from (imp, standard), the level before one of them
    whose inputs (its mask, carry file, theta_i) are missing or damaged: it is run again to write them."""
    paths, done = exp.paths, set(exp.paths.levels(verify=True))
    todo = {k for k in planned if k not in done}
    if not kind.leaves:
        return todo
    cfg = exp.cfg
    carry = kind.name == "standard" or not cfg.prune.reset_head
    for k in sorted(todo, reverse=True):
        while k > 0 and k - 1 in planned:
            if all(whole_safetensors(p) for p in [paths.mask(k)] + ([paths.carry(k)] if carry else [])):
                break
            todo.add(k - 1)
            k -= 1
    if kind.name == "imp" and cfg.prune.rewind_step > 0 and any(k > 0 for k in todo) and 0 in planned \
            and not whole_safetensors(paths.rewind()):
        todo.add(0)  # theta_i is captured during level 0
    return todo


def announce(exp: Experiment, kind: RunKind, todo: list[int]) -> None:
    """Print the plan line (the levels still to run and their estimated time on this device,
    :mod:`tickets_core.training.estimate`); on a CPU, a run estimated over ``max_cpu_hours`` stops here with that
    line, before anything is written."""
    if not todo:
        return
    from ..training.estimate import estimate

    cfg = exp.cfg
    est = estimate(exp.model, exp.data, cfg.train, levels=len(todo), copies=kind.copies,
                   line_points=cfg.stability_points if kind.line_points else 0, seed=cfg.seed)
    line = est.line(cfg.run_name())
    if est.device.startswith("cpu") and cfg.max_cpu_hours is not None and est.total_s > 3600 * cfg.max_cpu_hours:
        quick = " or preset to 'quick' (a demo-sized budget)" if cfg.preset != "quick" else ""
        raise ConfigError(f"{line}; stopped: over max_cpu_hours ({cfg.max_cpu_hours:g} h on a CPU): set "
                          f"max_cpu_hours to None (null in YAML) to run it anyway{quick}", param="max_cpu_hours")
    print(line, flush=True)


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------


def plan_levels(cfg: RunConfig, kind: RunKind) -> list[Level]:
    """The levels a run consists of (:func:`tickets_core.runs.plan.level_numbers`); a branch's levels carry their
    source masks."""
    if not kind.is_branch:
        items = [Level(k) for k in level_numbers(cfg)]
    elif cfg.mask_path:
        mask = Mask.load(cfg.mask_path)
        items = [Level(0, source_mask=mask, source={"run": None, "task": None, "level": None,
                                                      "path": str(cfg.mask_path)})]
    else:
        items = source_levels(cfg)
    items[-1].last = True
    return items


def resolve_source(cfg: RunConfig) -> Path:
    """A branch's source run folder (:func:`tickets_core.runs.plan.find_source`); a one-line error when missing."""
    found = find_source(cfg)
    if found is None:
        raise ConfigError(f"source run {cfg.source_run!r} not found (no run folder "
                          f"{' or '.join(map(str, source_candidates(cfg)))})", param="source_run")
    return found


def source_levels(cfg: RunConfig) -> list[Level]:
    """One level per requested source level, with the mask that level trained with.

    A source level that was pruned (its metrics say sparsity > 0) must have
    its mask file; a dense one has none and gives the dense mask.  A retrain
    must be on its source's task (else it is a transfer).
    """
    src = resolve_source(cfg)
    paths = RunPaths(src)
    src_task = read_json(paths.config()).get("data", {}).get("task")
    if cfg.kind == "retrain" and src_task != cfg.data.task:
        raise ConfigError(f"retrain fine-tunes a mask on its source's task ({src_task!r}), not {cfg.data.task!r}; "
                          "that is a transfer", param="task")
    done = paths.levels()
    levels = level_numbers(cfg)
    if not levels:
        raise ConfigError(f"source run {src} has no finished level", param="source_levels")
    out = []
    for k in levels:
        if k not in done and paths.metrics(k).is_file():  # finished once, but damaged since
            finished_level_mask(paths, k)  # a pruned level's missing mask: that one line
            raise RunStoreError(f"{paths.level_dir(k)} is damaged (its metrics.json unreadable or its mask cut "
                                f"short): run the source run {src.name} again (the same command) to redo it")
        if k not in done:
            raise ConfigError(f"source run {src} has no finished level {k}", param="source_levels")
        mask = finished_level_mask(paths, k)  # None: a dense source level; fitted to this run's model in run()
        out.append(Level(k, source_mask=mask, source={"run": src.name, "task": src_task, "level": k}))
    return out
