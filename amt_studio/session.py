"""A run as the studio drives it, Qt-free: the event source, the trainer process (when the studio started it) and
control commands sent on worker threads. The window calls `poll()` on a timer; nothing here ever blocks it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from amt_core.errors import UserError
from amt_core.train.control import Command, ControlClient
from amt_core.train.events import Event, EventReader, parse_event
from amt_core.train.rundir import run_is_live
from amt_studio.state.run import RunState
from amt_studio.state.status import RunStatus

# Events applied per poll at most, so replaying a long finished run never stalls the window (the rest come next tick).
MAX_EVENTS_PER_POLL = 2000
TRAINER_LOG = "studio-trainer.log"
LIVENESS_S = 2.0
"""How often an attached run's lock is checked for a live trainer."""


class EventSource:
    """New events of a run directory, oldest first, at most `max_events` a poll (the rest wait for the next)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._reader = EventReader(run_dir)
        self._pending: list[Event] = []

    def poll(self, max_events: int = MAX_EVENTS_PER_POLL) -> list[Event]:
        if len(self._pending) < max_events:
            self._read()
        events, self._pending = self._pending[:max_events], self._pending[max_events:]
        return events

    def has_unread(self) -> bool:
        """Whether events were written that `poll` has not returned yet."""
        self._read()
        return bool(self._pending)

    def _read(self) -> None:
        self._pending += [parse_event(record) for record in self._reader.read_new(max_bytes=4 << 20)]

    @property
    def bad_lines(self) -> int:
        return self._reader.bad_lines


@dataclass(kw_only=True)
class CommandResult:
    command: Command
    argument: str | None
    ok: bool
    message: str


@dataclass(kw_only=True)
class TrainerProcess:
    """A trainer the studio started: `python -m amt_core train ...` in its own session, output to a log file.

    Its own session means closing the studio leaves it running headless unless asked to stop it.
    """

    argv: list[str]
    run_dir: Path
    niceness: int = 5
    """Added to the trainer's CPU niceness, so on a machine with few cores the window stays responsive (the trainer
    still gets every cycle the window leaves idle; a GPU run is unaffected)."""
    popen: subprocess.Popen | None = None
    log_path: Path | None = None
    exit_code: int | None = None
    started: float = field(default_factory=time.time)

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.run_dir / TRAINER_LOG
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns the handle)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        except OSError as err:
            raise UserError(f"cannot start the trainer ({' '.join(self.argv[:4])} ...): {err}") from err
        finally:
            log.close()

    def poll(self) -> int | None:
        """The exit code once the process has ended, else None."""
        if self.popen is not None and self.exit_code is None:
            self.exit_code = self.popen.poll()
        return self.exit_code

    def log_tail(self, max_chars: int = 6000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-max_chars:].decode("utf-8", "replace")

    def terminate(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()


def trainer_argv(
    *,
    preset: str,
    run_dir: Path,
    data: str | None = None,
    stage_steps: tuple[int, int, int] | None = None,
    max_steps: int | None = None,
    overrides: list[str] | None = None,
) -> list[str]:
    """The command line of a trainer the studio starts (the same as a headless `amt-core train`).

    Args:
        stage_steps: length of stages 1, 2, 3 in steps (0 keeps the preset's length), as `--set stages.N.steps=`.
        overrides: more `key=value` assignments for `--set`.
    """
    argv = [sys.executable, "-m", "amt_core", "train", "--preset", preset, "--run-dir", str(run_dir)]
    if data:
        argv += ["--data", data]
    if max_steps:
        argv += ["--max-steps", str(max_steps)]
    for index, steps in enumerate(stage_steps or ()):
        if steps:
            argv += ["--set", f"stages.{index}.steps={int(steps)}"]
    for item in overrides or []:
        argv += ["--set", item]
    return argv


class ControlSender:
    """Sends control commands on a worker thread; results are collected by `poll()`, never waited for."""

    def __init__(self, run_dir: Path, timeout_s: float = 60.0) -> None:
        self.run_dir = run_dir
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amt-control")
        self._futures: list[tuple[Command, str | None, Future]] = []

    @property
    def pending(self) -> list[Command]:
        return [c for c, _, f in self._futures if not f.done()]

    def send(self, command: Command | str, argument: str | None = None) -> None:
        """Queue a command (a `Command`, or its name; an unknown name or a missing argument is a UserError)."""
        command = Command.parse(command, argument)
        self._futures.append((command, argument, self._pool.submit(self._send, command, argument)))

    def _send(self, command: Command, argument: str | None) -> str:
        reply = ControlClient(self.run_dir, timeout_s=self.timeout_s).send(command, argument)
        detail = {k: v for k, v in reply.items() if k != "ok"}
        return ", ".join(f"{k}={v}" for k, v in detail.items()) or "ok"

    def poll(self) -> list[CommandResult]:
        results = []
        keep = []
        for command, argument, future in self._futures:
            if not future.done():
                keep.append((command, argument, future))
                continue
            err = future.exception()
            message = f"{type(err).__name__}: {err}" if err else str(future.result())
            results.append(CommandResult(command=command, argument=argument, ok=err is None, message=message))
        self._futures = keep
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RunSession:
    """One run: its state, its events, its trainer process (if started here) and its control channel."""

    def __init__(self, run_dir: Path | str, process: TrainerProcess | None = None) -> None:
        self.run_dir = Path(run_dir).expanduser().resolve()
        self.state = RunState(self.run_dir)
        self.source = EventSource(self.run_dir)
        self.process = process
        self.control = ControlSender(self.run_dir)
        self._config_loaded = False
        self._exit_reported = False
        self._liveness_checked = time.monotonic()

    @classmethod
    def attach(cls, run_dir: Path | str) -> RunSession:
        """Watch an existing run directory (a live headless run, or a finished one replayed from its events)."""
        path = Path(run_dir).expanduser()
        if not path.is_dir():
            raise UserError(f"run directory {path} does not exist; pick a folder written by `amt-core train`")
        if not (path / "events.jsonl").exists() and not (path / "config.json").exists():
            raise UserError(f"{path} has no events.jsonl or config.json; pick a folder written by `amt-core train`")
        return cls(path)

    @classmethod
    def start(cls, argv: list[str], run_dir: Path | str) -> RunSession:
        """Start a trainer in the background and watch its run directory."""
        path = Path(run_dir).expanduser()
        if (path / "events.jsonl").exists():
            raise UserError(f"{path} already holds a run; choose an empty or new run directory")
        process = TrainerProcess(argv=argv, run_dir=path)
        process.start()
        session = cls(path, process)
        session.state.state = RunStatus.STARTING
        session.state.add_log("info", "started: " + " ".join(argv))
        return session

    def poll(self) -> list[CommandResult]:
        """Apply new events, notice the trainer's exit, collect command replies. Cheap when nothing happened."""
        if not self._config_loaded and (self.run_dir / "config.json").exists():
            self.state.load_config()
            self._config_loaded = True
        events = self.source.poll()
        if events:
            self.state.ingest(events)
        if self.process is not None and not self._exit_reported:
            code = self.process.poll()
            if code is not None:
                while events := self.source.poll():  # everything it wrote before exiting comes first
                    self.state.ingest(events)
                self._exit_reported = True
                self._on_exit(code)
        if self.process is None and self.state.is_live and time.monotonic() - self._liveness_checked > LIVENESS_S:
            self._liveness_checked = time.monotonic()
            if not run_is_live(self.run_dir) and not self.source.has_unread():
                self.state.state = RunStatus.LOST  # killed without a word (SIGKILL, power loss): no trainer to steer
                self.state.add_log("warning", "the trainer of this run is gone (no live process holds its lock)")
                self.state.status_changed.emit()
        results = self.control.poll()
        for result in results:
            arg = f" {result.argument}" if result.argument else ""
            level = "info" if result.ok else "error"
            self.state.add_log(level, f"command {result.command}{arg}: {result.message}")
        return results

    def _on_exit(self, code: int) -> None:
        state = self.state
        if code == 0:
            if state.state not in (RunStatus.STOPPED, RunStatus.FINISHED):
                state.state = RunStatus.FINISHED
            state.add_log("info", "trainer exited")
        elif state.error is None:  # crashed without an error event: show what it printed
            trace = self.process.log_tail() if self.process else ""
            message = f"trainer exited with code {code}"
            state.error = (message, trace)
            state.state = RunStatus.FAILED
            state.add_log("error", message)
            state.error_raised.emit(message, trace)
        else:
            state.state = RunStatus.FAILED
        state.status_changed.emit()

    @property
    def owns_live_process(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        self.control.close()
