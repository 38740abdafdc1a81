"""Checkpoints inside a level: a fine-tuning killed mid-level resumes where its last checkpoint left it.

:func:`tickets_core.training.loop.fine_tune` takes a :class:`Checkpointer`
(:meth:`tickets_core.lottery.experiment.Experiment.train` makes one per
fine-tuning of a level, at :meth:`tickets_core.runs.paths.RunPaths.checkpoint`).
Every ``checkpoint_every`` optimizer steps, or once ``checkpoint_minutes`` of
training passed since the last one (the default: 20 minutes, so a level
shorter than that never writes one), the loop writes, atomically, everything
the rest of the fine-tuning depends on: the model's weights (the fp32 master
weights under the fast path), the optimizer and scheduler state, the RNG
states (python, numpy, torch, CUDA when present), the data-order position
(the step; the MLM masking generator's state), the running loss sum and
periodic evaluations, and the state of the ``on_step`` hook (the early-bird
tracker).  Starting the same fine-tuning again loads the checkpoint and
continues: on a CPU the result is bit for bit the result of an uninterrupted
run.

File format: ``tickets-checkpoint-v1\\n``, the SHA-256 of the payload in hex,
``\\n``, then the payload (``torch.save`` of one dict, read back with
``weights_only=True``: no pickled code runs).  A file whose header, digest,
content or identity (level, fine-tuning, seed, steps) does not match is
ignored with one warning line, and the fine-tuning starts from its
beginning; nothing is applied before the whole file has been checked.  Only
the newest checkpoint of a fine-tuning is kept (each one replaces the last);
:meth:`tickets_core.runs.store.Run.write_level` deletes them once the level is
done.

Walltime: :func:`install_walltime_handler` makes a signal (SIGUSR1: what
SLURM's ``--signal`` sends before the time limit) ask the loop to write a
checkpoint at the end of the current step and raise :class:`WalltimeReached`,
whose exit status is :data:`REQUEUE_STATUS` (see :mod:`tickets_core.sweep.walltime`).
"""

from __future__ import annotations

import hashlib
import io
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..core.fsio import atomic_write_bytes
from ..core.settings import REQUEUE_STATUS

MAGIC = b"tickets-checkpoint-v1\n"

_requested = threading.Event()


