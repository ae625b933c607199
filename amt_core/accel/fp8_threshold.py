"""Measuring where FP8 starts to pay on this GPU: the smallest Linear width from which FP8 beats bf16, timed once and
cached, where `fp8.resolve_min_dim` finds it (`amt-core bench fp8` runs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from amt_core.accel import precision, probe
from amt_core.accel.fp8 import (
    FP8_ALIGN,
    MXFP8_ALIGN,
    THRESHOLD_CACHE,
    Fp8Config,
    prepare_fp8,
    resolve_backend,
    threshold_cache_key,
)
from amt_core.accel.measured import cuda_seconds
from amt_core.errors import UserError

DEFAULT_SIZES: tuple[int, ...] = (512, 768, 1024, 1280, 1536, 2048, 3072, 4096)

Timer = Callable[[str, int], float]
"""`timer(kind, d)`: seconds for one forward and backward of the (d -> d, d -> 4d) Linear pair, kind "bf16" or "fp8"."""


def measure_fp8_threshold(
    sizes: Iterable[int] = DEFAULT_SIZES,
    tokens: int = 8192,
    device: torch.device | None = None,
    timer: Timer | None = None,
    config: Fp8Config | None = None,
) -> dict[str, Any]:
    """Time forward and backward of a Linear pair (tokens x d -> d, then d -> 4d) in bf16 and in FP8 for each size,
    and cache the smallest size from which FP8 is faster at every larger size measured.

    The result is stored in `cache_dir()/fp8_threshold.json` under `threshold_cache_key`, where `resolve_min_dim` finds
    it. torchao is timed under torch.compile (both precisions), as its README advises; TE runs eager.

    Args:
        sizes: the widths d to time, multiples of 16 (32 for mxfp8).
        tokens: rows of the input (batch x tokens of a training step).
        device: the GPU (default: the current CUDA device).
        timer: `timer(kind, d) -> seconds`, kind "bf16" or "fp8" (default: CUDA-event timing on `device`).
        config: backend and recipe to measure (default: auto); its min_dim and skip are ignored.

    Returns:
        {"key", "gpu", "backend", "recipe", "tokens", "sizes", "bf16_s", "fp8_s", "speedup" (per size, as strings),
        "faster_from" (the crossover, or None when FP8 is slower at the largest size), "min_dim"} where min_dim is
        faster_from, or the largest size + 1 (FP8 nowhere in the measured range) when there is no crossover.
    """
    config = config or Fp8Config()
    device = device or torch.device("cuda")
    backend, recipe = resolve_backend(config)
    align = MXFP8_ALIGN if recipe == "mxfp8" else FP8_ALIGN
    sizes = sorted(set(sizes))
    if not sizes or any(d < align or d % align for d in sizes):
        raise UserError(f"fp8 threshold sizes must be multiples of {align} (got {sizes})")
    if tokens < 1:
        raise UserError(f"fp8 threshold tokens must be >= 1 (got {tokens})")
    if timer is None:
        timer = _cuda_timer(device, tokens, backend, recipe)
    bf16 = {d: float(timer("bf16", d)) for d in sizes}
    fp8 = {d: float(timer("fp8", d)) for d in sizes}
    speedup = {d: bf16[d] / fp8[d] for d in sizes}
    faster_from = crossover(sizes, [speedup[d] for d in sizes])
    result = {
        "key": threshold_cache_key(device, backend, recipe),
        "gpu": probe.gpu_name(device),
        "backend": backend,
        "recipe": recipe,
        "tokens": tokens,
        "sizes": sizes,
        "bf16_s": {str(d): bf16[d] for d in sizes},
        "fp8_s": {str(d): fp8[d] for d in sizes},
        "speedup": {str(d): speedup[d] for d in sizes},
        "faster_from": faster_from,
        "min_dim": faster_from if faster_from is not None else sizes[-1] + 1,
    }
    THRESHOLD_CACHE.put(result["key"], result)
    return result


def crossover(sizes: list[int], speedups: list[float]) -> int | None:
    """The smallest size from which every speed-up (bf16 time / FP8 time) is above 1, or None if the last is not."""
    faster_from = None
    for size, speedup in zip(reversed(sizes), reversed(speedups)):
        if speedup <= 1.0:
            break
        faster_from = size
    return faster_from


def _cuda_timer(
    device: torch.device, tokens: int, backend: str, recipe: str, steps: int = 20, warmup: int = 5
) -> Timer:
    """CUDA-event timing (`cuda_seconds`) of one training step of the Linear pair in the trainer's setting (fp32
    parameters, bf16 autocast): the mean of `steps` back-to-back steps after `warmup`."""

    def time_step(kind: str, d: int) -> float:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(d, d), nn.Linear(d, 4 * d)).to(device)
        report = None
        if kind == "fp8":
            report = prepare_fp8(model, Fp8Config(backend=backend, recipe=recipe, min_dim=1), device)
        if backend == "torchao":
            # A fresh compile per model: dynamo's recompile limit would otherwise fall back to eager after 8 sizes.
            torch._dynamo.reset()
        step_model = torch.compile(model) if backend == "torchao" else model
        x = torch.randn(tokens, d, device=device, requires_grad=True)
        grad = torch.randn(tokens, 4 * d, device=device, dtype=torch.bfloat16)
        mode = "fp8" if kind == "fp8" else "bf16"

        def step() -> None:
            with precision.autocast(mode, device, report):
                y = step_model(x)
            y.backward(grad.to(y.dtype))

        return cuda_seconds(step, device, warmup=warmup, iters=steps)

    return time_step
