"""Validation during training: metrics on the first `eval_samples` held-out samples, the best result so far (its
checkpoint is kept), and the "not learning" warning when the model is no better than the training data's mean pose."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from amt_core.metrics import keys
from amt_core.train.evaluate import evaluate
from amt_core.train.events import NotLearning, Validation
from amt_core.train.hooks import NOTHING, Actions, MarkBest, PeriodicHook
from amt_core.train.probes import inference

if TYPE_CHECKING:
    from amt_core.train.view import TrainerView


class Validator(PeriodicHook):
    """Every `eval_every` steps (0: never): a `validation` event; a new best MPJPE asks for the step's checkpoint to
    be kept as the best one (saved now or by the checkpoint hook)."""

    def __init__(self, every: int) -> None:
        super().__init__(every)
        self.best_mpjpe_mm: float | None = None
        self._not_learning = False  # warned, and not recovered since

    def after_step(self, trainer: TrainerView) -> Actions:
        first = trainer.tc.eval_first
        if first and trainer.step == first and (not self.every or first % self.every):
            return self.run(trainer)  # the early one (a run with eval_every=0 gets it too: it asked for it)
        return super().after_step(trainer)

    def run(self, trainer: TrainerView) -> Actions:
        if not trainer.is_main:
            return NOTHING
        tc = trainer.tc
        with inference(trainer):
            metrics = evaluate(
                trainer.module,
                trainer.val_dataset(),
                trainer.device,
                batch_size=trainer.local_batch,
                precision=tc.precision,
                max_samples=tc.eval_samples,
                fp8=trainer.prepared.fp8,
                reference_pose=trainer.mean_pose.mean(),
            )
        trainer.events.write(Validation(step=trainer.step, metrics=metrics))
        self._check_learning(trainer, metrics)
        value = metrics.get(keys.MPJPE_MM)
        finite = isinstance(value, float) and math.isfinite(value)
        if finite and (self.best_mpjpe_mm is None or value < self.best_mpjpe_mm):
            self.best_mpjpe_mm = value
            return (MarkBest(),)
        return NOTHING

    def _check_learning(self, trainer: TrainerView, metrics: dict) -> None:
        """Warn once (until it recovers) when, after the first stage, validation is no better than the mean pose."""
        model, reference = metrics.get(keys.MPJPE_MM), metrics.get(keys.REF_MEAN_POSE_MPJPE_MM)
        if model is None or reference is None or trainer.stage == 0:
            return
        not_learning = model >= reference
        if not_learning and not self._not_learning:
            message = (
                f"not better than a constant yet: validation MPJPE {model:.1f} mm, the training data's mean "
                f"pose {reference:.1f} mm"
            )
            trainer.events.write(
                NotLearning(step=trainer.step, message=message, mpjpe_mm=model, ref_mean_pose_mpjpe_mm=reference)
            )
            trainer.warn(message)
        self._not_learning = not_learning

    def state_dict(self) -> dict[str, Any]:
        return {"best_mpjpe_mm": self.best_mpjpe_mm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_mpjpe_mm = state.get("best_mpjpe_mm")  # checkpoints from before best tracking have none
