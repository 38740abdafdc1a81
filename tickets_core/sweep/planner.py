"""The jobs of a sweep and what they know of each other: run configs, run names, folders, states, dependencies.

:class:`Planner` is the interface between a sweep file's sections
(:mod:`tickets_core.sweep.spec`, which reads the file) and the rules that plan
a job from other jobs (:mod:`tickets_core.sweep.deferred`): it turns an
entry's parameters into a run's resolved config and job, and answers what a
rule needs to know: the planned runs of a task, the finished runs on disk,
a run folder's state.  Nothing is written; every run folder state and disk
listing is read once per planning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.config import RunConfig
from ..core.errors import ConfigError, RunStoreError, one_line
from ..core.kinds import get_kind
from ..lottery.identity import resolve
from ..runs.status import run_state
from ..runs.walk import RunFolders
from .notebook import notebook_parameters
from .yamlfile import SweepFile

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
    entry: str = ""                # the sweep-file entry that planned it ("line 51: trunk imp"), for the dry run

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


class Planner:
    """The jobs planned so far, and how a run entry becomes a job (see the module docstring)."""

    def __init__(self, file: SweepFile, output_root: Path, notebooks_dir: Path, data_dirs: dict[str, str],
                 n_std: float) -> None:
        self.file, self.output_root, self.notebooks_dir = file, output_root, notebooks_dir
        self.data_dirs, self.n_std = data_dirs, n_std
        self.jobs: dict[str, Job] = {}
        self._configs: dict[str, RunConfig] = {}     # every run config planned, by run name
        self._nb_params: dict[str, tuple[Path, dict]] = {}
        self._states: dict[str, str | None] = {}
        self._finished: dict[tuple[str, str], list[RunConfig]] | None = None
        self._memo: dict[Any, Any] = {}

    # -- what the rules may ask ---------------------------------------------------

    def state(self, name: str) -> str | None:
        """:func:`~tickets_core.runs.status.run_state` of the run folder ``name`` under output_root (read once)."""
        if name not in self._states:
            self._states[name] = run_state(self.output_root / name)
        return self._states[name]

    def config_of(self, name: str) -> RunConfig:
        """The resolved config of the planned run ``name``."""
        return self._configs[name]

    def planned(self, task: str, kinds: tuple[str, ...]) -> list[Job]:
        """The planned run jobs of ``task`` of those kinds whose run is fixed (not deferred)."""
        return [j for j in self.jobs.values() if j.is_run and j.resolver is None
                and j.parameters.get("task") == task and j.parameters.get("kind") in kinds]

    def finished(self, kind: str, task: str) -> list[RunConfig]:
        """Configs of the finished runs of ``kind`` on ``task`` under output_root (the folder is walked once)."""
        if self._finished is None:
            self._finished = {}
            runs = RunFolders(self.output_root) if self.output_root.is_dir() else None
            for name in (runs.dirs if runs is not None else ()):
                try:
                    cfg = RunConfig.from_dict(runs.config(name))
                except (ConfigError, RunStoreError, TypeError):
                    continue
                if runs.status(name).get("state") == "done":
                    self._finished.setdefault((cfg.kind, cfg.data.task), []).append(cfg)
        return self._finished.get((kind, task), [])

    def finished_runs(self, kind: str) -> list[RunConfig]:
        """Configs of the finished runs of ``kind`` under output_root, every task (:meth:`finished`)."""
        self.finished(kind, "")
        return [cfg for (k, _), cfgs in self._finished.items() if k == kind for cfg in cfgs]

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per planning for ``key`` (a rule's reading of run folders)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def error(self, at: tuple, msg: str):
        return self.file.error(at, msg)

    # -- building jobs ------------------------------------------------------------

    def notebook(self, name: str, at: tuple) -> tuple[Path, dict]:
        """A notebook of notebooks_dir and its parameters (read once)."""
        if name not in self._nb_params:
            path = self.notebooks_dir / f"{name}.ipynb"
            if not path.is_file():
                raise self.error(at, f"no notebook {path}")
            try:
                self._nb_params[name] = path, notebook_parameters(path)
            except ConfigError as e:
                raise self.error(at, str(e)) from None
        return self._nb_params[name]

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
        self._configs[cfg.run_name()] = cfg
        return cfg, flat

    def add_run(self, kind: str, task: str, seed: int, params: Params, at: tuple, *, label: str,
                source_run: str | None = None, deps: list[str] | tuple = ()) -> Job:
        cfg, flat = self.config(kind, task, seed, params, at, label, source_run)
        name = cfg.run_name()
        if name in self.jobs:  # the same run listed twice: keep one
            return self.jobs[name]
        return self.new_job(kind, name, label, flat, at, deps=deps)

    def new_job(self, kind: str, name: str, label: str, flat: dict, at: tuple, *, deps: list[str] | tuple = (),
                resolver: Any = None) -> Job:
        nb_path, _ = self.notebook(get_kind(kind).notebook, at)
        run_dir = self.output_root / name
        self.jobs[name] = Job(name=name, label=label, notebook=nb_path, output=run_dir / "notebook.ipynb",
                              parameters=flat, deps=list(deps), run_dir=run_dir, resolver=resolver,
                              entry=self.entry_name(at))
        return self.jobs[name]

    def entry_name(self, at: tuple) -> str:
        """``line 51: trunk imp`` for the sweep-file entry at ``at`` (its first two keys)."""
        section, entry = at[0] if at else "", at[1] if len(at) > 1 else None
        try:
            e = self.file.data[section][entry]
        except (KeyError, IndexError, TypeError):
            return section
        what = {"trunks": lambda: e.get("name", e.get("kind", "imp")),
                "branches": lambda: f"{'+'.join(e.get('kinds') or [])} of {e.get('trunk')}",
                "transfers": lambda: (f"from {e['trunk']}" if "trunk" in e else f"of {e.get('mask_path')}")
                + (f" at {e['source_levels']}" if "source_levels" in e else "")}.get(section, lambda: "")()
        noun = {"trunks": "trunk", "branches": "branch", "transfers": "transfer"}.get(section, section)
        return f"line {self.file.lines.get(at[:2], '?')}: {noun} {what}".rstrip()

    def rename(self, old: str, job: Job) -> Job:
        """Re-file ``job`` (planned as ``old``) under its new name; the job already there wins."""
        self.jobs.pop(old, None)
        return self.jobs.setdefault(job.name, job)
