"""Where a run's files lie: one method per artifact of a run folder.

Layout (see docs/ARCHITECTURE.md)::

    <output_root>/<kind>-<task>-<hash8>/
      config.json  status.json  rewind.safetensors  run.lock  sweep.lock
      level_00/ mask.safetensors  sparsity.json  metrics.json  carry.safetensors  weights.safetensors
                checkpoint.pt (while the level runs)

A level counts as done when its ``metrics.json`` exists, so a run opened
again with the same config resumes at the first unfinished level.  What a
level needs from the level before it (its mask, and the weights it starts
from when it does not rewind: ``carry.safetensors``) lies in its own folder,
written before the earlier level is marked done and never overwritten by a
later one; a level's carry file is removed once the level is done.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

class RunPaths:
    """One method per artifact of a run folder."""

    def __init__(self, root_dir: str | Path) -> None:
        self.root = Path(root_dir)

    def config(self) -> Path:
        return self.root / "config.json"

    def status(self) -> Path:
        return self.root / "status.json"

    def rewind(self) -> Path:
        """theta_i (base-model weights after step ``rewind_step`` of level 0)."""
        return self.root / "rewind.safetensors"

    def level_dir(self, level: int) -> Path:
        return self.root / f"level_{level:02d}"

    def mask(self, level: int) -> Path:
        return self.level_dir(level) / "mask.safetensors"

    def sparsity(self, level: int) -> Path:
        return self.level_dir(level) / "sparsity.json"

    def metrics(self, level: int) -> Path:
        return self.level_dir(level) / "metrics.json"

    def carry(self, level: int) -> Path:
        """Weights level ``level`` starts from, left by the level before it (standard pruning; a kept head)."""
        return self.level_dir(level) / "carry.safetensors"

    def checkpoint(self, level: int, tag: str = "") -> Path:
        """The newest checkpoint of a fine-tuning inside level ``level`` (:mod:`tickets_core.training.checkpoint`):
        ``checkpoint.pt``, or ``checkpoint-<tag>.pt`` for a level's other fine-tunings (a stability level's second
        copy, its rewind point); deleted once the level is done."""
        return self.level_dir(level) / (f"checkpoint-{tag}.pt" if tag else "checkpoint.pt")

    def checkpoints(self, level: int) -> list[Path]:
        """Every checkpoint file in level ``level``'s folder."""
        return sorted(self.level_dir(level).glob("checkpoint*.pt"))

    def run_lock(self) -> Path:
        """Held by the process writing the run (:mod:`tickets_core.core.locks`)."""
        return self.root / "run.lock"

    def sweep_lock(self) -> Path:
        """Held by the sweep running the run's notebook."""
        return self.root / "sweep.lock"

    def weights(self, level: int) -> Path:
        """The level's trained weights (whole model), written with ``save_weights``."""
        return self.level_dir(level) / "weights.safetensors"

    def levels(self, verify: bool = False) -> list[int]:
        """Levels with a finished ``metrics.json``, ascending.  ``verify``: only those whose files are whole
        (:func:`finished`: a readable ``metrics.json`` and, for a pruned level, a whole mask file, checked
        cheaply), what a rerun skips; a damaged level is then not done, and the rerun redoes it."""
        out = []
        for d in self.root.glob("level_*"):
            if d.is_dir() and d.name[6:].isdigit() and (finished(d) if verify else (d / "metrics.json").is_file()):
                out.append(int(d.name[6:]))
        return sorted(out)


def finished(level_dir: Path) -> bool:
    """A level folder whose ``metrics.json`` is a readable JSON object and whose mask (when it was pruned) is
    whole."""
    try:
        metrics = json.loads((level_dir / "metrics.json").read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(metrics, dict):
        return False
    sparsity = metrics.get("sparsity")
    return not (isinstance(sparsity, (int, float)) and sparsity > 0) or whole_safetensors(level_dir / "mask.safetensors")


def whole_safetensors(path: Path) -> bool:
    """``path`` is a safetensors file whose header parses and whose size is what the header says (a cheap check:
    the data are not read)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                return False
            n = struct.unpack("<Q", head)[0]
            if n > 100_000_000:
                return False
            header = json.loads(fh.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size == 8 + n + end
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def is_run_dir(path: str | Path) -> bool:
    """A folder holding a run (config.json and status.json)."""
    p = RunPaths(path)
    return p.config().is_file() and p.status().is_file()
