"""Sweeps: a YAML grid of runs, executed as papermill notebooks on a concurrent.futures executor.

Usage::

    python -m tickets_core.sweep FILE [--workers N] [--dry-run] [--only PATTERN]
                                      [--gpus 0,1] [--executor process|dask] [--scheduler ADDRESS]

(also installed as the ``tickets-sweep`` command).

Sweep file
----------
::

    output_root: runs            # run folders; relative paths are relative to the current directory
    figures_dir: figures         # where the analysis notebooks write figures
    notebooks_dir: notebooks     # optional; default: this checkout's notebooks/
    data_dirs:                   # optional: local data folder per task (sets data_dir)
      sst2: data/glue/SST-2
    defaults:                    # parameters of every run
      model: minilm
      max_train_samples: 2000
    trunks:                      # each entry: tasks x seeds runs of notebooks/imp.ipynb
      - name: imp                # what branches/transfers call it (default: its kind)
        kind: imp                # imp | dense | oneshot | standard
        tasks: [rotten_tomatoes, tweet_sentiment]
        seeds: [0, 1, 2]
        levels: 5                # any parameter, overriding defaults
    branches:                    # notebooks/baselines.ipynb, from a trunk's run folders
      - kinds: [random_prune, random_reinit]
        trunk: imp               # a trunk entry's name, or a mapping of parameters
                                 #   describing a trunk run already on disk
        tasks: [rotten_tomatoes] # default: the trunk's tasks
        seeds: [0]               # default: the trunk's seeds
        trunk_seed: 0            # trunk seed to branch from (default: the branch's seed)
        source_levels: [2, 4]    # default: every level of the trunk
    transfers:                   # notebooks/transfer.ipynb: source task's mask -> target task
      - trunk: imp
        sources: [rotten_tomatoes]   # default: the trunk's tasks
        targets: [tweet_sentiment]
        seeds: [0]
        source_levels: [3]
      - mask_path: masks/mlm_level5.safetensors   # or one mask file (no trunk, no sources)
        targets: [rotten_tomatoes]
        seeds: [0]
    analysis:                    # run last, on everything under output_root
      - sparsity_curves
      - notebook: mask_overlap
        sparsity: 0.5

A run's parameters are ``defaults``, then (for branches and transfers) the
trunk entry's own parameters, then the entry's.  Parameter names are those of
the notebook's ``parameters`` cell, or any RunConfig field by its flat name
(``warmup_ratio``, ``train__weight_decay``), passed through the notebook's
``extra`` dict.  ``task``, ``seed``, ``kind``, ``source_run`` and
``output_root`` are set by the sweep.  A transfer whose source and target are
the same task is skipped (that is the IMP run itself).

What the runner does
--------------------
Every run's folder name is known before it runs (``RunConfig.run_name()``),
so: runs whose ``status.json`` says ``done`` are skipped (a killed sweep
resumes by running the same command; a half-done run resumes inside
``imp.run``); each executed notebook is written to ``<run_dir>/notebook.ipynb``
(analysis notebooks to ``<output_root>/_analysis/``); branches and transfers
start when their trunk run has finished and are skipped when it failed;
analysis notebooks start after every run has ended.  Failures do not stop the
sweep; they are listed at the end, one line each, and the exit status is 1.

Executors: ``--workers N`` local processes (``ProcessPoolExecutor``), each
pinned to one GPU through ``CUDA_VISIBLE_DEVICES`` when GPUs exist (``--gpus``
to choose them); or ``--executor dask --scheduler ADDRESS`` to hand the
notebooks to an existing Dask cluster (``dask.distributed``, imported only
then; give each Dask worker its GPU, e.g. with dask-cuda, and put the
notebooks, ``output_root`` and the data on a file system every worker sees).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import fnmatch
import itertools
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from .config import (BRANCH_KINDS, ConfigError, DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig)
from .notebook_utils import EXTRA, config_from_params, notebook_parameters

TRUNK_KINDS = ("imp", "dense", "oneshot", "standard")
NOTEBOOK_OF_KIND = {**{k: "imp" for k in TRUNK_KINDS}, "random_prune": "baselines", "random_reinit": "baselines",
                    "transfer": "transfer"}
TOP_KEYS = ("output_root", "figures_dir", "notebooks_dir", "data_dirs", "defaults", "trunks", "branches",
            "transfers", "analysis")
ENTRY_KEYS = {
    "trunks": ("name", "kind", "tasks", "seeds"),
    "branches": ("kinds", "trunk", "tasks", "seeds", "trunk_seed"),
    "transfers": ("trunk", "sources", "targets", "seeds", "trunk_seed"),
    "analysis": ("notebook", "name"),
}
SET_BY_SWEEP = ("task", "seed", "kind", "source_run", "output_root", "runs_root", "figures_dir")
PATH_PARAMS = ("data_dir", "cache_dir", "mask_path", "data__data_dir", "data__cache_dir")
ANALYSIS_DIR = "_analysis"


class SweepError(ValueError):
    """The sweep file is invalid (one line, naming file and line)."""


# ---------------------------------------------------------------------------
# Loading YAML with line numbers
# ---------------------------------------------------------------------------


def load_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse ``path``; returns the data and the 1-based line of every key / list item by path.

    Duplicate keys are an error (plain YAML loaders keep the last silently).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SweepError(f"{path}: cannot read sweep file ({e.strerror})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SweepError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}

    def walk(n: yaml.Node, at: tuple) -> None:
        lines.setdefault(at, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            seen: set = set()
            for k, v in n.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
                if key in seen:
                    raise SweepError(f"{path}:{k.start_mark.line + 1}: duplicate key {key!r}")
                seen.add(key)
                lines[at + (key,)] = k.start_mark.line + 1
                walk(v, at + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, at + (i,))

    if node is not None:
        walk(node, ())
    return data, lines


# ---------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------


@dataclass
class Job:
    """One papermill execution."""

    name: str                      # run folder name, or "analysis:<name>"
    label: str                     # human-readable: "imp rotten_tomatoes seed 0"
    notebook: Path
    output: Path                   # executed notebook
    parameters: dict
    deps: list[str] = field(default_factory=list)    # jobs that must succeed first
    after_all: bool = False        # analysis: start after every run job has ended
    run_dir: Path | None = None
    line: int = 0

    @property
    def is_run(self) -> bool:
        return self.run_dir is not None


@dataclass
class Plan:
    """An expanded, validated sweep."""

    jobs: list[Job]
    output_root: Path
    figures_dir: Path
    notebooks_dir: Path

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs if j.name == name)


def run_state(run_dir: Path | None) -> str | None:
    """``state`` of a run folder's status.json (None when it has none)."""
    if run_dir is None:
        return None
    try:
        return json.loads((run_dir / "status.json").read_text()).get("state")
    except (OSError, ValueError):
        return None


