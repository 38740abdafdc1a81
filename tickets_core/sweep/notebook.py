"""Helpers shared by the notebooks, the sweep runner and the notebook tests.

* The experiment notebook's ``parameters`` cell is generated from the config
  declarations (:func:`parameters_source`): one line per flat parameter of
  :data:`tickets_core.core.config.PARAMS`, its default and help.
  ``python -m tickets_core.sweep.notebook --sync`` rewrites it (and strips
  outputs); a test checks the committed cell is in sync.
* :func:`experiment_config` turns the notebook's namespace (or a sweep job's
  parameters) into a resolved :class:`~tickets_core.core.config.RunConfig`, exactly
  as the sweep does, so the sweep knows a run's folder before running it.
* :func:`notebook_parameters` reads the literals of any notebook's
  ``parameters`` cell without running it (the analysis notebooks).
* :func:`strip_outputs` / :func:`check_clean` keep committed notebooks clean
  (``python -m tickets_core.sweep.notebook notebooks/*.ipynb`` strips in place).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import textwrap
from pathlib import Path
from typing import Any, Mapping

from ..core.config import PARAMS, RunConfig
from ..core.errors import ConfigError

_CHECKOUT_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: The notebooks: the checkout's notebooks/, or (a non-editable install) the copy shipped in the package.
NOTEBOOKS_DIR = _CHECKOUT_NOTEBOOKS if _CHECKOUT_NOTEBOOKS.is_dir() else Path(__file__).resolve().parents[1] / "notebooks"
#: The notebook that runs every run kind.
EXPERIMENT_NOTEBOOK = "experiment"
#: Where the notebook's defaults differ from the config's (none: relative paths are relative to the checkout,
#: :func:`tickets_core.sweep.parameters.project_root`, so the config's ``runs`` is the checkout's runs/).
NOTEBOOK_DEFAULTS: dict[str, Any] = {}
_SECTION_TITLES = {None: "run", "model": "model", "data": "task and data", "train": "fine-tuning (every level)",
                   "prune": "pruning"}


def parameters_source() -> str:
    """The experiment notebook's ``parameters`` cell: every flat parameter, its default and its help."""
    lines = ["# Parameters (papermill overrides them in a cell inserted below this one). Generated from",
             "# tickets_core.core.config by `python -m tickets_core.sweep.notebook --sync`; full help:",
             "# tickets_core.core.config.describe(...) or `tickets-run --help`. Relative paths are relative to the",
             "# repository root (the folder holding notebooks/), whatever the working directory."]
    section = object()
    for p in PARAMS.values():
        if p.section != section:
            section = p.section
            lines += ["", f"# -- {_SECTION_TITLES[section]}"]
        value = NOTEBOOK_DEFAULTS.get(p.name, p.default)
        assign = f"{p.name} = {value!r}"
        # papermill skips any line with a second '=' (it cannot tell the comment's from the code's)
        text = p.help.replace(" = ", ": ").replace("=", ":")
        lines.append(f"{assign:<28} # {textwrap.shorten(text, 92, placeholder=' ...')}")
    return "\n".join(lines)


def experiment_config(namespace: Mapping[str, Any]) -> RunConfig:
    """The resolved RunConfig of an experiment notebook's parameters (names of :data:`PARAMS`).

    ``namespace`` may be the notebook's ``globals()``: only parameter names are read, and a name papermill
    injected that is not a parameter is a one-line error naming the closest one.  Relative paths are made
    absolute against :func:`~tickets_core.sweep.parameters.project_root` (the same folder from Jupyter,
    papermill in any directory, a sweep or ``tickets-run``).
    """
    from ..lottery.identity import resolve
    from .parameters import anchored, check_injected

    check_injected(namespace, PARAMS)
    flat = {k: v for k, v in namespace.items() if k in PARAMS}
    for name, value in flat.items():
        if PARAMS[name].path and isinstance(value, str) and value:
            flat[name] = str(anchored(value))
    if isinstance(flat.get("source_run"), str) and ("/" in flat["source_run"] or os.sep in flat["source_run"]):
        flat["source_run"] = str(anchored(flat["source_run"]))  # a folder; a bare run name is looked up
    return resolve(RunConfig.from_flat(**flat))


def _load(path: str | Path):
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise ConfigError(f"notebook not found: {path}") from None


def parameters_cells(nb) -> list:
    """The code cells tagged ``parameters``."""
    return [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]


def _parameters_source(path: str | Path) -> str:
    """The source of the one code cell tagged ``parameters``, read as plain JSON (nbformat's import costs
    seconds: the sweep's planning reads notebooks this way)."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        cells = [c for c in nb["cells"] if c.get("cell_type") == "code"
                 and "parameters" in (c.get("metadata") or {}).get("tags", [])]
    except FileNotFoundError:
        raise ConfigError(f"notebook not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path} is not a readable notebook ({type(e).__name__})") from None
    if len(cells) != 1:
        raise ConfigError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    source = cells[0].get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Names and default values of a notebook's ``parameters`` cell (plain literals only)."""
    out: dict[str, Any] = {}
    for stmt in ast.parse(_parameters_source(path)).body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            raise ConfigError(f"{path}: the parameters cell must hold only 'name = literal' lines "
                              f"(line {stmt.lineno})")
        try:
            out[stmt.targets[0].id] = ast.literal_eval(stmt.value)
        except ValueError:
            raise ConfigError(f"{path}: parameter {stmt.targets[0].id!r} is not a plain literal") from None
    return out


def strip_outputs(path: str | Path, *, sync_parameters: bool = False) -> bool:
    """Remove outputs, execution counts and papermill metadata in place (and, with ``sync_parameters``,
    regenerate the parameters cell); True when the file changed."""
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
    if sync_parameters:
        parameters_cells(nb)[0].source = parameters_source()
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
    """Level, sparsity and score of one run folder (read through :mod:`tickets_core.analysis.results`)."""
    from ..analysis import results

    rows = results.load_runs(run_dir)
    if len(rows) == 0:
        raise ConfigError(f"{run_dir}: no finished level to summarise")
    cols = [c for c in ("level", "sparsity", "main_metric", "score", "source_task", "source_level") if c in rows]
    return rows[cols].sort_values("level").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    """Strip outputs from the notebooks named (``--sync``: all of notebooks/, regenerating the parameters cell)."""
    ap = argparse.ArgumentParser(prog="python -m tickets_core.sweep.notebook", description=main.__doc__)
    ap.add_argument("notebooks", nargs="*", help="notebooks to strip in place")
    ap.add_argument("--sync", action="store_true", help="also regenerate experiment.ipynb's parameters cell")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] or (sorted(NOTEBOOKS_DIR.glob("*.ipynb")) if args.sync else [])
    for p in paths:
        if strip_outputs(p, sync_parameters=args.sync and p.stem == EXPERIMENT_NOTEBOOK):
            print(f"updated {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
