"""The figures between two metrics events: a `MetricsWindow` (the trainer adds each good step; the metrics hook,
`amt_core.train.metrics_hook`, reports it and opens the next)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class MetricsWindow:
    """Sums over the steps since the last metrics event (skipped steps are not counted)."""

    started: float = field(default_factory=time.monotonic)
    """`time.monotonic()` when the window opened."""
    steps: int = 0
    loss: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    term_steps: dict[str, int] = field(default_factory=dict)
    """Steps in which each term had samples (a term without samples in a step is absent from it, not a zero)."""
    images: int = 0
    step_time_s: float = 0.0
    data_wait_s: float = 0.0
    last_loss: float | None = None
    """The previous window's mean loss (shown by the progress bar until this one closes)."""
    last_images_per_s: float | None = None

    def add_step(self, loss: float, step_time_s: float, terms: dict[str, tuple[float, bool]]) -> None:
        """One good step: its loss, host time and {term: (value, had samples)}."""
        self.steps += 1
        self.loss += loss
        self.step_time_s += step_time_s
        for name, (value, seen) in terms.items():
            if seen:
                self.terms[name] = self.terms.get(name, 0.0) + value
                self.term_steps[name] = self.term_steps.get(name, 0) + 1

    def term_means(self) -> dict[str, float]:
        return {name: value / self.term_steps[name] for name, value in self.terms.items()}

    def reopen(self, last_loss: float | None = None, last_images_per_s: float | None = None) -> None:
        """Start the next window now, keeping the closed one's loss and speed for the progress bar (after a pause
        or a rollback, none)."""
        vars(self).update(vars(MetricsWindow(last_loss=last_loss, last_images_per_s=last_images_per_s)))
