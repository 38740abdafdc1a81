"""Markdown summary of a folder of runs: the tables a paper (or a README) quotes.

``python -m tickets_core.analysis.report RUNS_ROOT [--n-std 1.0] [--level K]`` prints

1. the dense baseline per task (mean, std over seeds, matching threshold);
2. the highest matching sparsity per task and method (IMP, its variants and the baselines);
3. IMP against random pruning at equal sparsity, level by level;
4. the transfer matrix (source x target task) at one source level, or at each
   source's highest matching level.

Every number is a mean over seeds of one method (:func:`analysis.add_method`:
runs that differ in anything but the seed are kept apart) and says over how
many seeds.

It reads runs through :mod:`tickets_core.analysis.results` and computes with
:mod:`tickets_core.analysis` only (no training code, no torch).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from typing import Iterable, Sequence

import pandas as pd

from .. import analysis
from . import results
from ..core.errors import run_cli
from ..core.kinds import KINDS
from ..runs.walk import RunFolders


def seeds_text(counts: Iterable[int]) -> str:
    """"3 seeds", "2-3 seeds" (the range of the seed counts behind the points of a curve or the cells of a table)."""
    counts = sorted({int(c) for c in counts})
    if not counts:
        return "no seeds"
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{span} seed" + ("" if span == "1" else "s")


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "none" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def _num(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _several(labels) -> bool:
    return len(set(labels)) > 1


def dense_section(df: pd.DataFrame, n_std: float) -> str:
    base = analysis.dense_baselines(df, n_std)
    metric = df.groupby("task")["main_metric"].first()
    variants = _several(base["method"])  # a method column only when some task has several dense variants
    rows = [[t.task] + ([t.method] if variants else []) + [metric.get(t.task, "?"), t.n_seeds,
                                                          f"{t.mean:.4f} ± {t.std:.4f}", f"{t.threshold:.4f}"]
            for t in base.itertuples()]
    header = ["task"] + (["dense variant"] if variants else []) + [
        "metric", "seeds", "dense mean ± std", f"matching threshold (mean - {n_std:g} std)"]
    return md_table(header, rows)


def _pruned_kinds(df: pd.DataFrame) -> list[str]:
    """Kinds with a sparsity curve of their own task (not dense, not transfer), in registry order."""
    present = set(df["kind"])
    return [k for k in KINDS if k in present and k not in ("dense", "transfer")]


def matching_section(df: pd.DataFrame, n_std: float) -> str:
    rows = []
    for kind in _pruned_kinds(df):
        table = analysis.highest_matching_sparsity(df, kind=kind, n_std=n_std)
        reached = df[df["kind"] == kind].groupby(["task", "method"])["sparsity"].max()
        for t in table.itertuples():
            rows.append([t.task, t.method, t.n_seeds, _pct(reached.get((t.task, t.method), math.nan)),
                         _pct(t.sparsity)])
    rows.sort(key=lambda r: r[0])
    return md_table(["task", "method", "seeds", "highest sparsity tried", "highest matching"], rows)


def imp_vs_random_section(df: pd.DataFrame) -> str:
    """Each random-pruning method beside the IMP method its masks copy, level by level (means over seeds)."""
    curves = analysis.curve_table(df, kinds=["imp", "random_prune"]).set_index(["task", "method", "level"])
    rnd = df[df["kind"] == "random_prune"]
    rows = []
    for (task, method, source), _ in rnd.groupby(["task", "method", "source_method"], dropna=False, sort=True):
        imp_method = source if isinstance(source, str) else analysis.only_imp_method(df, task)
        if (task, imp_method) not in curves.index.droplevel(2):
            continue
        imp = curves.loc[(task, imp_method)]
        for level, r in curves.loc[(task, method)].iterrows():
            if level in imp.index and r["sparsity"] > 0:
                i = imp.loc[level]
                rows.append([task, f"{imp_method} / {method}", _pct(r["sparsity"]),
                             f"{_num(i['mean'])} ({int(i['n_seeds'])})", f"{_num(r['mean'])} ({int(r['n_seeds'])})",
                             f"{i['mean'] - r['mean']:+.3f}"])
    return md_table(["task", "methods", "sparsity", "IMP (seeds)", "random pruning (seeds)", "IMP - random"], rows)


def transfer_section(df: pd.DataFrame, n_std: float, level: int | str | None) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = analysis.transfer_matrix(df, level=level, n_std=n_std)
    targets = sorted(table["target_task"].unique())
    rows = []
    for source, g in table.groupby("source", sort=True):
        cells = g.set_index("target_task")
        off = g[g["source_task"] != g["target_task"]]
        row = [source, _pct(off["source_sparsity"].mean() if len(off) else g["sparsity"].mean())]  # the ticket's
        for t in targets:
            if t not in cells.index:
                row.append("")
                continue
            c = cells.loc[t]
            mark = " ✓" if c["matching"] else ""
            row.append(f"{c['score']:.3f} ({c['vs_dense']:+.3f}, {int(c['n_seeds'])}){mark}")
        rows.append(row)
    where = ("each source's highest matching level" if level == analysis.HIGHEST
             else f"source level {int(table['level'].iloc[0])}")
    head = (f"Transfers at {where}; each cell: the target's score, mean over seeds (difference to the target's "
            f"dense mean, number of seeds); ✓ = matching (at least dense mean - {n_std:g} std). Diagonal: the "
            "target's own ticket.")
    note = analysis.transfer_note(table)  # masks across the pooler divide; standard-pruning tickets
    return head + "\n\n" + md_table(["source \\ target", "source sparsity"] + targets, rows) + (
        f"\n\n{note[0].upper() + note[1:]}." if note else "")


def report(root: str, n_std: float = 1.0, level: int | str | None = None) -> str:
    """The report's tables of the runs under ``root``; a run that cannot be read is left out with one line on
    stderr."""
    runs = RunFolders(root)
    runs.drop_unreadable(lambda line: print(line, file=sys.stderr, flush=True))
    df = results.load_runs(runs)
    if len(df) == 0:
        raise analysis.AnalysisError(f"no runs under {root}")
    return report_of(df, n_std, level)


def report_of(df: pd.DataFrame, n_std: float = 1.0, level: int | str | None = None) -> str:
    """:func:`report` of a results table (:func:`results.load_runs`, or a committed record of one:
    :func:`tickets_core.analysis.record.load_record`)."""
    df = analysis.add_method(df)
    parts = ["### Dense baselines", dense_section(df, n_std),
             "### Highest matching sparsity", matching_section(df, n_std)]
    if (df["kind"] == "random_prune").any():
        parts += ["### IMP vs random pruning at equal sparsity", imp_vs_random_section(df)]
    if (df["kind"] == "transfer").any():
        parts += ["### Transfer", transfer_section(df, n_std, level)]
    return "\n\n".join(parts) + "\n"


def _level(text: str) -> int | str:
    if text == analysis.HIGHEST:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer or {analysis.HIGHEST!r}, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tickets_core.analysis.report", description=__doc__.splitlines()[0])
    p.add_argument("runs_root", help="folder holding the run folders")
    p.add_argument("--n-std", type=float, default=1.0, help="matching: dense mean - N std (default 1)")
    p.add_argument("--level", type=_level, default=None,
                   help="source level of the transfer matrix, or 'highest_matching' (each source at its own "
                        "highest matching level); default: the highest level all transfers share")
    a = p.parse_args(argv)

    def tables() -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return report(a.runs_root, a.n_std, a.level).rstrip("\n")

    return run_cli(tables, catch=(ValueError,))  # AnalysisError, a malformed run folder (ConfigError): one line


if __name__ == "__main__":
    sys.exit(main())
