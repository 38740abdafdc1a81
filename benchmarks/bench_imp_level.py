"""Benchmark 2: one whole IMP level on Rotten Tomatoes, this project's loop vs the reference configuration.

Offline pre-trained MiniLM, the same training examples (the task
registry's rotten_tomatoes train split, first N), 1 epoch, batch 32, same
learning rate and seed, the same level-1 mask (10% global magnitude). A
level here is: prune -> fine-tune 1 epoch -> evaluate.

* project: ``pruning.prune`` (magnitude_global), ``Mask.bind``,
  ``train.fine_tune`` (dynamic padding, length grouping; its time includes
  its final ``evaluate``);
* reference: ``torch.nn.utils.prune.global_unstructured`` (L1), prune-hook
  training with every batch padded to 128 tokens, evaluation padded to 128.

Runs alternate (project, reference[, reference, project] in full mode).
Reported: training examples/s, whole-level time, the ratio, and validation
accuracy of both (agreement criterion: |difference| <= 2 standard errors
of a difference of two binomial proportions on the same eval set size).
"""

from __future__ import annotations

import math
import time

import torch

from .common import Result, cli, machine, md_table

NAME = "bench_imp_level"


def _tokens_project(data, batch_size: int, seed: int, group: bool) -> int:
    """Padded tokens fine_tune will process in one epoch (its own batch_order, its own lengths)."""
    from tickets_core.training.loop import batch_order

    lengths = data.train.data.column("length").to_pylist()
    order = batch_order(len(lengths), batch_size, torch.Generator().manual_seed(seed), lengths if group else None)
    return sum(len(b) * max(lengths[i] for i in b) for b in order)


