"""Helpers shared by the notebooks, the sweep runner and the notebook tests.

* :func:`config_from_params` turns an experiment notebook's parameters into
  a :class:`~tickets_core.config.RunConfig` exactly as the notebook's config
  cell does, so the sweep knows a run's folder before running it.
* :func:`notebook_parameters` reads the literals of a notebook's
  ``parameters`` cell (without running it).
* :func:`strip_outputs` / :func:`check_clean` keep committed notebooks free
  of outputs (``python -m tickets_core.notebook_utils notebooks/*.ipynb``
  strips them in place).
* :func:`resolve_path` makes a notebook parameter path absolute, relative to
  the notebook's folder.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any, Mapping

from .config import ConfigError, RunConfig

#: Experiment-notebook parameter names that differ from the flat RunConfig name.
PARAM_ALIASES: dict[str, str] = {"model": "model__name_or_path"}
#: Parameter holding any further RunConfig fields by flat name.
EXTRA = "extra"


def config_from_params(params: Mapping[str, Any]) -> RunConfig:
    """RunConfig from an experiment notebook's parameters (plus the ``extra`` dict).

    ``model`` means ``model.name_or_path``; every other name is a flat
    RunConfig name (see :meth:`RunConfig.from_flat`).  A field given both as a
    parameter and inside ``extra`` is an error.
    """
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if key != EXTRA:
            flat[PARAM_ALIASES.get(key, key)] = value
    extra = params.get(EXTRA) or {}
    if not isinstance(extra, Mapping):
        raise ConfigError(f"parameter 'extra' must be a dict of RunConfig fields, got {type(extra).__name__}")
    for key, value in extra.items():
        name = PARAM_ALIASES.get(key, key)
        if name in flat:
            raise ConfigError(f"parameter {key!r} is given both directly and in 'extra'")
        flat[name] = value
    return RunConfig.from_flat(**flat)


def _load(path: str | Path):
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise ConfigError(f"notebook not found: {path}") from None


def parameters_cells(nb) -> list:
    """The code cells tagged ``parameters``."""
    return [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Names and default values of a notebook's ``parameters`` cell (plain literals only)."""
    cells = parameters_cells(_load(path))
    if len(cells) != 1:
        raise ConfigError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    out: dict[str, Any] = {}
    for stmt in ast.parse(cells[0].source).body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            raise ConfigError(f"{path}: the parameters cell must hold only 'name = literal' lines "
                              f"(line {stmt.lineno})")
        try:
            out[stmt.targets[0].id] = ast.literal_eval(stmt.value)
        except ValueError:
            raise ConfigError(f"{path}: parameter {stmt.targets[0].id!r} is not a plain literal") from None
    return out


def strip_outputs(path: str | Path) -> bool:
    """Remove outputs, execution counts and papermill metadata in place; True when the file changed."""
    import nbformat

    nb = _load(path)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("papermill", "execution", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
    nb.metadata.pop("papermill", None)
    after = nbformat.writes(nb)
    if after != before:
        Path(path).write_text(after)
    return after != before


def check_clean(path: str | Path) -> list[str]:
    """Problems that keep a notebook from being committed (empty list: fine)."""
    nb = _load(path)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            problems.append(f"cell {i} has outputs or an execution count")
    n = len(parameters_cells(nb))
    if n != 1:
        problems.append(f"{n} cells tagged 'parameters' (need exactly one)")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("kernelspec name is not 'python3'")
    return problems


def resolve_path(path: str | Path | None, base: str | Path | None = None) -> Path | None:
    """``path`` made absolute against ``base`` (default: the current directory); None stays None."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else (Path(base) if base else Path.cwd()).joinpath(p).resolve()


def run_summary(run_dir: str | Path):
    """Level, sparsity and score of one run folder (read through :mod:`tickets_core.results`)."""
    from . import results

    rows = results.load_runs(run_dir)
    if len(rows) == 0:
        raise ConfigError(f"{run_dir}: no finished level to summarise")
    cols = [c for c in ("level", "sparsity", "main_metric", "score", "source_task", "source_level") if c in rows]
    return rows[cols].sort_values("level").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    """Strip outputs from the notebooks named on the command line."""
    paths = sys.argv[1:] if argv is None else argv
    for p in paths:
        if strip_outputs(p):
            print(f"stripped {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
