"""Numeric precision of the forward pass: fp32, or bf16 autocast (parameters and optimizer stay fp32).

bf16 is the GPU setting; on this kind of CPU it runs about 20 times slower than fp32 (DESIGN.md), so the trainer
warns. FP8 arrives with the GPU issue behind the same switch.
"""

from __future__ import annotations

import contextlib

import torch

from amt_core.errors import UserError

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def check_precision(precision: str, device: torch.device) -> str | None:
    """Validate a precision for a device; returns a warning to show, or None.

    Raises:
        UserError: unknown precision.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type == "cpu":
        return "bf16 autocast on the CPU is about 20x slower than fp32 here; use --set trainer.precision=fp32"
    return None


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the forward pass and loss run in."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
