"""Tickets others can load: one level of a run as a Hugging Face model folder.

``export(run_dir, level, out_dir)`` (or ``python -m tickets_core.interop.export RUN_DIR
--level K OUT_DIR``) writes a folder that ``AutoModelFor<head>.from_pretrained``
loads with plain ``transformers``:

* ``config.json`` (with the task's label names), ``model.safetensors``, the tokenizer files;
* the weights: the level's trained weights when the run kept them
  (``save_weights``: ``level_KK/weights.safetensors``), else theta0 (the
  model the run started from, head initialised from the run seed) with the
  mask applied, and a note in the card saying so; pruned entries exactly 0 either way;
* ``mask.safetensors``: the level's mask, 1 bit per prunable weight
  (:meth:`tickets_core.pruning.masks.Mask.load`, or ``numpy.unpackbits`` with the
  shapes in the file's metadata);
* ``README.md``: a model card (task, sparsity overall and per layer, score,
  source run, seed, how to load) and ``ticket.json``, the same facts for programs.

The folder is built under a temporary name and renamed into place
(:func:`tickets_core.core.fsio.atomic_folder`): a failed export leaves nothing.
Bad input (not a run folder, a level that is not done, an existing
non-empty ``out_dir``) is a one-line error before anything is written.

:func:`semi_structured` turns a 2:4-sparse model (``strategy:
magnitude_2to4``) into one whose prunable linear layers hold PyTorch
semi-structured sparse tensors, for faster inference on GPUs that support
them (CUDA, fp16/bf16).  It has not been measured on a GPU here; on a CPU it
refuses with one line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from ..models import build as models
from ..core.config import RunConfig
from ..core.errors import ConfigError, RunStoreError, run_cli
from ..lottery.experiment import finished_level_mask, load_level_state
from ..core.fsio import atomic_folder, atomic_write_json, atomic_write_text, read_json, require_new_folder
from ..models.heads import get_head
from ..core.kinds import get_kind
from ..pruning.masks import Mask
from ..models.prunable import prunable_parameters
from ..pruning.strategies import fits_2to4
from ..runs.paths import RunPaths, is_run_dir
from ..tasks import get_task
from . import shrink as shrunk

PIPELINES = {"classification": "text-classification", "regression": "text-classification",
             "qa": "question-answering", "mlm": "fill-mask"}


def export(run_dir: str | Path, level: int, out_dir: str | Path, *, shrink: bool = False, ffn: str = "exact") -> Path:
    """Write level ``level`` of the run in ``run_dir`` as a Hugging Face model folder ``out_dir``; returns it.

    ``shrink``: a structured level's pruned heads and FFN neurons are removed (:mod:`.shrink`; ``ffn``:
    ``"exact"`` or ``"pad"``), not stored as zeros.
    """
    paths, level = RunPaths(run_dir), int(level)
    if not is_run_dir(paths.root):
        raise RunStoreError(f"{paths.root} is not a run folder (no config.json and status.json)")
    if not paths.metrics(level).is_file():
        done = paths.levels()
        raise RunStoreError(f"level {level} of {paths.root.name} is not done "
                            f"(finished levels: {', '.join(map(str, done)) or 'none'})")
    out = require_new_folder(out_dir)
    cfg = RunConfig.from_dict(read_json(paths.config()))
    metrics = read_json(paths.metrics(level))
    task = get_task(cfg.data.task)
    model = models.build_model(cfg.model, task.head, task.num_labels, seed=cfg.seed)  # theta0
    stored = finished_level_mask(paths, level)
    mask = (Mask.ones_like(model, cfg.model.include_pooler) if stored is None
            else stored.fitted(model, cfg.model.include_pooler))
    trained = paths.weights(level)
    if trained.is_file():
        model.load_state_dict(load_level_state(trained, level), strict=True)
    mask.bind(model).apply_()  # pruned entries exactly 0 (the trained weights already are)
    labels = getattr(task, "labels", None)
    if task.head == "classification" and labels:
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {name: i for i, name in enumerate(labels)}
    record = _record(paths, cfg, metrics, mask, level, trained.is_file())
    if shrink:
        dense_params = sum(p.numel() for p in model.parameters())
        model = shrunk.shrink(model, mask, ffn=ffn)
        record["shrunk"] = {"ffn": ffn, "parameters": sum(p.numel() for p in model.parameters()),
                            "parameters_dense": dense_params, "pruned_heads": model.config.pruned_heads}
    with atomic_folder(out) as tmp:
        if shrink:
            record["shrunk"]["trust_remote_code"] = shrunk.write_shrunk(model, tmp)
        else:
            with models._quiet():  # no "Writing model shards" bar: the CLI answers in one line
                model.save_pretrained(tmp, safe_serialization=True)
        models.load_tokenizer(cfg.model).save_pretrained(tmp)
        mask.save(tmp / "mask.safetensors")
        atomic_write_json(tmp / "ticket.json", record)
        atomic_write_text(tmp / "README.md", model_card(record))
    return out


def _record(paths: RunPaths, cfg: RunConfig, metrics: dict, mask: Mask, level: int, trained: bool) -> dict:
    kind = get_kind(cfg.kind)
    report = mask.report()
    return {
        "run": paths.root.name, "kind": cfg.kind, "method": kind.label, "level": level, "seed": cfg.seed,
        "task": cfg.data.task, "head": get_task(cfg.data.task).head, "model": cfg.model.name_or_path,
        "main_metric": metrics["main_metric"], "score": metrics["score"], "eval": metrics["eval"],
        "eval_examples": cfg.data.max_eval_samples, "source": metrics.get("source"),
        "sparsity": report["total"], "matrices": report["matrices"],
        "weights": "trained" if trained else "theta0 x mask",
        "note": None if trained else (
            "The run did not keep this level's trained weights (run it with save_weights: true to keep them): "
            "these are the model's starting weights theta0 (the head initialised from the run seed) with the "
            f"mask applied, not fine-tuned. This kind's levels start from: {kind.starts_from or 'theta0'}. "
            "The score above is that of the trained network."),
        "config": cfg.hashed_dict(),
    }


def _layer_table(matrices: dict) -> list[str]:
    layers: dict = {}
    components: list[str] = []
    for r in matrices.values():
        layers.setdefault(r["layer"], {})[r["component"]] = r["sparsity"]
        if r["component"] not in components:
            components.append(r["component"])
    lines = ["| layer | " + " | ".join(components) + " |", "|---" * (len(components) + 1) + "|"]
    for layer in sorted(layers, key=lambda x: (not isinstance(x, int), str(x) if not isinstance(x, int) else x)):
        cells = [f"{100 * layers[layer][c]:.1f}%" if c in layers[layer] else "" for c in components]
        lines.append(f"| {'pooler' if layer is None else layer} | " + " | ".join(cells) + " |")
    return lines


def model_card(record: dict) -> str:
    """The README.md of an exported ticket."""
    total = record["sparsity"]
    head = record["head"]
    auto = get_head(head).auto_class
    source = record["source"] or {}
    src = (f"; its mask came from level {source.get('level')} of run `{source.get('run')}` "
           f"(task {source.get('task')})" if source.get("run") else "")
    lines = [
        "---", "library_name: transformers", f"pipeline_tag: {PIPELINES.get(head, 'feature-extraction')}",
        "tags: [lottery-ticket, pruning, sparse, tickets_core]", "---", "",
        f"# {100 * total['sparsity']:.1f}% sparse {record['model']} for {record['task']} (a lottery ticket)", "",
        f"Level {record['level']} of the `{record['kind']}` run `{record['run']}` ({record['method']}, seed "
        f"{record['seed']}){src}, exported by `tickets_core.interop.export`.", "",
        "| | |", "|---|---|",
        f"| task | {record['task']} ({head} head) |",
        f"| sparsity | {100 * total['sparsity']:.2f}% of the {total['numel']:,} prunable weights "
        f"({len(record['matrices'])} matrices; embeddings, biases, LayerNorm and the task head are dense) |",
        f"| score | {record['main_metric']} {record['score']:.4f} on the run's evaluation set"
        + (f" (first {record['eval_examples']} examples)" if record["eval_examples"] else "") + " |",
        f"| all metrics | {', '.join(f'{k} {v:.4f}' for k, v in record['eval'].items())} |",
        "| weights | " + ("the level's trained weights" if record["weights"] == "trained"
                           else "theta0 x mask, not fine-tuned (see the note)") + " |",
        f"| seed | {record['seed']} |", "",
    ]
    if record["note"]:
        lines += [f"**Note.** {record['note']}", ""]
    lines += ["## Sparsity per layer and component", ""] + _layer_table(record["matrices"]) + [""]
    small = record.get("shrunk")
    flag = ", trust_remote_code=True" if small and small.get("trust_remote_code") else ""
    if small:
        lines += ["## A physically smaller model", "",
                  f"The pruned attention heads and FFN neurons are removed, not stored as zeros: "
                  f"{small['parameters']:,} parameters instead of {small['parameters_dense']:,} (FFN widths: "
                  f"{small['ffn']}; heads removed per layer: `{json.dumps(small['pruned_heads'])}`)."
                  + (" Transformers 5 has no `prune_heads`, so the folder ships `tickets_shrunk.py`, which gives "
                     "the stock class the shrunk layer shapes: load it with `trust_remote_code=True`." if flag
                     else ""), ""]
    lines += [
        "## How to load", "", "```python", f"from transformers import {auto}, AutoTokenizer", "",
        f"model = {auto}.from_pretrained(\"PATH\"{flag})", "tokenizer = AutoTokenizer.from_pretrained(\"PATH\")",
        "```", "",
        "Pruned weights are stored as exact zeros. `mask.safetensors` holds the mask, one bit per prunable weight "
        "(names relative to the base model; `tickets_core.pruning.masks.Mask.load(path)`, or `numpy.unpackbits` of each "
        "uint8 tensor with the shapes in the file's `shapes` metadata). Fine-tuning further keeps the ticket only "
        "if pruned weights are kept at zero (e.g. `Mask.load(...).bind(model)` in tickets_core).", "",
        "## Provenance", "", "The run's settings that differ from tickets_core's defaults:", "", "```json",
        json.dumps(record["config"], indent=2, sort_keys=True), "```", "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Semi-structured (2:4) sparse inference
# ---------------------------------------------------------------------------


def is_2to4(weight: torch.Tensor) -> bool:
    """True when every group of 4 consecutive entries of each row holds at least 2 zeros."""
    if not fits_2to4(weight.shape):
        return False
    return bool(((weight.reshape(weight.shape[0], -1, 4) == 0).sum(-1) >= 2).all())


def semi_structured(model, dtype: torch.dtype = torch.float16):
    """Put ``model`` (2:4-sparse prunable weights) on the GPU in ``dtype`` with each 2:4-sparse prunable
    ``nn.Linear`` weight held as a :func:`torch.sparse.to_sparse_semi_structured` tensor; returns the model.

    Needs a CUDA GPU with semi-structured sparse kernels (compute capability 8.0 or newer).  Unmeasured on
    this project's machines (no GPU): see benchmarks/README.md.
    """
    if not torch.cuda.is_available():
        raise ConfigError("semi-structured sparse tensors need a CUDA GPU (PyTorch supports them on CUDA only)")
    from torch.sparse import to_sparse_semi_structured

    model = model.to(device="cuda", dtype=dtype).eval()
    weights = {id(p) for p in prunable_parameters(model).values()}
    converted = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) in weights and is_2to4(module.weight):
            module.weight = torch.nn.Parameter(to_sparse_semi_structured(module.weight.detach()), requires_grad=False)
            converted += 1
    if converted == 0:
        raise ConfigError("no prunable linear layer of the model is 2:4 sparse (prune it with magnitude_2to4)")
    return model


def main(argv: list[str] | None = None) -> int:
    """``python -m tickets_core.interop.export RUN_DIR --level K OUT_DIR``: one line on success or on bad input."""
    ap = argparse.ArgumentParser(prog="python -m tickets_core.interop.export", description=export.__doc__)
    ap.add_argument("run_dir", help="the run folder")
    ap.add_argument("out_dir", help="the model folder to write (must not exist, or be empty)")
    ap.add_argument("--level", type=int, required=True, help="the level to export")
    ap.add_argument("--shrink", action="store_true",
                    help="remove a structured level's pruned heads and FFN neurons (a smaller, faster model)")
    ap.add_argument("--ffn", choices=("exact", "pad"), default="exact",
                    help="with --shrink: each layer its own FFN width (exact) or all the widest one, zero-padded")
    args = ap.parse_args(argv)
    return run_cli(lambda: f"wrote {export(args.run_dir, args.level, args.out_dir, shrink=args.shrink, ffn=args.ffn)}")


if __name__ == "__main__":
    raise SystemExit(main())
