"""GPU-hours of a sweep grid (default: sweeps/paper.yaml) at training rates read from committed JSON.

``python -m benchmarks.gpu_hours [SWEEP] [--rates FILE ...] [--mlm-examples N]``

Reads the sweep file with PyYAML (a simple reading of the sweep schema,
so that it does not depend on the sweep runner): every trunk run fine-tunes
``levels + 1`` times (``dense``: once), every branch run once per source
level (default: every level of its trunk, level 0 included), every
transfer once per source level (``highest_matching``: one; a source equal
to its target is skipped, as the sweep does).  Parameters are merged as the
sweep merges them: defaults, then the trunk entry's, then the
branch/transfer entry's (``params_from: target``: the target task's trunk
instead of the source's).  A fine-tuning costs ``max_steps x batch_size``
training examples, else ``train_size x num_epochs``; hours = examples / rate.
Evaluation, pruning and start-up are not counted (small next to training at
these sizes, except for the smallest tasks).

Rates (training examples/s of one run, bert-base, one GPU) come only from
JSON files, each a column of the table: ``results/gpu_rates.json`` (the
default: the rates measured in issue 11 on an H200, and the fast path's
targets, labelled PROJECTION), a ``gpu_check.json`` (its measured eager and
compiled fast-path rates) or a ``bench_gpu_*.json``.  A missing file is a
one-line error.  Rates at other lengths (SQuAD 384-token windows, MLM
512-token blocks) are scaled from the 128-token rate by matmul FLOPs per
example at the same FLOP/s (an estimate, marked as such); MLM counts its
vocabulary head at the masked positions only (``mlm_probability`` of the
tokens), as ``tickets_core.tasks.mlm.masked_logits`` computes it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from .common import md_table

ROOT = Path(__file__).resolve().parent.parent

# Training-set sizes (examples). SQuAD v1.1: 87,599 questions -> ~88.6k 384-token windows (stride 128).
TRAIN_SIZES = {"cola": 8_551, "sst2": 67_349, "mrpc": 3_668, "stsb": 5_749, "qqp": 363_846, "mnli": 392_702,
               "qnli": 104_743, "rte": 2_490, "wnli": 635, "squad": 88_600}
# MLM (the `mlm` task: wikitext-103-raw train, cut into blocks of max_seq_length - 2 wordpieces):
# 103,227,021 words x ~1.2 bert-base-uncased wordpieces per word (an estimate) / block length.
WIKITEXT103_WORDS = 103_227_021
WORDPIECES_PER_WORD = 1.2
TRAIN_DEFAULTS = {"num_epochs": 3.0, "batch_size": 32, "max_seq_length": 128, "levels": 9}

# bert-base dimensions for FLOP scaling
HIDDEN, LAYERS, FFN, VOCAB = 768, 12, 3072, 30522
ENCODER_WEIGHTS = LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)

RATES = Path(__file__).resolve().parent / "results" / "gpu_rates.json"
MLM_PROBABILITY = 0.15  # DataConfig.mlm_probability's default: the share of tokens the MLM head runs on


def example_flops(seq_len: int, head: str = "classification", mlm_probability: float = MLM_PROBABILITY) -> float:
    """Matmul FLOPs of one training example (forward x 3), as benchmarks/flops.py counts them.

    MLM: transform + tied decoder at the masked positions only (``mlm_probability`` of the non-special
    tokens), as the project computes its loss; other heads: pooler + classifier once per example.
    """
    fwd = 2 * ENCODER_WEIGHTS * seq_len + LAYERS * 4 * seq_len * seq_len * HIDDEN
    if head == "mlm":
        fwd += 2 * (HIDDEN * HIDDEN + HIDDEN * VOCAB) * mlm_probability * (seq_len - 2)
    else:
        fwd += 2 * (HIDDEN * HIDDEN + HIDDEN * 2)
    return 3.0 * fwd


def rate(column: dict, task: str, seq_len: int, mlm_probability: float = MLM_PROBABILITY) -> tuple[float, bool]:
    """(examples/s, estimated?) of one run of ``task`` at ``seq_len`` tokens under ``column``."""
    l128 = column["l128"] if "l128" in column else column["l128_tflops"] * 1e12 / example_flops(128)
    if task in ("squad", "mlm"):
        head = "mlm" if task == "mlm" else "qa"
        return l128 * example_flops(128) / example_flops(seq_len, head, mlm_probability), True
    # GLUE inputs are <= 128 tokens; most are much shorter: the short-sentence rate is the optimistic
    # end, the 128-token rate the conservative one. Use the conservative one.
    return min(column["short"], l128), False


def train_examples(task: str, params: dict, mlm_examples: int | None) -> float:
    """Training examples one fine-tuning of ``task`` sees: max_steps x batch, else set size x epochs."""
    if params.get("max_steps"):
        return float(params["max_steps"]) * float(params["batch_size"])
    if task == "mlm":
        n = mlm_examples or int(WIKITEXT103_WORDS * WORDPIECES_PER_WORD / (seq_len(task, params) - 2))
    elif task in TRAIN_SIZES:
        n = TRAIN_SIZES[task]
    else:
        raise SystemExit(f"gpu_hours: no training-set size for task {task!r}")
    cap = params.get("max_train_samples")
    return float(min(n, int(cap)) if cap else n) * float(params["num_epochs"])


def seq_len(task: str, params: dict) -> int:
    """Tokens per example: SQuAD left at the default 128 uses its standard 384-token windows."""
    n = int(params["max_seq_length"])
    return 384 if task == "squad" and n == TRAIN_DEFAULTS["max_seq_length"] else n


def _levels(entry: dict, trunk: dict) -> int:
    """Source levels a branch/transfer entry trains: a list, one resolved level ('highest_matching'), or all."""
    sl = entry.get("source_levels")
    if sl is None:
        return int(trunk["params"]["levels"]) + 1
    return len(sl) if isinstance(sl, list) else 1


def fine_tunings(path: Path) -> list[dict]:
    """Every fine-tuning the sweep file asks for: {"task", "kind", "params", "count"}."""
    doc = yaml.safe_load(path.read_text())
    defaults = {**TRAIN_DEFAULTS, **(doc.get("defaults") or {})}
    entry_keys = ("name", "kind", "kinds", "tasks", "seeds", "trunk", "trunk_seed", "sources", "targets",
                  "source_levels", "params_from", "mask_path")
    own = lambda e: {k: v for k, v in e.items() if k not in entry_keys}
    trunks, out = {}, []
    for t in doc.get("trunks") or []:
        params = {**defaults, **own(t)}
        kind = t.get("kind", "imp")
        trunks[t.get("name", kind)] = {"kind": kind, "tasks": t["tasks"], "seeds": t.get("seeds", [0]), "params": params}
        levels = 1 if kind == "dense" else int(params["levels"]) + 1
        for task in t["tasks"]:
            out.append({"task": task, "kind": kind, "params": params, "count": levels * len(t.get("seeds", [0]))})

    def target_params(task: str) -> dict:  # `params_from: target`: the target task's own (IMP) trunk budget
        for tr in sorted(trunks.values(), key=lambda tr: tr["kind"] != "imp"):
            if task in tr["tasks"]:
                return tr["params"]
        return defaults

    for b in doc.get("branches") or []:
        trunk = trunks[b["trunk"]]
        params = {**trunk["params"], **own(b)}
        for kind in b["kinds"]:
            for task in b.get("tasks", trunk["tasks"]):
                out.append({"task": task, "kind": kind, "params": params,
                            "count": _levels(b, trunk) * len(b.get("seeds", trunk["seeds"]))})
    for x in doc.get("transfers") or []:
        if "trunk" not in x:  # from one mask file
            for task in x["targets"]:
                out.append({"task": task, "kind": "transfer", "params": {**defaults, **own(x)},
                            "count": len(x["seeds"])})
            continue
        trunk = trunks[x["trunk"]]
        seeds = len(x.get("seeds", trunk["seeds"]))
        for source in x.get("sources", trunk["tasks"]):
            for target in x["targets"]:
                if source == target:
                    continue
                base = target_params(target) if x.get("params_from") == "target" else trunk["params"]
                out.append({"task": target, "kind": f"transfer from {source}", "params": {**base, **own(x)},
                            "count": _levels(x, trunk) * seeds})
    return out + copied_dense_levels(path, defaults)


def copied_dense_levels(path: Path, defaults: dict) -> list[dict]:
    """One negative fine-tuning per dense level the sweep copies from the run that trains it instead of training it
    again (:mod:`tickets_core.sweep.reuse`, as the planner decides it; the dry run counts the same)."""
    from tickets_core.sweep import plan_sweep

    return [{"task": j.parameters["task"], "kind": "dense level copied", "count": -1,
             "params": {**defaults, **{k: v for k, v in j.parameters.items() if v is not None}}}
            for j in plan_sweep(path).jobs if j.is_run and j.parameters.get("dense_level_from")]


def read_rates(path: Path) -> dict:
    """Columns ``{name: {"short", "l128" or "l128_tflops", "source", "kind"}}`` from one JSON file: a rates file
    (``{"columns": ...}``), a gpu_check.json (its throughput entry) or a bench_gpu result."""
    if not path.is_file():
        raise SystemExit(f"gpu_hours: rates file {path} not found (rates come only from committed JSON: "
                         f"{RATES.relative_to(ROOT)}, a gpu_check.json or a bench_gpu_*.json)")
    info = json.loads(path.read_text())
    if "columns" in info:
        return info["columns"]
    if "entries" in info:  # gpu_check.json
        if info.get("mode") != "cuda":
            raise SystemExit(f"gpu_hours: {path} is a --cpu run of gpu_check (no GPU rates in it)")
        tp = info["entries"].get("throughput", {})
        if tp.get("status") != "pass" or "examples_per_s" not in tp:
            raise SystemExit(f"gpu_hours: {path} has no measured throughput (entry: {tp.get('status', 'missing')})")
        gpu = info["entries"].get("versions", {}).get("gpu") or "no GPU"
        r = tp["examples_per_s"]
        return {f"{v} (measured, {gpu})": {"short": r[f"{v} | RT"], "l128": r[f"{v} | L128"], "kind": "measured",
                                           "source": f"gpu_check on {gpu} ({path.name}): {v}, one run"}
                for v in ("fast eager", "fast compiled")}
    v = info["variants"]  # bench_gpu
    return {f"fast compiled (measured, {info['device']})": {
        "short": v["fast compiled | RT"]["examples_per_s"], "l128": v["fast compiled | L128"]["examples_per_s"],
        "kind": "measured", "source": f"bench_gpu on {info['device']} ({path.name}): fast path, compiled, one run"}}


def table(path: Path, columns: dict, mlm_examples: int | None) -> str:
    runs = fine_tunings(path)
    groups: dict[str, dict] = {}
    for r in runs:
        task, p = r["task"], r["params"]
        key = "squad" if task == "squad" else "mlm" if task == "mlm" else "GLUE"
        g = groups.setdefault(key, {"fine_tunings": 0, "examples": 0.0, "hours": {c: 0.0 for c in columns},
                                    "estimated": False})
        n = train_examples(task, p, mlm_examples) * r["count"]
        g["fine_tunings"] += r["count"]
        g["examples"] += n
        for c, col in columns.items():
            ex_s, est = rate(col, task, seq_len(task, p), float(p.get("mlm_probability", MLM_PROBABILITY)))
            g["hours"][c] += n / ex_s / 3600
            g["estimated"] |= est
    label = lambda c: f"{c}{' (PROJECTION)' if columns[c].get('kind') == 'projection' else ''} (h)"  # noqa: E731
    head = ["part of the grid", "fine-tunings", "training examples"] + [label(c) for c in columns]
    rows, total = [], {c: 0.0 for c in columns}
    for key, g in groups.items():
        rows.append([key + (" (rates scaled by FLOPs: estimate)" if g["estimated"] else ""), f"{g['fine_tunings']:,}",
                     f"{g['examples'] / 1e6:,.1f}M"] + [f"{g['hours'][c]:,.1f}" for c in columns])
        for c in columns:
            total[c] += g["hours"][c]
    rows.append(["total", f"{sum(g['fine_tunings'] for g in groups.values()):,}",
                 f"{sum(g['examples'] for g in groups.values()) / 1e6:,.1f}M"] + [f"**{total[c]:,.1f}**" for c in columns])
    lines = [f"GPU-hours of `{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}` on one H100-class GPU "
             "(training only; one run at a time except in the packed column):", "", md_table(head, rows)]
    lines += ["", "Rates (GLUE rows use each column's 128-token rate, the conservative end: most GLUE inputs are "
              "shorter; SQuAD and MLM rows scale it by matmul FLOPs per example, MLM's head at the masked "
              f"{MLM_PROBABILITY:.0%} of tokens only):"] + [f"* {c} ({col.get('kind', 'measured')}): {col['source']}"
                                                           for c, col in columns.items()]
    mlm = int(train_examples("mlm", {"max_seq_length": 512, "num_epochs": 1}, mlm_examples))
    lines += [f"* MLM training set (when a level runs epochs, not max_steps): {mlm:,} blocks of 510 wordpieces "
              f"(wikitext-103 train, {WIKITEXT103_WORDS:,} words x {WORDPIECES_PER_WORD} wordpieces/word, an "
              "estimate; `--mlm-examples` to override). SQuAD: 88.6k 384-token windows per epoch.",
              "* A transfer at `source_levels: highest_matching` counts as one level per source; "
              "`params_from: target` trains it with the target task's trunk budget.",
              f"* {-sum(r['count'] for r in runs if r['kind'] == 'dense level copied'):,} dense levels are copied "
              "from the run that trains them (IMP's level 0 with the same settings and seed), not trained again: "
              "not counted."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_hours", description=__doc__.splitlines()[0])
    p.add_argument("sweep", nargs="?", default=str(ROOT / "sweeps" / "paper.yaml"))
    p.add_argument("--rates", nargs="+", default=[str(RATES)],
                   help="JSON files, each adding columns: a rates file, a gpu_check.json or a bench_gpu_*.json "
                        f"(default: {RATES.relative_to(ROOT)})")
    p.add_argument("--mlm-examples", type=int, default=None, help="MLM training examples (blocks) per epoch")
    a = p.parse_args(argv)
    columns: dict = {}
    for f in a.rates:
        columns.update(read_rates(Path(f)))
    print(table(Path(a.sweep).resolve(), columns, a.mlm_examples))


if __name__ == "__main__":
    main()
