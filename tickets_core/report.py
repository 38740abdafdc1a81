"""Markdown summary of a folder of runs: the tables a paper (or a README) quotes.

``python -m tickets_core.report RUNS_ROOT [--n-std 1.0] [--level K]`` prints

1. the dense baseline per task (mean, std over seeds, matching threshold);
2. the highest matching sparsity per task for IMP (and for random pruning);
3. IMP against random pruning at equal sparsity, level by level;
4. the transfer matrix (source task x target task) at one source level.

It reads runs through :mod:`tickets_core.results` and computes with
:mod:`tickets_core.analysis` only (no training code, no torch).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from typing import Iterable, Sequence

import pandas as pd

from . import analysis, results


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "none" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def _num(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def dense_section(df: pd.DataFrame, n_std: float) -> str:
    base = analysis.dense_baselines(df, n_std)
    metric = df.groupby("task")["main_metric"].first()
    rows = [[t.task, metric.get(t.task, "?"), t.n_seeds, f"{t.mean:.4f} ± {t.std:.4f}", f"{t.threshold:.4f}"]
            for t in base.itertuples()]
    return md_table(["task", "metric", "seeds", "dense mean ± std", f"matching threshold (mean - {n_std:g} std)"], rows)


def matching_section(df: pd.DataFrame, n_std: float) -> str:
    rows = []
    kinds = [k for k in ("imp", "random_prune", "oneshot", "standard") if (df["kind"] == k).any()]
    tables = {k: analysis.highest_matching_sparsity(df, kind=k, n_std=n_std).set_index("task") for k in kinds}
    reached = df[df["kind"] == "imp"].groupby("task")["sparsity"].max()
    for task in tables["imp"].index:
        row = [task, _pct(reached.get(task, math.nan))]
        for k in kinds:
            t = tables[k]
            row.append(_pct(t.loc[task, "sparsity"]) if task in t.index else "-")
        rows.append(row)
    header = ["task", "highest sparsity tried"] + [f"highest matching: {analysis.method_label(k)}" for k in kinds]
    return md_table(header, rows)


def imp_vs_random_section(df: pd.DataFrame) -> str:
    scored = df[df["score"].notna()]
    imp = scored[scored["kind"] == "imp"].groupby(["task", "level"]).agg(sparsity=("sparsity", "mean"),
                                                                         imp=("score", "mean"))
    rnd = scored[scored["kind"] == "random_prune"].groupby(["task", "level"]).agg(random=("score", "mean"))
    both = imp.join(rnd, how="inner").reset_index()
    both = both[both["sparsity"] > 0]
    rows = [[r.task, _pct(r.sparsity), _num(r.imp), _num(r.random), f"{r.imp - r.random:+.3f}"]
            for r in both.itertuples()]
    return md_table(["task", "sparsity", "IMP", "random pruning", "IMP - random"], rows)


def transfer_section(df: pd.DataFrame, n_std: float, level: int | None) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = analysis.transfer_matrix(df, level=level, n_std=n_std)
    targets = sorted(table["target_task"].unique())
    rows = []
    for source, g in table.groupby("source_task", sort=True):
        cells = g.set_index("target_task")
        row = [source]
        for t in targets:
            if t not in cells.index:
                row.append("")
                continue
            c = cells.loc[t]
            mark = " ✓" if c["matching"] else ""
            row.append(f"{c['score']:.3f} ({c['vs_dense']:+.3f}){mark}")
        rows.append(row)
    sp = table["sparsity"].mean()
    head = (f"Source level {int(table['level'].iloc[0])} (sparsity {_pct(sp)}); each cell: the target's score "
            f"(difference to the target's dense mean); ✓ = matching (at least dense mean - {n_std:g} std). "
            "Diagonal: the target's own IMP ticket.")
    return head + "\n\n" + md_table(["source \\ target"] + targets, rows)


def report(root: str, n_std: float = 1.0, level: int | None = None) -> str:
    df = results.load_runs(root)
    if len(df) == 0:
        raise analysis.AnalysisError(f"no runs under {root}")
    parts = ["### Dense baselines", dense_section(df, n_std),
             "### Highest matching sparsity", matching_section(df, n_std)]
    if (df["kind"] == "random_prune").any():
        parts += ["### IMP vs random pruning at equal sparsity", imp_vs_random_section(df)]
    if (df["kind"] == "transfer").any():
        parts += ["### Transfer", transfer_section(df, n_std, level)]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tickets_core.report", description=__doc__.splitlines()[0])
    p.add_argument("runs_root", help="folder holding the run folders")
    p.add_argument("--n-std", type=float, default=1.0, help="matching: dense mean - N std (default 1)")
    p.add_argument("--level", type=int, default=None, help="source level of the transfer matrix (default: highest shared)")
    a = p.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sys.stdout.write(report(a.runs_root, a.n_std, a.level))
    except ValueError as e:  # AnalysisError, a malformed run folder (ConfigError): one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
