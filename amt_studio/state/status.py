"""`RunStatus`: what the studio shows a run as doing: the trainer's own states (`TrainerState`, from its events) and
the few only the studio can tell (no run yet, a trainer started but silent, one gone without a word)."""

from __future__ import annotations

from enum import StrEnum

from amt_core.train.kinds import TrainerState


class RunStatus(StrEnum):
    """A run's status in the studio; the trainer's states have the same names (`RunStatus(TrainerState.PAUSED)`)."""

    IDLE = "idle"
    """No run is open."""
    STARTING = "starting"
    """The trainer process is started (or its run has a config) but has written no event yet."""
    RUNNING = TrainerState.RUNNING.value
    PAUSED = TrainerState.PAUSED.value
    STOPPED = TrainerState.STOPPED.value
    FINISHED = TrainerState.FINISHED.value
    FAILED = TrainerState.FAILED.value
    ENDED = "ended"
    """The start page: the run's trainer is gone without a final state (killed)."""
    LOST = "lost"
    """An attached run's trainer vanished without a word (SIGKILL, power loss): nothing to steer."""


LIVE = frozenset({RunStatus.STARTING, RunStatus.RUNNING, RunStatus.PAUSED})
"""The statuses in which a trainer is there to take a command."""
