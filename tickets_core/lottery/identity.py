"""Resolving a config: the registry checks, and what identifies its data and mask file.

:func:`resolve` is the second and last check of a config (the dataclasses
check types and ranges when they are built): the task and the pruning
strategy must be registered (the config checked the strategy when it was built), the MLM head warm-up is for MLM tasks only,
the data must exist, and a mask file must be one.  It fills in ``data.fingerprint`` (the data files' content hash, a
package version or a hub id) and ``mask_fingerprint`` (the mask file's
content hash), so :meth:`RunConfig.run_name` names the run by what it
computes, never by where its files lie.  A config read back from a run
folder's ``config.json`` is already resolved.
"""

from __future__ import annotations

import dataclasses
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
    return dataclasses.replace(cfg, data=data, mask_fingerprint=mask_fp)
