"""What runs around the training step, as a short list of hooks (detectron2's `HookBase`): each is called before
training, after every step (it keeps its own cadence) and when the trainer closes. The trainer runs them in the
order it lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amt_core.train.trainer import Trainer


class Hook:
    """A part of training that acts between steps; the defaults do nothing."""

    def before_train(self, trainer: Trainer) -> None:
        """After the run directory is set up and the checkpoint to resume from is loaded."""

    def after_step(self, trainer: Trainer) -> None:
        """After each step whose host check passed (`trainer.step` is the number of steps done)."""

    def close(self) -> None:
        """When the trainer closes, after success or failure."""


class PeriodicHook(Hook):
    """A hook that runs every `every` steps (0: never, except when called directly)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def after_step(self, trainer: Trainer) -> None:
        if self.every and trainer.step % self.every == 0:
            self.run(trainer)

    def run(self, trainer: Trainer) -> None:
        raise NotImplementedError


class StageEndHook(Hook):
    """At the end of a stage: the next stage (or the end of the run), then a checkpoint that resumes in it."""

    def after_step(self, trainer: Trainer) -> None:
        if trainer.stages.progress(trainer.step, trainer.train_time_s) < 1.0 or not trainer.check():
            return
        # Switch first, then save: the checkpoint resumes in the new stage, as the run goes on.
        if trainer.stage + 1 < len(trainer.stages.stages):
            trainer.set_stage(trainer.stage + 1, reason="plan")
        else:
            trainer.stop_reason = "finished"
        trainer.save("stage_end")


class CheckpointHook(PeriodicHook):
    """A checkpoint every `ckpt_every` steps (unless one was just saved), and one for each new best validation."""

    def after_step(self, trainer: Trainer) -> None:
        saved = trainer.checkpointer.last_step == trainer.step
        if not saved and self.every and trainer.step % self.every == 0 and trainer.check():
            trainer.save("periodic")
        if trainer.checkpointer.best_pending and trainer.checkpointer.last_step != trainer.step and trainer.check():
            trainer.save("best")  # a new best validation between periodic saves: keep its weights


class ProgressHook(Hook):
    """The terminal's progress bar or log lines (rank 0)."""

    def after_step(self, trainer: Trainer) -> None:
        if trainer.view is not None:
            stage = f"{trainer.stage + 1} {trainer.stages.config.name}"
            trainer.view.update(trainer.step, stage, trainer.window.last_loss, trainer.window.last_images_per_s)
