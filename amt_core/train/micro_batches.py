"""The training step: forward and backward of one batch in micro-batches (gradient accumulation: the batch's
gradient, in pieces that fit in memory) with MixUp per micro-batch, then the gradients' checks and the update; and
the probe that finds the largest micro-batch that fits on a GPU. They read the trainer through `TrainerView`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from amt_core.accel.precision import autocast
from amt_core.schema.sample import Batch
from amt_core.train import ddp, memory, parts
from amt_core.train.events import OutOfMemory
from amt_core.train.kinds import AnomalyAction
from amt_core.train.mixup import mixup_batch
from amt_core.train.stability import process_gradients
from amt_core.train.step_results import StepResult

if TYPE_CHECKING:
    from amt_core.losses.mix import MixInfo
    from amt_core.train.state import TrainState
    from amt_core.train.view import TrainerView


def forward_backward(
    trainer: TrainerView, batch: Batch, micro_batch: int
) -> tuple[torch.Tensor, dict, dict, torch.Tensor]:
    """Forward and backward over `micro_batch`-sized pieces; returns the loss, the terms, how many samples each term
    saw, and the per-sample errors, all on the device. Gradients accumulate in the parameters."""
    size = batch["image"].shape[0]
    starts = list(range(0, size, micro_batch))
    total = torch.zeros((), device=trainer.device)
    terms: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    errors = []
    epoch = trainer.epoch()
    tc = trainer.tc
    for i, start in enumerate(starts):
        chunk = parts.slice_batch(batch, start, min(start + micro_batch, size))
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


def _mixup(trainer: TrainerView, chunk: Batch, index: int) -> tuple[Batch, MixInfo | None]:
    """MixUp drawn from a generator seeded by (seed, step, micro-batch): reproducible without saved state."""
    if not trainer.config.mixup.enabled:
        return chunk, None
    generator = torch.Generator().manual_seed((trainer.tc.seed * 1_000_003 + trainer.step) * 64 + index)
    mixed, mix = mixup_batch(chunk, trainer.config.mixup, generator=generator)
    return mixed, (mix if mixed is not chunk else None)


def probe_micro_batch(trainer: TrainerView, batch: Batch) -> int:
    """The largest micro-batch (up to the local batch) whose forward and backward fit on the device, tried on
    `batch` (on the device, without its `index`); the gradients are cleared and the RNG streams left as they were."""

    def attempt(size: int) -> None:
        forward_backward(trainer, batch, size)
        trainer.optimizer.zero_grad(set_to_none=True)

    with torch.random.fork_rng(devices=[trainer.device]):
        size = memory.find_micro_batch(attempt, trainer.local_batch, trainer.device)
    trainer.optimizer.zero_grad(set_to_none=True)
    return size


class MicroBatches:
    """The micro-batch size a step runs in (kept in the train state) and how it adapts on CUDA with dynamic_batch:
    probed on the first batch, halved when a step runs out of memory."""

    def __init__(self, state: TrainState, local_batch: int, dynamic: bool) -> None:
        self.state, self.local_batch, self.dynamic = state, local_batch, dynamic

    def step(self, trainer: TrainerView, batch: Batch, indices: list[int]) -> StepResult:
        """One optimizer step on `batch` (on the device); its results stay on the device (`StepResult`)."""
        t0 = time.monotonic()
        total, terms, counts, errors = self.forward_backward(trainer, batch, indices)
        ddp.average_loss_gradients(trainer.loss_fn, trainer.dist)
        optimizer, state = trainer.optimizer, trainer.state
        ok, norms = process_gradients(optimizer.param_groups, total, trainer.config.stability)
        ok, total = ddp.agree_on_step(ok, total, trainer.dist)
        trainer.stages.set_learning_rates(optimizer.param_groups, state.step, state.train_time_s, state.lr_scale, ok)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return StepResult(
            step=state.step + 1,
            indices=indices,
            ok=ok,
            loss=total,
            terms=terms,
            counts=counts,
            norms=norms,
            errors=errors,
            time_s=time.monotonic() - t0,
        )

    def forward_backward(self, trainer: TrainerView, batch: Batch, indices: list[int]) -> tuple:
        """`forward_backward` in the current micro-batch size; an OOM halves it (when dynamic) and tries again."""
        while True:
            try:
                return forward_backward(trainer, batch, self.state.micro_batch)
            except RuntimeError as err:
                if not (self.dynamic and memory.is_oom(err) and self.state.micro_batch > 1):
                    raise
                trainer.optimizer.zero_grad(set_to_none=True)
                memory.release_memory()
                self.state.micro_batch //= 2
                trainer.events.write(OutOfMemory(step=trainer.step, micro_batch=self.state.micro_batch, batch=indices))

    def probe(self, trainer: TrainerView, batch: Batch) -> None:
        """Set the largest micro-batch that fits, tried on `batch` (a batch of the plan)."""
        batch = parts.to_device({k: v for k, v in batch.items() if k != "index"}, trainer.device)
        self.state.micro_batch = probe_micro_batch(trainer, batch)
        if self.state.micro_batch < self.local_batch:
            micro, action = self.state.micro_batch, AnomalyAction.MICRO_BATCH
            trainer.events.write(OutOfMemory(step=trainer.step, action=action, micro_batch=micro))

    @contextlib.contextmanager
    def fixed(self, size: int) -> Iterator[None]:
        """Steps in micro-batches of `size`, an out-of-memory error raised rather than handled (benchmarks)."""
        saved = self.state.micro_batch, self.dynamic
        self.state.micro_batch, self.dynamic = size, False
        try:
            yield
        finally:
            self.state.micro_batch, self.dynamic = saved