def run(quick: bool) -> Result:
    from tickets_core.core.config import ModelConfig, PruneConfig, TrainConfig
    from tickets_core.pruning.masks import Mask
    from tickets_core.models.build import build_model, load_tokenizer
    from tickets_core.pruning.strategies import prune
    from tickets_core.training.loop import fine_tune
    from .data import rt_data
    from .reference import global_unstructured_mask, reference_evaluate, reference_fine_tune, rows_of

    res = Result(NAME, "2. One IMP level on Rotten Tomatoes (MiniLM): project loop vs reference configuration",
                 quick, machine())
    n_train, n_eval = (128, 128) if quick else (2000, 1000)
    epochs, bs, lr, seed = 1.0, 32, 5e-5, 0
    order = ["project", "reference"] if quick else ["project", "reference", "reference", "project"]

    mcfg = ModelConfig("minilm")
    tok = load_tokenizer(mcfg)
    data = rt_data(tok, n_train, n_eval)
    train_rows, eval_rows = rows_of(data.train), rows_of(data.eval)
    pad = tok.pad_token_id
    tcfg = TrainConfig(learning_rate=lr, batch_size=bs, num_epochs=epochs, eval_batch_size=64, progress=False,
                       device="cpu", precision="fp32", group_by_length=True)
    pcfg = PruneConfig()  # magnitude_global, linear 10%: level 1 = 10% sparsity

    # Warm-up (untimed): one forward/backward at both widths, so neither side pays first-call costs.
    from .reference import pad128
    warm = build_model(mcfg, "classification", num_labels=2, seed=seed)
    for b in (data.collate(data.train[list(range(bs))]), pad128(train_rows[:bs], pad)):
        warm(**{k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "token_type_ids", "labels")}).loss.backward()
    del warm

    runs: dict[str, list[dict]] = {"project": [], "reference": []}
    masks = {}
    for who in order:
        model = build_model(mcfg, "classification", num_labels=2, seed=seed)  # theta0
        t0 = time.perf_counter()
        if who == "project":
            mask = prune(model, Mask.ones_like(model), pcfg, level=1, seed=seed)
            t_prune = time.perf_counter() - t0
            out = fine_tune(model, data, tcfg, seed=seed, bound_mask=mask.bind(model))
            total = time.perf_counter() - t0
            # fine_tune's time_s includes its final evaluate; time that evaluate alone to split it out
            from tickets_core.training.loop import evaluate
            te = time.perf_counter()
            evaluate(model, data, tcfg)
            t_eval = time.perf_counter() - te
            rec = {"prune_s": t_prune, "train_s": out["time_s"] - t_eval, "eval_s": t_eval, "level_s": total,
                   "accuracy": out["eval"]["accuracy"], "examples": out["examples"], "steps": out["steps"],
                   "train_loss": out["train_loss"]}
            masks[who] = mask
        else:
            mask = global_unstructured_mask(model, amount=pcfg.rate)  # hooks stay on: reference training
            t_prune = time.perf_counter() - t0
            out = reference_fine_tune(model, train_rows, pad, epochs=epochs, batch_size=bs, lr=lr, seed=seed)
            ev = reference_evaluate(model, eval_rows, pad)
            total = time.perf_counter() - t0
            rec = {"prune_s": t_prune, "train_s": out["time_s"], "eval_s": ev["time_s"], "level_s": total,
                   "accuracy": ev["accuracy"], "examples": out["examples"], "steps": out["steps"],
                   "train_loss": out["train_loss"]}
            masks[who] = mask
        rec["train_ex_per_s"] = rec["examples"] / rec["train_s"]
        runs[who].append(rec)
        print(f"[{NAME}] {who}: {rec}", flush=True)
        del model

    def avg(who, k):
        return sum(r[k] for r in runs[who]) / len(runs[who])

    same_mask = all(torch.equal(masks["project"][k], masks["reference"][k].cpu()) for k in masks["project"])
    tok_p = _tokens_project(data, bs, seed, True)
    tok_nog = _tokens_project(data, bs, seed, False)
    tok_r = 128 * n_train
    rows = []
    for who in ("project", "reference"):
        rows.append([who, f"{avg(who, 'train_ex_per_s'):.1f}", f"{avg(who, 'train_s'):.1f}",
                     f"{avg(who, 'prune_s'):.2f}", f"{avg(who, 'eval_s'):.1f}", f"{avg(who, 'level_s'):.1f}",
                     f"{avg(who, 'accuracy'):.4f}", f"{avg(who, 'train_loss'):.4f}"])
    ratio_train = avg("project", "train_ex_per_s") / avg("reference", "train_ex_per_s")
    ratio_level = avg("reference", "level_s") / avg("project", "level_s")
    res.add(f"{n_train} training examples x {epochs:g} epoch, batch {bs}, lr {lr:g}, seed {seed}; "
            f"{n_eval} validation examples; level-1 mask (10% global magnitude); identical masks on both sides: "
            f"{same_mask}. Runs in order {order} (values are means over runs).")
    res.add(md_table(["loop", "train examples/s", "train s", "prune s", "eval s", "level s", "val accuracy",
                      "train loss"], rows))
    res.add(f"Padded tokens per epoch: project {tok_p:,} ({tok_p / n_train:.1f}/example; without length "
            f"grouping {tok_nog / n_train:.1f}/example), reference {tok_r:,} (128/example): "
            f"{tok_r / tok_p:.2f}x fewer tokens in the project loop. "
            f"Speed-up: training {ratio_train:.2f}x, whole level {ratio_level:.2f}x.")
    acc_p, acc_r = avg("project", "accuracy"), avg("reference", "accuracy")
    p = (acc_p + acc_r) / 2
    se = math.sqrt(2 * p * (1 - p) / n_eval)
    agree = abs(acc_p - acc_r) <= 2 * se
    res.data = {"runs": runs, "order": order, "n_train": n_train, "n_eval": n_eval, "same_mask": same_mask,
                "padded_tokens": {"project": tok_p, "project_no_grouping": tok_nog, "reference": tok_r},
                "ratio_train_examples_per_s": ratio_train, "ratio_level_time": ratio_level}
    res.target("project/reference training examples/s >= 3x", f"{ratio_train:.2f}x (whole level {ratio_level:.2f}x)",
               ratio_train >= 3.0, "" if ratio_train >= 3 else
               f"the padding saved ({tok_r / tok_p:.2f}x fewer tokens) bounds the gain; per-step costs that do not "
               "shrink with length (the per-parameter AdamW loop, the dense embedding gradient, clipping: see "
               f"bench_efficiency) cut into it; load average {res.machine['loadavg_start'][0]:.1f} at start")
    if quick:
        res.add("Quick mode: a handful of steps, so both accuracies sit near chance; the agreement check means "
                "something only in the full run (2,000 examples).")
    res.target("validation accuracy agrees within noise", f"{acc_p:.4f} vs {acc_r:.4f} (2 SE = {2 * se:.4f})",
               agree, "" if agree else "difference larger than 2 binomial standard errors")
    return res


if __name__ == "__main__":
    cli(NAME, __doc__, run)
