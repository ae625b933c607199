"""Model FLOPs of a train step, counted (not estimated), and model-FLOPs utilization against the GPU's bf16 peak.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` over a real forward, loss and backward of the
eager fp32 model with the math attention path (so every matmul, convolution and attention product is an op the
counter knows, whatever kernels the timed run uses). Model FLOPs exclude what activation checkpointing recomputes
and whatever FP8 saves, as MFU is defined (PaLM, appendix B): the same model does the same useful work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from amt_core.accel.attention import attention_backend_of, set_attention_backend
from amt_core.train.parts import slice_batch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's data sheets. Most specific names first:
# torch reports e.g. "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200".
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.4),
    ("H200 NVL", 835.5),
    ("H200", 989.4),
    ("H100 PCIe", 756.5),
    ("H100 NVL", 835.5),
    ("H100", 989.4),
    ("H800", 989.4),
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.05),
    ("L40", 181.05),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
    ("RTX 6000 Ada", 364.2),
    ("RTX 3090", 71.0),
)


def bf16_peak_tflops(device: torch.device) -> float | None:
    """The bf16 dense peak of a CUDA device, from its name; None on the CPU or for a GPU not in the table."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return peak
    return None


@dataclass(kw_only=True, frozen=True)
class StepFlops:
    """FLOPs of one train step: forward and backward, and how they grow with the batch."""

    forward_per_image: float
    backward_per_image: float
    fixed: float
    """Batch-independent FLOPs (batch-level loss terms and the like)."""

    def total(self, batch: int) -> float:
        return (self.forward_per_image + self.backward_per_image) * batch + self.fixed


def count_flops(run: Callable[[], torch.Tensor | None]) -> tuple[float, float]:
    """(forward FLOPs, backward FLOPs) of `run()`, which computes a scalar loss; its backward is counted too.

    `run` returns the loss tensor (its backward is run here) or None when it ran its own backward (then all its
    FLOPs are reported as forward).
    """
    with FlopCounterMode(display=False) as forward_counter:
        loss = run()
    forward = float(forward_counter.get_total_flops())
    if loss is None:
        return forward, 0.0
    with FlopCounterMode(display=False) as backward_counter:
        loss.backward()
    return forward, float(backward_counter.get_total_flops())


def count_step_flops(model: nn.Module, loss_fn: nn.Module | None, batch: dict, epoch: float = 0.0) -> StepFlops:
    """Count the FLOPs of a train step of `model` (and `loss_fn`) at batch sizes 1 and 2 of `batch`.

    The model runs as it is (train mode, its frozen parameters frozen) with the math attention path, in fp32 without
    autocast; its gradients are cleared afterwards. Per-image FLOPs are the difference of the two counts.
    """
    previous = attention_backend_of(model)
    set_attention_backend(model, "math")
    counts = []
    try:
        for size in (1, 2):
            part = slice_batch(batch, 0, size)

            def step(part=part):
                output = model(part)
                if loss_fn is None:
                    return output.joints3d.float().square().sum()
                return loss_fn(output, part, epoch).total

            counts.append(count_flops(step))
    finally:
        set_attention_backend(model, previous or "auto")
        model.zero_grad(set_to_none=True)
        if loss_fn is not None:
            loss_fn.zero_grad(set_to_none=True)
    (fwd1, bwd1), (fwd2, bwd2) = counts
    return StepFlops(
        forward_per_image=fwd2 - fwd1,
        backward_per_image=bwd2 - bwd1,
        fixed=max(0.0, 2 * (fwd1 + bwd1) - (fwd2 + bwd2)),
    )


def mfu(flops_per_s: float, peak_tflops: float | None) -> float | None:
    """Model-FLOPs utilization in [0, 1] (None when the peak is unknown)."""
    if not peak_tflops:
        return None
    return flops_per_s / (peak_tflops * 1e12)
