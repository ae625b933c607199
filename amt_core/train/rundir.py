"""The run directory: its layout, the lock that keeps a second trainer out, and `config.json`.

One folder per run (DESIGN.md): config.json, events.jsonl, checkpoints/, snapshots/, control.json, and `lock`
holding the owner's pid while a trainer lives. The lock is an OS lock (`flock`) on that file, held for the run's life,
so two trainers starting at the same moment cannot both win; the kernel drops it when the owner dies, so a lock left by
a dead process is taken over.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from amt_core.atomic import atomic_write_json
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
    """Write JSON atomically (`amt_core.atomic`), with permission bits `mode`."""
    atomic_write_json(path, data, perm=mode)


class RunDir:
    """A run directory owned by this process while the lock is held (use as a context manager or call release)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.snapshots = self.path / "snapshots"
        self._locked = False
        self._lock_fd = -1

    def has_run(self) -> bool:
        """Whether the folder already holds a run (events or checkpoints)."""
        return (self.path / "events.jsonl").exists() or any(self.checkpoints.glob("step_*"))

    def acquire(self, resume: bool) -> None:
        """Create the folders and take the lock (held until `release` or the process ends).

        Raises:
            UserError: the folder is owned by a live run, or holds a run and `resume` is False, or is not writable.
        """
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"run directory {self.path} is a file; pass a folder to --run-dir")
        if not resume and self.has_run():
            raise UserError(f"run directory {self.path} already holds a run; pass --resume or choose another --run-dir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = self._lock_file()
        except OSError as err:
            raise UserError(
                f"cannot write the run directory {self.path}: {err.strerror}; choose another --run-dir"
            ) from None
        try:
            lock = read_lock(self.path)  # a pid lock of a trainer from before the OS lock, or written by hand
            if lock and run_is_live(self.path) and int(lock["pid"]) != os.getpid():
                raise self._owned(lock)
            if not resume and self.has_run():  # checked again under the lock: a run may have started meanwhile
                raise UserError(
                    f"run directory {self.path} already holds a run; pass --resume or choose another --run-dir"
                )
            self.checkpoints.mkdir(exist_ok=True)
            self.snapshots.mkdir(exist_ok=True)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
            os.fsync(fd)
        except BaseException as err:
            os.close(fd)  # closing drops the OS lock; the file stays for the owner that wrote it
            if isinstance(err, OSError):
                raise UserError(
                    f"cannot write the run directory {self.path}: {err.strerror}; choose another --run-dir"
                ) from None
            raise
        self._lock_fd = fd
        self._locked = True

    def _lock_file(self) -> int:
        """Open `lock` and take the OS lock on it, or raise UserError naming the owner.

        A releasing owner unlinks the file while it still holds the lock, so a waiter may end up locking a file that
        is no longer at the path; it then tries again on the new one.
        """
        path = self.path / LOCK_FILE
        for _ in range(100):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._owned(read_lock(self.path) or {"pid": "unknown"}) from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
        raise UserError(f"run directory {self.path}: the lock file keeps changing; is another trainer starting?")

    def _owned(self, lock: dict) -> UserError:
        return UserError(
            f"run directory {self.path} is owned by a live run (pid {lock.get('pid')}); "
            "stop it (amt-core ctl DIR stop) or choose another --run-dir"
        )

    def release(self) -> None:
        """Remove the lock if this process holds it (the file goes first, then the OS lock)."""
        if not self._locked:
            return
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = -1
        self._locked = False

    def write_config(self, config: dict) -> None:
        write_json_atomic(self.path / CONFIG_FILE, config)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
