"""Sweep files: load the YAML (with line numbers), validate, expand into jobs.  Nothing runs here.

The schema is in the package docstring (:mod:`tickets_core.sweep`).  Run
parameters are the config's flat parameters (:data:`tickets_core.core.config.PARAMS`):
their names, paths and values are checked by the config itself (one check,
in one place); an error is reported at the line of the sweep file that set
the offending parameter.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..core.config import RunConfig, lookup
from ..core.errors import ConfigError, one_line
from ..lottery.identity import resolve
from ..core.kinds import KINDS, get_kind
from .notebook import EXPERIMENT_NOTEBOOK, NOTEBOOKS_DIR, notebook_parameters, resolve_path
from ..runs.store import run_state
from ..tasks import TASKS
from . import deferred
from .yamlfile import SweepError, load_yaml
from . import checks

__all__ = ["SweepError", "load_yaml", "Job", "Plan", "plan_sweep"]

TOP_KEYS = ("output_root", "figures_dir", "notebooks_dir", "data_dirs", "n_std", "defaults", "trunks", "branches",
            "transfers", "analysis")
ENTRY_KEYS = {
    "trunks": ("name", "kind", "tasks", "seeds"),
    "branches": ("kinds", "trunk", "tasks", "seeds", "trunk_seed"),
    "transfers": ("trunk", "sources", "targets", "seeds", "trunk_seed", "mask_path", "params_from"),
    "analysis": ("notebook", "name"),
}
#: Parameters the sweep's structure sets (an entry's kind, tasks, seeds, trunk; the file's output_root).
SET_BY_SWEEP = ("kind", "task", "seed", "source_run", "output_root")
#: Analysis-notebook parameters the sweep sets from the file's output_root and figures_dir.
ANALYSIS_PATHS = ("runs_root", "figures_dir")
ANALYSIS_DIR = "_analysis"

Params = dict[str, tuple[Any, tuple]]  # flat name -> (value, where in the file it was set)


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
    resolver: Any = None           # what fixes the run once its deps are done (sweep/deferred.py), else None

    @property
    def is_run(self) -> bool:
        return self.run_dir is not None

    def finalize(self) -> str | None:
        """Called right before the job is submitted: fix what it runs (a deferred job gets its source level,
        run name and folder); returns a one-line reason when it cannot run, else None."""
        return self.resolver.finalize(self) if self.resolver is not None else None


@dataclass
class Plan:
    """An expanded, validated sweep."""

    jobs: list[Job]
    output_root: Path
    figures_dir: Path
    notebooks_dir: Path

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs if j.name == name)


def plan_sweep(path: str | Path, *, notebooks_dir: str | Path | None = None) -> Plan:
    """Read, validate and expand a sweep file; nothing runs, nothing is written."""
    path = Path(path)
    data, lines = load_yaml(path)
    return _Builder(path, data, lines, Path(notebooks_dir).resolve() if notebooks_dir else None).build()


class _Builder:
    """Expands and validates one sweep file."""

    def __init__(self, path: Path, data: Any, lines: dict[tuple, int], notebooks_dir: Path | None) -> None:
        self.path, self.data, self.lines = path, data, lines
        self.notebooks_dir_override = notebooks_dir
        self.jobs: dict[str, Job] = {}
        self.trunks: dict[str, dict] = {}
        self._nb_params: dict[str, dict] = {}
        self.configs: dict[str, RunConfig] = {}      # every run config planned, by run name
        self.dense_disk: dict[str, list[dict]] = {}  # finished dense runs on disk, by task (deferred.py)
        # Read once while planning (nothing is written meanwhile; the plan does not keep them):
        self.states: dict[str, str | None] = {}       # run_state of run folders, by run name
        self.found: dict[tuple, int | str] = {}       # a deferred source's level or reason (deferred.py)

    # -- errors and small readers -------------------------------------------------

    def error(self, at: tuple, msg: str) -> SweepError:
        while at and at not in self.lines:
            at = at[:-1]
        return SweepError(f"{self.path}:{self.lines.get(at, 1)}: {msg}")

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

    def names(self, entry: dict, key: str, at: tuple, *, what: str | None = None, tasks: bool = False) -> list:
        """``entry[key]``: a name (or integer seed) or a list of them, checked."""
        value, what = entry[key], what or key
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(at + (key,), f"{what} is empty")
        for i, item in enumerate(items):
            where = at + (key, i) if isinstance(value, list) else at + (key,)
            if what.startswith("seed") or what == "trunk_seed":
                if not isinstance(item, int) or isinstance(item, bool):
                    raise self.error(where, f"{what} must be integers, got {item!r}")
            elif not isinstance(item, str):
                raise self.error(where, f"{what} must be names, got {item!r}")
            if tasks and item not in TASKS:
                raise self.error(where, f"unknown task {item!r}; known tasks: {', '.join(sorted(TASKS))}")
        return items

    def state(self, name: str) -> str | None:
        """:func:`~tickets_core.runs.store.run_state` of the run folder ``name`` under output_root."""
        if name not in self.states:
            self.states[name] = run_state(self.output_root / name)
        return self.states[name]

    def path_value(self, value: Any, at: tuple, what: str) -> Path:
        if not isinstance(value, str) or not value:
            raise self.error(at, f"{what} must be a path")
        return resolve_path(value)

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

    # -- run parameters: names and paths here, values by the config ---------------------

    def run_params(self, entry: dict, at: tuple, skip: Iterable[str] = ()) -> Params:
        """The entry's run parameters by flat name, with where each was set; paths made absolute."""
        out: Params = {}
        for key, value in entry.items():
            if key in skip:
                continue
            if key in SET_BY_SWEEP:
                raise self.error(at + (key,), f"{key!r} is set by the sweep; remove it here")
            try:
                p = lookup(key)
            except ConfigError:
                raise self.error(at + (key,), f"unknown key {key!r}") from None
            if p.path and value is not None:
                value = str(self.path_value(value, at + (key,), key))
            out[p.name] = (value, at + (key,))
        return out

    def config(self, kind: str, task: str, seed: int, params: Params, at: tuple, label: str,
               source_run: str | None = None) -> tuple[RunConfig, dict]:
        """The run's resolved config and the flat parameters the notebook gets; errors point at their line."""
        flat: dict[str, Any] = {"progress": False}
        if task in self.data_dirs:
            flat["data_dir"] = self.data_dirs[task]
        flat.update({k: v for k, (v, _) in params.items()})
        flat.update(kind=kind, task=task, seed=seed, output_root=str(self.output_root))
        if source_run is not None:
            flat["source_run"] = source_run
        try:
            cfg = resolve(RunConfig.from_flat(**flat))
        except ConfigError as e:
            where = params[e.param][1] if e.param in params else at
            raise self.error(where, f"{label}: {one_line(e)}") from None
        self.configs[cfg.run_name()] = cfg
        return cfg, flat

    def add_run(self, kind: str, task: str, seed: int, params: Params, at: tuple, *, label: str,
                source_run: str | None = None, deps: Iterable[str] = ()) -> Job:
        cfg, flat = self.config(kind, task, seed, params, at, label, source_run)
        name = cfg.run_name()
        if name in self.jobs:  # the same run listed twice: keep one
            return self.jobs[name]
        return self.new_job(kind, name, label, flat, at, deps=deps)

    def new_job(self, kind: str, name: str, label: str, flat: dict, at: tuple, *, deps: Iterable[str] = (),
                resolver: Any = None) -> Job:
        nb_path, _ = self.notebook(get_kind(kind).notebook, at)
        run_dir = self.output_root / name
        self.jobs[name] = Job(name=name, label=label, notebook=nb_path, output=run_dir / "notebook.ipynb",
                              parameters=flat, deps=list(deps), run_dir=run_dir, resolver=resolver)
        return self.jobs[name]

    def add_source_run(self, kind: str, task: str, seed: int, params: Params, at: tuple, *, label: str,
                       trunk: dict, source_task: str, trunk_seed: int | None, highest: bool) -> None:
        """A branch or transfer run of ``trunk``'s run for (source_task, seed); deferred for ``highest_matching``."""
        src, deps = self.trunk_run(trunk, source_task, seed if trunk_seed is None else trunk_seed, at, label)
        if highest:
            deferred.plan(self, kind, task, seed, params, at, label=label, source_run=src, source_task=source_task,
                          trunk_kind=trunk["kind"])
        else:
            self.add_run(kind, task, seed, params, at, source_run=src, deps=deps, label=label)

    # -- the whole file ---------------------------------------------------------------

    def build(self) -> Plan:
        top = self.mapping(self.data, (), "the sweep file")
        for key in top:
            if key not in TOP_KEYS:
                raise self.error((key,), f"unknown key {key!r}; expected one of {', '.join(TOP_KEYS)}")
        self.output_root = self.path_value(top.get("output_root", "runs"), ("output_root",), "output_root")
        self.figures_dir = self.path_value(top.get("figures_dir", "figures"), ("figures_dir",), "figures_dir")
        nb_dir = top.get("notebooks_dir")
        self.notebooks_dir = self.notebooks_dir_override or (
            self.path_value(nb_dir, ("notebooks_dir",), "notebooks_dir") if nb_dir else NOTEBOOKS_DIR)
        data_dirs = self.mapping(top.get("data_dirs"), ("data_dirs",), "data_dirs")
        if data_dirs:
            self.names({"data_dirs": list(data_dirs)}, "data_dirs", (), what="data_dirs tasks", tasks=True)
        self.data_dirs = {k: str(self.path_value(v, ("data_dirs", k), f"data_dirs.{k}")) for k, v in data_dirs.items()}
        self.n_std = top.get("n_std", 1.0)
        if isinstance(self.n_std, bool) or not isinstance(self.n_std, (int, float)) or self.n_std < 0:
            raise self.error(("n_std",), f"n_std must be a number >= 0, got {self.n_std!r}")
        self.n_std_given = "n_std" in top
        self.defaults = self.run_params(self.mapping(top.get("defaults"), ("defaults",), "defaults"), ("defaults",))
        self.notebook(EXPERIMENT_NOTEBOOK, ("defaults",))
        sections = (("trunks", self.add_trunks), ("branches", self.add_branches), ("transfers", self.add_transfers))
        for section, add in sections:
            for i, entry in enumerate(self.listing(top.get(section), (section,), section)):
                add(self.mapping(entry, (section, i), f"a {section[:-1]} entry"), (section, i))
        for i, entry in enumerate(self.listing(top.get("analysis"), ("analysis",), "analysis")):
            self.add_analysis(entry, ("analysis", i))
        if not self.jobs:
            raise self.error((), "the sweep defines no runs and no analysis")
        return Plan(list(self.jobs.values()), self.output_root, self.figures_dir, self.notebooks_dir)

    def add_trunks(self, entry: dict, at: tuple) -> None:
        kind = entry.get("kind", "imp")
        trunks = [k.name for k in KINDS.values() if not k.is_branch]
        if kind not in trunks:
            raise self.error(at + ("kind",), f"trunk kind must be one of {', '.join(trunks)}, got {kind!r}")
        name = entry.get("name", kind)
        if not isinstance(name, str):
            raise self.error(at + ("name",), "name must be a string")
        if name in self.trunks:
            raise self.error(at + ("name",), f"two trunk entries are called {name!r}; give them distinct names")
        for key in ("tasks", "seeds"):
            if key not in entry:
                raise self.error(at, f"a trunk entry needs {key!r}")
        tasks = self.names(entry, "tasks", at, tasks=True)
        seeds = self.names(entry, "seeds", at)
        params = {**self.defaults, **self.run_params(entry, at, skip=ENTRY_KEYS["trunks"])}
        self.trunks[name] = {"kind": kind, "tasks": tasks, "seeds": seeds, "params": params}
        for task, seed in itertools.product(tasks, seeds):
            self.add_run(kind, task, seed, params, at, label=f"{kind} {task} seed {seed}")

    def trunk_of(self, entry: dict, at: tuple) -> dict:
        """The trunk an entry branches from: a trunk entry, or a trunk already on disk described inline."""
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
        params = {**self.defaults, **self.run_params(ref, at + ("trunk",), skip=("kind",))}
        return {"kind": kind, "tasks": None, "seeds": None, "params": params}

    def trunk_run(self, trunk: dict, task: str, seed: int, at: tuple, who: str) -> tuple[str, list[str]]:
        """The name of the trunk run for (task, seed) and the job it depends on (none if already done)."""
        cfg, _ = self.config(trunk["kind"], task, seed, trunk["params"], at + ("trunk",), f"{who}: its trunk")
        name = cfg.run_name()
        state = self.state(name)
        if name in self.jobs:
            return name, ([] if state == "done" else [name])
        if state == "done":
            return name, []
        where = "is on disk but not finished" if state else "is neither in this sweep nor on disk"
        raise self.error(at, f"{who}: its trunk run {name} ({trunk['kind']} {task} seed {seed}) {where} "
                             f"under {self.output_root}")

    def tasks_or_trunks(self, entry: dict, key: str, trunk: dict, at: tuple) -> list[str]:
        """The entry's task list under ``key`` (validated), else its trunk's tasks."""
        if key in entry:
            return self.names(entry, key, at, tasks=True)
        if trunk["tasks"] is not None:
            return trunk["tasks"]
        raise self.error(at, f"give '{key}' (the trunk is not in this file)")

    def branch_seeds(self, entry: dict, trunk: dict, at: tuple) -> tuple[list[int], int | None]:
        if "seeds" in entry:
            seeds = self.names(entry, "seeds", at)
        elif trunk["seeds"] is not None:
            seeds = trunk["seeds"]
        else:
            raise self.error(at, "give 'seeds' (the trunk is not in this file)")
        trunk_seed = entry.get("trunk_seed")
        if trunk_seed is not None:
            self.names(entry, "trunk_seed", at)
        return seeds, trunk_seed

    def add_branches(self, entry: dict, at: tuple) -> None:
        allowed = [k.name for k in KINDS.values() if k.is_branch and k.name != "transfer"]
        if "kinds" not in entry:
            raise self.error(at, f"a branch entry needs 'kinds' (any of {', '.join(allowed)})")
        kinds = self.names(entry, "kinds", at)
        for kind in kinds:
            if kind not in allowed:
                raise self.error(at + ("kinds",), f"branch kind must be one of {', '.join(allowed)}, got {kind!r}"
                                 + (" (transfers have their own section)" if kind == "transfer" else ""))
        trunk = self.trunk_of(entry, at)
        tasks = self.tasks_or_trunks(entry, "tasks", trunk, at)
        seeds, trunk_seed = self.branch_seeds(entry, trunk, at)
        highest = entry.get("source_levels") == deferred.HIGHEST
        params = {**trunk["params"], **self.run_params(entry, at, skip=ENTRY_KEYS["branches"] + _levels(highest))}
        if bad := checks.source_levels(trunk, params):
            raise self.error(*bad)
        for kind, task, seed in itertools.product(kinds, tasks, seeds):
            self.add_source_run(kind, task, seed, params, at, label=f"{kind} {task} seed {seed}", trunk=trunk,
                                source_task=task, trunk_seed=trunk_seed, highest=highest)

    def add_transfers(self, entry: dict, at: tuple) -> None:
        if "targets" not in entry:
            raise self.error(at, "a transfer entry needs 'targets'")
        targets = self.names(entry, "targets", at, tasks=True)
        highest = entry.get("source_levels") == deferred.HIGHEST
        own = self.run_params(entry, at, skip=ENTRY_KEYS["transfers"] + _levels(highest))
        if "mask_path" in entry and "trunk" not in entry:
            self.add_mask_transfers(entry, targets, own, at)
            return
        trunk = self.trunk_of(entry, at)
        sources = self.tasks_or_trunks(entry, "sources", trunk, at)
        seeds, trunk_seed = self.branch_seeds(entry, trunk, at)
        # The trunk's settings, but never its data: a transfer trains on the target's.
        params = {**{k: v for k, v in trunk["params"].items() if k != "data_dir"}, **own}
        from_target = self.params_from(entry, at)
        if bad := checks.source_levels(trunk, params):
            raise self.error(*bad)
        for source, target, seed in itertools.product(sources, targets, seeds):
            if source == target:  # that is the trunk's own ticket
                continue
            self.add_source_run("transfer", target, seed, self.target_params(trunk, target, own, at) if from_target
                                else params, at, label=f"transfer {source}->{target} seed {seed}", trunk=trunk,
                                source_task=source, trunk_seed=trunk_seed, highest=highest)

    def params_from(self, entry: dict, at: tuple) -> bool:
        """``params_from: source`` (the default: the source trunk's parameters) or ``target``; True for target."""
        value = entry.get("params_from", "source")
        if value not in ("source", "target"):
            raise self.error(at + ("params_from",), f"params_from must be 'source' or 'target', got {value!r}")
        return value == "target"

    def target_params(self, trunk: dict, target: str, own: Params, at: tuple) -> Params:
        """A transfer trained like the target's own trunk (``params_from: target``): that entry's, then its own."""
        hits = [t for t in self.trunks.values() if t["kind"] == trunk["kind"] and target in (t["tasks"] or ())]
        if len(hits) != 1:
            raise self.error(at + ("params_from",), f"params_from: target needs one {trunk['kind']} trunk entry with "
                                                    f"task {target!r}; this file has {len(hits)}")
        return {**hits[0]["params"], **own}

    def add_mask_transfers(self, entry: dict, targets: list, own: Params, at: tuple) -> None:
        """Transfers of one mask file (``mask_path``) to each target; no trunk involved."""
        mask = self.path_value(entry["mask_path"], at + ("mask_path",), "mask_path")
        if "source_levels" in entry:
            raise self.error(at + ("source_levels",), "a transfer from mask_path has no 'source_levels'")
        if "sources" in entry:
            raise self.error(at + ("sources",), "a transfer from mask_path has no 'sources'")
        if "seeds" not in entry:
            raise self.error(at, "a transfer from mask_path needs 'seeds'")
        params = {**self.defaults, **own, "mask_path": (str(mask), at + ("mask_path",))}
        for target, seed in itertools.product(targets, self.names(entry, "seeds", at)):
            self.add_run("transfer", target, seed, params, at, label=f"transfer {mask.name}->{target} seed {seed}")

    def add_analysis(self, entry: Any, at: tuple) -> None:
        entry = self.mapping({"notebook": entry} if isinstance(entry, str) else entry, at, "an analysis entry")
        nb = entry.get("notebook")
        if not isinstance(nb, str):
            raise self.error(at, "an analysis entry needs 'notebook: <name>' (a notebook in notebooks_dir)")
        nb_path, nb_params = self.notebook(nb, at)
        params = {k: v for k, v in entry.items() if k not in ENTRY_KEYS["analysis"]}
        for key, value in params.items():
            if key in ANALYSIS_PATHS:
                raise self.error(at + (key,), f"{key!r} is set by the sweep; remove it here")
            if key not in nb_params:
                raise self.error(at + (key,), f"unknown key {key!r}")
            default = nb_params[key]
            if not _same_kind(value, default):
                raise self.error(at + (key,), f"{key!r} must be {type(default).__name__}, got {value!r}")
            if bad := checks.analysis_value(key, value):
                raise self.error(at + (key,), bad)
        name = entry.get("name", nb)
        if f"analysis:{name}" in self.jobs:
            raise self.error(at, f"two analysis entries are called {name!r}; give one a 'name'")
        given = {**params, **{k: str(v) for k, v in (("runs_root", self.output_root),
                                                        ("figures_dir", self.figures_dir)) if k in nb_params}}
        if self.n_std_given and "n_std" in nb_params and "n_std" not in params:  # the sweep's matching criterion
            given["n_std"] = self.n_std
        self.jobs[f"analysis:{name}"] = Job(
            name=f"analysis:{name}", label=f"analysis {name}", notebook=nb_path,
            output=self.output_root / ANALYSIS_DIR / f"{name}.ipynb", parameters=given, after_all=True)


def _levels(highest: bool) -> tuple[str, ...]:
    """Entry keys the run parameters leave out: ``source_levels`` when it says ``highest_matching``."""
    return ("source_levels",) if highest else ()


def _same_kind(value: Any, default: Any) -> bool:
    """An analysis parameter's value fits the literal type of its notebook default (None fits anything)."""
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))
