"""The trainer's own state in one record: the step, the run counters a checkpoint carries, and the timers.

The other parts keep their own state and each has `state_dict`: the stage plan (the stage and where it began), the
checkpointer (the branch and the best checkpoint), the batch plan, the spike detector. `TrainState.state_dict` is
the run counters in the checkpoint format's "run" section; the step is stored beside them, at the top level.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

RUN_COUNTERS = ("lr_scale", "rollbacks", "skipped", "train_time_s", "micro_batch")
"""The fields a checkpoint stores under "run" (the step is stored at its top level)."""


@dataclass(kw_only=True)
class TrainState:
    """Where a run is and what it has counted."""

    step: int = 0
    """Optimizer steps done (skipped steps included)."""
    micro_batch: int
    """Samples per forward/backward; the batch is split into pieces of this size (halved after an OOM)."""
    lr_scale: float = 1.0
    """Multiplies every learning rate; each automatic rollback scales it by `stability.lr_backoff`."""
    rollbacks: int = 0
    """Automatic rollbacks so far (after an explosion or a run of non-finite steps)."""
    skipped: int = 0
    """Steps whose update was skipped (a non-finite loss or gradient)."""
    consecutive_nonfinite: int = 0
    """Skipped steps in a row, up to the last good one (not saved: a resume starts a new run of them)."""
    train_time_s: float = 0.0
    """Training time: wall time in the loop, pauses left out."""
    timed_since: float = field(default_factory=time.monotonic)
    """`time.monotonic()` from which training time counts (reset after a pause and at the start)."""

    def count_step(self) -> None:
        """One more step, and the time since the last one."""
        self.step += 1
        now = time.monotonic()
        self.train_time_s += now - self.timed_since
        self.timed_since = now

    def restart_timer(self) -> None:
        """Training time counts from now (the time before, paused or starting up, is not training)."""
        self.timed_since = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("step", *RUN_COUNTERS)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set the fields `state` names: {"step": N} on a rollback, the step and the run counters on a resume."""
        for name in ("step", *RUN_COUNTERS):
            if name in state and name != "micro_batch":  # the micro-batch is this machine's, probed again
                setattr(self, name, state[name])
