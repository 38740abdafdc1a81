"""Shared machinery of the task registry: the ``Task`` and ``TaskData`` types,
the on-disk tokenization cache, deterministic splits and dynamic padding.

A task turns a :class:`~tickets_core.core.config.DataConfig` and a tokenizer into
a :class:`TaskData`: tokenized ``train`` and ``eval`` datasets (Hugging Face
``datasets.Dataset`` objects holding plain token-id lists) plus what
evaluation needs (extra evaluation sets such as MNLI-mismatched, the raw
SQuAD examples).  Tokenized splits are cached on disk under
``DataConfig.cache_dir`` (default ``~/.cache/tickets_core``) in a folder keyed
by task, data-source fingerprint, tokenizer fingerprint and every data option
that changes the tokens, so every IMP level and every seed reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.config import DataConfig
from ..core.errors import ConfigError
from ..core.seeds import SPLIT_SEED
from ..core.fsio import content_hash, current_umask

# Bump when the tokenized layout changes, so stale caches are not reused.
CACHE_VERSION = 1
# Seed of every deterministic train/validation split and training-set shuffle.


def cache_root(cfg: DataConfig) -> Path:
    """The folder of tickets_core's caches: ``cfg.cache_dir``, by default ``~/.cache/tickets_core``."""
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "tickets_core"


class DataError(ConfigError):
    """Task data is missing or malformed (one-line message)."""


class UnknownTaskError(ConfigError):
    """The task name is not in the registry."""


@dataclass
class Source:
    """Where a task's raw data comes from.

    ``fingerprint`` identifies the data without reading it (paths, sizes and
    modification times of local files, or a package version); ``read``
    returns the raw splits as ``{split: {column: list}}``.
    """

    fingerprint: str
    read: Callable[[], dict[str, dict[str, list]]]


def pad(rows: list[list[int]], value: int, width: int | None = None):
    """A ``len(rows) x width`` long tensor of the rows, right-padded with ``value``."""
    import torch

    width = width or max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


#: The tasks that need no hub (the packages of requirements.txt), named in the offline error.
OFFLINE_TASKS = ("rotten_tomatoes", "imdb", "tweet_sentiment", "ptb_mlm")


def hub_dataset(task: str, args: tuple[str, ...], local: str):
    """``datasets.load_dataset(*args)``; the hub not reachable (offline, no cached copy) is a one-line
    :class:`DataError` that points at ``data_dir`` (``local``: the layout it takes)."""
    import datasets

    try:
        return datasets.load_dataset(*args)
    except OSError as e:  # ConnectionError, offline mode, an incomplete cache
        raise DataError(f"task {task!r} needs {'/'.join(args)} from the Hugging Face hub, not reachable here "
                        f"({type(e).__name__}): set data_dir to {local}, or use an offline task "
                        f"({', '.join(OFFLINE_TASKS)})", param="data_dir") from None


@dataclass
class TaskData:
    """Tokenized data of one task for one tokenizer.

    ``train`` and ``eval`` hold ``input_ids`` (lists of ints, unpadded),
    optionally ``token_type_ids``, ``length`` and the targets (``labels``, or
    ``start_positions``/``end_positions`` for QA; MLM eval sets carry their
    fixed masked ``input_ids`` and ``labels``).  ``extra_eval`` maps a metric
    suffix to another evaluation set (MNLI: ``{"mm": mismatched}``);
    ``eval_examples`` holds SQuAD's raw examples for span post-processing.
    """

    task: "Task"
    tokenizer: Any
    train: Any
    eval: Any
    extra_eval: dict[str, Any] = field(default_factory=dict)
    eval_examples: Any = None
    cache_path: Path | None = None
    mlm_probability: float = 0.15

    @property
    def pad_id(self) -> int:
        """The tokenizer's pad token id (0 when it has none)."""
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def collate(self, rows: dict[str, list], generator=None) -> dict:
        """One batch (a column dict as ``dataset[indices]`` returns it) padded to its longest row, with targets.

        The inputs are padded here; the task adds its targets
        (:meth:`Task.add_targets`; MLM masks training tokens with ``generator``).
        """
        ids = rows["input_ids"]
        width = max(len(x) for x in ids)
        batch = {"input_ids": pad(ids, self.pad_id, width),
                 "attention_mask": pad([[1] * len(x) for x in ids], 0, width)}
        if "token_type_ids" in rows:
            batch["token_type_ids"] = pad(rows["token_type_ids"], 0, width)
        self.task.add_targets(batch, rows, self, generator)
        return batch


