"""Walking a folder of runs: the one walker every reader of many run folders goes through.

:func:`run_dirs` lists the run folders under a root (or the root itself when
it is a run); :class:`RunFolders` adds their configs, level metrics and
states, each file read once and shared between the readers of one pass (the
pandas loaders of :mod:`tickets_core.analysis`, the sweep's planning).
Folders that are not runs (no ``config.json`` + ``status.json``) are
skipped; a malformed JSON file is a one-line
:class:`~tickets_core.core.errors.RunStoreError` naming it.  Torch- and
pandas-free.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import RunStoreError
from ..core.fsio import read_json
from .paths import RunPaths, is_run_dir
from .status import read_status


def run_dirs(root: str | Path) -> list[Path]:
    """Run folders directly under ``root`` (or ``root`` itself when it is a run), sorted by name."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    if not root.is_dir():
        raise RunStoreError(f"results folder {root} does not exist")
    return sorted(d for d in root.iterdir() if d.is_dir() and is_run_dir(d))


class RunFolders:
    """The run folders under ``root`` (by name) with their configs, level metrics and status, each read once.

    Build one and hand it to several readers to share the reads (the early-bird notebook does).
    """

    def __init__(self, root: str | Path) -> None:
        self.dirs: dict[str, Path] = {d.name: d for d in run_dirs(root)}
        self._cfg: dict[str, dict] = {}
        self._levels: dict[str, list[tuple[int, dict]]] = {}
        self._status: dict[str, dict] = {}

    @classmethod
    def in_memory(cls, runs: dict[str, tuple[dict, list[tuple[int, dict]]]]) -> "RunFolders":
        """Folders held in memory: ``{name: (config, [(level, metrics), ...])}`` (for tests and tools)."""
        out = cls.__new__(cls)
        out.dirs = {name: Path("/runs") / name for name in runs}
        out._cfg = {name: cfg for name, (cfg, _) in runs.items()}
        out._levels = {name: levels for name, (_, levels) in runs.items()}
        out._status = {name: {"state": "done"} for name in runs}
        return out

    def drop_unreadable(self, say) -> list[str]:
        """Leave out the runs whose config or level metrics cannot be read, saying one line each (``say``); their
        names.  For readers that report on what is readable (``report``) instead of failing on one bad run."""
        dropped = []
        for name in list(self.dirs):
            try:
                self.config(name)
                self.levels(name)
            except RunStoreError as e:
                say(f"skipping run {name}: {e}")
                del self.dirs[name]
                dropped.append(name)
        return dropped

    def paths(self, name: str) -> RunPaths:
        return RunPaths(self.dirs[name])

    def config(self, name: str) -> dict | None:
        """The stored ``config.json`` of run ``name`` (None when there is no such run)."""
        if name not in self._cfg and name in self.dirs:
            self._cfg[name] = read_json(self.paths(name).config())
        return self._cfg.get(name)

    def levels(self, name: str) -> list[tuple[int, dict]]:
        """``(level, metrics)`` of the finished levels of run ``name``, ascending; each metrics file must be a
        metrics record (with ``eval`` and ``train`` mappings)."""
        if name not in self._levels:
            paths, found = self.paths(name), []
            for level in paths.levels():
                m = read_json(paths.metrics(level))
                for key in ("eval", "train"):
                    if not isinstance(m, dict) or not isinstance(m.get(key), dict):
                        raise RunStoreError(f"{paths.metrics(level)} is not a metrics record (no {key!r} mapping)")
                found.append((level, m))
            self._levels[name] = found
        return self._levels[name]

    def status(self, name: str) -> dict:
        """:func:`~tickets_core.runs.status.read_status` of run ``name`` (a corrupt one rebuilt, never fatal)."""
        if name not in self._status:
            self._status[name] = read_status(self.dirs[name]) or {}
        return self._status[name]

    def of_kind(self, kind: str) -> list[str]:
        return [n for n in self.dirs if (self.config(n) or {}).get("kind") == kind]

    def of_task(self, tasks: set[str] | None) -> list[str]:
        """Runs whose config names one of ``tasks`` (all runs when None)."""
        return [n for n in self.dirs if tasks is None or ((self.config(n) or {}).get("data") or {}).get("task") in tasks]


def folders(root: str | Path | RunFolders) -> RunFolders:
    """``root`` itself when it already is a :class:`RunFolders`, else the folders under it."""
    return root if isinstance(root, RunFolders) else RunFolders(root)
