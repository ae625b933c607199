"""Numeric precision of the forward pass: fp32, bf16 autocast, or fp8 (bf16 autocast plus FP8 GEMMs in the large
Linear layers, see `amt_core.accel.fp8`). Parameters and optimizer state stay fp32 in every mode.

bf16 is the GPU setting; on this kind of CPU it runs about 20 times slower than fp32 (DESIGN.md), so the trainer warns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import torch

from amt_core.accel import probe
from amt_core.errors import UserError

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp8")

FP8_MIN_CAPABILITY: tuple[int, int] = (8, 9)
"""FP8 tensor cores arrived with Ada (sm_89) and Hopper (sm_90)."""


class Quantization(Protocol):
    """What `autocast` needs of an FP8 report (`amt_core.accel.fp8.Fp8Report`): the context its layers compute in."""

    def quantization_context(self) -> contextlib.AbstractContextManager: ...


def check_precision(precision: str, device: torch.device) -> str | None:
    """Validate a precision for a device; returns a warning to show, or None.

    Raises:
        UserError: unknown precision, or fp8 where it cannot run (no GPU, a GPU below sm_89, no FP8 library).
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type == "cpu":
        return "bf16 autocast on the CPU is about 20x slower than fp32 here; use --set trainer.precision=fp32"
    if precision == "fp8":
        capability = probe.cuda_capability(device)
        if capability is None:
            raise UserError(
                "FP8 needs a CUDA GPU with compute capability 8.9+ (none found); use --set trainer.precision=fp32"
            )
        if capability < FP8_MIN_CAPABILITY:
            found = f"{capability[0]}.{capability[1]}"
            raise UserError(f"FP8 needs compute capability 8.9+ (found {found}); use --set trainer.precision=bf16")
        if not probe.fp8_backends():
            raise UserError(
                "FP8 needs Transformer Engine or torchao and neither imports; "
                "pip install 'transformer-engine[pytorch]' or torchao, or use --set trainer.precision=bf16"
            )
    return None


def autocast(
    precision: str, device: torch.device, fp8: Quantization | None = None
) -> contextlib.AbstractContextManager:
    """The context the forward pass and loss run in.

    Args:
        precision: one of PRECISIONS.
        device: where the forward pass runs.
        fp8: what `prepare_fp8` returned, for precision fp8: with the Transformer Engine backend its layers compute in
            FP8 only inside TE's own autocast, which this adds. torchao's layers need nothing beyond bf16 autocast,
            and without a report TE's layers simply run in bf16.
    """
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp8":
        quantized = fp8.quantization_context() if fp8 is not None else contextlib.nullcontext()
        return _nested(torch.autocast(device_type=device.type, dtype=torch.bfloat16), quantized)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _nested(outer: contextlib.AbstractContextManager, inner: contextlib.AbstractContextManager) -> Iterator[None]:
    # Entered at the `with`, not when autocast() is called, and left in reverse order.
    with outer, inner:
        yield
