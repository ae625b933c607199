"""Steering a run: `Steering` holds what commands and signals change (paused, the stop asked for and who waits for
it, the stop signals) and the control channel they arrive by; the handlers, one per `Command` in a table, are
applied between two steps on every rank (rank 0 receives and broadcasts), each writing a `command` event before its
reply goes back. A handler changes the run through the trainer's `Steerable` operations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from amt_core.errors import UserError
from amt_core.train import ddp
from amt_core.train.control import Command, ControlServer, PendingCommand
from amt_core.train.events import CommandApplied, State
from amt_core.train.kinds import CheckpointReason, StopReason, TrainerState
from amt_core.train.stopping import StopSignals, limit_reached
from amt_core.train.view import TrainerView

if TYPE_CHECKING:
    from pathlib import Path


class Snapshots(Protocol):
    def take(self, trainer: TrainerView, reason: str) -> str | None: ...


class Steerable(TrainerView, Protocol):
    """The trainer as a command handler sees it: the view, its steering, and what a command may ask of it."""

    @property
    def steering(self) -> Steering: ...
    @property
    def snapshots(self) -> Snapshots: ...

    def check(self) -> bool: ...
    def save(self, reason: CheckpointReason) -> str: ...
    def set_stage(self, stage: int, reason: str) -> None: ...
    def rollback(self, name: str, reason: str, backoff: bool) -> None: ...


class Steering:
    """Paused or running, the stop asked for, the stop signals, and the control server (rank 0)."""

    def __init__(self) -> None:
        self.paused = False
        self.stop_reason: StopReason | None = None
        """finished, limit or command once the loop is to end (a signal is `signals.received`)."""
        self.signals = StopSignals()
        self.server: ControlServer | None = None
        self._stop_replies: list[PendingCommand] = []  # `stop` is answered once the last checkpoint is written

    def open(self, run_path: Path) -> None:
        """Serve the control channel from the run directory (rank 0)."""
        self.server = ControlServer(run_path)
        self.server.start()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def set_paused(self, trainer: TrainerView, paused: bool) -> None:
        """Pause or resume, with its state event; the pause is neither training time nor part of a metrics window."""
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            trainer.state.restart_timer()
            trainer.window.reopen()
        state = TrainerState.PAUSED if paused else TrainerState.RUNNING
        trainer.events.write(State(step=trainer.step, state=state))

    def request_stop(self, reason: StopReason) -> None:
        self.stop_reason = reason

    def should_stop(self, trainer: TrainerView) -> bool:
        """A stop was asked for, or a limit or a signal ends the run here (`stopping.limit_reached`)."""
        if self.stop_reason:
            return True
        state, check_every = trainer.state, trainer.config.stability.check_every
        reason = limit_reached(state.step, state.train_time_s, trainer.tc, self.signals, trainer.dist, check_every)
        if reason is StopReason.LIMIT:
            self.stop_reason = reason
        return reason is not None

    def outcome(self) -> tuple[TrainerState, StopReason]:
        """(final state, reason): finished after the plan or a limit, stopped after a command or a signal."""
        if self.signals.received is not None:
            reason = StopReason.SIGNAL
        else:
            reason = self.stop_reason or StopReason.LIMIT
        done = reason in (StopReason.FINISHED, StopReason.LIMIT)
        return (TrainerState.FINISHED if done else TrainerState.STOPPED), reason

    def reply_at_stop(self, pending: PendingCommand) -> None:
        """Answer this `stop` command once the last checkpoint is written."""
        self._stop_replies.append(pending)

    def answer_stop(self, state: TrainerState, step: int) -> None:
        """Reply to the `stop` commands waiting for the last checkpoint."""
        for pending in self._stop_replies:
            pending.finish(True, state=state, step=step)


@dataclass(frozen=True)
class Reply:
    """What a command did; its fields go into the `command` event and the reply on the channel."""

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StateReply(Reply):
    state: TrainerState
    """The run state after the command: paused or running."""


@dataclass(frozen=True)
class StopReply(Reply):
    """Stopping after this step; the reply goes back once the last checkpoint is written."""


@dataclass(frozen=True)
class SaveReply(Reply):
    checkpoint: str


@dataclass(frozen=True)
class RolledBackReply(Reply):
    """The host check before the save found an explosion and rolled back instead."""

    rolled_back: bool = True


@dataclass(frozen=True)
class SnapshotReply(Reply):
    snapshot: str | None
    """Its path in the run directory (None on ranks above 0)."""


@dataclass(frozen=True)
class StageReply(Reply):
    stage: int
    """1-based."""


@dataclass(frozen=True)
class RollbackReply(Reply):
    checkpoint: str


def _pause(trainer: Steerable, arg: str | None) -> Reply:
    trainer.steering.set_paused(trainer, True)
    return StateReply(TrainerState.PAUSED)


def _resume(trainer: Steerable, arg: str | None) -> Reply:
    trainer.steering.set_paused(trainer, False)
    return StateReply(TrainerState.RUNNING)


def _stop(trainer: Steerable, arg: str | None) -> Reply:
    trainer.steering.request_stop(StopReason.COMMAND)
    return StopReply()


def _save(trainer: Steerable, arg: str | None) -> Reply:
    if not trainer.check():
        return RolledBackReply()
    return SaveReply(trainer.save(CheckpointReason.COMMAND))


def _snapshot(trainer: Steerable, arg: str | None) -> Reply:
    return SnapshotReply(trainer.snapshots.take(trainer, reason="command"))


def _stage(trainer: Steerable, arg: str | None) -> Reply:
    count = len(trainer.stages.stages)
    try:
        number = int(arg)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"stage needs a number 1-{count}, got {arg!r}") from None
    if not 1 <= number <= count:
        raise UserError(f"stage {number} does not exist; stages are 1-{count}")
    trainer.check()
    trainer.set_stage(number - 1, reason="command")
    return StageReply(number)


def _rollback(trainer: Steerable, arg: str | None) -> Reply:
    trainer.check()
    trainer.rollback(str(arg), reason="command", backoff=False)
    return RollbackReply(str(arg))


HANDLERS: dict[Command, Callable[[Steerable, str | None], Reply]] = {
    Command.PAUSE: _pause,
    Command.RESUME: _resume,
    Command.STOP: _stop,
    Command.SAVE: _save,
    Command.SNAPSHOT: _snapshot,
    Command.STAGE: _stage,
    Command.ROLLBACK: _rollback,
}
"""What each command does; `status` is answered by the control server itself from `publish_status`."""


def apply(trainer: Steerable, command: Command | str, arg: str | None = None) -> Reply:
    """Apply one command now; returns its result (the reply's fields).

    Raises:
        UserError: an unknown command or a bad argument (the trainer goes on).
    """
    command = Command.parse(command, arg)
    if command not in HANDLERS:
        raise UserError(f"the trainer does not apply {command!r}; the control server answers it")
    return HANDLERS[command](trainer, arg)


def handle_commands(trainer: Steerable) -> None:
    """Apply the control channel's commands (rank 0 receives, every rank applies); blocks while paused."""
    publish_status(trainer)
    if trainer.dist.enabled and trainer.step % trainer.config.stability.check_every:
        return
    steering = trainer.steering
    server = steering.server
    _apply_all(trainer, server.pending() if server is not None else [])
    publish_status(trainer)
    while steering.paused and not steering.stop_reason and steering.signals.received is None:
        waiting = server.wait(0.2) if server is not None else None
        _apply_all(trainer, [waiting] if waiting is not None else [])
        publish_status(trainer)  # `ctl status` while paused says paused (it said False before)


def publish_status(trainer: Steerable) -> None:
    steering = trainer.steering
    if steering.server is not None:
        steering.server.publish(
            {
                "step": trainer.step,
                "stage": trainer.stage + 1,
                "paused": steering.paused,
                "state": TrainerState.PAUSED if steering.paused else TrainerState.RUNNING,
                "branch": trainer.checkpointer.branch,
            }
        )


def _apply_all(trainer: Steerable, pending: list[PendingCommand]) -> None:
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
        trainer.events.write(CommandApplied(step=trainer.step, command=command, arg=arg, ok=True, **reply.fields()))
        if target is None:
            continue
        if command is Command.STOP:
            trainer.steering.reply_at_stop(target)
        else:
            target.finish(True, step=trainer.step, **reply.fields())
