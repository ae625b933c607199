"""The window's runs from start to close (`amt_studio.lifecycle.RunLifecycle`): refusals are notices and keep the
run shown; letting go of a trainer started here does what was asked, and closing hands a stop to the detached stopper
instead of waiting for it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from amt_studio import lifecycle
from amt_studio.lifecycle import LiveRunChoice, RunLifecycle


class Notices:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def error(self, title: str, message: str, details: str = "") -> None:
        self.errors.append((title, message))

    def exception(self, title: str, err: BaseException) -> None:
        self.errors.append((title, str(err)))


class LiveSession:
    """A run this window started whose trainer still runs."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.owns_live_process = True
        self.process = SimpleNamespace(popen=SimpleNamespace(pid=4242))
        self.state = SimpleNamespace(log=[], add_log=lambda level, line: self.state.log.append(line))
        self.sent: list = []
        self.control = SimpleNamespace(send=lambda command, argument=None: self.sent.append(command))
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_bad_folder_is_a_notice_and_the_shown_run_stays(tmp_path) -> None:
    notices = Notices()
    runs = RunLifecycle(notices, ask_live_run=lambda: pytest.fail("nothing live to ask about"))
    shown = LiveSession(tmp_path)
    runs.session = shown
    assert runs.attach(tmp_path / "missing") is None and runs.add_overlay(tmp_path / "missing") is None
    assert runs.session is shown and not shown.closed and runs.overlays == {}
    assert [title for title, _ in notices.errors] == ["Cannot attach", "Cannot compare"]
    assert "does not exist" in notices.errors[0][1]


@pytest.mark.parametrize("choice", list(LiveRunChoice))
def test_letting_go_of_a_live_run_does_what_was_asked(tmp_path, choice) -> None:
    runs = RunLifecycle(Notices(), ask_live_run=lambda: choice)
    shown = LiveSession(tmp_path)
    runs.session = shown
    released = runs.release()
    assert released == (choice != LiveRunChoice.CANCEL)
    assert (runs.session is None) == released and shown.closed == released
    assert shown.sent == (["stop"] if choice == LiveRunChoice.STOP else [])


@pytest.mark.parametrize("choice", ["stop", "leave", "cancel"])  # plain strings, as a test's ask_live_run gives
def test_closing_hands_the_stop_to_the_stopper_and_never_waits(tmp_path, monkeypatch, choice) -> None:
    handed = []
    monkeypatch.setattr(lifecycle, "stop_detached", lambda run_dir, pid: handed.append((run_dir, pid)))
    runs = RunLifecycle(Notices(), ask_live_run=lambda: choice)
    shown = LiveSession(tmp_path)
    runs.session = shown
    assert runs.let_go_on_close() == (choice != "cancel")
    assert handed == ([(tmp_path, 4242)] if choice == "stop" else [])
    assert shown.sent == []  # the window does not send the stop itself: the stopper does, after the window is gone
    assert (
        shown.state.log
        == {
            "stop": ["stopping the run (it saves first)"],
            "leave": ["left running headless: pid 4242"],
            "cancel": [],
        }[choice]
    )
    runs.close()
    assert shown.closed