class WalltimeReached(SystemExit):
    """Raised by the training loop after it wrote a checkpoint because a walltime signal asked for one."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(REQUEUE_STATUS)
        self.path = path

    def __str__(self) -> str:
        where = f"checkpoint {self.path} written" if self.path else "no fine-tuning was running"
        return f"stopped by the walltime signal ({where}); the same command resumes it"

    def _render_traceback_(self) -> list[str]:
        """IPython (notebooks, papermill) shows it as its one line, not as a traceback."""
        return [f"{type(self).__name__}: {self}"]


def request_stop(*_args) -> None:
    """Ask the running fine-tuning to checkpoint and stop (the walltime signal's handler)."""
    _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def clear_request() -> None:
    _requested.clear()


def install_walltime_handler(sig: int = signal.SIGUSR1) -> bool:
    """Make ``sig`` call :func:`request_stop` (only in the main thread, and only where nothing else handles
    ``sig`` yet); True when installed or already installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(sig)
    if current is request_stop:
        return True
    if current not in (signal.SIG_DFL, None):
        return False
    signal.signal(sig, request_stop)
    return True


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def rng_state() -> dict:
    """python, numpy, torch (and CUDA, when initialised) RNG states, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    out = {"python": random.getstate(),
           "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                     float(gauss)],
           "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


_REQUIRED = {"step", "examples", "loss_sum", "history", "elapsed_s", "model", "optimizer", "scheduler", "rng",
             "mask_gen", "hook"}


def capture(*, step: int, examples: int, loss_sum: torch.Tensor, history: list, elapsed_s: float, model,
            optimizer, scheduler, mask_state: torch.Tensor, hook) -> dict:
    """What a checkpoint of :func:`tickets_core.training.loop.fine_tune` holds (the model: its fp32 weights)."""
    return {"step": step, "examples": examples, "loss_sum": loss_sum.detach().cpu(), "history": history,
            "elapsed_s": elapsed_s, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": rng_state(), "mask_gen": mask_state,
            "hook": hook.state_dict() if hasattr(hook, "state_dict") else None}


def restore(state: dict, *, model, optimizer, scheduler, mask_gen: torch.Generator, hook) -> None:
    """Put a checkpoint :meth:`Checkpointer.load` checked back into the model, optimizer, scheduler, RNGs,
    masking generator and hook (the counters are the caller's)."""
    with torch.no_grad():
        live = model.state_dict()
        for k, v in state["model"].items():
            live[k].copy_(v)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    mask_gen.set_state(state["mask_gen"])
    if state["hook"] is not None and hasattr(hook, "load_state_dict"):
        hook.load_state_dict(state["hook"])


class Checkpointer:
    """Where and when one fine-tuning writes its checkpoint, and what identifies it.

    ``identity`` (level, fine-tuning tag, seed, total steps...) must match the stored one for a checkpoint to
    be loaded.  ``every`` (steps) wins over ``minutes``; both None: only a walltime signal writes one.
    """

    def __init__(self, path: str | Path, *, identity: dict, every: int | None = None,
                 minutes: float | None = None, say: Callable[[str], None] = _say) -> None:
        self.path, self.identity, self.every, self.minutes, self.say = Path(path), identity, every, minutes, say
        self.size = 0  # bytes of the last checkpoint written or loaded
        self._last = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every is not None:
            return step % self.every == 0
        return self.minutes is not None and time.monotonic() - self._last >= 60.0 * self.minutes

    def save(self, state: dict) -> int:
        """Write ``state`` (plus the identity) atomically over the previous checkpoint; its size in bytes."""
        buf = io.BytesIO()
        torch.save({"identity": self.identity, **state}, buf)
        payload = buf.getvalue()
        atomic_write_bytes(self.path, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
        self.size = len(payload) + len(MAGIC) + 65
        self._last = time.monotonic()
        return self.size

    def load(self, model: torch.nn.Module | None = None) -> dict | None:
        """The stored state when a whole checkpoint matching this fine-tuning (and ``model``'s weights) is
        there; None otherwise (a bad one: one warning line)."""
        if not self.path.is_file():
            return None
        reason = None
        try:
            raw = self.path.read_bytes()
            head, sep, rest = raw[len(MAGIC):].partition(b"\n")
            if not raw.startswith(MAGIC) or not sep:
                reason = "not a tickets_core checkpoint"
            elif hashlib.sha256(rest).hexdigest().encode() != head:
                reason = "its content does not match its digest (cut short or damaged)"
            else:
                state = torch.load(io.BytesIO(rest), map_location="cpu", weights_only=True)
                if not isinstance(state, dict) or state.get("identity") != self.identity:
                    theirs = state.get("identity") if isinstance(state, dict) else None
                    reason = f"it belongs to another fine-tuning ({theirs}, not {self.identity})"
                elif not _REQUIRED <= set(state):
                    reason = f"it lacks {', '.join(sorted(_REQUIRED - set(state)))}"
                elif model is not None:
                    reason = check_model_state(model, state["model"])
        except Exception as e:  # noqa: BLE001 - any unreadable file is ignored, with its reason
            reason = f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        if reason is not None:
            self.say(f"warning: ignoring checkpoint {self.path}: {reason}; this fine-tuning starts from its "
                     "beginning")
            return None
        self.size = len(raw)
        self._last = time.monotonic()
        return state


def check_model_state(model: torch.nn.Module, stored: dict) -> str | None:
    """Why ``stored`` cannot be loaded into ``model`` whole (None: it can): checked before anything is copied."""
    live = model.state_dict()
    if set(live) != set(stored):
        diff = sorted(set(live) ^ set(stored))
        return f"its weights are not this model's ({len(diff)} names differ, e.g. {diff[0]})"
    bad = next((k for k, v in live.items() if tuple(v.shape) != tuple(stored[k].shape)), None)
    return None if bad is None else f"its {bad} has shape {tuple(stored[bad].shape)}, not {tuple(live[bad].shape)}"
