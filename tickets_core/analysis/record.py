"""A committed record of a study's results: the results table as a small CSV, no weights, no masks.

``runs/`` is not committed (weights and masks are large), so a number quoted in
the README would otherwise rest on files nobody else has.  :func:`write_record`
keeps what the tables are computed from: one row per (run, finished level) of
:func:`tickets_core.analysis.results.load_runs` (kind, task, seed, level,
sparsity, metric, score, evaluation metrics, source, and the run's
result-changing ``config``, stored as JSON text), plus ``provenance.json``
(the commit and the command that wrote it).  :func:`load_record` reads it back
as the same table, so :func:`tickets_core.analysis.report.report_of` and every
analysis function give from the record exactly what they give from the runs
(tests/test_doc_tables.py checks it).

``python -m tickets_core.analysis.record RUNS_ROOT DEST`` (``make demo``
writes ``results/demo/`` this way).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..core.errors import RunStoreError, run_cli
from ..core.fsio import atomic_write_json, atomic_write_text
from .results import RUN_COLUMNS, load_runs

LEVELS = "levels.csv"
PROVENANCE = "provenance.json"
DROPPED = ("run_dir", "state")  # where the runs lay and whether they were finished: not results


def _commit(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def record_table(df: pd.DataFrame) -> pd.DataFrame:
    """The results table as it is recorded: ``config`` as sorted JSON text, run folders' locations dropped."""
    out = df.drop(columns=[c for c in DROPPED if c in df.columns]).copy()
    out["config"] = [json.dumps(c, sort_keys=True, default=str) for c in out["config"]]
    return out


def write_record(root: str | Path, dest: str | Path, *, command: str | None = None) -> Path:
    """Write the record of the runs under ``root`` to folder ``dest`` (``levels.csv``, ``provenance.json``)."""
    df = load_runs(root)
    if df.empty:
        raise RunStoreError(f"no finished levels under {root}: nothing to record (run the study first)")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    record_table(df).to_csv(buf, index=False, float_format="%.17g", lineterminator="\n")
    atomic_write_text(dest / LEVELS, buf.getvalue())
    atomic_write_json(dest / PROVENANCE, {
        "commit": _commit(Path(__file__).resolve().parent), "command": command,
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runs": int(df["run"].nunique()), "levels": int(len(df))})
    return dest


def load_record(dest: str | Path) -> pd.DataFrame:
    """The results table of a record written by :func:`write_record` (``config`` parsed back to dicts)."""
    path = Path(dest) / LEVELS
    if not path.is_file():
        raise RunStoreError(f"{path}: no such record (write it with python -m tickets_core.analysis.record)")
    df = pd.read_csv(path, keep_default_na=True)
    missing = [c for c in RUN_COLUMNS if c not in DROPPED and c not in df.columns]
    if missing:
        raise RunStoreError(f"{path} is not a results record: no column(s) {', '.join(missing)}")
    df["config"] = [json.loads(c) for c in df["config"]]
    for col in ("source_run", "source_task", "source_path"):  # empty cells are None in load_runs, not NaN
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tickets_core.analysis.record", description=__doc__.splitlines()[0])
    p.add_argument("runs_root", help="folder holding the run folders")
    p.add_argument("dest", help="folder to write levels.csv and provenance.json to (e.g. results/demo)")
    a = p.parse_args(argv)
    command = "python -m tickets_core.analysis.record " + " ".join(sys.argv[1:] if argv is None else argv)
    return run_cli(lambda: f"wrote {write_record(a.runs_root, a.dest, command=command)}", catch=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
