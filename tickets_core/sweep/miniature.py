"""A sweep file in miniature: the same structure at a scale that runs in minutes on a CPU.

``python -m tickets_core.sweep sweeps/paper.yaml --miniature --output-root DIR`` proves a grid's shape end to
end before anyone spends GPU-hours on it: every trunk kind, branch and transfer rule (``highest_matching``
and fixed source levels, ``params_from: target``), every analysis notebook, on a tiny model and tiny local
data.  Only scale is replaced; what stays is what can go wrong at scale:

* **model**: ``tiny-bert`` (random, 2 layers, 64 wide) wherever the file names a model;
* **tasks**: one of each type the file uses: every GLUE classification task becomes ``sst2``, STS-B stays
  (regression), ``squad`` and ``mlm`` stay; other tasks have no miniature (an error naming the line);
  their data are the fixture folders of :mod:`tickets_core.tasks.fixtures`, written under ``DIR/_miniature/data``
  (``data_dirs``), tokenized into ``DIR/_miniature/cache``;
* **budgets**: every fine-tuning runs :data:`SCALE` (a few optimizer steps at batch 8 on 32-token inputs);
  a step count inside a level (``rewind_step``, ``early_bird_every``, ``eval_every``) becomes 1; learning
  rates and every other setting are the file's;
* **levels**: :data:`LEVELS` pruning levels (3 levels with the dense one) at the file's schedule and rate;
  fixed source levels, an analysis ``level`` and ``sparsity`` map to the same fraction of the schedule
  (:func:`map_level`: 5 and 7 of 9 become 1 and 2 of 2);
* **seeds**: each entry's first seed (a dense entry and the IMP trunk's level 0 still give the dense baseline
  two seeds, so the matching threshold has a spread);
* **pairs**: each transfer source goes to one target, chosen so that masks cross between models with and
  without a pooler (GLUE models have one, SQuAD and MLM models do not) and every target task is reached
  (:func:`pick_target`); the entry is split into one entry per source.

The miniature's sweep file is written to ``DIR/_miniature/sweep.yaml`` (read it to see exactly what runs; run
folders go to ``DIR``, figures to ``DIR/figures``).  Writing it again gives the same bytes, so the same command
resumes.  Errors in the original file are reported at its own lines: the miniature is planned only after the
original file planned cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..core.config import PruneConfig, lookup
from ..tasks import TASKS
from ..tasks.fixtures import write_glue, write_squad, write_text
from .yamlfile import SweepError, SweepFile

MODEL = "tiny-bert"
LEVELS = 2
#: Every fine-tuning's budget in the miniature (replacing the file's epochs, steps, batch and lengths).
SCALE: dict[str, Any] = {"max_steps": 4, "batch_size": 8, "eval_batch_size": 32, "max_seq_length": 32}
#: Scale parameters the miniature removes from every entry (the defaults carry :data:`SCALE` instead).
DROPPED = ("num_epochs", "max_train_samples", "max_eval_samples", "mlm_head_warmup_steps", "mlm_head_warmup_lr",
           "data_dir", "cache_dir", "tokenizer", "config_overrides", "random_init")
#: Step counts inside a level (rewind to theta_i, early-bird checks): 1 in the miniature when set.
STEP_COUNTS = ("rewind_step", "early_bird_every", "eval_every")
#: The miniature's task for each task type, and the fixture folder its data come from.
TASK_OF_HEAD = {"classification": "sst2", "regression": "stsb", "qa": "squad", "mlm": "mlm"}
DATA = {"sst2": "glue", "stsb": "glue", "squad": "squad", "mlm": "text"}
#: Heads whose BERT model has no pooler (its masks have no pooler entry).
NO_POOLER = ("qa", "mlm")
FOLDER = "_miniature"


def miniature_task(task: str, where: str) -> str:
    """The miniature's stand-in for ``task`` (see the module docstring); a one-line error when it has none."""
    if task in ("squad", "mlm") or task in TASK_OF_HEAD.values():
        return task
    t = TASKS.get(task)
    if t is not None and t.description.startswith("GLUE"):
        return TASK_OF_HEAD[t.head]
    raise SweepError(f"{where}: task {task!r} has no miniature (the miniature has tiny data for the GLUE tasks, "
                     "squad and mlm)")


