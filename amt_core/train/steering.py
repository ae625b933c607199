"""The trainer's side of the control channel: one handler per `Command` in a table, applied between two steps on
every rank (rank 0 receives and broadcasts), each writing a `command` event before its reply goes back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from amt_core.errors import UserError
from amt_core.train import ddp
from amt_core.train.control import Command, PendingCommand
from amt_core.train.events import CommandApplied, State
from amt_core.train.metrics_window import MetricsWindow

if TYPE_CHECKING:
    from amt_core.train.trainer import Trainer


def _pause(trainer: Trainer, arg: str | None) -> dict:
    if not trainer.paused:
        trainer.paused = True
        trainer.events.write(State(step=trainer.step, state="paused"))
    return {"state": "paused"}


def _resume(trainer: Trainer, arg: str | None) -> dict:
    if trainer.paused:
        trainer.paused = False
        trainer.timed_since = time.monotonic()  # the pause is not training time
        trainer.window = MetricsWindow()
        trainer.events.write(State(step=trainer.step, state="running"))
    return {"state": "running"}


def _stop(trainer: Trainer, arg: str | None) -> dict:
    trainer.stop_reason = "command"
    return {}


def _save(trainer: Trainer, arg: str | None) -> dict:
    if not trainer.check():
        return {"rolled_back": True}
    return {"checkpoint": trainer.save("command")}


def _snapshot(trainer: Trainer, arg: str | None) -> dict:
    return {"snapshot": trainer.snapshots.take(trainer, reason="command")}


def _stage(trainer: Trainer, arg: str | None) -> dict:
    count = len(trainer.stages.stages)
    try:
        number = int(arg)
    except (TypeError, ValueError):
        raise UserError(f"stage needs a number 1-{count}, got {arg!r}") from None
    if not 1 <= number <= count:
        raise UserError(f"stage {number} does not exist; stages are 1-{count}")
    trainer.check()
    trainer.set_stage(number - 1, reason="command")
    return {"stage": number}


def _rollback(trainer: Trainer, arg: str | None) -> dict:
    trainer.check()
    trainer.rollback(str(arg), reason="command", backoff=False)
    return {"checkpoint": str(arg)}


HANDLERS: dict[Command, Callable[[Trainer, str | None], dict]] = {
    Command.PAUSE: _pause,
    Command.RESUME: _resume,
    Command.STOP: _stop,
    Command.SAVE: _save,
    Command.SNAPSHOT: _snapshot,
    Command.STAGE: _stage,
    Command.ROLLBACK: _rollback,
}
"""What each command does; `status` is answered by the control server itself from `publish_status`."""


def apply(trainer: Trainer, command: Command | str, arg: str | None = None) -> dict:
    """Apply one command now; returns its result (the reply's fields).

    Raises:
        UserError: an unknown command or a bad argument (the trainer goes on).
    """
    command = Command.parse(command, arg)
    if command not in HANDLERS:
        raise UserError(f"the trainer does not apply {command!r}; the control server answers it")
    return HANDLERS[command](trainer, arg)


def handle_commands(trainer: Trainer) -> None:
    """Apply the control channel's commands (rank 0 receives, every rank applies); blocks while paused."""
    publish_status(trainer)
    if trainer.dist.enabled and trainer.step % trainer.config.stability.check_every:
        return
    control = trainer.control
    _apply_all(trainer, control.pending() if control is not None else [])
    publish_status(trainer)
    while trainer.paused and not trainer.stop_reason and trainer.signals.received is None:
        waiting = control.wait(0.2) if control is not None else None
        _apply_all(trainer, [waiting] if waiting is not None else [])
        publish_status(trainer)  # `ctl status` while paused says paused (it said False before)


def publish_status(trainer: Trainer) -> None:
    if trainer.control is not None:
        trainer.control.status = {
            "step": trainer.step,
            "stage": trainer.stage + 1,
            "paused": trainer.paused,
            "state": "paused" if trainer.paused else "running",
            "branch": trainer.checkpointer.branch,
        }


def _apply_all(trainer: Trainer, pending: list[PendingCommand]) -> None:
    requests = ddp.broadcast_object([(p.command, p.arg) for p in pending], trainer.dist)
    for i, (command, arg) in enumerate(requests):
        target = pending[i] if i < len(pending) else None
        try:
            reply = apply(trainer, command, arg)
        except (UserError, ValueError) as err:
            trainer.events.write(CommandApplied(step=trainer.step, command=command, arg=arg, ok=False, error=str(err)))
            if target is not None:
                target.finish(False, error=str(err))
            continue
        trainer.events.write(CommandApplied(step=trainer.step, command=command, arg=arg, ok=True, **reply))
        if target is None:
            continue
        if command is Command.STOP:
            trainer.stop_replies.append(target)  # answered once the last checkpoint is written
        else:
            target.finish(True, step=trainer.step, **reply)