def run_progress(run_dir: Path | None) -> str:
    """``levels done/planned`` of a running run folder, from its status.json ("starting" before it has one)."""
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError, TypeError):
        return "starting"
    done, planned = len(status.get("levels_done") or []), status.get("levels_planned")
    return f"{done}/{planned} levels" if planned else f"{done} levels"


def _flat_defaults() -> dict[str, Any]:
    """Every name RunConfig.from_flat accepts, with its default value."""
    from dataclasses import fields

    run = RunConfig()
    out = {f.name: getattr(run, f.name) for f in fields(RunConfig) if f.name not in ("model", "data", "train", "prune")}
    for sec, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig), ("prune", PruneConfig)):
        for f in fields(cls):
            default = getattr(getattr(run, sec), f.name)
            out.update({f.name: default, f"{sec}__{f.name}": default, f"{sec}.{f.name}": default})
    return out


def _default_notebooks_dir() -> Path:
    repo = Path(__file__).resolve().parent.parent / "notebooks"
    return repo if repo.is_dir() else Path.cwd() / "notebooks"


def _known_tasks() -> set[str] | None:
    try:
        from .tasks import TASKS
    except ImportError:  # task registry not available: the notebooks will check
        return None
    return set(TASKS)


class _Builder:
    """Expands and validates one sweep file (one instance per file)."""

    def __init__(self, path: Path, data: Any, lines: dict[tuple, int], notebooks_dir: Path | None) -> None:
        self.path, self.data, self.lines = path, data, lines
        self.flat_defaults = _flat_defaults()
        self.tasks = _known_tasks()
        self._nb_params: dict[str, dict] = {}
        self.jobs: dict[str, Job] = {}
        self.notebooks_dir_override = notebooks_dir

    # -- errors ---------------------------------------------------------------

    def line(self, at: tuple) -> int:
        while at and at not in self.lines:
            at = at[:-1]
        return self.lines.get(at, 1)

    def error(self, at: tuple, msg: str) -> SweepError:
        return SweepError(f"{self.path}:{self.line(at)}: {msg}")

    # -- small readers ---------------------------------------------------------

    def mapping(self, value: Any, at: tuple, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(at, f"{what} must be a mapping, got {type(value).__name__}")
        return value

    def listing(self, value: Any, at: tuple, what: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(at, f"{what} must be a list, got {type(value).__name__}")
        return value

    def names(self, value: Any, at: tuple, what: str, *, check_tasks: bool = False) -> list:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(at, f"{what} is empty")
        for i, item in enumerate(items):
            where = at + (i,) if isinstance(value, list) else at
            if what.startswith("seed"):
                if not isinstance(item, int) or isinstance(item, bool):
                    raise self.error(where, f"{what} must be integers, got {item!r}")
            elif not isinstance(item, str):
                raise self.error(where, f"{what} must be names, got {item!r}")
            if check_tasks and self.tasks is not None and item not in self.tasks:
                raise self.error(where, f"unknown task {item!r}; known tasks: {', '.join(sorted(self.tasks))}")
        return items

    def path_value(self, value: Any, at: tuple, what: str) -> Path:
        if not isinstance(value, str) or not value:
            raise self.error(at, f"{what} must be a path")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (Path.cwd() / p).resolve()

    # -- notebooks ---------------------------------------------------------------

    def notebook(self, name: str, at: tuple) -> tuple[Path, dict]:
        path = self.notebooks_dir / f"{name}.ipynb"
        if name not in self._nb_params:
            if not path.is_file():
                raise self.error(at, f"no notebook {path}")
            try:
                self._nb_params[name] = notebook_parameters(path)
            except ConfigError as e:
                raise self.error(at, str(e)) from None
        return path, self._nb_params[name]

    def check_params(self, params: dict, at: tuple, nb_params: dict, *, allow_flat: bool) -> None:
        for key in params:
            if key in SET_BY_SWEEP:
                raise self.error(at + (key,), f"{key!r} is set by the sweep; remove it here")
            if key == EXTRA or not (key in nb_params or (allow_flat and key in self.flat_defaults)):
                raise self.error(at + (key,), f"unknown key {key!r}")
        self.check_types(params, at, nb_params)

    def check_types(self, params: dict, at: tuple, nb_params: dict) -> None:
        """A value of the wrong type (``levels: two``) fails at its own line, before any config is built."""
        for key, value in params.items():
            default = nb_params.get(key, self.flat_defaults.get(key))
            if default is None or value is None:
                continue
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise self.error(at + (key,), f"{key!r} must be {type(default).__name__}, got {value!r}")

    def split_params(self, params: dict, nb_params: dict) -> dict:
        """Notebook parameters as given; everything else goes into ``extra``."""
        out = {k: v for k, v in params.items() if k in nb_params}
        extra = {k: v for k, v in params.items() if k not in nb_params}
        if extra:
            out[EXTRA] = extra
        return out

    def resolve_paths(self, params: dict, at: tuple) -> dict:
        out = dict(params)
        for key in PATH_PARAMS:
            if out.get(key) is not None:
                out[key] = str(self.path_value(out[key], at + (key,), key))
        return out

    # -- the whole file ------------------------------------------------------------

    def build(self) -> Plan:
        top = self.mapping(self.data, (), "the sweep file")
        for key in top:
            if key not in TOP_KEYS:
                raise self.error((key,), f"unknown key {key!r}; expected one of {', '.join(TOP_KEYS)}")
        self.output_root = self.path_value(top.get("output_root", "runs"), ("output_root",), "output_root")
        self.figures_dir = self.path_value(top.get("figures_dir", "figures"), ("figures_dir",), "figures_dir")
        nb_dir = top.get("notebooks_dir")
        self.notebooks_dir = (self.notebooks_dir_override or
                              (self.path_value(nb_dir, ("notebooks_dir",), "notebooks_dir") if nb_dir
                               else _default_notebooks_dir()))
        self.data_dirs = {k: str(self.path_value(v, ("data_dirs", k), f"data_dirs.{k}"))
                          for k, v in self.mapping(top.get("data_dirs"), ("data_dirs",), "data_dirs").items()}
        if self.data_dirs:
            self.names(list(self.data_dirs), ("data_dirs",), "data_dirs tasks", check_tasks=True)
        self.defaults = self.mapping(top.get("defaults"), ("defaults",), "defaults")
        _, imp_params = self.notebook("imp", ("defaults",))
        self.check_params(self.defaults, ("defaults",), imp_params, allow_flat=True)

        self.trunks: dict[str, dict] = {}
        for i, entry in enumerate(self.listing(top.get("trunks"), ("trunks",), "trunks")):
            self.add_trunks(self.mapping(entry, ("trunks", i), "a trunk entry"), ("trunks", i))
        for i, entry in enumerate(self.listing(top.get("branches"), ("branches",), "branches")):
            self.add_branches(self.mapping(entry, ("branches", i), "a branch entry"), ("branches", i))
        for i, entry in enumerate(self.listing(top.get("transfers"), ("transfers",), "transfers")):
            self.add_transfers(self.mapping(entry, ("transfers", i), "a transfer entry"), ("transfers", i))
        for i, entry in enumerate(self.listing(top.get("analysis"), ("analysis",), "analysis")):
            self.add_analysis(entry, ("analysis", i))
        if not self.jobs:
            raise self.error((), "the sweep defines no runs and no analysis")
        return Plan(list(self.jobs.values()), self.output_root, self.figures_dir, self.notebooks_dir)

    def entry_params(self, entry: dict, section: str) -> dict:
        return {k: v for k, v in entry.items() if k not in ENTRY_KEYS[section]}

    def add_run(self, kind: str, task: str, seed: int, params: dict, at: tuple, *, source_run: Path | None = None,
                deps: Iterable[str] = (), label: str) -> Job:
        nb_name = NOTEBOOK_OF_KIND[kind]
        nb_path, nb_params = self.notebook(nb_name, at)
        full = {"progress": False} if "progress" in nb_params else {}
        if task in self.data_dirs:
            full["data_dir"] = self.data_dirs[task]
        full.update(self.resolve_paths(params, at))
        full.update(kind=kind, task=task, seed=seed, output_root=str(self.output_root))
        if source_run is not None:
            full["source_run"] = str(source_run)
        given = self.split_params(full, nb_params)
        # The config exactly as the notebook builds it: its defaults, then what the sweep passes.
        try:
            cfg = config_from_params({**nb_params, **given})
        except (ConfigError, TypeError, ValueError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            key = next((k for k in params if re.search(rf"\b{re.escape(k)}\b", msg)), None)
            raise self.error(at + (key,) if key else at, f"{label}: {msg}") from None
        name = cfg.run_name()
        if name in self.jobs:  # the same run listed twice: keep one
            return self.jobs[name]
        run_dir = self.output_root / name
        job = Job(name=name, label=label, notebook=nb_path, output=run_dir / "notebook.ipynb", parameters=given,
                  deps=list(deps), run_dir=run_dir, line=self.line(at))
        self.jobs[name] = job
        return job

    def add_trunks(self, entry: dict, at: tuple) -> None:
        kind = entry.get("kind", "imp")
        if kind not in TRUNK_KINDS:
            raise self.error(at + ("kind",), f"trunk kind must be one of {', '.join(TRUNK_KINDS)}, got {kind!r}")
        name = entry.get("name", kind)
        if not isinstance(name, str):
            raise self.error(at + ("name",), "name must be a string")
        if name in self.trunks:
            raise self.error(at + ("name",), f"two trunk entries are called {name!r}; give them distinct names")
        for key in ("tasks", "seeds"):
            if key not in entry:
                raise self.error(at, f"a trunk entry needs {key!r}")
        tasks = self.names(entry["tasks"], at + ("tasks",), "tasks", check_tasks=True)
        seeds = self.names(entry["seeds"], at + ("seeds",), "seeds")
        params = self.entry_params(entry, "trunks")
        _, nb_params = self.notebook("imp", at)
        self.check_params(params, at, nb_params, allow_flat=True)
        merged = {**self.defaults, **params}
        self.trunks[name] = {"kind": kind, "tasks": tasks, "seeds": seeds, "params": merged, "at": at}
        for task, seed in itertools.product(tasks, seeds):
            self.add_run(kind, task, seed, merged, at, label=f"{kind} {task} seed {seed}")

    def trunk_of(self, entry: dict, at: tuple) -> dict:
        """The trunk an entry branches from: a trunk entry, or an on-disk trunk described inline."""
        ref = entry.get("trunk")
        if ref is None:
            imps = [t for t in self.trunks.values() if t["kind"] == "imp"]
            if len(imps) != 1:
                raise self.error(at, "say which trunk to branch from ('trunk: <name>'); "
                                     f"trunk entries: {', '.join(self.trunks) or 'none'}")
            return imps[0]
        if isinstance(ref, str):
            if ref not in self.trunks:
                raise self.error(at + ("trunk",), f"unknown trunk {ref!r}; trunk entries in this file: "
                                                  f"{', '.join(self.trunks) or 'none'}")
            return self.trunks[ref]
        ref = self.mapping(ref, at + ("trunk",), "trunk")
        kind = ref.get("kind", "imp")
        if kind not in TRUNK_KINDS:
            raise self.error(at + ("trunk", "kind"), f"trunk kind must be one of {', '.join(TRUNK_KINDS)}")
        params = {k: v for k, v in ref.items() if k != "kind"}
        _, nb_params = self.notebook("imp", at)
        self.check_params(params, at + ("trunk",), nb_params, allow_flat=True)
        return {"kind": kind, "tasks": None, "seeds": None, "params": {**self.defaults, **params}, "at": at}

    def trunk_run(self, trunk: dict, task: str, seed: int, at: tuple, who: str) -> tuple[Path, list[str]]:
        """Folder of the trunk run for (task, seed) and the job it depends on (none if already done)."""
        nb_path, nb_params = self.notebook("imp", at)
        full = {"progress": False} if "progress" in nb_params else {}
        if task in self.data_dirs:
            full["data_dir"] = self.data_dirs[task]
        full.update(self.resolve_paths(trunk["params"], at))
        full.update(kind=trunk["kind"], task=task, seed=seed, output_root=str(self.output_root))
        try:
            name = config_from_params({**nb_params, **self.split_params(full, nb_params)}).run_name()
        except (ConfigError, TypeError, ValueError) as e:
            raise self.error(at + ("trunk",), f"{who}: trunk config: {str(e).splitlines()[0]}") from None
        run_dir = self.output_root / name
        if name in self.jobs:
            return run_dir, ([] if run_state(run_dir) == "done" else [name])
        state = run_state(run_dir)
        if state == "done":
            return run_dir, []
        where = "is on disk but not finished" if state else "is neither in this sweep nor on disk"
        raise self.error(at, f"{who}: its trunk run {name} ({trunk['kind']} {task} seed {seed}) {where} "
                             f"under {self.output_root}")

    def tasks_or_trunks(self, entry: dict, key: str, trunk: dict, at: tuple) -> list[str]:
        """The entry's task list under ``key`` (validated), else its trunk's tasks."""
        if key in entry:
            return self.names(entry[key], at + (key,), key, check_tasks=True)
        if trunk["tasks"] is not None:
            return trunk["tasks"]
        raise self.error(at, f"give '{key}' (the trunk is not in this file)")

    def branch_params(self, entry: dict, section: str, notebook: str, trunk: dict, at: tuple) -> dict:
        """The trunk's parameters overridden by the entry's own (checked against ``notebook``'s)."""
        params = self.entry_params(entry, section)
        _, nb_params = self.notebook(notebook, at)
        self.check_params(params, at, nb_params, allow_flat=True)
        return {**trunk["params"], **params}

    def branch_seeds(self, entry: dict, trunk: dict, at: tuple) -> tuple[list[int], Any]:
        if "seeds" in entry:
            seeds = self.names(entry["seeds"], at + ("seeds",), "seeds")
        elif trunk["seeds"] is not None:
            seeds = trunk["seeds"]
        else:
            raise self.error(at, "give 'seeds' (the trunk is not in this file)")
        trunk_seed = entry.get("trunk_seed")
        if trunk_seed is not None:
            self.names(trunk_seed, at + ("trunk_seed",), "seeds")
        return seeds, trunk_seed

    def add_branches(self, entry: dict, at: tuple) -> None:
        if "kinds" not in entry:
            raise self.error(at, f"a branch entry needs 'kinds' (any of {', '.join(k for k in BRANCH_KINDS if k != 'transfer')})")
        kinds = self.names(entry["kinds"], at + ("kinds",), "kinds")
        for i, kind in enumerate(kinds):
            if kind not in ("random_prune", "random_reinit"):
                raise self.error(at + ("kinds",), f"branch kind must be random_prune or random_reinit, got {kind!r}"
                                 + (" (transfers have their own section)" if kind == "transfer" else ""))
        trunk = self.trunk_of(entry, at)
        tasks = self.tasks_or_trunks(entry, "tasks", trunk, at)
        seeds, trunk_seed = self.branch_seeds(entry, trunk, at)
        merged = self.branch_params(entry, "branches", "baselines", trunk, at)
        for kind, task, seed in itertools.product(kinds, tasks, seeds):
            label = f"{kind} {task} seed {seed}"
            src, deps = self.trunk_run(trunk, task, seed if trunk_seed is None else trunk_seed, at, label)
            self.add_run(kind, task, seed, merged, at, source_run=src, deps=deps, label=label)

    def add_transfers(self, entry: dict, at: tuple) -> None:
        if "targets" not in entry:
            raise self.error(at, "a transfer entry needs 'targets'")
        targets = self.names(entry["targets"], at + ("targets",), "targets", check_tasks=True)
        if "mask_path" in entry and "trunk" not in entry:
            self.add_mask_transfers(entry, targets, at)
            return
        trunk = self.trunk_of(entry, at)
        sources = self.tasks_or_trunks(entry, "sources", trunk, at)
        seeds, trunk_seed = self.branch_seeds(entry, trunk, at)
        merged = self.branch_params(entry, "transfers", "transfer", trunk, at)
        for source, target, seed in itertools.product(sources, targets, seeds):
            if source == target:
                continue
            label = f"transfer {source}->{target} seed {seed}"
            src, deps = self.trunk_run(trunk, source, seed if trunk_seed is None else trunk_seed, at, label)
            run_params = dict(merged)
            if source in self.data_dirs and run_params.get("data_dir") == self.data_dirs[source]:
                run_params.pop("data_dir")  # the source's folder is not the target's
            self.add_run("transfer", target, seed, run_params, at, source_run=src, deps=deps, label=label)

    def add_mask_transfers(self, entry: dict, targets: list, at: tuple) -> None:
        """Transfers of one mask file (``mask_path``) to each target; no trunk involved."""
        mask = self.path_value(entry["mask_path"], at + ("mask_path",), "mask_path")
        if not mask.is_file():
            raise self.error(at + ("mask_path",), f"mask file {mask} does not exist")
        if "sources" in entry:
            raise self.error(at + ("sources",), "a transfer from mask_path has no 'sources'")
        if "seeds" not in entry:
            raise self.error(at, "a transfer from mask_path needs 'seeds'")
        seeds = self.names(entry["seeds"], at + ("seeds",), "seeds")
        params = self.entry_params(entry, "transfers")
        _, nb_params = self.notebook("transfer", at)
        self.check_params(params, at, nb_params, allow_flat=True)
        for target, seed in itertools.product(targets, seeds):
            self.add_run("transfer", target, seed, {**self.defaults, **params}, at,
                         label=f"transfer {mask.name}->{target} seed {seed}")

    def add_analysis(self, entry: Any, at: tuple) -> None:
        if isinstance(entry, str):
            entry = {"notebook": entry}
        entry = self.mapping(entry, at, "an analysis entry")
        nb = entry.get("notebook")
        if not isinstance(nb, str):
            raise self.error(at, "an analysis entry needs 'notebook: <name>' (a notebook in notebooks_dir)")
        nb_path, nb_params = self.notebook(nb, at)
        params = self.entry_params(entry, "analysis")
        self.check_params(params, at, nb_params, allow_flat=False)
        name = entry.get("name", nb)
        job_name = f"analysis:{name}"
        if job_name in self.jobs:
            raise self.error(at, f"two analysis entries are called {name!r}; give one a 'name'")
        given = dict(params)
        for key, value in (("runs_root", self.output_root), ("figures_dir", self.figures_dir)):
            if key in nb_params:
                given[key] = str(value)
        self.jobs[job_name] = Job(name=job_name, label=f"analysis {name}", notebook=nb_path,
                                  output=self.output_root / ANALYSIS_DIR / f"{name}.ipynb", parameters=given,
                                  after_all=True, line=self.line(at))


def plan_sweep(path: str | Path, *, notebooks_dir: str | Path | None = None) -> Plan:
    """Read, validate and expand a sweep file; nothing runs, nothing is written."""
    path = Path(path)
    data, lines = load_yaml(path)
    return _Builder(path, data, lines, Path(notebooks_dir).resolve() if notebooks_dir else None).build()


# ---------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------


def one_line_error(exc: BaseException) -> str:
    """A one-line description of an exception (a notebook's own error for papermill failures)."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return first if len(first) <= 300 else first[:297] + "..."


def ensure_importable() -> None:
    """Let notebook kernels import this tickets_core even when it is not pip-installed (PYTHONPATH)."""
    root = str(Path(__file__).resolve().parent.parent)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])


def execute_job(job: Job) -> dict:
    """Run one job's notebook through papermill (in whatever process the executor chose).

    Never raises: returns ``{"ok": bool, "error": str | None, "time_s": float}``.
    """
    start = time.perf_counter()
    try:
        import papermill as pm

        ensure_importable()
        job.output.parent.mkdir(parents=True, exist_ok=True)
        pm.execute_notebook(str(job.notebook), str(job.output), parameters=job.parameters, kernel_name="python3",
                            progress_bar=False, log_output=False, cwd=str(job.notebook.parent),
                            # keep the kernels' start-up warnings out of the sweep's terminal
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
        if job.is_run and run_state(job.run_dir) != "done":
            raise RuntimeError(f"the notebook ended but {job.run_dir}/status.json is not 'done' "
                               f"(state {run_state(job.run_dir)!r}); do its parameters build the same config?")
        return {"ok": True, "error": None, "time_s": time.perf_counter() - start}
    except Exception as e:  # noqa: BLE001 - reported, never raised across processes
        return {"ok": False, "error": one_line_error(e), "time_s": time.perf_counter() - start}


def detect_gpus() -> list[str]:
    """GPU ids to hand out: ``CUDA_VISIBLE_DEVICES`` when set, else what ``nvidia-smi -L`` lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, ln in enumerate(out.splitlines()) if ln.startswith("GPU ")]


def _init_worker(slots, threads: int | None) -> None:
    """Process-pool initializer: take one GPU (if any) and cap CPU threads for the kernels it starts."""
    gpu = slots.get() if slots is not None else None
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))


