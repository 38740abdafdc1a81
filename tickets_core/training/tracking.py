"""Experiment trackers (``report_to``): TensorBoard, MLflow (a local file store) and Weights & Biases (offline).

What they get, under ``<run folder>/tracking/``: the training loss and learning
rate of every optimizer step (``train/loss``, ``train/learning_rate``; step =
``level x steps per level + step``, so levels follow each other on one axis; a
level's second fine-tuning, such as a stability copy, logs ``train2/...``),
and per level its ``level/sparsity``, ``level/score`` and every evaluation
metric (``eval/<name>``), at step = the level number; the run's parameters
once.  TensorBoard: ``tracking/tensorboard`` (``tensorboard --logdir runs``);
MLflow: the file store ``tracking/mlruns`` (``mlflow ui --backend-store-uri
<run>/tracking/mlruns``; MLflow 3 keeps file stores behind
``MLFLOW_ALLOW_FILE_STORE``, which this sets for its own process); W&B:
``wandb.init(mode="offline")`` under ``tracking/`` (``wandb sync`` uploads it).

A tracker never fails a run: a missing package or any error from a tracker
prints one warning line and that tracker is off for the rest of the run.

The driver opens :class:`Trackers` around a run's levels; the training loop
asks :func:`step_logger` for the current one (None when no run tracks), so the
loop needs no tracker argument.  Losses are read from the device every
:data:`SYNC_EVERY` steps (one synchronisation per batch of steps, every step's
loss logged).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from ..core.errors import one_line
from ..core.locks import say

SYNC_EVERY = 25
_ACTIVE: list["Trackers"] = []


def step_logger(total_steps: int) -> Callable[[int, Any, float], None] | None:
    """``log(step, loss, learning_rate)`` for one fine-tuning of ``total_steps`` steps of the current level, or None
    when no run is tracking (the training loop calls it once per fine-tuning)."""
    return _ACTIVE[-1].fine_tuning(total_steps) if _ACTIVE else None


class _Backend:
    """One tracker; every call goes through :meth:`Trackers.call`, which switches it off on its first error."""

    name = ""

    def __init__(self, folder: Path, run_name: str, params: dict) -> None:
        raise NotImplementedError

    def scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _TensorBoard(_Backend):
    name = "tensorboard"

    def __init__(self, folder: Path, run_name: str, params: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        self.writer.add_text("config", "```\n" + json.dumps(params, indent=1, sort_keys=True, default=str) + "\n```")

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class _MLflow(_Backend):
    name = "mlflow"

    def __init__(self, folder: Path, run_name: str, params: dict) -> None:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: file stores are opt-in
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=(folder / "mlruns").resolve().as_uri())
        exp = self.client.get_experiment_by_name("tickets_core")
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment("tickets_core")
        found = self.client.search_runs([exp_id], filter_string=f"tags.`mlflow.runName` = '{run_name}'")
        if found:  # a resumed run logs into the run it started
            self.run_id = found[0].info.run_id
        else:
            self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
            for key, value in params.items():
                self.client.log_param(self.run_id, key, str(value)[:500])

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class _WandB(_Backend):
    name = "wandb"

    def __init__(self, folder: Path, run_name: str, params: dict) -> None:
        import wandb

        self.run = wandb.init(mode="offline", dir=str(folder), project="tickets_core", name=run_name, id=run_name,
                              config=params, resume="allow", reinit=True)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


BACKENDS: dict[str, type[_Backend]] = {b.name: b for b in (_TensorBoard, _MLflow, _WandB)}


class Trackers:
    """The trackers of one run (``cfg.report_to``), active while the ``with`` block runs its levels."""

    def __init__(self, names: list[str], folder: Path, run_name: str, params: dict) -> None:
        self.names, self.folder, self.run_name, self.params = list(names), Path(folder), run_name, params
        self.backends: dict[str, _Backend | None] = {}  # None: off (failed)
        self.level, self.fits = 0, 0
        self.pending: list[tuple[int, Any, float]] = []
        self.series = "train"

    def __enter__(self) -> "Trackers":
        if self.names:
            _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
            self.flush()
            for name, backend in self.backends.items():
                if backend is not None:
                    self.call(name, backend.close)

    def call(self, name: str, fn, *args) -> None:
        """``fn(*args)`` for tracker ``name``; its first error is one warning line and the tracker is off."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - a tracker never fails the run
            self.backends[name] = None
            say(f"warning: report_to {name} failed ({type(e).__name__}: {one_line(e)}); the run goes on without it")

    def _backend(self, name: str) -> _Backend | None:
        if name not in self.backends:
            self.backends[name] = None
            folder = self.folder / "tracking"

            def start() -> None:
                folder.mkdir(parents=True, exist_ok=True)
                self.backends[name] = BACKENDS[name](folder, self.run_name, self.params)

            self.call(name, start)
        return self.backends[name]

    def scalars(self, values: dict[str, float], step: int) -> None:
        for name in self.names:
            backend = self._backend(name)
            if backend is not None:
                self.call(name, backend.scalars, values, step)

    # -- what the driver and the loop call ---------------------------------------

    def start_level(self, level: int) -> None:
        self.flush()
        self.level, self.fits = level, 0

    def fine_tuning(self, total_steps: int) -> Callable[[int, Any, float], None]:
        """The step logger of the level's next fine-tuning (the loop calls it after every optimizer step)."""
        self.flush()
        self.fits += 1
        self.series = "train" if self.fits == 1 else f"train{self.fits}"
        offset = self.level * total_steps

        def log(step: int, loss, learning_rate: float) -> None:
            value = loss.detach().float().clone() if hasattr(loss, "detach") else loss  # a CUDA graph reuses its output
            self.pending.append((offset + step, value, learning_rate))
            if len(self.pending) >= SYNC_EVERY:
                self.flush()

        return log

    def flush(self) -> None:
        """Read the pending losses from the device (one synchronisation) and log them."""
        pending, self.pending = self.pending, []
        for step, loss, lr in pending:
            self.scalars({f"{self.series}/loss": float(loss), f"{self.series}/learning_rate": float(lr)}, step)

    def end_level(self, level: int, metrics: dict) -> None:
        """Log a finished level's sparsity, score and evaluation metrics at step ``level``."""
        self.flush()
        values = {"level/sparsity": metrics.get("sparsity"), "level/score": metrics.get("score"),
                  **{f"eval/{k}": v for k, v in (metrics.get("eval") or {}).items()}}
        train = metrics.get("train") or {}
        values.update({f"level/{k}": train.get(k) for k in ("train_loss", "steps", "time_s")})
        self.scalars({k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and
                      not isinstance(v, bool)}, level)
