"""The run's event log, `events.jsonl`: one JSON object a line, append-only; the trainer writes, the studio tails.

Every event has `v` (schema version), `kind`, `step` and `time` (Unix seconds); docs/events.md lists each kind's
fields. `EventReader` reads the file incrementally and never returns a half-written last line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

KINDS: tuple[str, ...] = (
    "metrics",
    "diagnostics",
    "validation",
    "snapshot",
    "checkpoint",
    "rollback",
    "stage",
    "state",
    "anomaly",
    "command",
    "error",
)

STATES: tuple[str, ...] = ("running", "paused", "stopped", "finished", "failed")

EVENTS_FILE = "events.jsonl"


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become strings ("nan", "inf", "-inf") so every line is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return _clean(value.item())
    return value


class EventWriter:
    """Appends events to `run_dir/events.jsonl`; a writer with `enabled=False` (DDP ranks above 0) writes nothing."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.enabled = enabled
        self._file = open(self.path, "a", encoding="utf-8") if enabled else None  # noqa: SIM115
        if self._file is not None and _ends_mid_line(self.path):
            # A writer killed mid-line left a partial last line: end it, so the next event starts a line of its own
            # (readers skip and count the partial one) instead of being glued to it and lost with it.
            self._file.write("\n")
            self._file.flush()

    def emit(self, kind: str, step: int, **fields: Any) -> dict:
        """Write one event and flush it, so a reader sees it at once. Returns the event."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {KINDS}")
        event = {"v": SCHEMA_VERSION, "kind": kind, "step": int(step), "time": time.time(), **_clean(fields)}
        if self._file is not None:
            self._file.write(json.dumps(event, allow_nan=False) + "\n")
            self._file.flush()
        return event

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                pass  # a full disk: what could be written was flushed with each event; the failure is reported
            finally:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None


def _ends_mid_line(path: Path) -> bool:
    """Whether the file is non-empty and its last byte is not a newline."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


class EventReader:
    """Tails a run's events.jsonl: each `read_new()` returns the complete lines written since the last call.

    A partial last line (the trainer is in the middle of writing it) is left for the next call. A file that shrank
    (a new run in the same folder) is read again from the start. Lines that are not UTF-8 JSON objects (a torn write,
    a stray byte) are skipped and counted in `bad_lines`; reading never stops at them.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.offset = 0
        self.bad_lines = 0

    def read_new(self, max_bytes: int = 16 << 20) -> list[dict]:
        """Events appended since the last call (at most about `max_bytes` of them per call)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset = 0
        if size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(max_bytes)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) >= max_bytes:  # one line longer than a whole read is not an event: skip past it
                self.offset += len(data)
                self.bad_lines += 1
            return []
        self.offset += end + 1
        events = []
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)  # bytes: UTF-8 is checked here too (UnicodeDecodeError is a ValueError)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(event, dict):
                events.append(event)
            else:
                self.bad_lines += 1
        return events

    def read_all(self) -> list[dict]:
        """Every complete event from the start of the file (resets the position and the bad-line count)."""
        self.offset = 0
        self.bad_lines = 0
        events: list[dict] = []
        while True:
            before = self.offset
            events.extend(self.read_new())
            if self.offset == before:  # no complete line left (a chunk of only bad lines still moves on)
                return events


def last_state(events: list[dict]) -> str | None:
    """The state of the last `state` event in a list, or None."""
    for event in reversed(events):
        if event.get("kind") == "state":
            return event.get("state")
    return None
