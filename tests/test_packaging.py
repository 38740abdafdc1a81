"""Packaging: `pip install .` gives a working install (dependencies, extras, console scripts, the notebooks).

The install test runs offline: a fresh virtual environment sees the tested set of dependencies (this
environment's site-packages, less tickets_core itself) through a ``.pth`` file, and ``pip install --no-index``
must resolve every dependency and extra of pyproject.toml from it, build the wheel from a copy of the sources and
install it; the installed ``tickets-run`` then answers ``--help`` and plans a run with the notebook shipped in
the package.  The static tests check that the declared dependencies cover every third-party import of the
package and agree with requirements.txt's pins.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[_name(name)] = version.strip()
    return out


def _version(text: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def test_the_package_list_names_every_package_folder():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tickets_core").rglob("__init__.py")}
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert declared == found | {"tickets_core.notebooks"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"tickets_core.notebooks": "notebooks"}


def test_dependencies_agree_with_the_tested_pins():
    """Every dependency and extra is pinned in requirements.txt at or above its lower bound."""
    pins = _pins()
    for req in PROJECT["dependencies"] + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]:
        name = _name(req)
        assert name in pins, f"{req}: not in requirements.txt (the tested set)"
        bound = re.search(r">=\s*([\w.]+)", req)
        assert bound and _version(pins[name]) >= _version(bound.group(1)), (req, pins[name])


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported by tickets_core (module -> files), standard library and itself excluded."""
    out: dict[str, set[str]] = {}
    for path in (ROOT / "tickets_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "tickets_core":
                    out.setdefault(top, set()).add(path.name)
    return out


def test_every_third_party_import_is_a_declared_dependency():
    """Each module the package imports comes from a distribution it declares (or one of those needs)."""
    declared = {_name(r) for r in PROJECT["dependencies"]}
    extras = {_name(r) for extra in PROJECT["optional-dependencies"].values() for r in extra}
    optional = {"wandb"}  # report_to wandb: used when installed, a warning line otherwise
    closure, todo = set(), list(declared | extras)
    while todo:  # the declared distributions and everything they require
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            todo += [_name(r) for r in metadata.requires(name) or [] if "extra ==" not in r]
        except metadata.PackageNotFoundError:
            pass
    providers = metadata.packages_distributions()
    missing = {}
    for module, files in _third_party_imports().items():
        dists = {_name(d) for d in providers.get(module, [])}
        if module not in optional and not dists & closure:
            missing[module] = (sorted(dists), sorted(files))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def _copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "tickets_core", dest / "tickets_core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "notebooks", dest / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dest


def _dependency_view(dest: Path) -> Path:
    """A folder of links to this environment's installed distributions, tickets_core's own files left out."""
    dest.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if entry.name.startswith(("tickets_core", "__editable__", "_tickets_core")) or entry.suffix == ".pth":
            continue
        (dest / entry.name).symlink_to(entry)
    return dest


@pytest.mark.slow
def test_pip_install_offline_gives_a_working_tickets_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TICKETS_ROOT", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, env=env).stdout.strip()
    Path(purelib, "_tested_dependencies.pth").write_text(str(_dependency_view(tmp_path / "deps")) + "\n")
    src = _copy_sources(tmp_path / "src")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--find-links", str(wheels),
         "--no-build-isolation", f"{src}[cluster,tracking]"],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    bin_dir = venv / "bin"
    for script in ("tickets-run", "tickets-sweep", "tickets-export", "tickets-report"):
        assert (bin_dir / script).is_file(), script
    where = subprocess.run([str(python), "-c", "import tickets_core, tickets_core.sweep.notebook as n; "
                                               "print(tickets_core.__file__); print(n.NOTEBOOKS_DIR)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the installed copy, its own notebooks
    help_text = subprocess.run([str(bin_dir / "tickets-run"), "--help"], capture_output=True, text=True, env=env,
                               cwd=tmp_path, check=True).stdout
    assert "--learning_rate VALUE" in help_text and "number, default 2e-05" in help_text
    plan = subprocess.run([str(bin_dir / "tickets-run"), "preset=quick", "--dry-run"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert f"{where[1]}/experiment.ipynb -> {tmp_path}/runs/imp-rotten_tomatoes-" in plan.stdout
