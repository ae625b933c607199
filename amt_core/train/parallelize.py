"""The training transforms of a built model, applied in one documented order (torchtitan's `parallelize_*`):

    attention backend -> activation checkpointing -> torch.compile -> FP8 conversion -> DDP

The attention backend comes first because autotuning it runs the kernels eagerly. Checkpointing wraps block forwards
before compile traces them, so compiled graphs contain the recomputation. Compile is lazy and in place
(`nn.Module.compile`): tracing happens at the first forward, after FP8 has swapped the Linear children, so the
graphs see the FP8 layers. DDP comes last and sees the final parameters (TE layers are new modules). The model
itself knows nothing of this (`amt_core.models` stays pure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from amt_core.accel.attention import attention_backend_reason, set_attention_backend
from amt_core.accel.fp8 import Fp8Report, prepare_fp8
from amt_core.accel.recompute import make_policy, set_recompute_context
from amt_core.train import ddp
from amt_core.train.compile import compile_model
from amt_core.train.trainer_config import TrainerConfig

ORDER: tuple[str, ...] = ("attention", "checkpointing", "compile", "fp8", "ddp")


@dataclass(kw_only=True)
class Prepared:
    """What `prepare_model` did, for the run's config and the benchmark's rows."""

    attention: str
    attention_reason: str
    checkpointing: str
    checkpointed: list[str] = field(default_factory=list)
    offload_activations: bool = False
    compiled: list[str] = field(default_factory=list)
    fp8: Fp8Report | None = None
    ddp: bool = False
    applied: list[str] = field(default_factory=list)
    """The steps that changed something, in the order they ran."""

    @property
    def fp8_summary(self) -> str:
        return self.fp8.summary() if self.fp8 is not None else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": list(ORDER),
            "applied": list(self.applied),
            "attention": {"backend": self.attention, "reason": self.attention_reason},
            "checkpointing": {"policy": self.checkpointing, "blocks": len(self.checkpointed)},
            "offload_activations": self.offload_activations,
            "compiled": list(self.compiled),
            "fp8": None if self.fp8 is None else self.fp8.to_dict(),
            "ddp": self.ddp,
        }


def kernel_dtype(precision: str) -> torch.dtype:
    """What autocast feeds the attention kernels at a precision (the autotune key)."""
    return torch.bfloat16 if precision in ("bf16", "fp8") else torch.float32


def prepare_model(
    module: nn.Module, tc: TrainerConfig, device: torch.device, dist: ddp.DistInfo
) -> tuple[nn.Module, Prepared]:
    """Apply the trainer config's transforms to `module` (already on `device`) in ORDER.

    Returns:
        The model to call (DDP-wrapped when there are several processes) and what was done. `module` itself is
        changed in place and keeps its state_dict keys apart from FP8 (Transformer Engine adds `_extra_state`).

    Raises:
        UserError: a setting that cannot run here (a missing kernel, fp8 on the CPU, a bad policy).
    """
    dtype = kernel_dtype(tc.precision)
    # Under DDP rank 0 chooses (measuring when `auto`) and every rank takes its choice: near-tied timings must not
    # give ranks different kernels.
    backend = set_attention_backend(module, tc.attention, device=device, dtype=dtype) if dist.is_main else None
    if dist.enabled:
        backend = ddp.broadcast_object(backend, dist)
        if not dist.is_main:
            set_attention_backend(module, backend, device=device, dtype=dtype)
    prepared = Prepared(
        attention=backend,
        attention_reason=attention_backend_reason(module) or "",
        checkpointing=tc.checkpointing,
        offload_activations=tc.offload_activations,
    )
    prepared.applied.append("attention")

    prepared.checkpointed = make_policy(prepared.checkpointing).apply(module)
    if prepared.checkpointed:
        prepared.applied.append("checkpointing")

    if tc.compile:
        prepared.compiled = compile_model(module, mode=tc.compile_mode)
        prepared.applied.append("compile")

    if tc.precision == "fp8":
        prepared.fp8 = prepare_fp8(module, tc.fp8, device)
        prepared.applied.append("fp8")
        if prepared.fp8.backend == "te":  # recomputed blocks must re-enter TE's FP8 autocast
            set_recompute_context(module, prepared.fp8.checkpoint_contexts)

    model = ddp.wrap(module, dist, device, tc.find_unused_parameters)
    prepared.ddp = model is not module
    if prepared.ddp:
        prepared.applied.append("ddp")
    return model, prepared
