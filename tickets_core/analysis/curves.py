"""Curves kept inside a level's ``metrics.json``, into pandas: stability (linear mode connectivity) and early-bird.

Torch-free, like :mod:`tickets_core.analysis.results` (both walk the run folders with
:class:`~tickets_core.runs.walk.RunFolders`): the analysis notebooks ``stability`` and ``early_bird``
read runs through these loaders only.

*Stability* (Frankle et al., ICML 2020, "Linear mode connectivity and the
lottery ticket hypothesis"): a ``stability`` level trains two copies of the
source level's subnetwork from the same rewind point with different data
orders and evaluates ``k`` points on the straight line between them
(``metrics.json`` ``train.stability.points``).  Its *barrier* is the highest
error (or loss) along the path minus the mean of the two ends
(:func:`barrier`); a subnetwork is *stable* when the barrier is about 0.

*Early-bird* (You et al., ICLR 2020; Chen et al., ACL 2021): an ``imp`` trunk
with ``early_bird_every`` records per level the mask distance between
successive checks and the step it stopped at (``train.early_bird``); its masks
are scored by ``retrain`` branches (full budget from theta0).
:func:`early_bird_table` sets the training steps each method spent to reach
each sparsity against its score there, IMP beside early-bird.

Methods: runs are averaged over seeds only.  Every table groups runs by
their *setting*, the hashed config (and the source run's) with the seed
left out (:func:`setting`), so runs that differ in anything else never share
a row; each row says over how many seeds it rests (``n_seeds``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import PARAMS, RunConfig
from ..core.settings import EARLY_STOP_SETTINGS
from ..lottery.barriers import barrier, loss_key
from .methods import label_runs, method_label
from .results import run_config
from ..core.errors import RunStoreError
from ..runs.paths import RunPaths
from ..runs.walk import RunFolders, folders as _folders


def _stops_early(prune: dict) -> bool:
    """Whether a trunk's levels stop early: the early-bird criterion or its control, the fixed cut."""
    return prune.get("early_bird_every") is not None or prune.get("early_cut_fraction") is not None


def early_method(prune: dict) -> str:
    """The method label of an early-stopping trunk's retrained masks (its early-bird or cut options)."""
    if prune.get("early_cut_fraction") is not None:
        return f"early cut (at {prune['early_cut_fraction']:g} of each level, no criterion)"
    extra = ""
    if prune.get("early_bird_span") is not None:
        extra += f", queue over {prune['early_bird_span']:g} of a level"
    else:
        extra += f", window {prune['early_bird_window']}"
    if prune.get("early_bird_min_fraction"):
        extra += f", from {prune['early_bird_min_fraction']:g} of a level"
    return f"early-bird (every {prune['early_bird_every']}, eps {prune['early_bird_eps']}{extra})"


# ---------------------------------------------------------------------------
# Shared
# ---------------------------------------------------------------------------


def setting(cfg: dict, *, drop: tuple[str, ...] = ()) -> dict:
    """What a run's results depend on besides its seed: its hashed config without ``seed``, ``source_run`` and
    the dotted fields in ``drop`` (``"prune.early_bird_every"``)."""
    view = RunConfig.from_dict(cfg).hashed_dict()
    for key in ("seed", "source_run", *drop):
        *parents, last = key.split(".")
        d = view
        for p in parents:
            d = d.get(p, {})
        d.pop(last, None)
    return {k: v for k, v in view.items() if v != {}}  # a section left empty is as absent (at its defaults)


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


# ---------------------------------------------------------------------------
# Stability
# ---------------------------------------------------------------------------

STABILITY_COLUMNS = ["run", "task", "model", "seed", "level", "sparsity", "source_run", "source_kind", "rewind_step",
                     "setting", "alpha", "error", "loss", "config"]