def process_executor(workers: int, gpus: list[str]) -> cf.Executor:
    """``workers`` local processes; worker i gets GPU ``gpus[i % len(gpus)]``."""
    ctx = mp.get_context("spawn")
    slots = None
    if gpus:
        slots = ctx.Queue()
        for i in range(workers):
            slots.put(gpus[i % len(gpus)])
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(slots, threads))


def dask_executor(scheduler: str) -> cf.Executor:
    """A concurrent.futures executor on an existing Dask cluster."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise SweepError("--executor dask needs dask.distributed (pip install 'dask[distributed]')") from None
    return Client(scheduler).get_executor(pure=False)


@dataclass
class Outcome:
    job: Job
    status: str          # "ok", "done" (finished before), "failed", "skipped" (a dependency failed)
    error: str | None = None
    time_s: float = 0.0


def select(plan: Plan, pattern: str | None) -> list[Job]:
    """Jobs whose name or label matches ``pattern`` (fnmatch), plus the unfinished runs they need."""
    if not pattern:
        return list(plan.jobs)
    chosen = {j.name for j in plan.jobs if fnmatch.fnmatch(j.name, pattern) or fnmatch.fnmatch(j.label, pattern)}
    todo = list(chosen)
    while todo:
        for dep in plan.job(todo.pop()).deps:
            if dep not in chosen:
                chosen.add(dep)
                todo.append(dep)
    return [j for j in plan.jobs if j.name in chosen]


def run_plan(jobs: list[Job], executor: cf.Executor, *, runner: Callable[[Job], dict] = execute_job,
             log: Callable[[str], None] | None = None, progress: bool = True,
             poll_s: float = 10.0) -> list[Outcome]:
    """Execute ``jobs`` on ``executor``, trunks before their branches, analysis last.

    The progress bar counts notebooks; its suffix shows, every ``poll_s``
    seconds, how many levels each run in flight has finished.

    Runs already ``done`` on disk are not executed; a job whose dependency
    failed is skipped; analysis jobs wait until every run job has ended.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="sweep", unit="nb", disable=not progress, dynamic_ncols=True)
    say = log or bar.write
    results: dict[str, Outcome] = {}
    pending = list(jobs)
    running: dict[cf.Future, Job] = {}
    names = {j.name for j in jobs}
    # Finished before this sweep started: never executed (checked once per job).
    already = {j.name for j in jobs if j.is_run and run_state(j.run_dir) == "done"}

    def finish(outcome: Outcome) -> None:
        results[outcome.job.name] = outcome
        bar.update(1)
        extra = f"  {outcome.error}" if outcome.error else ""
        timing = f" ({outcome.time_s:.1f} s)" if outcome.status in ("ok", "failed") else ""
        say(f"{outcome.status:>7}  {outcome.job.label}  [{outcome.job.name}]{timing}{extra}")

    try:
        while pending or running:
            for job in list(pending):
                if job.name in already:
                    pending.remove(job)
                    finish(Outcome(job, "done"))
                    continue
                deps = [d for d in job.deps if d in names]
                failed = [d for d in deps if d in results and results[d].status in ("failed", "skipped")]
                if failed:
                    pending.remove(job)
                    finish(Outcome(job, "skipped", f"needs {failed[0]}, which {results[failed[0]].status}"))
                    continue
                runs_open = any(j.is_run for j in pending) or any(j.is_run for j in running.values())
                if all(d in results for d in deps) and not (job.after_all and runs_open):
                    pending.remove(job)
                    running[executor.submit(runner, job)] = job
            if not running:
                if pending:  # cannot happen with an acyclic plan; never spin
                    raise SweepError(f"cannot order the remaining jobs: {', '.join(j.name for j in pending)}")
                continue
            done, _ = cf.wait(running, timeout=poll_s, return_when=cf.FIRST_COMPLETED)
            # Live view of the notebooks in flight: each run's finished levels (from status.json).
            bar.set_postfix_str("; ".join(f"{j.label}: {run_progress(j.run_dir) if j.is_run else 'running'}"
                                          for j in running.values()), refresh=True)
            for fut in done:
                job = running.pop(fut)
                try:
                    res = fut.result()
                except Exception as e:  # noqa: BLE001 - e.g. a worker process died
                    res = {"ok": False, "error": one_line_error(e), "time_s": 0.0}
                finish(Outcome(job, "ok" if res["ok"] else "failed", res.get("error"), res.get("time_s", 0.0)))
    finally:
        bar.close()
    return [results[j.name] for j in jobs]


