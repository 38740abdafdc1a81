"""Transfer: the mask found on a source task, fine-tuned on a target task, against the target's own results.

A mask moves between models with and without a pooler (a BERT classifier's
masks have a pooler entry, its MLM and QA models' do not): on a target without
one the entry is dropped, on a target with one its pooler stays dense.  So a
transferred subnetwork's sparsity over the *target's* prunable weights can
differ a little from the ticket's own (``source_sparsity``); each cell is
compared with the target's own ticket at the source ticket's sparsity, and
:func:`transfer_note` says so in a sentence for the figure.
"""

from __future__ import annotations

import math
import warnings

import pandas as pd

from ..core.kinds import KINDS
from ..core.settings import HIGHEST  # the ``level`` value for "each source at its own highest matching level"
from .common import SPARSITY_TOL, AnalysisError, over_seeds, require, scores
from .matching import baseline_of, dense_baselines, highest_matching_sparsity, is_matching
from .methods import add_method, only_imp_method

TRANSFER_COLUMNS = ["source", "source_task", "target_task", "method", "source_method", "level", "sparsity", "score",
                    "score_std", "n_seeds", "dense_method", "dense_mean", "n_dense_seeds", "threshold", "imp_score",
                    "imp_n_seeds", "vs_dense", "vs_imp", "matching", "source_sparsity"]


def _at_sparsity(rows: pd.DataFrame, sparsity: float, tol: float) -> pd.DataFrame:
    return rows[(rows["sparsity"] - sparsity).abs() <= tol]


def _own(scored: pd.DataFrame, task: str, method) -> pd.DataFrame:
    """``task``'s own tickets of ``method`` (the method the transferred masks came from)."""
    return scored[(scored["task"] == task) & (scored["method"] == method)]