def load_stability(root: str | Path | RunFolders) -> pd.DataFrame:
    """One row per (stability run, level, interpolation point): ``alpha`` (0: copy A, 1: copy B), ``error``
    (1 - the task's main metric) and ``loss`` (NaN when the task reports none).

    ``source_kind`` is the source run's kind (from its config when it lies under ``root``, else from its
    name); ``setting`` is a short hash of the run's and its source's settings (:func:`setting`); ``config``
    the run's result-changing settings (:func:`~tickets_core.analysis.results.run_config`).
    """
    runs, rows = _folders(root), []
    for name in runs.of_kind("stability"):
        cfg = runs.config(name)
        for level, m in runs.levels(name):
            st = m["train"].get("stability")
            if not isinstance(st, dict) or not isinstance(st.get("points"), list):
                raise RunStoreError(f"{RunPaths(runs.dirs[name]).metrics(level)} has no stability curve")
            src = (m.get("source") or {}).get("run") or ""
            src_cfg = runs.config(src)
            src_kind = src_cfg["kind"] if src_cfg else src.split("-", 1)[0]
            key = _key([setting(cfg), setting(src_cfg) if src_cfg else src_kind])
            loss = loss_key(st["points"])
            config = run_config(cfg, runs.paths(name).config())
            for p in st["points"]:
                rows.append({"run": name, "task": m["task"], "model": cfg["model"]["name_or_path"], "seed": m["seed"],
                             "level": level, "sparsity": m["sparsity"], "source_run": src, "source_kind": src_kind,
                             "rewind_step": st.get("rewind_step", 0), "setting": key, "alpha": p["alpha"],
                             "error": p["error"], "loss": p[loss] if loss else float("nan"), "config": config})
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)


def _rewind_label(step: int) -> str:
    return "rewind to theta0" if not step else f"rewind to step {step}"


def stability_methods(curves: pd.DataFrame) -> pd.DataFrame:
    """``curves`` with a ``method`` column: the source's kind label and the rewind point (e.g. "IMP, rewind to
    theta0"), plus the settings that differ between the stability runs of one task (the labelling rule of
    :func:`~tickets_core.analysis.methods.label_runs`, e.g. "IMP, rewind to theta0, lr 0.0001"), plus the setting
    hash where two settings of one task would still share a label (sources that differ).

    Labels name what sets runs apart *in ``curves``*: label the whole folder's table, then select from it.  A
    table that already has a ``method`` column is returned as it is (like :func:`analysis.add_method`).
    """
    if "method" in curves.columns:
        return curves
    out = curves.copy()
    runs = out.drop_duplicates("run").set_index("run")
    configs = runs["config"] if "config" in runs.columns else pd.Series({r: {} for r in runs.index}, dtype=object)
    bases = pd.Series({r: f"{method_label(k)}, {_rewind_label(s)}"
                       for r, k, s in zip(runs.index, runs["source_kind"], runs["rewind_step"])}, dtype=object)
    groups = [g.index for _, g in runs.groupby("task", sort=True)]
    out["method"] = out["run"].map(label_runs(bases, configs, groups, exclude=("rewind_step",)))
    clash = out.groupby(["task", "method"])["setting"].nunique()  # the setting hash includes the task
    twice = set(clash[clash > 1].index)
    out["method"] = [f"{m} [{s}]" if (t, m) in twice else m
                     for t, m, s in zip(out["task"], out["method"], out["setting"])]
    return out


