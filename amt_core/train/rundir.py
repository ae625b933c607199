"""The run directory: its layout, the lock that keeps a second trainer out, and `config.json`.

One folder per run (DESIGN.md): config.json, events.jsonl, checkpoints/, snapshots/, control.json, and `lock`
holding the owner's pid while a trainer lives. A lock left by a dead process is taken over.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from amt_core.errors import UserError

LOCK_FILE = "lock"
CONFIG_FILE = "config.json"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(run_dir: str | Path) -> dict | None:
    """The lock's content ({pid, host}) or None when there is no readable lock."""
    try:
        return json.loads((Path(run_dir) / LOCK_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None


def run_is_live(run_dir: str | Path) -> bool:
    """Whether a live process on this host owns the run directory."""
    lock = read_lock(run_dir)
    return bool(lock) and lock.get("host") == socket.gethostname() and pid_alive(int(lock.get("pid", -1)))


def write_json_atomic(path: Path, data: Any, mode: int = 0o644) -> None:
    """Write JSON to a temporary file in the same folder, fsync it, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class RunDir:
    """A run directory owned by this process while the lock is held (use as a context manager or call release)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.snapshots = self.path / "snapshots"
        self._locked = False

    def has_run(self) -> bool:
        """Whether the folder already holds a run (events or checkpoints)."""
        return (self.path / "events.jsonl").exists() or any(self.checkpoints.glob("step_*"))

    def acquire(self, resume: bool) -> None:
        """Create the folders and take the lock.

        Raises:
            UserError: the folder is owned by a live run, or holds a run and `resume` is False, or is not writable.
        """
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"run directory {self.path} is a file; pass a folder to --run-dir")
        lock = read_lock(self.path)
        if lock and run_is_live(self.path) and int(lock["pid"]) != os.getpid():
            raise UserError(
                f"run directory {self.path} is owned by a live run (pid {lock['pid']}); "
                "stop it (amt-core ctl DIR stop) or choose another --run-dir"
            )
        if not resume and self.has_run():
            raise UserError(f"run directory {self.path} already holds a run; pass --resume or choose another --run-dir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.checkpoints.mkdir(exist_ok=True)
            self.snapshots.mkdir(exist_ok=True)
            tmp = self.path / f".lock.{os.getpid()}.tmp"
            tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
            os.replace(tmp, self.path / LOCK_FILE)
        except OSError as err:
            raise UserError(
                f"cannot write the run directory {self.path}: {err.strerror}; choose another --run-dir"
            ) from None
        self._locked = True

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if not self._locked:
            return
        lock = read_lock(self.path)
        if lock and int(lock.get("pid", -1)) == os.getpid():
            (self.path / LOCK_FILE).unlink(missing_ok=True)
        self._locked = False

    def write_config(self, config: dict) -> None:
        write_json_atomic(self.path / CONFIG_FILE, config)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
