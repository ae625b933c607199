"""Looking at the model without changing the run: diagnostics on the last training batch (the collapse check,
attention entropy, gradient norms, each loss term's share of the gradient at the trunk) and snapshots of the fixed
visualization samples. They run on rank 0 with the training RNG streams untouched: in eval mode without gradients,
except the gradient share, which needs the training forward and its graph (and leaves `.grad` alone)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import default_collate

from amt_core.accel.precision import autocast
from amt_core.metrics.diagnostics import COLLAPSE_STD_M, attention_entropy, prediction_std
from amt_core.metrics.grad_share import trunk_grad_share, trunk_of
from amt_core.train import parts
from amt_core.train.compile import run_eagerly
from amt_core.train.events import Diagnostics, Snapshot
from amt_core.train.hooks import NOTHING, Actions, PeriodicHook
from amt_core.train.snapshot import write_snapshot

if TYPE_CHECKING:
    from amt_core.metrics.grad_share import GradShare
    from amt_core.train.view import TrainerView


@contextlib.contextmanager
def inference(trainer: TrainerView) -> Iterator[None]:
    """Eval mode, no grad, the run's precision, and the training RNG streams untouched (so probes never change a
    run)."""
    devices = [trainer.device] if trainer.device.type == "cuda" else []
    module = trainer.module
    was_training = module.training
    precision = autocast(trainer.tc.precision, trainer.device, trainer.prepared.fp8)
    with torch.random.fork_rng(devices=devices), torch.no_grad(), precision:
        module.eval()
        try:
            yield
        finally:
            module.train(was_training)


@contextlib.contextmanager
def training_forward(trainer: TrainerView) -> Iterator[None]:
    """Train mode with gradients, the run's precision, eager, the training RNG streams untouched, and the module's
    buffers (batch-norm statistics) put back afterwards: a forward the run never sees."""
    devices = [trainer.device] if trainer.device.type == "cuda" else []
    module = trainer.module
    buffers = {name: buffer.clone() for name, buffer in module.named_buffers()}
    precision = autocast(trainer.tc.precision, trainer.device, trainer.prepared.fp8)
    with torch.random.fork_rng(devices=devices), torch.enable_grad(), precision, run_eagerly():
        try:
            yield
        finally:
            with torch.no_grad():
                for name, buffer in module.named_buffers():
                    if name in buffers:
                        buffer.copy_(buffers[name])


def trunk_gradient_share(trainer: TrainerView, batch: dict) -> GradShare | None:
    """Each weighted loss term's share of the gradient at the model's trunk, on the first micro-batch of `batch`
    (what fits in memory), as the optimizer's loss weighs the terms (stage multipliers included; no MixUp). None when
    the model has no trunk."""
    trunk = trunk_of(trainer.module)
    if trunk is None:
        return None
    chunk = parts.slice_batch(batch, 0, min(trainer.state.micro_batch, int(batch["image"].shape[0])))
    epoch = trainer.epoch()

    def weighted_terms(output: Any, chunk: dict) -> dict[str, torch.Tensor]:
        return trainer.stages.loss_terms(trainer.loss_fn(output, chunk, epoch))

    with training_forward(trainer):
        return trunk_grad_share(trainer.module, chunk, weighted_terms, trunk=trunk)


class DiagnosticsHook(PeriodicHook):
    """Every `diag_every` steps: prediction std against the ground truth's, attention entropy by layer, gradient norm
    by parameter group, each loss term's gradient share at the trunk, on the last training batch."""

    def run(self, trainer: TrainerView) -> Actions:
        batch = trainer.last_batch
        if not trainer.is_main or batch is None:
            return NOTHING

        with inference(trainer):
            output = parts.call_model(trainer.module, batch, attention=True)
        fields: dict[str, Any] = {}
        if output.joints3d.shape[0] >= 2:
            fields["pred_std_mm"] = prediction_std(output.joints3d.float()) * 1000
            fields["collapsed"] = fields["pred_std_mm"] < COLLAPSE_STD_M * 1000
            valid = batch["valid"]["joints3d"].bool()
            if int(valid.sum()) >= 2:
                fields["gt_std_mm"] = prediction_std(batch["joints3d"][valid].float()) * 1000
        entropy = {name: attention_entropy(probs.float(), normalized=True) for name, probs in output.attention.items()}
        shares = trunk_gradient_share(trainer, batch)
        if shares is not None:
            fields["grad_share"], fields["grad_norm_trunk"] = shares.share, shares.norm
        trainer.events.write(
            Diagnostics(step=trainer.step, grad_norm=trainer.last_norms, attention_entropy=entropy, **fields)
        )
        return NOTHING


class SnapshotHook(PeriodicHook):
    """Every `snapshot_every` steps (and on command): predictions and ground truth of the first `snapshot_samples`
    validation samples, as snapshots/step_N.npz."""

    def __init__(self, every: int) -> None:
        super().__init__(every)
        self._batch: dict | None = None

    def run(self, trainer: TrainerView) -> Actions:
        self.take(trainer, reason="periodic")
        return NOTHING

    def take(self, trainer: TrainerView, reason: str) -> str | None:
        """Write a snapshot now; returns its path relative to the run directory (None on ranks above 0)."""
        if not trainer.is_main:
            return None
        batch = self._visualization_batch(trainer)
        with inference(trainer):
            output = parts.call_model(trainer.module, batch)
        path = write_snapshot(trainer.run.snapshots, trainer.step, batch, output, parts.hand_faces(trainer.module))
        relative = str(path.relative_to(trainer.run.path))
        samples = int(batch["image"].shape[0])
        trainer.events.write(Snapshot(step=trainer.step, path=relative, samples=samples, reason=reason))
        return relative

    def _visualization_batch(self, trainer: TrainerView) -> dict:
        if self._batch is None:
            dataset = trainer.val_dataset()
            count = min(trainer.tc.snapshot_samples, len(dataset))
            self._batch = parts.to_device(default_collate([dataset[i] for i in range(count)]), trainer.device)
        return self._batch
