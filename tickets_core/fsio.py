"""Atomic file writes and checked JSON reads: the only way tickets_core writes a file.

Every write goes to a temporary file in the target's folder, is flushed to
disk and renamed over the target, so a reader (or a run killed mid-write)
sees the old file or the new one, never half of one.  New files get the
permissions an ordinary ``open`` would give them (``0666`` minus the umask),
so run folders on a shared file system stay readable by the group.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import RunStoreError


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600 whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed one raises a one-line :class:`RunStoreError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunStoreError(f"cannot read {path}: {str(e).splitlines()[0]}") from None


_CONTENT_HASHES: dict[tuple, str] = {}


def content_hash(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, remembered per (path, size, modification time) in this process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CONTENT_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        _CONTENT_HASHES[key] = h.hexdigest()
    return _CONTENT_HASHES[key]


def require_new_folder(path: str | Path) -> Path:
    """``path``, when it does not exist or is an empty folder; else a one-line :class:`RunStoreError`."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise RunStoreError(f"{path} exists and is not an empty folder; choose another one")
    return path


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``path``; rename it to ``path`` when the block succeeds.

    Readers see no folder or the complete one; when the block fails the
    temporary folder is removed.  ``path`` may exist only as an empty folder
    (it is replaced); anything else is a one-line :class:`RunStoreError`.
    """
    path = require_new_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700 whatever the umask
        yield tmp
        for f in tmp.rglob("*"):  # files other libraries wrote in the block get the umask's permissions too
            if f.is_file():
                os.chmod(f, 0o666 & ~_umask())
        if path.is_dir():
            path.rmdir()  # empty (checked above); fails rather than merge if something appeared meanwhile
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
