"""``tickets-run``: one run from the command line, executed as a sweep executes it.

::

    tickets-run preset=quick                       # a demo-sized IMP run on the offline data (minutes on a CPU)
    tickets-run task=sst2 model=bert-base-uncased learning_rate=3e-5 seed=1
    tickets-run --task rotten_tomatoes --levels 3  # the same parameters as flags
    tickets-run kind=dense seed=2 --dry-run        # the resolved run, nothing executed

Every parameter of :data:`tickets_core.core.config.PARAMS` is a ``KEY=VALUE``
argument or a ``--KEY VALUE`` flag; ``--help`` lists them with their type,
default and help, generated from their declarations.  Values are read as YAML
(``3e-4``, ``null``/``None``, ``true``, ``[tensorboard]``); the config checks
them and an unknown name is one line naming the closest.  Relative paths are
relative to the current directory, as in a sweep file.

The run is the one the sweep would plan for these parameters (same flat
parameters, progress bars off unless asked, the folder
``<output_root>/<kind>-<task>-<hash8>/``): ``notebooks/experiment.ipynb``
executed through papermill into ``<run folder>/notebook.ipynb``
(:func:`tickets_core.sweep.worker.execute_job`), its printed lines shown as
they come.  A finished run is not run again; a half-finished one resumes.
Exit status: 0 done, 1 the run failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from ..core.config import PARAMS, lookup
from ..core.errors import ConfigError, one_line
from ..core.params import Param, type_name
from ..core.registry import unknown

STOPPED = 130


def _type_text(p: Param) -> str:
    return type_name(p.hint).removeprefix("a ").removeprefix("an ")


def parse_value(text: str) -> Any:
    """A command-line value as YAML reads it (``3e-4`` a float, ``null``/``None`` None, ``[a, b]`` a list)."""
    import yaml

    from .yamlfile import Loader

    if text.strip() in ("None", "none"):
        return None
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError:
        return text


def build_parser() -> argparse.ArgumentParser:
    """The parser: one ``--name`` flag per parameter, its help generated from the declaration."""
    ap = argparse.ArgumentParser(
        prog="tickets-run", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="tickets-run [KEY=VALUE ...] [--KEY VALUE ...] [--dry-run]",
        description="Run one experiment (any run kind) into its run folder, as a sweep runs it: "
                    "notebooks/experiment.ipynb executed by papermill into <run folder>/notebook.ipynb.",
        epilog="Parameters are KEY=VALUE arguments or --KEY VALUE flags (values read as YAML: 3e-4, null, true, "
               "[a, b]).\nExamples:\n  tickets-run preset=quick\n  tickets-run task=sst2 model=bert-base-uncased "
               "seed=1 report_to=[tensorboard]\n  tickets-run kind=dense seed=2 --dry-run")
    ap.add_argument("assignments", nargs="*", metavar="KEY=VALUE", help="parameters (see below)")
    ap.add_argument("--dry-run", action="store_true", help="print the resolved run and its folder; run nothing")
    section = object()
    group = None
    for p in PARAMS.values():
        if p.section != section:
            section = p.section
            group = ap.add_argument_group(f"parameters: {p.section or 'run'}")
        choices = f"; one of {', '.join(map(str, p.choices))}" if p.choices else ""
        text = f"{_type_text(p)}, default {p.default!r}{choices}. {p.help}".replace("%", "%%")
        group.add_argument(f"--{p.name}", dest=f"param:{p.name}", metavar="VALUE", default=argparse.SUPPRESS,
                           help=textwrap.shorten(text, 400, placeholder=" ..."))
    return ap


def parameters(args: argparse.Namespace, cwd: Path | None = None) -> dict[str, Any]:
    """The flat parameters of the command line (KEY=VALUE and flags), paths made absolute against ``cwd``."""
    given: dict[str, Any] = {}
    for item in args.assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item!r} is not KEY=VALUE (e.g. learning_rate=3e-4)")
        given[key.strip().replace("-", "_")] = parse_value(value)
    given.update({k.removeprefix("param:"): parse_value(v) for k, v in vars(args).items() if k.startswith("param:")})
    out: dict[str, Any] = {"progress": False}  # as the sweep: no progress bars in a notebook nobody watches
    base = cwd or Path.cwd()
    for key, value in given.items():
        try:
            p = lookup(key)
        except ConfigError:
            raise unknown("parameter", key, PARAMS, param=key, listing=False) from None
        if isinstance(value, str) and value and (p.path or (p.name == "source_run" and os.sep in value)):
            value = str((base / Path(value).expanduser()).resolve())
        out[p.name] = value
    out.setdefault("output_root", str((base / PARAMS["output_root"].default).resolve()))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``tickets-run``)."""
    from .notebook import EXPERIMENT_NOTEBOOK, NOTEBOOKS_DIR, experiment_config, run_summary
    from .planner import Job

    args = build_parser().parse_args(argv)
    try:
        flat = parameters(args)
        cfg = experiment_config(flat)
    except ConfigError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    name = cfg.run_name()
    run_dir = Path(cfg.output_root) / name
    notebook = NOTEBOOKS_DIR / f"{EXPERIMENT_NOTEBOOK}.ipynb"
    job = Job(name=name, label=f"{cfg.kind} {cfg.data.task} seed {cfg.seed}", notebook=notebook,
              output=run_dir / "notebook.ipynb", parameters=flat, run_dir=run_dir)
    print(f"run {name}: {job.label}; folder {run_dir}", flush=True)
    if args.dry_run:
        print(f"would execute {notebook} -> {job.output} with {flat}")
        return 0
    from ..runs.status import run_state
    from .worker import execute_job

    if run_state(run_dir) == "done":
        print("already done (delete the folder to run it again)")
    else:
        result = execute_job(job, stream=True)
        if not result["ok"]:
            print(f"failed: {result['error']} (the executed notebook: {job.output})", file=sys.stderr)
            return STOPPED if result["interrupted"] else 1
        print(f"done in {result['time_s']:.0f} s; executed notebook: {job.output}")
    print(run_summary(run_dir).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
