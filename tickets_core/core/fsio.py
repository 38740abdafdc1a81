"""Atomic file writes and checked JSON reads: the only way tickets_core writes a file.

Every write goes to a temporary file in the target's folder, is flushed to
disk and renamed over the target, so a reader (or a run killed mid-write)
sees the old file or the new one, never half of one.  New files get the
permissions an ordinary ``open`` would give them (``0666`` minus the umask),
so run folders on a shared file system stay readable by the group.  A
failed write (a full disk, a missing permission) raises a one-line
:class:`OSError` naming the file and leaves the old file, and no temporary
file, behind.
"""

from __future__ import annotations

import errno
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError, RunStoreError, one_line

#: Temporary files of :func:`atomic_write_bytes` are called ``.<name>.<random>`` + this suffix.
TMP_SUFFIX = ".tmp"


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def current_umask() -> int:
    """The process's umask (what ``0o666`` / ``0o777`` lose for new files and folders)."""
    return _umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600 whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not getattr(e, "_names_path", False):
            raise write_error(path, e) from None
        raise
    return path


def write_error(path: str | Path, e: OSError) -> OSError:
    """A one-line :class:`OSError` (same errno) that names ``path``: ``cannot write P: No space left on device``."""
    reason = e.strerror or (errno.errorcode.get(e.errno or 0) if e.errno else None) or str(e)
    err = OSError(e.errno, f"cannot write {path}: {reason}")
    err._names_path = True  # type: ignore[attr-defined]
    return err


def partial_name(path: str | Path) -> Path:
    """A unique name beside ``path`` for a file another library writes before it is put in place."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")


def remove_partials(path: str | Path) -> None:
    """Delete the :func:`partial_name` files of ``path`` that a killed writer left (call only while no one
    else can be writing them)."""
    path = Path(path)
    for p in path.parent.glob(f".{path.stem}.*.partial{path.suffix}"):
        p.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` and its subfolders.

    Only call this while holding the folder's writer lock (nobody else writes there then).
    """
    found = [p for p in Path(folder).rglob(f".*{TMP_SUFFIX}") if p.is_file()]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed one raises a one-line :class:`RunStoreError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunStoreError(f"cannot read {path}: {one_line(e)}") from None


def read_text(path: str | Path, encoding: str = "utf-8", *, error: type[ConfigError] = ConfigError,
              prefix: str = "") -> str:
    """A text file's content; a byte that is not ``encoding`` raises ``error`` naming the file and line."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise error(f"{prefix}{path}:{line}: not {encoding} text (byte 0x{raw[e.start]:02x} at column {column}: "
                    f"{e.reason})") from None


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
        umask = _umask()  # as it is after the block
        for f in tmp.rglob("*"):  # files other libraries wrote in the block get the umask's permissions too
            if f.is_file():
                os.chmod(f, 0o666 & ~umask)
        if path.is_dir():
            path.rmdir()  # empty (checked above); fails rather than merge if something appeared meanwhile
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
