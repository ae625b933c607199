"""The host check: the buffered step results read back in one host sync, and what they mean for the run. A skipped
step is counted and reported; a run of them, or a loss spike, is trouble that calls for a rollback; a good step
feeds the metrics window and hard-case mining."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amt_core.train.events import EventWriter, NonFiniteStep
from amt_core.train.kinds import AnomalyKind
from amt_core.train.step_results import StepResult, read_back

if TYPE_CHECKING:
    from amt_core.train.metrics_window import MetricsWindow
    from amt_core.train.sampler import BatchPlan
    from amt_core.train.stability import SpikeDetector, StabilityConfig
    from amt_core.train.state import TrainState


@dataclass(frozen=True)
class Trouble:
    """A step after which the run cannot go on as it is: the trainer rolls back."""

    step: int
    what: AnomalyKind
    """EXPLOSION (a loss spike) or NON_FINITE_RUN (too many skipped steps in a row)."""
    loss: float
    fields: dict[str, Any] = field(default_factory=dict)
    """What the anomaly event adds (the spike's median and batch)."""


class HostCheck:
    """Reads step results back and counts them into the train state, the spike detector, the metrics window and
    the batch plan's per-sample errors."""

    def __init__(
        self,
        state: TrainState,
        spike: SpikeDetector,
        window: MetricsWindow,
        plan: BatchPlan,
        stability: StabilityConfig,
        batch_size: int,
    ) -> None:
        self.state, self.spike, self.window, self.plan = state, spike, window, plan
        self.stability, self.batch_size = stability, batch_size

    def __call__(
        self, pending: list[StepResult], param_groups: list[dict], events: EventWriter
    ) -> tuple[dict[str, float], Trouble | None]:
        """The last step's gradient norm by group, and the first trouble (the steps after it are dropped)."""
        steps, last_norms = read_back(pending, param_groups)
        state = self.state
        for entry in steps:
            if not entry.ok:
                state.skipped += 1
                state.consecutive_nonfinite += 1
                events.write(
                    NonFiniteStep(step=entry.step, loss=entry.loss, batch=entry.indices, skipped_total=state.skipped)
                )
                if state.consecutive_nonfinite >= self.stability.max_consecutive_nonfinite:
                    return last_norms, Trouble(entry.step, AnomalyKind.NON_FINITE_RUN, entry.loss)
                continue
            state.consecutive_nonfinite = 0
            median = self.spike.median()
            if self.spike.check(entry.loss):
                fields = {"median": median, "batch": entry.indices}
                return last_norms, Trouble(entry.step, AnomalyKind.EXPLOSION, entry.loss, fields)
            self.window.add_step(entry.loss, entry.time_s, entry.terms)
            self.plan.record_errors(entry.indices, entry.errors)
        self.window.images += len(steps) * self.batch_size
        return last_norms, None
