"""The one table of control actions (`amt_studio.control_actions`): every action distinct, each does what it says,
and each waits on the command it sends."""

from __future__ import annotations

from amt_core.train.control import Command
from amt_studio.control_actions import CONTROL_ACTIONS, STAGES


class Recorder:
    """A window as the actions see it (`Steering`), recording the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def send(self, command, argument=None) -> None:  # noqa: ANN001
        self.calls.append(("send", command, argument))

    def toggle_pause(self) -> None:
        self.calls.append(("toggle_pause",))

    def rollback_selected(self) -> None:
        self.calls.append(("rollback_selected",))

    def switch_stage(self, stage: int) -> None:
        self.calls.append(("switch_stage", stage))


def test_actions_are_distinct_and_the_stage_switches_cover_the_stages() -> None:
    for field in ("name", "text", "shortcut"):
        values = [getattr(action, field) for action in CONTROL_ACTIONS]
        assert len(set(values)) == len(values), field
    assert [action.stage for action in CONTROL_ACTIONS if action.stage is not None] == list(STAGES)


def test_each_action_does_what_it_says_and_waits_on_what_it_sends() -> None:
    done = {}
    for action in CONTROL_ACTIONS:
        window = Recorder()
        action.trigger(window)
        assert len(window.calls) == 1, action.name
        done[action.name] = window.calls[0]
        if window.calls[0][0] == "send":
            assert window.calls[0][1] in action.waits_on, action.name
    assert done["pause"] == ("toggle_pause",) and done["rollback"] == ("rollback_selected",)
    assert done["stop"] == ("send", Command.STOP, None) and done["save"] == ("send", Command.SAVE, None)
    assert done["stage_2"] == ("switch_stage", 2)
    by_name = {action.name: action for action in CONTROL_ACTIONS}
    assert by_name["pause"].waits_on == {Command.PAUSE, Command.RESUME}
    assert by_name["rollback"].needs_checkpoint and not by_name["stop"].needs_checkpoint
    assert all(by_name[f"stage_{s}"].waits_on == {Command.STAGE} for s in STAGES)
