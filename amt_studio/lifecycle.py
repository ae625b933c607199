"""The runs a window holds, from start to close: the run it shows (a trainer started here, or a run directory
attached to) and the runs overlaid on it for comparison. Letting go of a run this window started asks whether to stop
it; on close that stop is handed to the detached stopper, so closing never waits for the trainer's save.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from amt_core.errors import UserError
from amt_core.train.control import Command
from amt_studio.session import CommandResult, RunSession
from amt_studio.stopper import stop_detached
from amt_studio.views.notifier import Notifier


class LiveRunChoice(StrEnum):
    """What to do with a trainer this window started, when the window lets go of it."""

    STOP = "stop"
    """Stop it (it saves a checkpoint first)."""
    LEAVE = "leave"
    """Leave it training headless."""
    CANCEL = "cancel"
    """Keep it, and keep the window as it is."""


class RunLifecycle:
    """The shown run (`session`) and the compared ones (`overlays`); errors go to the notifier, never raised."""

    def __init__(self, notifier: Notifier, ask_live_run: Callable[[], str]) -> None:
        """`ask_live_run`: asks what to do with a live trainer this window started (a `LiveRunChoice`)."""
        self.notifier = notifier
        self.ask_live_run = ask_live_run
        self.session: RunSession | None = None
        self.overlays: dict[str, RunSession] = {}
        """Runs overlaid on the plots for comparison, by label."""

    def start(self, argv: list[str], run_dir: Path) -> RunSession | None:
        """Let go of the current run, then start a trainer in the background; None: cancelled or refused."""
        if not self.release():
            return None
        try:
            session = RunSession.start(argv, run_dir)
        except UserError as err:
            self.notifier.error("Cannot start the run", str(err))
            return None
        self.session = session
        return session

    def attach(self, run_dir: Path) -> RunSession | None:
        """Watch a run directory (a live headless run, or a finished run replayed from its events) instead of the
        current run; None: refused (the current run stays) or cancelled."""
        try:
            session = RunSession.attach(run_dir)
        except UserError as err:
            self.notifier.error("Cannot attach", str(err))
            return None
        if not self.release():
            session.close()
            return None
        self.session = session
        return session

    def release(self) -> bool:
        """Let go of the current run; a run this window started asks whether to stop it. False: cancelled."""
        if self.session is None:
            return True
        if self.session.owns_live_process:
            choice = self.ask_live_run()
            if choice == LiveRunChoice.CANCEL:
                return False
            if choice == LiveRunChoice.STOP:
                self.session.control.send(Command.STOP)
        self.session.close()
        self.session = None
        return True

    def add_overlay(self, run_dir: Path) -> RunSession | None:
        """Read another run (never steered) to compare with the shown one, labelled by its folder's name (replacing
        a compared run of that label); None: refused."""
        try:
            overlay = RunSession.attach(run_dir)
        except UserError as err:
            self.notifier.error("Cannot compare", str(err))
            return None
        if self.session is not None and overlay.run_dir == self.session.run_dir:
            self.notifier.error("Cannot compare", f"{overlay.run_dir.name} is the run shown; pick another run")
            overlay.close()
            return None
        label = overlay.run_dir.name
        if label in self.overlays:
            self.overlays.pop(label).close()
        self.overlays[label] = overlay
        overlay.poll()
        return overlay

    def clear_overlays(self) -> None:
        for overlay in self.overlays.values():
            overlay.close()
        self.overlays.clear()

    def poll(self) -> list[CommandResult]:
        """Apply the new events of every run held; the shown run's command replies. A bad event is reported, and
        the next poll goes on."""
        results = []
        if self.session is not None:
            try:
                results = self.session.poll()
            except Exception as err:  # a bad event must not stop the timer
                self.notifier.exception("Reading the run failed", err)
        for overlay in self.overlays.values():
            try:
                overlay.poll()
            except Exception as err:  # an overlay's bad event must not stop the main run's updates
                self.notifier.exception("Reading a compared run failed", err)
        return results

    def let_go_on_close(self) -> bool:
        """Before the window closes: a live trainer this window started is stopped (by the detached stopper, which
        waits for its save) or left running headless, as asked. False: cancelled, the window stays."""
        session = self.session
        if session is None or not session.owns_live_process:
            return True
        choice = self.ask_live_run()
        if choice == LiveRunChoice.CANCEL:
            return False
        pid = session.process.popen.pid
        if choice == LiveRunChoice.STOP:
            session.state.add_log("info", "stopping the run (it saves first)")
            stop_detached(session.run_dir, pid)
        else:
            session.state.add_log("info", f"left running headless: pid {pid}")
        return True

    def close(self) -> None:
        """Stop reading every run held (their trainers, if any, go on)."""
        if self.session is not None:
            self.session.close()
        for overlay in self.overlays.values():
            overlay.close()
