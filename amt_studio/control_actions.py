"""The run's control actions, written once: each one's text, shortcut, tip, what it does, and which commands in
flight hold it back. The window builds its toolbar and its Control menu from this table and enables both from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from amt_core.train.control import Command

STAGES = (1, 2, 3)


class Steering(Protocol):
    """What a control action calls on the window."""

    def send(self, command: Command | str, argument: str | None = None) -> None: ...

    def toggle_pause(self) -> None: ...

    def rollback_selected(self) -> None: ...

    def switch_stage(self, stage: int) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ControlAction:
    name: str
    """The window's `<name>_action`."""
    text: str
    shortcut: str
    tip: str
    trigger: Callable[[Steering], None]
    waits_on: frozenset[Command]
    """Disabled while one of these commands is in flight (the trainer has not confirmed it yet)."""
    needs_checkpoint: bool = False
    """Disabled while the run has no checkpoint."""
    stage: int | None = None
    """A stage switch: checkable, checked while the run is in this stage (one of an exclusive group)."""


CONTROL_ACTIONS: tuple[ControlAction, ...] = (
    ControlAction(
        name="pause",
        text="Pause",
        shortcut="Space",
        tip="pause or resume training",
        trigger=lambda window: window.toggle_pause(),
        waits_on=frozenset({Command.PAUSE, Command.RESUME}),
    ),
    ControlAction(
        name="stop",
        text="Stop",
        shortcut="Ctrl+.",
        tip="stop training (saves first)",
        trigger=lambda window: window.send(Command.STOP),
        waits_on=frozenset({Command.STOP}),
    ),
    ControlAction(
        name="save",
        text="Save",
        shortcut="Ctrl+S",
        tip="save a checkpoint now",
        trigger=lambda window: window.send(Command.SAVE),
        waits_on=frozenset({Command.SAVE}),
    ),
    ControlAction(
        name="snapshot",
        text="Snapshot",
        shortcut="Ctrl+P",
        tip="snapshot now",
        trigger=lambda window: window.send(Command.SNAPSHOT),
        waits_on=frozenset({Command.SNAPSHOT}),
    ),
    ControlAction(
        name="rollback",
        text="Roll back",
        shortcut="Ctrl+R",
        tip="roll back to the checkpoint selected in the Run panel",
        trigger=lambda window: window.rollback_selected(),
        waits_on=frozenset({Command.ROLLBACK}),
        needs_checkpoint=True,
    ),
    *(
        ControlAction(
            name=f"stage_{stage}",
            text=f"Stage {stage}",
            shortcut=f"Ctrl+{stage}",
            tip=f"switch to stage {stage}",
            trigger=lambda window, stage=stage: window.switch_stage(stage),
            waits_on=frozenset({Command.STAGE}),
            stage=stage,
        )
        for stage in STAGES
    ),
)