def stability_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Barriers per (task, method, level), over seeds: ``sparsity``, ``error_barrier`` and ``loss_barrier``
    (mean), their ``_std`` (0 for one seed), ``n_seeds``; and the ends' mean error (``end_error``).
    Methods are :func:`stability_methods` (an existing ``method`` column is kept)."""
    if curves is None or len(curves) == 0:
        return pd.DataFrame(columns=["task", "method", "level", "sparsity", "error_barrier", "error_barrier_std",
                                     "loss_barrier", "loss_barrier_std", "end_error", "n_seeds"])
    per_run = []
    for (run, level), d in stability_methods(curves).groupby(["run", "level"]):
        d = d.sort_values("alpha")
        per_run.append({"task": d["task"].iat[0], "method": d["method"].iat[0], "level": level,
                        "seed": d["seed"].iat[0], "sparsity": d["sparsity"].iat[0],
                        "error_barrier": barrier(d["error"]), "loss_barrier": barrier(d["loss"]),
                        "end_error": (d["error"].iat[0] + d["error"].iat[-1]) / 2})
    g = pd.DataFrame(per_run).groupby(["task", "method", "level"])
    out = g.agg(sparsity=("sparsity", "mean"), error_barrier=("error_barrier", "mean"),
                error_barrier_std=("error_barrier", "std"), loss_barrier=("loss_barrier", "mean"),
                loss_barrier_std=("loss_barrier", "std"), end_error=("end_error", "mean"), n_seeds=("seed", "nunique"))
    out[["error_barrier_std", "loss_barrier_std"]] = out[["error_barrier_std", "loss_barrier_std"]].fillna(0.0)
    return out.reset_index().sort_values(["task", "method", "sparsity"], ignore_index=True)


# ---------------------------------------------------------------------------
# Early-bird
# ---------------------------------------------------------------------------

EARLY_BIRD_COLUMNS = ["run", "task", "model", "seed", "level", "sparsity", "every", "eps", "window", "stopped_at",
                      "steps", "step", "distance"]


def load_early_bird(root: str | Path | RunFolders) -> pd.DataFrame:
    """One row per (early-bird trunk, level, check): the mask ``distance`` at ``step``, the level's settings,
    the step it stopped at (NaN: it ran to the end) and the steps it trained."""
    runs, rows = _folders(root), []
    for name in runs.of_kind("imp"):
        for level, m in runs.levels(name):
            eb = m["train"].get("early_bird")
            if not isinstance(eb, dict):
                continue
            base = {"run": name, "task": m["task"], "model": runs.config(name)["model"]["name_or_path"],
                    "seed": m["seed"], "level": level, "sparsity": m["sparsity"],
                    "every": eb["every"], "eps": eb["eps"], "window": eb["window"],
                    "stopped_at": eb["stopped_at"] if eb["stopped_at"] is not None else np.nan,
                    "steps": m["train"]["steps"]}
            rows += [{**base, "step": s, "distance": d} for s, d in eb["curve"]]
    return pd.DataFrame(rows, columns=EARLY_BIRD_COLUMNS)


def _level_rows(runs: RunFolders, name: str) -> dict[int, dict]:
    return {k: {"score": m["score"], "sparsity": m["sparsity"], "steps": m["train"]["steps"],
                "time_s": m["train"].get("time_s", np.nan), "source_level": (m.get("source") or {}).get("level")}
            for k, m in runs.levels(name)}


def early_bird_runs(root: str | Path | RunFolders) -> pd.DataFrame:
    """The IMP trunks, early-bird trunks and retrain branches under ``root``, paired: one row per (setting, seed)
    with ``task``, ``model``, ``imp``, ``early_bird``, ``retrain`` (run names; None where missing).

    Trunks pair when their settings are the same but for the early-bird options; a retrain pairs with the
    early-bird trunk it reads when it has the same setting (budget) and seed.  Early-bird trunks that differ
    only in their early-bird options are settings of their own, each beside the same IMP trunk.
    """
    return pd.DataFrame(_pairs(_folders(root)), columns=["setting", "seed", "task", "model", "imp", "early_bird",
                                                         "retrain"])


def _pairs(runs: RunFolders) -> list[dict]:
    found: dict = {}
    drop = tuple(f"prune.{f}" for f in EARLY_STOP_SETTINGS) + ("kind", "source_levels")
    for kind in ("imp", "retrain"):
        for name in runs.of_kind(kind):
            cfg = runs.config(name)
            row = found.setdefault((_key(setting(cfg, drop=drop)), cfg["seed"]), {
                "task": cfg["data"]["task"], "model": cfg["model"]["name_or_path"], "birds": [], "retrains": {}})
            if kind == "retrain":
                row["retrains"][Path(cfg["source_run"]).name] = name
            elif _stops_early(cfg["prune"]):
                row["birds"].append(name)
            else:
                row["imp"] = name
    def options(bird: str) -> tuple:  # a run older than an option has it at its default
        return tuple(runs.config(bird)["prune"].get(f, PARAMS[f].default) for f in EARLY_STOP_SETTINGS)

    variants: dict = {}  # early-bird variants (every, eps, window) of each setting, over its seeds
    for (key, _), r in found.items():
        variants.setdefault(key, set()).update(options(b) for b in r["birds"])
    rows = []
    for (key, seed), r in found.items():
        birds = {options(b): b for b in r["birds"]}
        for opts in sorted(variants[key], key=str) or [None]:  # each variant a setting of its own, beside IMP
            bird = birds.get(opts)
            if r.get("imp") or bird:
                rows.append({"setting": _key([key, list(opts)]) if opts else key, "seed": seed, "task": r["task"],
                             "model": r["model"], "imp": r.get("imp"), "early_bird": bird,
                             "retrain": r["retrains"].get(bird)})
    return sorted(rows, key=lambda p: (p["setting"], p["seed"]))


def early_bird_table(root: str | Path | RunFolders) -> pd.DataFrame:
    """Training steps spent to reach each sparsity, and the score there: IMP vs early-bird, per seed.

    IMP reaches level k's sparsity after training its levels 0..k to the end (level k's own training gives
    the score).  Early-bird reaches it after its trunk's levels 0..k-1 (each stopped once the next mask had
    converged) plus the ``retrain`` branch's level k (the found mask fine-tuned from theta0 with the full
    budget, which gives the score).  Runs are paired by :func:`early_bird_runs`; settings without an
    early-bird trunk are left out.  One row per (task, setting, method, seed, level): ``method``,
    ``sparsity``, ``score``, ``steps`` and ``time_s`` spent up to there, ``setting`` (an IMP trunk beside
    several early-bird variants appears in each variant's setting).
    """
    runs, rows = _folders(root), []
    pairs = _pairs(runs)
    with_bird = {p["setting"] for p in pairs if p["early_bird"]}
    for pair in (p for p in pairs if p["setting"] in with_bird):
        common = {"task": pair["task"], "model": pair["model"], "seed": pair["seed"], "setting": pair["setting"]}
        if pair["imp"]:
            spent, time_s = 0, 0.0
            for k, r in sorted(_level_rows(runs, pair["imp"]).items()):
                spent, time_s = spent + r["steps"], time_s + r["time_s"]
                rows.append({**common, "method": "IMP", "level": k, "sparsity": r["sparsity"], "score": r["score"],
                             "steps": spent, "time_s": time_s})
        if not (pair["early_bird"] and pair["retrain"]):
            continue
        trunk = _level_rows(runs, pair["early_bird"])
        p = runs.config(pair["early_bird"])["prune"]
        method = early_method(p)
        for k, r in sorted(_level_rows(runs, pair["retrain"]).items()):
            before = [trunk[j] for j in range(k) if j in trunk]
            if len(before) < k:
                continue  # the trunk has not finished every level before k
            rows.append({**common, "method": method, "level": k, "sparsity": r["sparsity"], "score": r["score"],
                         "steps": sum(b["steps"] for b in before) + r["steps"],
                         "time_s": sum(b["time_s"] for b in before) + r["time_s"]})
    return pd.DataFrame(rows, columns=["task", "model", "method", "seed", "level", "sparsity", "score", "steps",
                                       "time_s", "setting"])


def early_bird_overlap(root: str | Path | RunFolders) -> pd.DataFrame:
    """IoU of each early-bird trunk's mask with its paired IMP trunk's at the same level: one row per
    (task, seed, level) with ``sparsity`` and ``iou``.  Loads the masks (and torch) when called."""
    from .results import load_masks

    runs, rows = _folders(root), []
    for pair in _pairs(runs):
        if not (pair["imp"] and pair["early_bird"]):
            continue
        eb, ref = load_masks(runs.dirs[pair["early_bird"]]), load_masks(runs.dirs[pair["imp"]])
        rows += [{"task": pair["task"], "seed": pair["seed"], "setting": pair["setting"], "level": k,
                  "sparsity": eb[k].sparsity, "iou": eb[k].overlap(ref[k])} for k in sorted(eb) if k in ref]
    return pd.DataFrame(rows, columns=["task", "seed", "setting", "level", "sparsity", "iou"])


def early_bird_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`early_bird_table` over seeds, per (task, setting, method, level): ``sparsity``, ``score`` mean and
    ``score_std``, ``steps`` and ``time_s`` (means), ``n_seeds``; early-bird rows add ``steps_saved`` (1 - its
    steps / IMP's at the same level), ``score_diff`` (its mean score minus IMP's) and ``score_vs_imp`` (that
    difference in IMP standard deviations over seeds; NaN with one IMP seed)."""
    cols = ["task", "setting", "method", "level", "sparsity", "score", "score_std", "steps", "time_s", "n_seeds",
            "steps_saved", "score_diff", "score_vs_imp"]
    if table is None or len(table) == 0:
        return pd.DataFrame(columns=cols)
    g = table.groupby(["task", "setting", "method", "level"])
    out = g.agg(sparsity=("sparsity", "mean"), score=("score", "mean"), score_std=("score", "std"),
                steps=("steps", "mean"), time_s=("time_s", "mean"), n_seeds=("seed", "nunique")).reset_index()
    out["score_std"] = out["score_std"].fillna(0.0)
    imp = out[out["method"] == "IMP"].set_index(["task", "setting", "level"])
    saved, diff, vs = [], [], []
    for _, r in out.iterrows():
        at = (r["task"], r["setting"], r["level"])
        if r["method"] == "IMP" or at not in imp.index:
            saved, diff, vs = saved + [np.nan], diff + [np.nan], vs + [np.nan]
            continue
        ref = imp.loc[at]
        saved.append(1.0 - r["steps"] / ref["steps"])
        diff.append(r["score"] - ref["score"])
        vs.append(diff[-1] / ref["score_std"] if ref["score_std"] > 0 else np.nan)
    out["steps_saved"], out["score_diff"], out["score_vs_imp"] = saved, diff, vs
    return out[cols].sort_values(["task", "setting", "level", "method"], ignore_index=True)
