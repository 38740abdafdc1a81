"""Methods: what the analysis averages over seeds, and nothing else.

A *method* is a run kind (its registry label, :mod:`tickets_core.core.kinds`) plus
every result-changing setting that sets its runs apart from the other runs of
that kind in the table: "IMP", or "IMP, rewind 2" beside "IMP, rewind 0", or
"IMP, geometric 0.2" beside "IMP, linear 0.1".  Result-changing settings are
the parameters declared ``hashed`` in :data:`tickets_core.core.config.PARAMS` (and
a mask file's content), except the seed (averaged over), the task (the
tables' other axis), the kind itself, and which source run and levels a branch
reads (its rows say).  A setting is shown when it differs between runs of the
kind on the same task (and source task), anywhere in the table, so a legend
means the same in every panel.  Transfers name their source task ("transfer
from sst2"), a mask file's transfers the file.  A branch whose sources are
different methods (random pruning of "IMP, rewind 0" and of "IMP, rewind 2"
with otherwise equal settings) also names its source's method.

Dense baselines: the *dense fine-tunings* of a task are its ``dense`` runs and
level 0 of its ``imp`` runs.  They are grouped by everything that can change a
dense fine-tuning (:func:`tickets_core.core.settings.dense_settings`, the one
definition the sweep uses too: the settings outside the pruning section,
except ``include_pooler`` and parameters only one kind reads; the early-bird
options; ``levels`` under ``lr_schedule: across_levels``), so a dense variant
averages only seeds; its label is "dense" plus what sets it apart ("dense, lr
0.0001").  A method is compared with the dense variant of its task trained
exactly like it (``dense_method``); a method trained differently from every
dense fine-tuning of its task has none (``dense_method`` is None).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..core.config import PARAMS
from ..core.kinds import KINDS
from ..core.settings import NOT_A_SETTING, dense_settings
_SECTION_ORDER = {"prune": 0, "model": 1, "data": 2, "train": 3, None: 4}


def method_label(kind: str, source_task: Any = None, source_path: Any = None) -> str:
    """Display name of a run kind (its registry label); transfers name their source task or mask file."""
    label = KINDS[kind].label if kind in KINDS else kind
    if kind == "transfer" and isinstance(source_task, str) and source_task:
        label = f"transfer from {source_task}"
    elif kind == "transfer" and isinstance(source_path, str) and source_path:
        label = f"transfer from {Path(source_path).name}"
    return label


def only_imp_method(df: pd.DataFrame, task: str) -> str | None:
    """``task``'s only IMP method in ``df`` (labelled by :func:`add_method`); None when it has none or several.

    The method a branch's masks came from when its source run is not in the table.
    """
    imp = df[(df["task"] == task) & (df["kind"] == "imp")]["method"].unique()
    return imp[0] if len(imp) == 1 else None


# ---------------------------------------------------------------------------
# Settings and their display
# ---------------------------------------------------------------------------


def _number(v: Any) -> str:
    if isinstance(v, float):
        short = f"{v:g}"
        return short if float(short) == v else repr(v)
    return str(v)


_PARTS: dict[str, Callable[[Any], str]] = {
    "rewind_step": lambda v: f"rewind {v}",
    "reset_head": lambda v: "head reset" if v else "head kept",
    "include_pooler": lambda v: "pooler pruned" if v else "pooler dense",
    "learning_rate": lambda v: f"lr {_number(v)}",
    "num_epochs": lambda v: f"{_number(v)} epochs",
    "max_steps": lambda v: f"{v} steps" if v is not None else "max_steps None",
    "batch_size": lambda v: f"batch {v}",
    "levels": lambda v: f"{v} levels",
    "strategy": str,
    "model": str,
    "mask_fingerprint": lambda v: f"mask {str(v).removeprefix('sha256:')[:8]}",
    "early_bird_every": lambda v: f"early-bird every {v}" if v is not None else "",  # off: plain IMP, unnamed
    "early_bird_span": lambda v: f"queue over {_number(v)} of a level" if v is not None else "",
    "early_bird_min_fraction": lambda v: f"no stop before {_number(v)}" if v else "",
    "early_cut_fraction": lambda v: f"cut at {_number(v)} of each level" if v is not None else "",
}


def _order(name: str) -> tuple:
    p = PARAMS.get(name)
    if p is None:
        return (len(_SECTION_ORDER), 0, name)
    return (_SECTION_ORDER.get(p.section, len(_SECTION_ORDER)), list(PARAMS).index(name), name)


def describe_settings(config: dict, names: list[str]) -> list[str]:
    """Display parts of the settings ``names`` of one run's ``config`` ("rewind 2", "geometric 0.2")."""
    parts, names = [], sorted((n for n in names if n in config), key=_order)  # a setting it lacks: not described
    for name in names:
        value = config.get(name)
        if name in ("schedule", "rate"):
            if "schedule" in names and name == "rate":
                continue
            parts.append(f"{config.get('schedule')} {_number(config.get('rate'))}")
        else:
            parts.append(_PARTS[name](value) if name in _PARTS else f"{name} {_number(value)}")
    return [p for p in parts if p]


def _canon(config: Any) -> dict[str, str]:
    """Comparable values of a run's settings (JSON text), without :data:`NOT_A_SETTING`."""
    if not isinstance(config, dict):
        return {}
    return {k: json.dumps(v, sort_keys=True, default=str) for k, v in config.items() if k not in NOT_A_SETTING}