def report(outcomes: list[Outcome]) -> tuple[str, int]:
    """Summary text and exit status (1 when anything failed or was skipped)."""
    count = {s: sum(o.status == s for o in outcomes) for s in ("ok", "done", "failed", "skipped")}
    lines = [f"sweep: {count['ok']} ran, {count['done']} already done, {count['failed']} failed, "
             f"{count['skipped']} skipped"]
    for o in outcomes:
        if o.status in ("failed", "skipped"):
            where = o.job.output if o.status == "failed" else o.job.name
            lines.append(f"  {o.status.upper()} {o.job.label}: {o.error}  ({where})")
    return "\n".join(lines), int(count["failed"] + count["skipped"] > 0)


def describe_plan(jobs: list[Job]) -> str:
    """The execution plan as text (for --dry-run)."""
    out = []
    for i, j in enumerate(jobs, 1):
        state = run_state(j.run_dir) if j.is_run else None
        mark = "done" if state == "done" else (state or "todo")
        deps = f"  after {', '.join(j.deps)}" if j.deps else ("  after all runs" if j.after_all else "")
        out.append(f"{i:4d}. [{mark:>7}] {j.label:<40} {j.notebook.name:<22} -> {j.output}{deps}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``python -m tickets_core.sweep`` / ``tickets-sweep``)."""
    ap = argparse.ArgumentParser(prog="tickets-sweep", description="Run a sweep file's notebooks with papermill.")
    ap.add_argument("file", help="sweep YAML file (schema: python -c 'import tickets_core.sweep as s; help(s)')")
    ap.add_argument("--workers", type=int, default=1, help="parallel notebook executions (default 1)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    ap.add_argument("--only", metavar="PATTERN", help="only runs whose name or label matches (fnmatch), "
                                                       "plus the unfinished runs they need")
    ap.add_argument("--gpus", help="comma-separated GPU ids to hand to workers (default: all visible)")
    ap.add_argument("--executor", choices=("process", "dask"), default="process")
    ap.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    ap.add_argument("--notebooks-dir", help="folder of the notebooks (default: the sweep file's or this checkout's)")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    if args.executor == "dask" and not args.scheduler:
        ap.error("--executor dask needs --scheduler ADDRESS")
    try:
        plan = plan_sweep(args.file, notebooks_dir=args.notebooks_dir)
        jobs = select(plan, args.only)
        if not jobs:
            raise SweepError(f"--only {args.only!r} matches no run")
        if args.dry_run:
            print(describe_plan(jobs))
            return 0
        gpus = args.gpus.split(",") if args.gpus else detect_gpus()
        executor = dask_executor(args.scheduler) if args.executor == "dask" else process_executor(args.workers, gpus)
    except (SweepError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    where = f"dask at {args.scheduler}" if args.executor == "dask" else (
        f"{args.workers} worker(s)" + (f", GPUs {','.join(gpus)}" if gpus else ", CPU"))
    print(f"sweep {args.file}: {len(jobs)} notebooks on {where}; runs in {plan.output_root}", flush=True)
    with executor:
        outcomes = run_plan(jobs, executor, runner=execute_job)
    text, status = report(outcomes)
    print(text)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