def _highest_levels(df: pd.DataFrame, pairs, metric: str, n_std: float, ddof: int) -> dict:
    """(task, method) -> the method's highest matching level on the task (pairs without one are left out)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for task, method in pairs:
            if not isinstance(method, str):
                continue
            try:
                h = highest_matching_sparsity(df, method=method, tasks=[task], metric=metric, n_std=n_std, ddof=ddof)
            except AnalysisError:
                continue
            if len(h) and not math.isnan(h["level"].iloc[0]):
                out[(task, method)] = int(h["level"].iloc[0])
    return out


def transfer_matrix(df: pd.DataFrame, *, sparsity: float | None = None, level: int | str | None = None,
                    metric: str = "score", n_std: float = 1.0, ddof: int = 1, tol: float = SPARSITY_TOL,
                    include_diagonal: bool = True) -> pd.DataFrame:
    """Source x target table of transferred subnetworks, one cell per transfer method.

    Uses the ``transfer`` rows (``source_task`` -> ``task``) at ``level``, at
    ``sparsity`` (within ``tol``), or with ``level="highest_matching"`` each
    source at its own highest matching level (that of the method the mask
    came from, ``source_method``, on the source task, with this ``n_std``);
    with neither, the highest level all transfers share.  One row per
    (source, target), where ``source`` is the transfer method without its
    "transfer from " prefix (the source task, plus what sets the method apart):

    ``source, source_task, target_task, method, source_method, level, sparsity,
    score, score_std, n_seeds, dense_method, dense_mean, n_dense_seeds, threshold,
    imp_score, imp_n_seeds, vs_dense, vs_imp, matching``

    ``sparsity`` is over the target's prunable weights, ``source_sparsity`` the
    ticket's own (they differ when a pooler entry was dropped or added, see the
    module docstring).  ``score`` is the mean over seeds (``n_seeds``; ``score_std`` their spread),
    ``vs_dense = score - dense_mean`` (the target's dense variant trained like
    the transfer, over ``n_dense_seeds`` seeds; 0 without one), ``vs_imp = score - imp_score`` (the target's own ticket of
    the source method at the source ticket's sparsity), ``matching`` is ``score >=
    threshold`` (False without a dense baseline).  With ``include_diagonal``
    the diagonal (source = target) is the target's own ticket itself.
    """
    require(df, ("task", "kind", "level", "seed", "sparsity", "source_task"), "transfer matrix")
    if sparsity is not None and level is not None:
        raise AnalysisError("transfer matrix: give sparsity or level, not both")
    if isinstance(level, str) and level != HIGHEST:
        raise AnalysisError(f"transfer matrix: level must be an integer or {HIGHEST!r}, got {level!r}")
    df = add_method(df)
    scored = scores(df, metric)
    tr = scored[(scored["kind"] == "transfer") & scored["source_task"].notna()]
    if len(tr) == 0:
        raise AnalysisError("transfer matrix: no transfer runs with a source task and a score")
    fallback = {s: only_imp_method(df, s) for s in tr.loc[tr["source_method"].isna(), "source_task"].unique()}
    tr = tr.assign(source_method=[m if isinstance(m, str) else fallback[s]
                                  for s, m in zip(tr["source_task"], tr["source_method"])])
    highest = {}
    if level == HIGHEST:
        pairs = {(t, m) for s, target, m in zip(tr["source_task"], tr["task"], tr["source_method"])
                 for t in (s, target)}
        highest = _highest_levels(df, pairs, metric, n_std, ddof)
        wanted = [highest.get((s, m)) for s, m in zip(tr["source_task"], tr["source_method"])]
        sel = tr[[w is not None and lv == w for w, lv in zip(wanted, tr["level"])]]
        lost = sorted({str(s) for s, w in zip(tr["source_task"], wanted) if w is None})
        if lost:
            warnings.warn(f"transfer matrix: no highest matching level for the source(s) {', '.join(lost)} "
                          "(no matching level, no dense baseline, or the source runs are not in the table)",
                          stacklevel=2)
        what = "its source's highest matching level"
    else:
        if sparsity is None and level is None:
            level = int(tr.groupby(["source_task", "task"])["level"].max().min())
        sel = tr[tr["level"] == level] if level is not None else _at_sparsity(tr, sparsity, tol)
        what = f"level {level}" if level is not None else f"sparsity {sparsity}"
    if len(sel) == 0:
        raise AnalysisError(f"transfer matrix: no transfer run reached {what}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = dense_baselines(df, n_std, metric=metric, ddof=ddof)

    found_at = df.set_index(["run", "level"])["sparsity"].to_dict()  # a source run's level -> its sparsity

    def cell(source: str, source_task: str, target: str, rows: pd.DataFrame, source_method) -> dict:
        stats = over_seeds(rows.assign(_all=0), ["_all"], metric, ddof).iloc[0]
        nominal = [found_at.get((r, lv)) for r, lv in zip(rows.get("source_run", ()), rows.get("source_level", ()))]
        nominal = [x for x in nominal if x is not None and not pd.isna(x)]
        ticket = float(sum(nominal) / len(nominal)) if nominal else float(stats["sparsity"])
        own = _at_sparsity(_own(scored, target, source_method), ticket, tol)
        own_stats = over_seeds(own.assign(_all=0), ["_all"], metric, ddof).iloc[0] if len(own) else None
        dense_method = rows["dense_method"].dropna().iloc[0] if rows["dense_method"].notna().any() else None
        b = baseline_of(base, target, dense_method)
        dense_mean = float(b["mean"]) if b is not None else math.nan
        thr = float(b["threshold"]) if b is not None else math.nan
        imp_score = float(own_stats["mean"]) if own_stats is not None else math.nan
        score = float(stats["mean"])
        return {"source": source, "source_task": source_task, "target_task": target,
                "method": rows["method"].iloc[0], "source_method": source_method, "level": int(rows["level"].iloc[0]),
                "sparsity": float(stats["sparsity"]), "score": score, "score_std": float(stats["std"]),
                "n_seeds": int(stats["n_seeds"]), "dense_method": dense_method, "dense_mean": dense_mean,
                "n_dense_seeds": int(b["n_seeds"]) if b is not None else 0, "threshold": thr, "imp_score": imp_score,
                "imp_n_seeds": int(own_stats["n_seeds"]) if own_stats is not None else 0,
                "vs_dense": score - dense_mean, "vs_imp": score - imp_score, "matching": bool(is_matching(score, thr)),
                "source_sparsity": ticket}

    out, suffixes = [], set()
    for (src, target, method), g in sel.groupby(["source_task", "task", "method"], sort=True):
        suffix = method.removeprefix(f"transfer from {src}")
        source_method = g["source_method"].iloc[0]
        suffixes.add((suffix, source_method))
        out.append(cell(src + suffix, src, target, g, source_method))
    if include_diagonal:
        done = {(r["source"], r["target_task"]) for r in out}
        # one diagonal cell per task and source method: in the task's row of that method when the table has one
        # (its suffix may be another transfer's: "mlm (of IMP)" beside "sst2"), else in a row of its own
        row_of = {}
        for r in out:
            row_of.setdefault((r["source_task"], r["source_method"]), r["source"])
        first_suffix = {}
        for suffix, source_method in sorted(suffixes, key=str):
            first_suffix.setdefault(source_method, suffix)
        for source_method, suffix in first_suffix.items():
            for task in sorted(set(sel["source_task"]) | set(sel["task"])):
                name = row_of.get((task, source_method), task + suffix)
                own = _own(scored, task, source_method)
                if level == HIGHEST:
                    own = own[own["level"] == highest.get((task, source_method), -1)]
                else:
                    own = _at_sparsity(own, float(sel["sparsity"].mean()), tol)
                if (name, task) not in done and len(own):
                    own = own[own["level"] == own["level"].iloc[0]]  # the diagonal cell's sparsity is its own
                    out.append(cell(name, task, task, own, source_method))
    return pd.DataFrame(out, columns=TRANSFER_COLUMNS).sort_values(["source", "target_task"], ignore_index=True)


def transfer_note(table: pd.DataFrame, tol: float = SPARSITY_TOL / 10) -> str | None:
    """The sentences a transfer figure needs under it (None: none): cells whose sparsity on the target differs
    from the ticket's own (masks moved between models with and without a pooler), and rows of standard-pruning
    tickets (no rewind: how the reference code made the MLM tickets it published, docs/paper-grid.md)."""
    if len(table) == 0:
        return None
    notes = []
    if "source_sparsity" in table.columns:
        off = table[(table["sparsity"] - table["source_sparsity"]).abs() > tol]
        if len(off):
            eg = off.iloc[0]
            notes.append(f"sparsity over each target's prunable weights: a mask from a model without a pooler leaves "
                         f"the target's pooler dense, a pooler entry is dropped on a target without one (e.g. "
                         f"{eg['source']} -> {eg['target_task']}: {100 * eg['source_sparsity']:.1f}% -> "
                         f"{100 * eg['sparsity']:.1f}%); cells are compared with the target's own ticket at the "
                         "source ticket's sparsity")
    standard = KINDS["standard"].label
    if table["source_method"].astype(str).str.startswith(standard).any():
        notes.append(f"'{standard}' tickets: the fine-tuned model pruned with its weights kept (no rewind), the "
                     "way the reference code made the MLM tickets it published")
    return "; ".join(notes) or None