def _varying(canon: pd.Series, groups: list[pd.Index]) -> list[str]:
    """Setting names whose value differs between the runs (``canon`` index) of some group."""
    out: set[str] = set()
    for members in groups:
        values = [canon[r] for r in members]
        for name in set().union(*values):
            if len({v.get(name) for v in values}) > 1:
                out.add(name)
    return sorted(out, key=_order)


def _label(base: str, config: Any, names: list[str]) -> str:
    return ", ".join([base] + describe_settings(config if isinstance(config, dict) else {}, names))


def label_runs(bases: pd.Series, configs: pd.Series, groups: list[pd.Index], exclude: tuple[str, ...] = ()) -> dict:
    """The one labelling rule: each run's ``bases`` label plus the settings (from its ``configs``, minus
    ``exclude``) whose value differs between the runs of one of ``groups`` (indexes of run names)."""
    canon = pd.Series({r: {k: v for k, v in _canon(c).items() if k not in exclude} for r, c in configs.items()},
                      dtype=object)
    names = _varying(canon, groups)
    return {r: _label(bases[r], configs[r], names) for r in bases.index}


# ---------------------------------------------------------------------------
# Labelling runs
# ---------------------------------------------------------------------------


def _runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (index: run name) with what labelling needs."""
    cols = {"kind": None, "task": None, "source_task": None, "source_run": None, "source_path": None, "config": None}
    first = df.drop_duplicates("run").set_index("run")
    return pd.DataFrame({c: first[c] if c in first.columns else default for c, default in cols.items()},
                        index=first.index).astype(object).where(lambda t: t.notna(), None)


def _groups(runs: pd.DataFrame, by: list[str]) -> list[pd.Index]:
    return [g.index for _, g in runs.groupby(by, dropna=False, sort=True)]


def _dense_methods(runs: pd.DataFrame) -> pd.Series:
    """Each run's dense variant on its task (its label), or None when no dense fine-tuning was trained like it
    (:func:`~tickets_core.core.settings.dense_settings`: the one definition of "trained alike")."""
    dense = pd.Series({r: _canon(dense_settings(c) if isinstance(c, dict) else {}) for r, c in runs["config"].items()},
                      dtype=object)
    key = pd.Series({r: tuple(sorted(dense[r].items())) for r in runs.index}, dtype=object)
    cand = runs[runs["kind"].isin(["dense", "imp"])]
    names = _varying(dense, _groups(cand, ["task"])) if len(cand) else []
    labels = {(cand.at[r, "task"], key[r]): _label("dense", dense_settings(cand.at[r, "config"] or {}), names)
              for r in cand.index}
    return pd.Series({r: labels.get((runs.at[r, "task"], key[r])) for r in runs.index}, dtype=object)


def run_methods(df: pd.DataFrame) -> pd.DataFrame:
    """Per run (index): ``method``, ``source_method`` and ``dense_method`` (see the module docstring)."""
    runs = _runs(df)
    dense = _dense_methods(runs)
    own: dict[str, str] = {}
    for kind, of_kind in runs.groupby("kind", sort=True):
        if kind == "dense":
            own.update({r: dense[r] for r in of_kind.index})
            continue
        bases = pd.Series({r: method_label(kind, of_kind.at[r, "source_task"], of_kind.at[r, "source_path"])
                           for r in of_kind.index}, dtype=object)
        own.update(label_runs(bases, of_kind["config"], _groups(of_kind, ["task", "source_task"])))
    method = dict(own)
    source = {r: None for r in runs.index}
    branches = [r for r in runs.index if runs.at[r, "kind"] in KINDS and KINDS[runs.at[r, "kind"]].is_branch]
    for _ in range(4):  # a branch's source first (a branch of a branch of a branch at most)
        before = dict(method)
        for r in branches:
            s = runs.at[r, "source_run"]
            source[r] = method.get(s) if s in runs.index and s != r else None
        for kind in {runs.at[r, "kind"] for r in branches}:
            mine = [r for r in branches if runs.at[r, "kind"] == kind]
            groups = pd.DataFrame({"g": [(runs.at[r, "task"], runs.at[r, "source_task"], own[r]) for r in mine],
                                   "s": [source[r] for r in mine]}, index=mine)
            if groups.groupby("g", dropna=False)["s"].nunique(dropna=False).gt(1).any():
                for r in mine:
                    method[r] = f"{own[r]} (of {source[r] or 'a source not in this table'})"
        if method == before:
            break
    return pd.DataFrame({"method": pd.Series(method), "source_method": pd.Series(source, dtype=object),
                         "dense_method": dense}, index=runs.index)


def add_method(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` with ``method``, ``source_method`` and ``dense_method`` columns (see the module docstring).

    Labels name what sets runs apart *in ``df``*: label the whole folder's
    table, then select from it.  A table that already has a ``method``
    column is returned as it is.
    """
    if "method" in df.columns:
        return df
    out = df.copy()
    if "run" not in out.columns:
        out["run"] = [f"row {i}" for i in range(len(out))]
    if len(out) == 0:
        return out.assign(method=None, source_method=None, dense_method=None)
    per_run = run_methods(out)
    for col in per_run.columns:
        out[col] = out["run"].map(per_run[col])
    return out
