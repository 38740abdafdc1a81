"""What a notebook's parameters mean, whoever runs it: Jupyter, papermill from any folder, a sweep, ``tickets-run``.

* **Paths.** A relative path parameter is relative to :func:`project_root` (the
  checkout: the folder holding ``notebooks/`` and ``sweeps/``), never to the
  working directory, which differs between Jupyter (the notebook's folder),
  papermill (wherever it was started) and the sweep.  The sweep and
  ``tickets-run`` pass absolute paths (they resolve theirs against the
  directory they run in, like any command line).
* **Names.** papermill only warns about a parameter the notebook does not
  declare and runs on with the defaults; :func:`check_injected` reads the cell
  papermill injected (the kernel's input history) and turns such a name into a
  one-line error naming the closest declared one.
* **Values** of the analysis notebooks (:func:`analysis`): numbers written as
  text (``3e-4``) become numbers, and a value no run can match (``sparsity:
  1.5``) is a one-line error before anything is read or drawn; the checks are
  the sweep's own (:func:`tickets_core.sweep.checks.analysis_value`).

Torch- and pandas-free.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

from ..core.errors import ConfigError
from ..core.params import FLOAT_TEXT
from ..core.registry import unknown
from . import checks

#: Environment variable naming the folder relative notebook paths are relative to (default: the checkout).
ROOT_ENV = "TICKETS_ROOT"
#: The first line of the cell papermill injects after the ``parameters`` cell.
INJECTED_HEADER = "# Parameters"
#: Where an analysis notebook writes its figures when ``figures_dir`` is None: beside the runs it read.
FIGURES_SUBDIR = "figures"


def project_root() -> Path:
    """The folder relative notebook paths are relative to: ``$TICKETS_ROOT`` when set, else the checkout this
    package lives in (the folder holding ``notebooks/``), else (an installed package) the current directory."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "notebooks").is_dir() and (checkout / "tickets_core").is_dir():
        return checkout
    return Path.cwd()


def anchored(path: str | Path | None) -> Path | None:
    """``path`` made absolute against :func:`project_root` (absolute paths and None as given)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else (project_root() / p).resolve()


# ---------------------------------------------------------------------------
# Names: what papermill injected
# ---------------------------------------------------------------------------


def _assigned(source: str) -> list[str] | None:
    """Names assigned at the top level of ``source`` (None: not Python)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return None
    return [t.id for stmt in body if isinstance(stmt, ast.Assign) for t in stmt.targets if isinstance(t, ast.Name)]


def injected(namespace: Mapping[str, Any]) -> tuple[list[str], list[str]] | None:
    """``(declared, injected)`` parameter names of the last papermill execution in this kernel: the names the
    cell papermill inserted assigns, and those of the cell run just before it (the ``parameters`` cell).
    None when no cell was injected (Jupyter, a plain kernel)."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return None
    for i in range(len(history) - 1, 0, -1):
        source = history[i] if isinstance(history[i], str) else ""
        if source.splitlines()[:1] == [INJECTED_HEADER]:
            names, declared = _assigned(source), _assigned(history[i - 1] or "")
            return (declared, names) if names is not None and declared else None
    return None


def check_injected(namespace: Mapping[str, Any], known: Iterable[str] | None = None) -> None:
    """A one-line :class:`ConfigError` for a parameter papermill passed that the notebook does not declare
    (``known``, default: the names its ``parameters`` cell assigns), naming the closest declared one."""
    found = injected(namespace)
    if found is None:
        return
    declared, names = found
    known = list(known) if known is not None else declared
    for name in names:
        if name not in known:
            error = unknown("parameter", name, known, param=name, listing=False)
            raise ConfigError(f"{error} (papermill passed it; this notebook's parameters are in its parameters "
                              "cell)", param=name)


# ---------------------------------------------------------------------------
# Analysis notebooks
# ---------------------------------------------------------------------------


def _number(value: Any) -> Any:
    """``"0.5"`` / ``"3e-4"`` as a float (papermill -r / -y, YAML 1.1); anything else unchanged."""
    if isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    return value


def analysis(namespace: dict[str, Any]) -> SimpleNamespace:
    """Check an analysis notebook's parameters in its ``namespace`` (``globals()``) before anything is read.

    Unknown names (from papermill) and values no run can match are one-line errors; numbers given as text are
    converted in ``namespace``; a single task or figure format becomes a list.  Returns ``runs_root`` and
    ``figures_dir`` as absolute paths (``figures_dir`` None: ``<runs_root>/figures``, beside the runs) and the
    figure ``formats``.
    """
    check_injected(namespace)
    for key in ("sparsity", "n_std", "width"):
        if key in namespace:
            namespace[key] = _number(namespace[key])
    for key in ("tasks", "figure_formats"):
        if isinstance(namespace.get(key), str):
            namespace[key] = [namespace[key]]
    for key, value in list(namespace.items()):
        if key.startswith("_"):
            continue
        if bad := checks.analysis_value(key, value):
            raise ConfigError(bad, param=key)
    if "runs_root" not in namespace:
        raise ConfigError("an analysis notebook needs a runs_root parameter", param="runs_root")
    runs_root = anchored(namespace["runs_root"])
    if not runs_root.is_dir():
        raise ConfigError(f"runs_root {runs_root} is not a folder (relative paths are relative to "
                          f"{project_root()}); point it at the output_root your runs were written to",
                          param="runs_root")
    figures = namespace.get("figures_dir")
    return SimpleNamespace(runs_root=runs_root,
                           figures_dir=anchored(figures) if figures is not None else runs_root / FIGURES_SUBDIR,
                           formats=tuple(namespace.get("figure_formats") or ("png", "pdf")))
