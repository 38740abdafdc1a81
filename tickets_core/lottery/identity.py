"""Resolving a config: the registry checks, and what identifies its data and mask file.

:func:`resolve` is the second and last check of a config (the dataclasses
check types and ranges when they are built): the task and the pruning
strategy must be registered (the config checked the strategy when it was built), the MLM head warm-up is for MLM tasks only,
the data must exist, and a mask file must be one.  It fills in ``model.fingerprint`` (a local model folder's content hash),
``data.fingerprint`` (the data files' content hash, a
package version or a hub id) and ``mask_fingerprint`` (the mask file's
content hash), so :meth:`RunConfig.run_name` names the run by what it
computes, never by where its files lie.  A config read back from a run
folder's ``config.json`` is already resolved.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from ..core.config import RunConfig
from ..core.errors import ConfigError
from ..core.fsio import content_hash
from ..tasks import get_task


def resolve(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` with its data (and mask file) identified; bad names fail in one line."""
    task = get_task(cfg.data.task)
    if cfg.model.mlm_head_warmup_steps and task.head != "mlm":
        raise ConfigError(f"mlm_head_warmup_steps is for MLM tasks; task {task.name!r} has a {task.head!r} head",
                          param="mlm_head_warmup_steps")
    data = cfg.data if cfg.data.fingerprint else dataclasses.replace(cfg.data, fingerprint=task.fingerprint(cfg.data))
    mask_fp = cfg.mask_fingerprint
    if cfg.mask_path is not None and mask_fp is None:
        path = Path(cfg.mask_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"mask file {path} does not exist", param="mask_path")
        mask_fp = "sha256:" + content_hash(path)[:32]
    return dataclasses.replace(cfg, data=data, mask_fingerprint=mask_fp, model=_model_identified(cfg))


def _model_identified(cfg: RunConfig):
    """``cfg.model`` with ``fingerprint`` set when it names a local folder: the SHA-256 of its files' names and
    contents (two copies of one checkpoint share a run name; an edited ``config.json`` gets a new one)."""
    model = cfg.model
    name = model.name_or_path
    if model.fingerprint is not None or name == "minilm" or name.startswith("tiny-"):  # the aliases of models/build
        return model
    folder = Path(name).expanduser()
    if not folder.is_dir():
        return model  # a hub id
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}:{content_hash(p)};".encode())
    return dataclasses.replace(model, fingerprint="sha256:" + h.hexdigest()[:32])
