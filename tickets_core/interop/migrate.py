"""Bring run folders written before run identity was path-free up to date.

``python -m tickets_core.interop.migrate RUNS_ROOT [--dry-run]``

Older run folders were named from a hash that included the data folder's
path and a branch's source-run path.  They stay readable as they are
(:mod:`tickets_core.analysis.results` loads them), but a sweep would not recognise
them as finished.  This command, for every run folder under ``RUNS_ROOT``:
resolves its config (identifies its data by content; the data must still be
where ``config.json`` says, or be the installed package), refers to its
source run by the source's new run name, renames the folder to the name the
current code gives it, and updates the ``source.run`` records of its levels.
A leftover ``carry.safetensors`` from an interrupted run moves into the
level folder it was written for.  Folders already up to date are left alone;
``--dry-run`` prints what would change.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..core.config import RunConfig
from ..core.errors import ConfigError, run_cli
from ..core.fsio import atomic_write_json, atomic_write_text, read_json
from ..lottery.identity import resolve
from ..core.kinds import get_kind
from ..runs.paths import RunPaths, is_run_dir


def _configs(old: dict, renamed: dict[str, str]) -> tuple[RunConfig, RunConfig]:
    """The stored config and today's: resolved, its source run named by the source's new name."""
    stored = RunConfig.from_dict(old)
    if stored.source_run is None:
        return stored, resolve(stored)
    source = Path(stored.source_run).name
    return stored, resolve(dataclasses.replace(stored, source_run=renamed.get(source, source)))


def _move_carry(d: Path, dry: bool) -> str | None:
    old = d / "carry.safetensors"
    if not old.is_file():
        return None
    from ..lottery.experiment import stored_level  # (imports torch: only for a run folder with this leftover)

    level = int(stored_level(old) or -1)
    target = RunPaths(d).carry(level)
    if not dry:
        if RunPaths(d).metrics(level).is_file():
            old.unlink()  # the level it was for is done: nothing needs it
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            old.replace(target)
    return f"carry.safetensors -> {target.relative_to(d)}"


def migrate(root: str | Path, *, dry_run: bool = False, log=print) -> dict[str, str]:
    """Migrate every run folder under ``root``; returns old name -> new name of the renamed ones."""
    root = Path(root)
    runs = sorted(d for d in root.iterdir() if d.is_dir() and is_run_dir(d))
    configs = {d.name: read_json(RunPaths(d).config()) for d in runs}
    # Trunks first: a branch's new name depends on its source's new name.
    order = sorted(runs, key=lambda d: get_kind(configs[d.name].get("kind", "imp")).is_branch)
    renamed: dict[str, str] = {}
    for d in order:
        try:
            stored, cfg = _configs(configs[d.name], renamed)
        except ConfigError as e:
            log(f"skip {d.name}: {e}")
            continue
        new = cfg.run_name()
        notes = [n for n in [_move_carry(d, dry_run)] if n]
        if new != d.name:
            if (root / new).exists():
                log(f"skip {d.name}: {root / new} already exists")
                continue
            renamed[d.name] = new
            notes.append(f"-> {new}")
        if stored != cfg:
            notes.append("config.json updated")
        if not dry_run:
            atomic_write_text(RunPaths(d).config(), cfg.to_json() + "\n")
            for k in RunPaths(d).levels():
                m = read_json(RunPaths(d).metrics(k))
                src = m.get("source") or {}
                if src.get("run") in renamed:
                    src["run"] = renamed[src["run"]]
                    atomic_write_json(RunPaths(d).metrics(k), m)
            if new != d.name:
                d.rename(root / new)
        if notes:
            log(f"{d.name}: {'; '.join(notes)}")
    return renamed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tickets_core.interop.migrate", description=__doc__.splitlines()[0])
    ap.add_argument("runs_root", help="folder holding the run folders")
    ap.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    args = ap.parse_args(argv)

    def action() -> str:
        if not Path(args.runs_root).is_dir():
            raise ConfigError(f"{args.runs_root} is not a folder")
        renamed = migrate(args.runs_root, dry_run=args.dry_run)
        return f"{len(renamed)} run folder(s) {'would be ' if args.dry_run else ''}renamed"

    return run_cli(action)


if __name__ == "__main__":
    raise SystemExit(main())
