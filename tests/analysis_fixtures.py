"""Tables and run folders for the analysis tests: result rows, random masks, run folders written per the
contract of docs/ARCHITECTURE.md (read back through tickets_core.analysis.results).  The fixtures built on them
(``runs``, ``run_root``) are in conftest.py."""

from __future__ import annotations

import json

import torch

def row(task, kind, seed, level, sparsity, score, source_task=None, run=None):
    return {"run": run or f"{kind}-{task}-{seed}", "run_dir": f"/runs/{run or f'{kind}-{task}-{seed}'}",
            "kind": kind, "task": task, "model": "tiny-bert", "seed": seed, "level": level, "sparsity": sparsity,
            "main_metric": "accuracy", "score": score, "source_run": None, "source_task": source_task,
            "source_level": None}


def random_mask(density: float, seed: int, shapes=((64, 32), (32, 16), (100,))):
    from tickets_core.pruning.masks import Mask

    g = torch.Generator().manual_seed(seed)
    return Mask({f"m{i}": torch.rand(s, generator=g) < density for i, s in enumerate(shapes)})



def write_run(root, kind, task, seed, level_scores: dict[int, tuple[float, float]], *, source_task=None, masks=None,
              source_run=None, **params):
    """A run folder as docs/ARCHITECTURE.md describes it; ``level_scores``: level -> (sparsity, score).

    ``params``: more flat parameters (a variant); ``source_run``: the source's run name (default: a made-up one).
    """
    from tickets_core.core.config import RunConfig

    source_run = source_run or (f"imp-{source_task}" if source_task else None)
    cfg = RunConfig.from_flat(kind=kind, task=task, seed=seed, model="tiny-bert", output_root=str(root),
                              **({"source_run": source_run} if source_run else {}), **params)
    cfg.data.fingerprint = "fixture"  # written by hand, not resolved: tasks here are made-up names
    d = root / cfg.run_name()
    d.mkdir(parents=True)
    (d / "config.json").write_text(cfg.to_json())
    (d / "status.json").write_text(json.dumps({"state": "done", "levels_done": sorted(level_scores),
                                               "levels_planned": len(level_scores), "error": None,
                                               "updated": "2026-01-01T00:00:00+00:00"}))
    for level, (sp, score) in level_scores.items():
        ld = d / f"level_{level:02d}"
        ld.mkdir()
        if masks and level in masks:
            masks[level].save(ld / "mask.safetensors")
            (ld / "sparsity.json").write_text(json.dumps(masks[level].report()))
        src = {"run": source_run, "task": source_task, "level": level} if source_task else None
        (ld / "metrics.json").write_text(json.dumps({
            "level": level, "sparsity": sp, "main_metric": "accuracy", "score": score,
            "eval": {"accuracy": score}, "train": {"steps": 1}, "source": src, "seed": seed, "task": task,
            "kind": kind}))
    return d
