"""Sweep files' sections (trunks, branches, transfers, analysis) into jobs.  Nothing runs here.

The schema is in the package docstring (:mod:`tickets_core.sweep`).  The file
is read and its shapes checked by :class:`~tickets_core.sweep.yamlfile.SweepFile`
(every error names its line); each run entry becomes a job through the
:class:`~tickets_core.sweep.planner.Planner`, which the rules that plan a job
from other jobs (:mod:`tickets_core.sweep.deferred`) share.  Run
parameters are the config's flat parameters (:data:`tickets_core.core.config.PARAMS`):
their names, paths and values are checked by the config itself (one check,
in one place); an error is reported at the line of the sweep file that set
the offending parameter.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterable

from ..core.config import lookup
from ..core.errors import ConfigError
from ..core.kinds import KINDS
from ..core.settings import HIGHEST
from ..tasks import TASKS
from . import checks, deferred, reuse
from .notebook import EXPERIMENT_NOTEBOOK, NOTEBOOKS_DIR, resolve_path
from .planner import Job, Params, Plan, Planner
from .yamlfile import SweepError, SweepFile, load_yaml

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

def plan_sweep(path: str | Path, *, notebooks_dir: str | Path | None = None,
               output_root: str | Path | None = None) -> Plan:
    """Read, validate and expand a sweep file; nothing runs, nothing is written.  ``output_root`` (and
    ``notebooks_dir``): instead of the file's."""
    sections = _Sections(SweepFile(path), Path(notebooks_dir).resolve() if notebooks_dir else None)
    sections.output_root_override = resolve_path(output_root) if output_root else None
    return sections.build()