def has_pooler(task: str) -> bool:
    return TASKS[task].head not in NO_POOLER


def map_level(level: int, levels: int) -> int:
    """Level ``level`` of a ``levels``-level schedule in the miniature's :data:`LEVELS`: the same fraction of the
    schedule, at least 1 for a pruned level (0 stays the dense level)."""
    if level <= 0 or levels <= 0:
        return 0
    return max(1, min(LEVELS, round(level * LEVELS / levels)))


def pick_target(source: str, targets: list[str], order: list[str]) -> str | None:
    """The one target ``source`` transfers to in the miniature: among ``targets`` other than ``source``, those on
    the other side of the pooler divide when there are any, the one at the source's position in ``order`` (the
    miniature's tasks) modulo their count, so that different sources reach different targets."""
    others = [t for t in targets if t != source]
    across = [t for t in others if has_pooler(t) != has_pooler(source)] or others
    return across[order.index(source) % len(across)] if across else None


class _Miniature:
    """Rewrites one parsed sweep file (see the module docstring)."""

    def __init__(self, file: SweepFile, out: Path) -> None:
        self.file, self.out = file, out
        self.data = file.data
        self.prune = self._prune(self.data.get("defaults") or {})
        self.order: list[str] = []

    def where(self, at: tuple) -> str:
        while at and at not in self.file.lines:
            at = at[:-1]
        return f"{self.file.path}:{self.file.lines.get(at, 1)}"

    @staticmethod
    def _prune(params: dict) -> PruneConfig:
        keys = ("levels", "rate", "schedule")
        return PruneConfig(**{lookup(k).field: params[k] for k in keys if k in params})

    def tasks(self, names: Any, at: tuple) -> list[str]:
        out = []
        for i, name in enumerate(names if isinstance(names, list) else [names]):
            mini = miniature_task(name, self.where(at + (i,)))
            if mini not in out:
                out.append(mini)
            if mini not in self.order:
                self.order.append(mini)
        return out

    def params(self, entry: dict) -> dict:
        """An entry's parameters at the miniature's scale."""
        out = {k: v for k, v in entry.items() if k not in DROPPED and k not in SCALE}
        if "model" in out:
            out["model"] = MODEL
        if "levels" in out:
            out["levels"] = LEVELS
        for key in STEP_COUNTS:  # a step count inside a level: the rule kept, within the miniature's few steps
            if isinstance(out.get(key), int) and not isinstance(out[key], bool) and out[key] > 0:
                out[key] = 1
        return out

    def levels(self, value: Any, levels: int) -> Any:
        if not isinstance(value, list):
            return value  # None, or highest_matching
        return list(dict.fromkeys(map_level(k, levels) for k in value))

    def build(self) -> dict:
        d = self.data
        trunks: dict[str, dict] = {}
        new_trunks = []
        for i, t in enumerate(d.get("trunks") or []):
            at = ("trunks", i)
            entry = {**self.params(t), "tasks": self.tasks(t["tasks"], at + ("tasks",)), "seeds": _first(t["seeds"])}
            trunks[t.get("name", t.get("kind", "imp"))] = {**t, **entry, "_levels": self._prune(
                {**(d.get("defaults") or {}), **t}).levels}
            new_trunks.append(entry)
        branches = []
        for i, b in enumerate(d.get("branches") or []):
            at = ("branches", i)
            trunk = self.trunk(b, at, trunks)
            entry = self.params(b)
            for key in ("tasks", "seeds"):
                if key in b:
                    entry[key] = self.tasks(b[key], at + (key,)) if key == "tasks" else _first(b[key])
            if "trunk_seed" in b:
                entry["trunk_seed"] = trunk["seeds"][0]
            entry["source_levels"] = self.levels(b.get("source_levels"), trunk["_levels"])
            branches.append({k: v for k, v in entry.items() if v is not None})
        transfers = []
        for i, x in enumerate(d.get("transfers") or []):
            transfers += self.transfer(x, ("transfers", i), trunks)
        analysis = [self.analysis(a) for a in d.get("analysis") or []]
        mini = {"output_root": str(self.out), "figures_dir": str(self.out / "figures")}
        if "notebooks_dir" in d:
            mini["notebooks_dir"] = str(self.file.path.parent / d["notebooks_dir"])
        if "n_std" in d:
            mini["n_std"] = d["n_std"]
        mini["data_dirs"] = {t: str(self.out / FOLDER / "data" / DATA[t]) for t in self.order}
        mini["defaults"] = {**self.params(d.get("defaults") or {}), "model": MODEL, "levels": LEVELS, **SCALE,
                            "cache_dir": str(self.out / FOLDER / "cache")}
        mini.update(trunks=new_trunks, branches=branches, transfers=transfers, analysis=analysis)
        return {k: v for k, v in mini.items() if v not in ([], None)}

    def trunk(self, entry: dict, at: tuple, trunks: dict) -> dict:
        ref = entry.get("trunk")
        if not isinstance(ref, str) or ref not in trunks:
            raise SweepError(f"{self.where(at + ('trunk',))}: the miniature needs the trunk named in this file "
                             "('trunk: <name>' of a trunk entry)")
        return trunks[ref]

    def transfer(self, x: dict, at: tuple, trunks: dict) -> list[dict]:
        if "trunk" not in x:
            raise SweepError(f"{self.where(at)}: a transfer from a mask file cannot run on the miniature's model "
                             f"({MODEL}); leave it out of the file to run the miniature")
        trunk = self.trunk(x, at, trunks)
        sources = self.tasks(x["sources"], at + ("sources",)) if "sources" in x else trunk["tasks"]
        targets = self.tasks(x["targets"], at + ("targets",))
        entry = self.params(x)
        if "seeds" in x:
            entry["seeds"] = _first(x["seeds"])
        if "trunk_seed" in x:
            entry["trunk_seed"] = trunk["seeds"][0]
        entry["source_levels"] = self.levels(x.get("source_levels"), trunk["_levels"])
        out = []
        for source in sources:
            target = pick_target(source, targets, self.order)
            if target is not None:
                out.append({**{k: v for k, v in entry.items() if v is not None}, "sources": [source],
                            "targets": [target]})
        return out

    def analysis(self, entry: Any) -> Any:
        if not isinstance(entry, dict):
            return entry
        out = dict(entry)
        top = self.prune.levels
        if isinstance(out.get("level"), int) and not isinstance(out["level"], bool):
            out["level"] = map_level(out["level"], top)
        if isinstance(out.get("sparsity"), (int, float)) and not isinstance(out["sparsity"], bool):
            nearest = min(range(top + 1), key=lambda k: abs(self.prune.sparsity(k) - out["sparsity"]))
            mini = PruneConfig(levels=LEVELS, rate=self.prune.rate, schedule=self.prune.schedule)
            out["sparsity"] = round(mini.sparsity(map_level(nearest, top)), 6)
        return out


