"""The README's and docs' result tables, generated from committed data and checked against it.

A table in a document is a claim; here every such table sits between two
markers and is written by this module from a committed file, never by hand::

    <!-- generated:demo-claims (python -m tickets_core.analysis.doc_tables) -->
    ...
    <!-- /generated:demo-claims -->

Blocks (:data:`BLOCKS`) and the data they read:

* ``demo-claims``, ``demo-reading``, ``demo-by-sparsity``, ``demo-transfer``, ``demo-report``, ``demo-matching-rules``:
  ``results/demo/levels.csv`` (:mod:`tickets_core.analysis.record`, written by ``make demo``);
* ``early-bird``, ``early-bird-stops``: ``benchmarks/results/bench_early_bird.json``;
* ``stability``: ``benchmarks/results/bench_stability.json``;
* ``bench-quick``, ``bench-imp-level``: ``benchmarks/results/results_quick.json`` (``make bench``) and
  ``benchmarks/results/bench_imp_level.json`` (the full-size IMP level);
* ``structured``: ``benchmarks/results/bench_structured.json``.

``python -m tickets_core.analysis.doc_tables`` rewrites the blocks of
:data:`DOCUMENTS`; ``--check`` rewrites nothing and exits 1 naming each block
whose text differs from what its data give (tests/test_doc_tables.py runs it,
so a number edited by hand, or data changed without regenerating, fails the
suite).  Means are over seeds; ``±`` is the standard error of the mean
(std / sqrt(n), ddof 1) unless a header says std.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Callable

import pandas as pd

from .. import analysis
from ..core.fsio import atomic_write_text
from .record import load_record
from .report import md_table, report_of, seeds_text

REPO = Path(__file__).resolve().parents[2]
DEMO = Path("results/demo")
EARLY_BIRD = Path("benchmarks/results/bench_early_bird.json")
STABILITY = Path("benchmarks/results/bench_stability.json")
QUICK = Path("benchmarks/results/results_quick.json")
IMP_LEVEL = Path("benchmarks/results/bench_imp_level.json")
STRUCTURED = Path("benchmarks/results/bench_structured.json")
DOCUMENTS = (Path("README.md"), Path("docs/results.md"), Path("benchmarks/README.md"), Path("docs/structured.md"))
#: The kinds compared with IMP at equal sparsity, in the tables' column order.
COMPARED = ("imp", "oneshot", "random_prune")
_BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+)[^>]*-->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)",
                    re.S)


def _pm(mean: float, se: float, n: int, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f} ± {se:.{digits}f} ({n})" if n > 1 else f"{mean:.{digits}f} (1)"


def _over_seeds(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std (ddof 1; 0 for one seed), standard error and seed count of ``score`` per ``by`` (which includes
    ``method``: runs that differ in anything but the seed are never averaged together)."""
    out = rows.groupby(by)["score"].agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["se"] = out["std"] / out["n"].pow(0.5)
    return out


