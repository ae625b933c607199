"""Batches for the trainer: the batch plan through a DataLoader, restarted where the plan stands (after a resume,
a rollback or a new mining pool), with the time spent waiting for data and samples whose labels are not finite."""

from __future__ import annotations

import time

from amt_core.schema.sample import Batch
from amt_core.train import parts
from amt_core.train.events import InvalidLabels
from amt_core.train.sampler import BatchPlan, PlanBatches, plan_loader
from amt_core.train.stopping import stop_signals_blocked


class BatchFeed:
    """The plan's batches in order; the plan's position advances as each batch is consumed, not when prefetched."""

    def __init__(self, dataset, plan: BatchPlan, num_workers: int, pin_memory: bool) -> None:
        self.dataset = dataset
        self.plan = plan
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.invalid_samples = 0
        """Samples whose NaN/inf labels were masked (counted in every metrics event, warned about once)."""
        self._warned = False
        self._iterator = None
        self._batches: PlanBatches | None = None

    def restart(self) -> None:
        """Start the loader again at the plan's current position (at the next `next`)."""
        self._iterator = None

    def next(self) -> tuple[Batch, float]:
        """The next batch, with its `index` field, and the seconds waited for it (0 for the first batch after a
        (re)start: it also waits for the workers to start, which is not the pipeline's pace)."""
        starting = self._iterator is None
        if starting:
            self._batches = PlanBatches(self.plan)
            loader = plan_loader(self.dataset, self._batches, self.num_workers, self.pin_memory)
            with stop_signals_blocked():  # until each worker ignores them (a scheduler signals the process group)
                self._iterator = iter(loader)
        waited = time.monotonic()
        batch = next(self._iterator)
        waited = 0.0 if starting else time.monotonic() - waited
        self.plan.consumed(*self._batches.origins.popleft())
        return batch, waited

    def mask_invalid(self, batch: Batch, step: int) -> InvalidLabels | None:
        """Mask the batch's NaN/inf labels and count them; the first time in a run, the warning to write.

        In place: `batch` is the one `next` has just returned (the loader's own, new each time), masked before
        anything reads it; no other part of the step changes a batch it is given.
        """
        invalid = parts.mask_invalid_labels(batch)
        if not invalid:
            return None
        self.invalid_samples += invalid
        if self._warned:
            return None
        self._warned = True
        message = (
            f"samples with NaN or infinite labels: their labels are skipped ({invalid} in the batch at step "
            f"{step}; counted on as invalid_samples in metrics)"
        )
        return InvalidLabels(step=step, count=invalid, batch=batch["index"].tolist(), message=message)
