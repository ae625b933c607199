"""The runs the start page lists, Qt-free: each run directory summarised from its own files, so a window opened after
a crash still finds the trainer it started (live runs hold `lock` with a live pid; the events tell step and state).

The list of run directories itself is kept by the window (in its settings, synced at once when a run is started).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from amt_core.train.config_view import RunConfigView
from amt_core.train.events import Error, Event, State, parse_event
from amt_core.train.rundir import run_is_live
from amt_studio.state.status import LIVE, RunStatus

TAIL_BYTES = 64 << 10
"""How much of the end of events.jsonl is read to find the latest step and state."""


@dataclass(kw_only=True)
class RunSummary:
    run_dir: Path
    live: bool
    """A live process on this host holds the run's lock (the trainer can be steered)."""
    state: RunStatus
    """The trainer's last reported state (`running`, `paused`, `finished`, `stopped`, `failed`), `ended` for a run
    whose trainer is gone without a final state (killed), `starting` when no event is written yet."""
    step: int
    preset: str
    last_time: float | None
    """Unix time of the newest event."""

    @property
    def age_s(self) -> float | None:
        return None if self.last_time is None else max(0.0, time.time() - self.last_time)


def summarize_run(run_dir: Path | str) -> RunSummary | None:
    """A run directory's summary, or None when the folder holds no run (removed since)."""
    path = Path(run_dir)
    events_path = path / "events.jsonl"
    if not path.is_dir() or not (events_path.exists() or (path / "config.json").exists()):
        return None
    live = run_is_live(path)
    state, step, last_time = RunStatus.STARTING, 0, None
    for event in reversed(_tail_events(events_path)):
        if last_time is None:
            step, last_time = event.step, event.time
        if isinstance(event, State):
            state = RunStatus(event.state)
            break
        if isinstance(event, Error):
            state = RunStatus.FAILED
            break
    else:
        if last_time is not None:
            state = RunStatus.RUNNING
    if not live and state in LIVE and last_time is not None:
        state = RunStatus.ENDED  # the trainer went away without saying so
    config = RunConfigView.read(path)
    preset = config.preset if config is not None else ""
    return RunSummary(run_dir=path, live=live, state=state, step=step, preset=preset, last_time=last_time)


def _tail_events(path: Path) -> list[Event]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first line is cut
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return [parse_event(e) for e in events if isinstance(e, dict)]


def discover_runs(root: Path, limit: int = 50) -> list[Path]:
    """Run directories directly under `root` (the default folder of new runs), newest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and ((p / "events.jsonl").exists() or (p / "lock").exists())]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return found[:limit]