class Evaluator:
    """Accumulates a task's predictions over evaluation batches: ``add`` each batch, then ``result``."""

    def add(self, outputs, batch: dict, rows: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError


class Task:
    """One registry entry: data source, preprocessing, targets and metrics of a task.

    Subclasses implement :meth:`source` (where the raw data is),
    :meth:`tokenize` (raw splits -> tokenized splits), :meth:`add_targets`
    (a batch's targets) and :meth:`evaluator` (how predictions are scored).
    ``head`` names an entry of :data:`tickets_core.models.heads.HEADS`.
    """

    name: str
    head: str
    num_labels: int
    main_metric: str
    metric_names: tuple[str, ...]
    description: str = ""
    #: Cap on the evaluation batch size (MLM logits are batch x length x vocabulary).
    max_eval_batch: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, head={self.head!r}, main_metric={self.main_metric!r})"

    # -- hooks ------------------------------------------------------------------

    def source(self, cfg: DataConfig) -> Source:  # pragma: no cover - abstract
        raise NotImplementedError

    def tokenize(self, raw: dict[str, dict[str, list]], cfg: DataConfig, tokenizer) -> dict[str, Any]:
        """Raw splits -> ``{"train": Dataset, "eval": Dataset, ...}`` (extra keys: ``eval_<suffix>``, ``eval_examples``)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def cache_options(self, cfg: DataConfig) -> dict:
        """Data options that change the tokenized data (part of the cache key)."""
        return {
            "max_seq_length": cfg.max_seq_length,
            "max_train_samples": cfg.max_train_samples,
            "max_eval_samples": cfg.max_eval_samples,
        }

    def add_targets(self, batch: dict, rows: dict[str, list], data: TaskData, generator) -> None:
        """Put the targets of ``rows`` into ``batch`` (tensors)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def evaluator(self, data: TaskData, ds) -> Evaluator:
        """A fresh :class:`Evaluator` for evaluation set ``ds`` of ``data``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def compile_target(self, model):
        """The module whose forward :meth:`loss` runs: what ``torch.compile`` compiles for training (the model)."""
        return model

    def loss(self, model, batch: dict, compiled=None):
        """The training loss of ``batch`` (inputs and targets, on the model's device): the model's own.

        ``compiled``: a compiled :meth:`compile_target` of ``model``, called in its place (None: eager).
        """
        return (model if compiled is None else compiled)(**batch).loss

    def outputs(self, model, inputs: dict, batch: dict):
        """The model's outputs for evaluation: ``inputs`` (on the device) lack the targets ``batch`` has."""
        return model(**inputs)

    def fingerprint(self, cfg: DataConfig) -> str:
        """What identifies this task's data for ``cfg`` (content, package or hub), without reading it all."""
        return self.source(cfg).fingerprint

    # -- loading ------------------------------------------------------------------

    def load(self, cfg: DataConfig, tokenizer) -> TaskData:
        """Tokenized data for ``tokenizer``; read from the on-disk cache when present."""
        if cfg.task != self.name:
            # The config names the task; a mismatch is almost always a bug in the caller.
            raise ConfigError(f"data.task is {cfg.task!r} but task {self.name!r} was asked to load it")
        src = self.source(cfg)
        key = _cache_key(self, src.fingerprint, tokenizer, self.cache_options(cfg))
        path = cache_root(cfg) / self.name / key
        if not (path / "done.json").exists():
            splits = self.tokenize(src.read(), cfg, tokenizer)
            _save_splits(path, splits)
        return self._task_data(path, tokenizer)

    def _task_data(self, path: Path, tokenizer) -> TaskData:
        import datasets

        names = json.loads((path / "done.json").read_text())["splits"]
        loaded = {n: datasets.load_from_disk(str(path / n)) for n in names}
        extra = {n[len("eval_"):]: ds for n, ds in loaded.items() if n.startswith("eval_") and n != "eval_examples"}
        return TaskData(
            task=self, tokenizer=tokenizer, train=loaded["train"], eval=loaded["eval"],
            extra_eval=extra, eval_examples=loaded.get("eval_examples"), cache_path=path,
        )


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of everything in a tokenizer that decides its ids (vocabulary, normalizer, special tokens)."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        for transient in ("truncation", "padding"):  # call-time settings, not part of the vocabulary
            state.pop(transient, None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                         tokenizer.mask_token_id]).encode())
    return h.hexdigest()[:16]


