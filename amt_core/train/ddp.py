"""Multi-process training through torchrun (DDP): process-group set-up, wrapping, and small collectives.

`torchrun --nproc-per-node N -m amt_core train ...` sets RANK/WORLD_SIZE/LOCAL_RANK; the backend is NCCL on CUDA and
gloo on the CPU. Rank 0 alone writes the run directory and serves the control channel; the others follow the
commands it broadcasts at each check point.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(kw_only=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (no-op for a single process). Returns the info and the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Long timeout: the other ranks wait in a collective while rank 0 is paused by the user.
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=24)
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank), device


def wrap(model: nn.Module, info: DistInfo, device: torch.device, find_unused_parameters: bool) -> nn.Module:
    """The model wrapped in DDP when there are several processes, else unchanged."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_min(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise minimum over ranks, on the device (no host sync)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def average_loss_gradients(loss_fn: nn.Module, info: DistInfo) -> None:
    """DDP averages the model's gradients; the loss's learnable weights' gradients are averaged here."""
    if not info.enabled:
        return
    for param in loss_fn.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= info.world_size


def agree_on_step(ok: torch.Tensor, total: torch.Tensor, info: DistInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """The step is applied only where every rank's was finite, and its loss is the ranks' mean (on the device)."""
    if not info.enabled:
        return ok, total
    ok = all_min(ok, info)
    total = total.clone()
    dist.all_reduce(total)
    return ok, total / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
