"""Evaluation of a model on a dataset: batches through the model, `MetricAccumulator` summarises (eval, validation)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from amt_core.accel.precision import autocast
from amt_core.metrics import MetricAccumulator
from amt_core.train import parts


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset,
    device: torch.device,
    batch_size: int = 16,
    precision: str = "fp32",
    max_samples: int = 0,
    num_workers: int = 0,
    on_batch: Callable[[int, int], None] | None = None,
    fp8=None,
    reference_pose: torch.Tensor | None = None,
    on_output: Callable[[object, dict], None] | None = None,
) -> dict[str, float | int | bool | str]:
    """Every metric of `MetricAccumulator` over the dataset (its first `max_samples` when > 0), in eval mode.

    Args:
        on_batch: called with (samples done, samples in all) after each batch (progress display).
        fp8: the trainer's `Fp8Report` when its model has FP8 layers (Transformer Engine computes FP8 in its context).
        reference_pose: (21, 3) metres, the training data's mean root-relative pose, scored beside the model
            (`ref_mean_pose_*`); None: the evaluated samples' own mean pose stands in.
        on_output: called with (model output, batch) after each batch, in dataset order (a dataset's own protocol,
            a submission file).
    """
    if max_samples and max_samples < len(dataset):
        dataset = Subset(dataset, range(max_samples))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    accumulator = MetricAccumulator(reference_pose=reference_pose)
    was_training = model.training
    model.eval()
    done = invalid = 0
    try:
        for batch in loader:
            invalid += parts.mask_invalid_labels(batch)  # NaN/inf labels are skipped and counted, never averaged in
            batch = parts.to_device(batch, device)
            with autocast(precision, device, fp8):
                output = model(batch)
            accumulator.update(output, batch)
            if on_output is not None:
                on_output(output, batch)
            done += batch["image"].shape[0]
            if on_batch is not None:
                on_batch(done, len(dataset))
    finally:
        model.train(was_training)
    metrics = accumulator.compute()
    metrics["invalid_samples"] = invalid
    return metrics