class _Dumper(yaml.SafeDumper):
    """Plain YAML: a list written twice is written out twice (no ``&id001`` anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _first(seeds: Any) -> list:
    return [seeds[0] if isinstance(seeds, list) else seeds]


def write_miniature(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the miniature of sweep file ``path`` (its data and its sweep file) under ``out`` (default: the file's
    ``output_root`` + ``-miniature``); returns the path of the miniature's sweep file.  ``path`` must plan cleanly
    first (its errors name its own lines)."""
    from .spec import plan_sweep

    original = plan_sweep(path)  # the original's own checks, at its own lines (nothing runs, nothing is written)
    out = Path(out).expanduser().resolve() if out else Path(f"{original.output_root}-miniature")
    mini = _Miniature(SweepFile(path), out).build()
    folder = out / FOLDER
    data = folder / "data"
    writers = {"glue": write_glue, "squad": write_squad, "text": write_text}
    for kind in sorted({DATA[t] for t in mini.get("data_dirs", {})}):
        writers[kind](data / kind)
    target = folder / "sweep.yaml"
    header = (f"# The miniature of {Path(path).resolve()}, written by `python -m tickets_core.sweep {path} "
              f"--miniature --output-root {out}`.\n# Generated: edit the original and write it again.\n")
    text = header + yaml.dump(mini, Dumper=_Dumper, sort_keys=False, width=120, default_flow_style=None)
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
    return target
