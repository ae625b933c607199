"""What runs around the training step, as a short list of hooks (detectron2's `HookBase`): each is called before
training, after every step (it keeps its own cadence) and when the trainer closes, in the order the trainer lists
them. A hook reads the trainer through `TrainerView` and writes events; what it wants done to the run (a checkpoint,
a stage switch, the end of the run, marking the best checkpoint) it returns as actions, which the trainer carries
out after a host check. A rollback in that check abandons the rest of the round."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amt_core.train.kinds import CheckpointReason, StopReason

if TYPE_CHECKING:
    from amt_core.train.view import TrainerView


@dataclass(frozen=True)
class Save:
    """Write a checkpoint now; with `once`, only when none was written at this step yet."""

    reason: CheckpointReason
    once: bool = False


@dataclass(frozen=True)
class SetStage:
    """Switch to stage `stage` (0-based)."""

    stage: int
    reason: str


@dataclass(frozen=True)
class Stop:
    """End the run after this step."""

    reason: StopReason


@dataclass(frozen=True)
class MarkBest:
    """This step's validation is the best so far: the next checkpoint is retained as the best."""


Action = Save | SetStage | Stop | MarkBest
Actions = Sequence[Action]
NOTHING: Actions = ()


def needs_check(actions: Actions) -> bool:
    """Whether the trainer reads the pending step results back (and may roll back) before carrying these out: a
    checkpoint or a stage decision must not rest on a step that exploded."""
    return any(not isinstance(action, MarkBest) for action in actions)


class Hook:
    """A part of training that acts between steps; the defaults do nothing."""

    def before_train(self, trainer: TrainerView) -> None:
        """After the run directory is set up and the checkpoint to resume from is loaded."""

    def after_step(self, trainer: TrainerView) -> Actions:
        """After each step whose host check passed (`trainer.step` is the number of steps done)."""
        return NOTHING

    def close(self) -> None:
        """When the trainer closes, after success or failure."""


class PeriodicHook(Hook):
    """A hook that runs every `every` steps (0: never, except when called directly)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def after_step(self, trainer: TrainerView) -> Actions:
        if self.every and trainer.step % self.every == 0:
            return self.run(trainer)
        return NOTHING

    def run(self, trainer: TrainerView) -> Actions:
        raise NotImplementedError


class StageEndHook(Hook):
    """At the end of a stage: the next stage (or the end of the run), then a checkpoint that resumes in it."""

    def after_step(self, trainer: TrainerView) -> Actions:
        if trainer.stages.progress(trainer.step, trainer.state.train_time_s) < 1.0:
            return NOTHING
        # Switch first, then save: the checkpoint resumes in the new stage, as the run goes on.
        if trainer.stage + 1 < len(trainer.stages.stages):
            return SetStage(trainer.stage + 1, reason="plan"), Save(CheckpointReason.STAGE_END)
        return Stop(StopReason.FINISHED), Save(CheckpointReason.STAGE_END)


class CheckpointHook(PeriodicHook):
    """A checkpoint every `ckpt_every` steps (unless one was just saved), and one for each new best validation."""

    def after_step(self, trainer: TrainerView) -> Actions:
        if trainer.checkpointer.last_step == trainer.step:
            return NOTHING  # saved at this step already (a stage end), best included
        actions: list[Action] = []
        if self.every and trainer.step % self.every == 0:
            actions.append(Save(CheckpointReason.PERIODIC))
        if trainer.checkpointer.best_pending:  # a new best validation between periodic saves: keep it
            actions.append(Save(CheckpointReason.BEST, once=True))
        return actions


class ProgressHook(Hook):
    """The terminal's progress bar or log lines (rank 0)."""

    def after_step(self, trainer: TrainerView) -> Actions:
        if trainer.view is not None:
            stage = f"{trainer.stage + 1} {trainer.stages.config.name}"
            trainer.view.update(trainer.step, stage, trainer.window.last_loss, trainer.window.last_images_per_s)
        return NOTHING