class _Sections:
    """Reads one sweep file's sections into jobs (through a :class:`~tickets_core.sweep.planner.Planner`)."""

    def __init__(self, file: SweepFile, notebooks_dir: Path | None) -> None:
        self.file, self.notebooks_dir_override = file, notebooks_dir
        self.trunks: dict[str, dict] = {}
        self.error = file.error
        self.output_root_override: Path | None = None

    def path_value(self, value: Any, at: tuple, what: str) -> Path:
        if not isinstance(value, str) or not value:
            raise self.error(at, f"{what} must be a path")
        return resolve_path(value)

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

    def add_source_run(self, kind: str, task: str, seed: int, params: Params, at: tuple, *, label: str,
                       trunk: dict, source_task: str, trunk_seed: int | None, highest: bool) -> None:
        """A branch or transfer run of ``trunk``'s run for (source_task, seed); deferred for ``highest_matching``."""
        src, deps = self.trunk_run(trunk, source_task, seed if trunk_seed is None else trunk_seed, at, label)
        if highest:
            deferred.plan(self.plan, kind, task, seed, params, at, label=label, source_run=src, source_task=source_task,
                          trunk_kind=trunk["kind"])
        else:
            self.plan.add_run(kind, task, seed, params, at, source_run=src, deps=deps, label=label)

    # -- the whole file ---------------------------------------------------------------

    def build(self) -> Plan:
        top = self.file.mapping(self.file.data, (), "the sweep file")
        for key in top:
            if key not in TOP_KEYS:
                raise self.error((key,), f"unknown key {key!r}; expected one of {', '.join(TOP_KEYS)}")
        self.output_root = self.output_root_override or self.path_value(top.get("output_root", "runs"),
                                                                        ("output_root",), "output_root")
        figures = top.get("figures_dir")  # default: beside the runs (only the demo and paper sweeps name figures/)
        self.figures_dir = (self.path_value(figures, ("figures_dir",), "figures_dir")
                            if figures is not None and self.output_root_override is None
                            else self.output_root / "figures")  # --output-root DIR: figures in DIR/figures
        nb_dir = top.get("notebooks_dir")
        self.notebooks_dir = self.notebooks_dir_override or (
            self.path_value(nb_dir, ("notebooks_dir",), "notebooks_dir") if nb_dir else NOTEBOOKS_DIR)
        data_dirs = self.file.mapping(top.get("data_dirs"), ("data_dirs",), "data_dirs")
        if data_dirs:
            self.file.names({"data_dirs": list(data_dirs)}, "data_dirs", (), what="data_dirs tasks", known=TASKS)
        self.data_dirs = {k: str(self.path_value(v, ("data_dirs", k), f"data_dirs.{k}")) for k, v in data_dirs.items()}
        self.n_std = top.get("n_std", 1.0)
        if isinstance(self.n_std, bool) or not isinstance(self.n_std, (int, float)) or self.n_std < 0:
            raise self.error(("n_std",), f"n_std must be a number >= 0, got {self.n_std!r}")
        self.n_std_given = "n_std" in top
        self.plan = Planner(self.file, self.output_root, self.notebooks_dir, self.data_dirs, self.n_std)
        self.defaults = self.run_params(self.file.mapping(top.get("defaults"), ("defaults",), "defaults"), ("defaults",))
        self.plan.notebook(EXPERIMENT_NOTEBOOK, ("defaults",))
        sections = (("trunks", self.add_trunks), ("branches", self.add_branches), ("transfers", self.add_transfers))
        for section, add in sections:
            for i, entry in enumerate(self.file.listing(top.get(section), (section,), section)):
                add(self.file.mapping(entry, (section, i), f"a {section[:-1]} entry"), (section, i))
        reuse.share_dense_levels(self.plan)  # no run trains what another one trains
        for i, entry in enumerate(self.file.listing(top.get("analysis"), ("analysis",), "analysis")):
            self.add_analysis(entry, ("analysis", i))
        if not self.plan.jobs:
            raise self.error((), "the sweep defines no runs and no analysis")
        return Plan(list(self.plan.jobs.values()), self.output_root, self.figures_dir, self.notebooks_dir)

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
        tasks = self.file.names(entry, "tasks", at, known=TASKS)
        seeds = self.file.names(entry, "seeds", at)
        params = {**self.defaults, **self.run_params(entry, at, skip=ENTRY_KEYS["trunks"])}
        self.trunks[name] = {"kind": kind, "tasks": tasks, "seeds": seeds, "params": params}
        for task, seed in itertools.product(tasks, seeds):
            self.plan.add_run(kind, task, seed, params, at, label=f"{kind} {task} seed {seed}")

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
        ref = self.file.mapping(ref, at + ("trunk",), "trunk")
        kind = ref.get("kind", "imp")
        params = {**self.defaults, **self.run_params(ref, at + ("trunk",), skip=("kind",))}
        return {"kind": kind, "tasks": None, "seeds": None, "params": params}

    def trunk_run(self, trunk: dict, task: str, seed: int, at: tuple, who: str) -> tuple[str, list[str]]:
        """The name of the trunk run for (task, seed) and the job it depends on (none if already done)."""
        cfg, _ = self.plan.config(trunk["kind"], task, seed, trunk["params"], at + ("trunk",), f"{who}: its trunk")
        name = cfg.run_name()
        state = self.plan.state(name)
        if name in self.plan.jobs:
            return name, ([] if state == "done" else [name])
        if state == "done":
            return name, []
        where = "is on disk but not finished" if state else "is neither in this sweep nor on disk"
        raise self.error(at, f"{who}: its trunk run {name} ({trunk['kind']} {task} seed {seed}) {where} "
                             f"under {self.output_root}")

    def tasks_or_trunks(self, entry: dict, key: str, trunk: dict, at: tuple) -> list[str]:
        """The entry's task list under ``key`` (validated), else its trunk's tasks."""
        if key in entry:
            return self.file.names(entry, key, at, known=TASKS)
        if trunk["tasks"] is not None:
            return trunk["tasks"]
        raise self.error(at, f"give '{key}' (the trunk is not in this file)")

    def branch_seeds(self, entry: dict, trunk: dict, at: tuple) -> tuple[list[int], int | None]:
        if "seeds" in entry:
            seeds = self.file.names(entry, "seeds", at)
        elif trunk["seeds"] is not None:
            seeds = trunk["seeds"]
        else:
            raise self.error(at, "give 'seeds' (the trunk is not in this file)")
        trunk_seed = entry.get("trunk_seed")
        if trunk_seed is not None:
            self.file.names(entry, "trunk_seed", at)
        return seeds, trunk_seed

    def add_branches(self, entry: dict, at: tuple) -> None:
        allowed = [k.name for k in KINDS.values() if k.is_branch and k.name != "transfer"]
        if "kinds" not in entry:
            raise self.error(at, f"a branch entry needs 'kinds' (any of {', '.join(allowed)})")
        kinds = self.file.names(entry, "kinds", at)
        for kind in kinds:
            if kind not in allowed:
                raise self.error(at + ("kinds",), f"branch kind must be one of {', '.join(allowed)}, got {kind!r}"
                                 + (" (transfers have their own section)" if kind == "transfer" else ""))
        trunk = self.trunk_of(entry, at)
        tasks = self.tasks_or_trunks(entry, "tasks", trunk, at)
        seeds, trunk_seed = self.branch_seeds(entry, trunk, at)
        highest = entry.get("source_levels") == HIGHEST
        params = {**trunk["params"], **self.run_params(entry, at, skip=ENTRY_KEYS["branches"] + _levels(highest))}
        if bad := checks.source_levels(trunk, params):
            raise self.error(*bad)
        for kind, task, seed in itertools.product(kinds, tasks, seeds):
            self.add_source_run(kind, task, seed, params, at, label=f"{kind} {task} seed {seed}", trunk=trunk,
                                source_task=task, trunk_seed=trunk_seed, highest=highest)

    def add_transfers(self, entry: dict, at: tuple) -> None:
        if "targets" not in entry:
            raise self.error(at, "a transfer entry needs 'targets'")
        targets = self.file.names(entry, "targets", at, known=TASKS)
        highest = entry.get("source_levels") == HIGHEST
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
            ticket = "" if trunk["kind"] == "imp" else f" ({KINDS[trunk['kind']].label} ticket)"
            self.add_source_run("transfer", target, seed, self.target_params(trunk, target, own, at) if from_target
                                else params, at, label=f"transfer {source}->{target} seed {seed}{ticket}", trunk=trunk,
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
        for target, seed in itertools.product(targets, self.file.names(entry, "seeds", at)):
            self.plan.add_run("transfer", target, seed, params, at, label=f"transfer {mask.name}->{target} seed {seed}")

    def add_analysis(self, entry: Any, at: tuple) -> None:
        entry = self.file.mapping({"notebook": entry} if isinstance(entry, str) else entry, at, "an analysis entry")
        nb = entry.get("notebook")
        if not isinstance(nb, str):
            raise self.error(at, "an analysis entry needs 'notebook: <name>' (a notebook in notebooks_dir)")
        nb_path, nb_params = self.plan.notebook(nb, at)
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
        if f"analysis:{name}" in self.plan.jobs:
            raise self.error(at, f"two analysis entries are called {name!r}; give one a 'name'")
        given = {**params, **{k: str(v) for k, v in (("runs_root", self.output_root),
                                                        ("figures_dir", self.figures_dir)) if k in nb_params}}
        if self.n_std_given and "n_std" in nb_params and "n_std" not in params:  # the sweep's matching criterion
            given["n_std"] = self.n_std
        self.plan.jobs[f"analysis:{name}"] = Job(
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