def by_sparsity(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, standard error and seed count per (task, kind, method, sparsity) of the pruned levels of
    :data:`COMPARED` (sparsity rounded to 0.1%).  The demo's tables have one column per kind: a kind with
    several methods of one task (variants) is an :class:`AnalysisError` naming them."""
    df = analysis.add_method(df)
    pruned = df[df["kind"].isin(COMPARED) & (df["sparsity"] > 0)].copy()
    pruned["sparsity"] = pruned["sparsity"].round(3)
    several = pruned.groupby(["task", "kind"])["method"].unique()
    several = several[several.map(len) > 1]
    if len(several):
        (task, kind), methods = next(iter(several.items()))
        raise analysis.AnalysisError(f"{task}: several {kind} methods ({', '.join(methods)}); these tables compare "
                                     "one method per kind")
    return _over_seeds(pruned, ["task", "kind", "method", "sparsity"])


def _t(a: pd.Series, b: pd.Series) -> tuple[float, float, float]:
    """``a`` minus ``b`` (rows of :func:`_over_seeds`): the difference of means, its standard error (independent
    seeds) and their ratio t."""
    se = math.sqrt(a["se"] ** 2 + b["se"] ** 2)
    d = a["mean"] - b["mean"]
    return d, se, (d / se if se > 0 else float("nan"))


def _diff(a: pd.Series, b: pd.Series) -> str:
    d, se, t = _t(a, b)
    return f"{d:+.3f} ± {se:.3f} (t {t:.1f})"


def _dense(df: pd.DataFrame) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analysis.dense_baselines(analysis.add_method(df), 1.0)


def demo_claims(df: pd.DataFrame) -> str:
    """Per task, at the highest sparsity all compared methods reached: dense, IMP, one-shot, random, and IMP's
    differences (mean ± standard error, seeds)."""
    table, dense = by_sparsity(df), _dense(df).groupby("task").first()
    rows = []
    for task, t in table.groupby("task", sort=True):
        top = t.groupby("sparsity")["kind"].nunique()
        top = top[top == t["kind"].nunique()].index.max()
        at = t[t["sparsity"] == top].set_index("kind")
        d = dense.loc[task]
        cells = [_pm(at.loc[k, "mean"], at.loc[k, "se"], int(at.loc[k, "n"])) if k in at.index else "-"
                 for k in COMPARED]
        diffs = [_diff(at.loc["imp"], at.loc[k]) if "imp" in at.index and k in at.index else "-"
                 for k in COMPARED[1:]]
        rows.append([task, f"{d['mean']:.3f} ± {d['std']:.3f} ({int(d['n_seeds'])})", f"{100 * top:.0f}%",
                     *cells, *diffs])
    return md_table(["task", "dense (std, seeds)", "sparsity", "IMP", "one-shot theta0", "random pruning",
                     "IMP - one-shot", "IMP - random"], rows)


#: |t| at or above this is called significant (two-sided 5%, df 2: Welch's df with 2 seeds per arm is at most 2).
T_CRIT = 4.3


def demo_reading(df: pd.DataFrame) -> str:
    """The README's reading of the demo, every number computed here from the record; "significant" means
    |t| >= :data:`T_CRIT`."""
    table, rules = by_sparsity(df), analysis.matching_rules(df, (1.0, 0.0))
    dense = _dense(df).groupby("task").first()
    pct = lambda x: "none" if x != x else f"{100 * x:.0f}%"  # noqa: E731
    imp = rules[rules["method"] == "IMP"].set_index("task")
    one = ", ".join(f"{pct(r['highest matching (n_std 1)'])} on {t}" for t, r in imp.iterrows())
    zero = ", ".join(f"{pct(r['highest matching (n_std 0)'])} on {t}" for t, r in imp.iterrows())
    se = ", ".join(f"{d['std'] / math.sqrt(d['n_seeds']):.3f} on {t}" for t, d in dense.iterrows())
    out = [f"* **Matching subnetworks** (score >= dense mean - 1 std): IMP's highest matching sparsity is {one}; "
           f"under the paper's Table 4 rule (>= the dense mean): {zero}. The threshold itself is uncertain: the "
           f"dense mean's standard error is {se} ({int(dense['n_seeds'].min())} seeds)."]
    top = table["sparsity"].max()
    at = table[table["sparsity"] == top].set_index(["task", "kind"])

    def imp_minus(kind: str) -> tuple[list[tuple[str, float, float]], str]:
        """(task, IMP minus ``kind``, t) at the top sparsity for each task that has both, and their seed counts."""
        tasks = [task for task in sorted(table["task"].unique())
                 if (task, "imp") in at.index and (task, kind) in at.index]
        seeds = seeds_text(at.loc[(task, k), "n"] for task in tasks for k in ("imp", kind))
        return [(task, *_t(at.loc[(task, "imp")], at.loc[(task, kind)])[::2]) for task in tasks], seeds
    random, seeds = imp_minus("random_prune")
    parts = [f"{task} {d:+.3f} (t {t:.1f}, {'significant' if abs(t) >= T_CRIT else 'not significant'})"
             for task, d, t in random]
    out.append(f"* **IMP against random pruning** at {100 * top:.0f}% ({seeds} per method): " + "; ".join(parts) + ".")
    oneshot, seeds = imp_minus("oneshot")
    parts = [f"{task} {d:+.3f} (t {t:.1f})" for task, d, t in oneshot]
    sig = any(abs(t) >= T_CRIT for _, _, t in oneshot)
    out.append(f"* **IMP against theta0's own magnitudes** (one-shot pruning of the pre-trained weights, trained "
               f"alike) at {100 * top:.0f}% ({seeds} per method): " + "; ".join(parts) + (
                   ". " + ("Some of these differences are significant." if sig else
                           "None is significant with these seeds: the demo does not show that IMP finds more than "
                           "theta0's magnitudes.")))
    if (df["kind"] == "transfer").any():
        parts, seeds = [], []
        for target, arms in _transfer_arms(df).groupby("target", sort=True):
            arms = arms.set_index("arm")
            mean = arms["mean"]
            mlm = _ticket_of(MLM_TASK)
            others = [a for a in arms.index if a.endswith(" ticket") and a not in (mlm, "own IMP ticket")]
            if mlm in arms.index and others:
                other = others[0].removesuffix(" IMP ticket")
                cited = [mlm, others[0], *(["one-shot theta0"] if "one-shot theta0" in arms.index else [])]
                seeds += list(arms.loc[cited, "n"])
                shot = f", one-shot theta0 {mean['one-shot theta0']:.3f}" if "one-shot theta0" in arms.index else ""
                parts.append(f"on {target} the MLM ticket scores {mean[mlm]:.3f}, {other} {mean[others[0]]:.3f}{shot}")
        if parts:
            out.append(f"* **Transfer** (means over {seeds_text(seeds)} each): " + "; ".join(parts) + ".")
    return "\n".join(out)


def demo_by_sparsity(df: pd.DataFrame) -> str:
    """Every compared method at every sparsity, per task (mean ± standard error, seeds)."""
    table = by_sparsity(df)
    rows = []
    for (task, sparsity), t in table.groupby(["task", "sparsity"], sort=True):
        at = t.set_index("kind")
        rows.append([task, f"{100 * sparsity:.0f}%"] + [
            _pm(at.loc[k, "mean"], at.loc[k, "se"], int(at.loc[k, "n"])) if k in at.index else "-"
            for k in COMPARED])
    return md_table(["task", "sparsity", "IMP", "one-shot theta0", "random pruning"], rows)


#: The demo's MLM task: its ticket is the one the paper calls universal.
MLM_TASK = "ptb_mlm"


def _ticket_of(task: str) -> str:
    return f"{task}'s IMP ticket"


def _transfer_arms(df: pd.DataFrame) -> pd.DataFrame:
    """Per target task at the transfers' sparsity: the own IMP ticket, each transfer method, one-shot theta0 and
    random pruning, as rows of :func:`_over_seeds` with ``target``, ``sparsity`` and ``arm`` (a display name)."""
    df = analysis.add_method(df)
    df = df.assign(sparsity=df["sparsity"].round(3))
    arms = []
    for target, t in df[df["kind"] == "transfer"].groupby("task", sort=True):
        sp = round(float(t["sparsity"].mean()), 3)
        at = df[(df["task"] == target) & (df["sparsity"] == sp)]
        own = analysis.only_imp_method(df, target)
        if own is None:
            raise analysis.AnalysisError(f"{target}: no single IMP method to compare the transfers with")
        names = {own: "own IMP ticket", **{m: _ticket_of(src) for m, src in zip(t["method"], t["source_task"])
                                           if m == analysis.method_label("transfer", src)}}
        names.update({m: name for kind, name in (("oneshot", "one-shot theta0"), ("random_prune", "random pruning"))
                      for m in at[at["kind"] == kind]["method"].unique()})
        for kind in ("imp", "transfer", "oneshot", "random_prune"):
            g = _over_seeds(at[(at["kind"] == kind) & (kind != "imp" or at["method"] == own)], ["method"])
            arms += [{**r, "target": target, "sparsity": sp, "arm": names.get(r["method"], r["method"])}
                     for r in g.to_dict("records")]
    return pd.DataFrame(arms)


def demo_transfer(df: pd.DataFrame) -> str:
    """Per target task, at the transfers' sparsity: the target's own IMP ticket, every transferred ticket, one-shot
    theta0 and random pruning (mean ± standard error, seeds), each against the own ticket (difference ± SE, t)."""
    rows = []
    for target, arms in _transfer_arms(df).groupby("target", sort=True):
        own = arms[arms["arm"] == "own IMP ticket"].iloc[0]
        for _, a in arms.iterrows():
            rows.append([target, f"{100 * a['sparsity']:.0f}%", a["arm"], _pm(a["mean"], a["se"], int(a["n"])),
                         "" if a["arm"] == "own IMP ticket" else _diff(a, own)])
    return md_table(["target", "sparsity", "mask", "score", "minus the own ticket"], rows)


def demo_matching_rules(df: pd.DataFrame) -> str:
    """Highest matching sparsity under the 1-std rule and the paper's Table 4 rule (n_std 0)."""
    t = analysis.matching_rules(df, (1.0, 0.0))

    def pct(x):
        return "none" if x != x else f"{100 * x:.0f}%"
    return md_table(["task", "method", "seeds", "dense mean ± std (seeds)", "highest matching, mean - 1 std",
                     "highest matching, mean (n_std 0)"],
                    [[r["task"], r["method"], int(r["n_seeds"]),
                      f"{r['dense_mean']:.3f} ± {r['dense_std']:.3f} ({int(r['n_dense_seeds'])})",
                      pct(r["highest matching (n_std 1)"]), pct(r["highest matching (n_std 0)"])]
                     for _, r in t.iterrows()])


def demo_report(df: pd.DataFrame) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return report_of(df).rstrip("\n").replace("### ", "#### ")


def early_bird(data: dict) -> str:
    """The early-bird benchmark's summary: steps saved and score against IMP, per method and level."""
    rows = []
    for r in data["data"]["summary"]:
        if r["level"] == 0:
            continue
        imp = r["method"] == "IMP"
        rows.append([r["task"], r["method"], f"{100 * r['sparsity']:.0f}%",
                     f"{r['score']:.3f} ± {r['score_std']:.3f}", int(r["n_seeds"]), f"{r['steps']:.0f}",
                     "" if imp else f"{100 * r['steps_saved']:.0f}%",
                     "" if imp else f"{r['score_diff']:+.3f}"])
    return md_table(["task", "method", "sparsity", "score (mean ± std)", "seeds", "steps to reach", "steps saved",
                     "score - IMP"], rows)


def early_bird_stops(data: dict) -> str:
    """Each early-stopped level's stop step out of its steps, per method and seed."""
    rows = [[r["task"], r["method"], r["seed"], r["level"], f"{r['stopped_at']} / {r['steps_total']}"]
            for r in data["data"]["stops"]]
    return md_table(["task", "method", "seed", "level", "stopped at step / level steps"], rows)


def stability(data: dict) -> str:
    """Error and loss barriers (Frankle et al. 2020) per method and level: mean ± std over seeds."""
    return md_table(["method", "level", "sparsity", "error barrier (mean ± std)", "loss barrier (mean ± std)",
                     "error at the ends (mean)", "seeds"],
                    [[r["method"], r["level"], f"{100 * r['sparsity']:.0f}%",
                      f"{r['error_barrier']:.3f} ± {r['error_barrier_std']:.3f}",
                      f"{r['loss_barrier']:.3f} ± {r['loss_barrier_std']:.3f}", f"{r['end_error']:.3f}",
                      int(r["n_seeds"])]
                     for r in data["data"]["table"]])


def bench_targets(data: dict) -> str:
    """A benchmark run's targets as measured, with the machine and its load when the run started."""
    m = data["machine"]
    head = (f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads; load average at start "
            f"{' / '.join(f'{x:g}' for x in m['loadavg_start'])}; {m['time_utc']} UTC")
    return head + "\n\n" + md_table(["benchmark", "target", "measured", "status"],
                                     [[t["benchmark"], t["target"], t["value"], t["status"]]
                                      for t in data["targets"]])


def structured(data: dict) -> str:
    """Structured vs unstructured IMP vs random units: accuracy per level and the inference speed-up (the shrunk
    model for structured levels, the same dense kernels for unstructured ones; one timing per method and level)."""
    speed = data["data"]["speedup_by_method_level"]
    train = data["data"]["training_speed"]
    rows = []
    for r in data["data"]["table"]:
        units = "" if r["heads_kept"] != r["heads_kept"] else f"{int(r['heads_kept'])} / {int(r['neurons_kept']):,}"
        sp = speed.get(f"{r['method']}|{r['level']}")
        rows.append([r["method"], r["level"], f"{100 * r['sparsity']:.0f}%", units,
                     f"{r['score']:.3f} ± {r['score_std']:.3f} ({int(r['n_seeds'])})",
                     "-" if sp is None else f"{sp:.2f}x"])
    table = md_table(["method", "level", "sparsity (weights)", "heads / neurons kept", "accuracy (mean ± std, seeds)",
                      "inference speed-up vs dense"], rows)
    return table + "\n\nTraining step speed-up vs dense: " + ", ".join(
        f"{name} {v['speedup']:.2f}x" for name, v in train.items() if name != "dense") + "."


def _demo(fn: Callable[[pd.DataFrame], str]) -> Callable[[Path], str]:
    return lambda repo: fn(load_record(repo / DEMO))


def _bench(fn: Callable[[dict], str], path: Path = EARLY_BIRD) -> Callable[[Path], str]:
    return lambda repo: fn(json.loads((repo / path).read_text()))


#: Block name -> the function writing it from the repository's committed data.
BLOCKS: dict[str, Callable[[Path], str]] = {
    "demo-claims": _demo(demo_claims),
    "demo-reading": _demo(demo_reading),
    "demo-by-sparsity": _demo(demo_by_sparsity),
    "demo-matching-rules": _demo(demo_matching_rules),
    "demo-transfer": _demo(demo_transfer),
    "demo-report": _demo(demo_report),
    "early-bird": _bench(early_bird),
    "early-bird-stops": _bench(early_bird_stops),
    "stability": _bench(stability, STABILITY),
    "bench-quick": _bench(bench_targets, QUICK),
    "bench-imp-level": _bench(bench_targets, IMP_LEVEL),
    "structured": _bench(structured, STRUCTURED),
}


def render(text: str, blocks: dict[str, Callable[[], str]], where: str = "") -> str:
    """``text`` with every generated block's body replaced by ``blocks[name]()``; an unknown name is an error."""
    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in blocks:
            raise KeyError(f"{where}: generated block {name!r} has no generator (known: {', '.join(blocks)})")
        return m.group(1) + blocks[name]().rstrip("\n") + "\n" + m.group(4)
    return _BLOCK.sub(sub, text)


def _generators(repo: Path) -> dict[str, Callable[[], str]]:
    """Every block's generator bound to ``repo``, each computed at most once."""
    cache: dict[str, str] = {}
    return {n: (lambda n=n: cache[n] if n in cache else cache.setdefault(n, BLOCKS[n](repo))) for n in BLOCKS}


def stale(repo: Path = REPO, documents=DOCUMENTS) -> list[str]:
    """The blocks whose committed text differs from what their data give: ``"README.md: demo-claims"``."""
    bound = _generators(repo)
    out = []
    for doc in documents:
        text = (repo / doc).read_text(encoding="utf-8")
        for m in _BLOCK.finditer(text):
            if render(m.group(0), bound, str(doc)) != m.group(0):
                out.append(f"{doc}: {m.group('name')}")
    return out


def regenerate(repo: Path = REPO, documents=DOCUMENTS) -> list[Path]:
    """Rewrite every generated block of ``documents``; returns the files that changed."""
    bound = _generators(repo)
    changed = []
    for doc in documents:
        path = repo / doc
        text = path.read_text(encoding="utf-8")
        new = render(text, bound, str(doc))
        if new != text:
            atomic_write_text(path, new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tickets_core.analysis.doc_tables", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    a = p.parse_args(argv)
    if a.check:
        bad = stale()
        for b in bad:
            print(f"out of date: {b} (run python -m tickets_core.analysis.doc_tables)", file=sys.stderr)
        return 1 if bad else 0
    for path in regenerate():
        print(f"rewrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
