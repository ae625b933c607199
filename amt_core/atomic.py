"""Whole-file writes that a crash cannot leave half-done: the one way the project replaces a file.

The data goes to a temporary file in the target's folder (`.NAME.XXXXXXXX.tmp`, so a folder's leftovers are easy to
find and never mistaken for the real file), is flushed and fsynced, and is then renamed over the target; a reader sees
the old file or the new one, never a torn one. On an error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMPORARY_SUFFIX = ".tmp"


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, perm: int | None = None, fsync: bool = True) -> Iterator[IO]:
    """A file to write `path` through: renamed over `path` when the block ends without an exception.

    Args:
        mode: "wb" (bytes) or "w" (UTF-8 text).
        perm: the file's permission bits (e.g. 0o600 for a secret); None keeps mkstemp's 0o600 widened to 0o644.
        fsync: flush to disk before the rename (off only for caches that are cheap to rebuild).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    except OSError as err:
        err.filename = str(path)  # the target, not the random temporary name the user never gave
        raise
    temporary = Path(name)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(temporary, 0o644 if perm is None else perm)
        os.replace(temporary, path)
    except BaseException as err:
        temporary.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)  # a write or fsync names no file; the error line must (amt_core.errors)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, perm: int | None = None, fsync: bool = True) -> None:
    """Replace `path` with `data`, atomically."""
    with atomic_write(path, "wb", perm=perm, fsync=fsync) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, *, perm: int | None = None, fsync: bool = True) -> None:
    """Replace `path` with `text` (UTF-8), atomically."""
    with atomic_write(path, "w", perm=perm, fsync=fsync) as handle:
        handle.write(text)


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2, perm: int | None = None) -> None:
    """Replace `path` with `data` as JSON (values JSON cannot hold written as their str), atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent, default=str), perm=perm)


def stale_temporaries(folder: str | Path) -> list[Path]:
    """Temporary files an interrupted `atomic_write` left in `folder` (safe to delete when no writer is running)."""
    return sorted(p for p in Path(folder).glob(f".*{TEMPORARY_SUFFIX}") if p.is_file())
