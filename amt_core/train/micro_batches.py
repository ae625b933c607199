"""Forward and backward of one batch in micro-batches (gradient accumulation: the batch's gradient, in pieces that
fit in memory), with MixUp per micro-batch, and the probe that finds the largest micro-batch that fits on a GPU."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from amt_core.accel.precision import autocast
from amt_core.train import memory, parts
from amt_core.train.events import Anomaly
from amt_core.train.mixup import mixup_batch

if TYPE_CHECKING:
    from amt_core.train.trainer import Trainer


def forward_backward(trainer: Trainer, batch: dict) -> tuple[torch.Tensor, dict, dict, torch.Tensor]:
    """Forward and backward over `trainer.micro_batch`-sized pieces; returns the loss, the terms, how many samples
    each term saw, and the per-sample errors, all on the device. Gradients accumulate in the parameters."""
    size = batch["image"].shape[0]
    starts = list(range(0, size, trainer.micro_batch))
    total = torch.zeros((), device=trainer.device)
    terms: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    errors = []
    epoch = trainer.epoch()
    tc = trainer.tc
    for i, start in enumerate(starts):
        chunk = parts.slice_batch(batch, start, min(start + trainer.micro_batch, size))
        share = chunk["image"].shape[0] / size
        last = i == len(starts) - 1
        sync = contextlib.nullcontext() if last or not trainer.dist.enabled else trainer.model.no_sync()
        chunk, mix = _mixup(trainer, chunk, i)
        with sync:
            with autocast(tc.precision, trainer.device, trainer.prepared.fp8):
                with memory.offload_activations(tc.offload_activations, trainer.device):
                    output = trainer.model(chunk)
                result = trainer.loss_fn(output, chunk, epoch, mix=mix)
            loss_value = trainer.stages.loss_total(result)
            (loss_value * share).backward()
        total = total + loss_value.detach().float() * share
        for name, value in result.terms.items():
            terms[name] = terms.get(name, 0) + value.detach().float() * share
        for name, count in getattr(result, "counts", {}).items():
            counts[name] = counts.get(name, 0) + count
        errors.append(parts.per_sample_error(output, chunk))
    return total, terms, counts, torch.cat(errors)


def _mixup(trainer: Trainer, chunk: dict, index: int):
    """MixUp drawn from a generator seeded by (seed, step, micro-batch): reproducible without saved state."""
    if not trainer.config.mixup.enabled:
        return chunk, None
    generator = torch.Generator().manual_seed((trainer.tc.seed * 1_000_003 + trainer.step) * 64 + index)
    mixed, mix = mixup_batch(chunk, trainer.config.mixup, generator=generator)
    return mixed, (mix if mixed is not chunk else None)


def probe_micro_batch(trainer: Trainer) -> None:
    """On CUDA with dynamic_batch: the largest micro-batch that fits, tried on the first batch, which is then put
    back (the plan goes back one batch and the loader restarts there)."""
    if not (trainer.tc.dynamic_batch and trainer.device.type == "cuda"):
        return
    batch = trainer.next_batch()
    batch.pop("index")
    batch = parts.to_device(batch, trainer.device)

    def attempt(size: int) -> None:
        trainer.micro_batch = size
        forward_backward(trainer, batch)
        trainer.optimizer.zero_grad(set_to_none=True)

    with torch.random.fork_rng(devices=[trainer.device]):
        trainer.micro_batch = memory.find_micro_batch(attempt, trainer.local_batch, trainer.device)
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.plan.position -= 1
    trainer.feed.restart()
    if trainer.micro_batch < trainer.local_batch:
        trainer.events.write(
            Anomaly(step=trainer.step, what="out_of_memory", action="micro_batch", micro_batch=trainer.micro_batch)
        )
