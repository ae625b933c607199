"""When training stops besides the plan's end and a `stop` command: a signal, `max_steps` and `max_time_s`.

Ctrl-C (SIGINT), SIGTERM and SIGUSR1 ask the trainer to stop after the step, so it saves a checkpoint and records
`stopped` with reason `signal`; a second Ctrl-C interrupts at once. SIGTERM is how schedulers (SLURM, Kubernetes,
systemd) preempt a job, and SIGUSR1 is what `sbatch --signal=USR1@SECONDS` sends ahead of the time limit. Schedulers
signal the whole process group, DataLoader workers included: those ignore the stop signals (`quiet_worker`) and are
shut down by the trainer, instead of dying and taking the run down with a worker error.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

from amt_core.train import ddp
from amt_core.train.kinds import StopReason

if TYPE_CHECKING:
    from amt_core.train.trainer_config import TrainerConfig

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
"""Signals that stop training after the step, with a checkpoint."""

PREEMPT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)
"""The stop signals a scheduler sends (a person sends SIGINT): `amt-core train` exits with its preempted code."""


class StopSignals:
    """Catches the stop signals while installed (only from the main thread; elsewhere it catches nothing)."""

    def __init__(self) -> None:
        self.received: int | None = None
        """The first signal caught, or None."""
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def name(self) -> str | None:
        """The caught signal's name (SIGTERM, ...), or None."""
        return signal.Signals(self.received).name if self.received is not None else None

    def adopt(self, signum: int) -> None:
        """Act on `signum` as if caught here (under DDP, rank 0's signal on every rank); the first one counts."""
        self.received = self.received or signum

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = self.received or signum


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Hold the stop signals back from the calling thread while it starts DataLoader workers: a forked worker
    inherits the mask, so a signal to the process group cannot reach it before `quiet_worker` ignores it. A signal
    that arrives meanwhile is delivered to the trainer when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def quiet_worker(worker_id: int) -> None:
    """A DataLoader `worker_init_fn`: the worker ignores the stop signals (the trainer stops it when it stops; a
    worker whose trainer died exits by itself) and takes them off the mask `stop_signals_blocked` started it with."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def limit_reached(
    step: int, train_time_s: float, tc: TrainerConfig, signals: StopSignals, dist: ddp.DistInfo, check_every: int
) -> StopReason | None:
    """Why training ends here, if it does: LIMIT (max_steps or max_time_s) or SIGNAL. Under DDP rank 0 decides,
    every `check_every` steps, for all ranks (its signal is adopted by the others)."""
    if tc.max_steps and step >= tc.max_steps:
        return StopReason.LIMIT
    signalled = signals.received
    timed_out = bool(tc.max_time_s) and train_time_s >= tc.max_time_s
    if dist.enabled:
        if step % check_every:
            return None
        signalled, timed_out = ddp.broadcast_object((signalled, timed_out), dist)
    if signalled is not None:
        signals.adopt(signalled)
        return StopReason.SIGNAL
    return StopReason.LIMIT if timed_out else None