def _cache_key(task: Task, fingerprint: str, tokenizer, options: dict) -> str:
    blob = json.dumps(
        {"version": CACHE_VERSION, "task": task.name, "source": fingerprint,
         "tokenizer": tokenizer_fingerprint(tokenizer), "options": options},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_splits(path: Path, splits: dict[str, Any]) -> None:
    """Write all splits to a temporary folder and rename it into place (atomic)."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp creates 0700 whatever the umask: a shared cache stays shared
    bars_were_on = not are_progress_bars_disabled()
    disable_progress_bars()
    try:
        for name, ds in splits.items():
            ds.save_to_disk(str(tmp / name))
        (tmp / "done.json").write_text(json.dumps({"splits": sorted(splits)}))
        if path.exists():  # a stale folder from an interrupted or concurrent writer
            shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (path / "done.json").exists():
            raise
    finally:
        if bars_were_on:
            enable_progress_bars()


def file_fingerprint(*paths: Path) -> str:
    """Identify local files by their names and content (SHA-256), never by where they lie.

    A copy of the same files elsewhere has the same fingerprint, so run
    folders keep their names when the data move.
    """
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.name}:{content_hash(p)};".encode())
    return "sha256:" + h.hexdigest()[:32]


# ---------------------------------------------------------------------------
# Splits and helpers used by every task family
# ---------------------------------------------------------------------------


def stratified_split(labels: list, eval_fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: per class, a seeded shuffle puts ``round(n_c * eval_fraction)`` rows in eval.

    Returns (train indices, eval indices), each in a seeded shuffled order.
    """
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    train, ev = [], []
    for c in sorted(set(labels_arr.tolist())):
        idx = np.flatnonzero(labels_arr == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(len(idx) * eval_fraction))
        ev.append(idx[:k])
        train.append(idx[k:])
    train_idx, eval_idx = np.concatenate(train), np.concatenate(ev)
    return train_idx[rng.permutation(len(train_idx))], eval_idx[rng.permutation(len(eval_idx))]


def take(columns: dict[str, list], indices) -> dict[str, list]:
    """Rows ``indices`` of a column dict."""
    return {k: [v[i] for i in indices] for k, v in columns.items()}


def limit_train(columns: dict[str, list], n: int | None) -> dict[str, list]:
    """Shuffle the training rows with :data:`SPLIT_SEED` and keep the first ``n`` (all when ``n`` is None)."""
    size = len(next(iter(columns.values())))
    order = np.random.default_rng(SPLIT_SEED).permutation(size)
    if n is not None:
        order = order[:n]
    return take(columns, order)


def limit_eval(columns: dict[str, list], n: int | None) -> dict[str, list]:
    """The first ``n`` evaluation rows (all when ``n`` is None)."""
    if n is None:
        return columns
    return {k: v[:n] for k, v in columns.items()}


def n_rows(columns: dict[str, list]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed (pip install {package.replace('_', '-')})")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.is_file():
        raise DataError(f"package {package!r} has no data file {'/'.join(parts)}")
    return path


def package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
