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
from amt_core.errors import UserError, summarise_keys
from amt_core.train.control import CONTROL_FILE
from amt_core.train.events import EVENTS_FILE

LOCK_FILE = "lock"
CONFIG_FILE = "config.json"
RUN_NAMES = frozenset({CONFIG_FILE, EVENTS_FILE, LOCK_FILE, CONTROL_FILE, "checkpoints", "snapshots", "tb"})
"""What a trainer writes at the top of its run directory."""
STUDIO_LOG = "studio-trainer.log"
"""The studio's log of the trainer it starts, written into the folder before `amt-core train` runs (amt_studio)."""


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


def _json_object(path: Path) -> dict | None:
    """The JSON object a file holds, or None (missing, unreadable, not JSON, not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _first_event(path: Path) -> dict | None:
    """The first line of an events.jsonl as an event object, or None when it is not one."""
    try:
        with open(path, "rb") as handle:
            line = handle.readline(1 << 16)
        event = json.loads(line)
    except (OSError, ValueError):
        return None
    return event if isinstance(event, dict) and "kind" in event and "step" in event else None


def _is_temporary(name: str) -> bool:
    """A leftover of `amt_core.atomic` (`.NAME.XXXXXXXX.tmp`) or of a checkpoint writer (`.tmp-`, `.old-`, a probe)."""
    return name.startswith(".") and (name.endswith(".tmp") or name.startswith((".tmp-", ".old-", ".space-probe-")))


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
        return (self.path / EVENTS_FILE).exists() or any(self.checkpoints.glob("step_*"))

    def refuse_existing_run(self) -> None:
        """A new run may not start where one is (`has_run`)."""
        if self.has_run():
            raise UserError(f"run directory {self.path} already holds a run; pass --resume or choose another --run-dir")

    def is_run(self) -> bool:
        """Whether a trainer wrote this folder: a run config of ours, events of ours, a checkpoint, or the lock file
        of a trainer killed before it wrote anything else."""
        config = _json_object(self.path / CONFIG_FILE)
        lock = self.path / LOCK_FILE
        return (
            (config is not None and isinstance(config.get("config"), dict))
            or _first_event(self.path / EVENTS_FILE) is not None
            or any(p.is_dir() for p in self.checkpoints.glob("step_*"))
            or (lock.is_file() and self._ours(lock))
        )

    def foreign(self) -> tuple[list[str], list[str]]:
        """What in the folder a trainer did not write, as paths relative to it: (entries under names a trainer writes,
        so starting a run would overwrite or append to them; entries under other names, which a run leaves alone)."""
        clashing, beside = [], []
        if not self.path.is_dir():
            return clashing, beside
        for entry in sorted(self.path.iterdir()):
            name = entry.name
            if name == STUDIO_LOG or _is_temporary(name):
                continue
            if name not in RUN_NAMES:
                beside.append(name)
            elif not self._ours(entry):
                clashing.append(name)
            elif name == "checkpoints":
                clashing += [f"checkpoints/{n}" for n in self._foreign_checkpoint_entries()]
        return clashing, beside

    def _ours(self, entry: Path) -> bool:
        """Whether a top-level entry under a name a trainer writes has the kind and content a trainer gives it."""
        name = entry.name
        if name in ("checkpoints", "snapshots", "tb"):
            return entry.is_dir() and not entry.is_symlink()
        if not entry.is_file() or entry.is_symlink():
            return False
        if name == CONFIG_FILE:
            return isinstance((_json_object(entry) or {}).get("config"), dict)
        if name == EVENTS_FILE:
            return entry.stat().st_size == 0 or _first_event(entry) is not None
        if name == LOCK_FILE:  # created empty, then given the owner's pid
            return entry.stat().st_size == 0 or "pid" in (_json_object(entry) or {})
        return "port" in (_json_object(entry) or {})  # control.json

    def _foreign_checkpoint_entries(self) -> list[str]:
        """Names in checkpoints/ a trainer did not write: anything but step_* folders, their writers' leftovers and a
        `latest` naming one of them."""
        names = []
        for entry in sorted(self.checkpoints.iterdir()):
            if _is_temporary(entry.name) or (entry.name.startswith("step_") and entry.is_dir()):
                continue
            if entry.name == "latest" and entry.is_file():
                try:
                    target = entry.read_text(encoding="utf-8").strip()
                except (OSError, ValueError):
                    target = ""
                if target.startswith("step_") and (self.checkpoints / target).is_dir():
                    continue
            names.append(entry.name)
        return names

    def check_start(self, resume: bool, force: bool = False) -> None:
        """Refuse, before anything is written, a start that would resume what is not a run or write into a folder
        amt-core did not create.

        `resume`: the folder must hold a run. A new run: the folder must be new, empty, or hold only what a trainer
        or the studio writes; with `force`, other files may sit beside the run, but a file under a name the run
        writes (config.json, checkpoints/latest, ...) that a trainer did not write is never overwritten.

        Raises:
            UserError: one line naming the folder and what to do.
        """
        path = self.path
        if path.exists() and not path.is_dir():
            raise UserError(f"run directory {path} is a file; pass a folder to --run-dir")
        lock = read_lock(path)
        if lock and run_is_live(path) and lock.get("pid") != os.getpid():  # a live trainer's folder is a run
            raise self._owned(lock)
        if resume:
            if not path.exists():
                raise UserError(f"--resume: {path} does not exist, so there is no run to resume; drop --resume")
            if not any(path.iterdir()):
                raise UserError(f"--resume: {path} is empty, so there is no run to resume; drop --resume")
            if not self.is_run():
                raise UserError(
                    f"--resume: {path} is not a run directory (no run config, events or checkpoint of amt-core); "
                    "give the folder `amt-core train` wrote"
                )
            return
        if not path.exists():
            return
        if self.has_run():
            raise UserError(f"run directory {path} already holds a run; pass --resume or choose another --run-dir")
        clashing, beside = self.foreign()
        if clashing:
            raise UserError(
                f"run directory {path} holds {summarise_keys(clashing)}, not written by amt-core, where the run "
                "would write; move it away or choose another --run-dir"
            )
        if beside and not force:
            raise UserError(
                f"run directory {path} is not empty and is not a run ({summarise_keys(beside)}); choose an empty "
                "or new folder, or pass --force to start the run beside those files"
            )

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
