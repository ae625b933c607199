"""When training stops besides the plan's end and a `stop` command: Ctrl-C or SIGTERM (the first one asks the
trainer to stop after the step, so it saves and exits cleanly; a second Ctrl-C interrupts at once), `max_steps` and
`max_time_s`."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from amt_core.train import ddp

if TYPE_CHECKING:
    from amt_core.train.trainer import Trainer


class StopSignals:
    """Catches SIGINT and SIGTERM while installed (only from the main thread; elsewhere it catches nothing)."""

    def __init__(self) -> None:
        self.received: int | None = None
        """The first signal caught, or None."""
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum


def limit_reached(trainer: Trainer) -> bool:
    """A signal, max_steps or max_time_s (setting the trainer's stop reason); under DDP rank 0 decides, every
    `check_every` steps, for all ranks."""
    tc = trainer.tc
    if tc.max_steps and trainer.step >= tc.max_steps:
        trainer.stop_reason = trainer.stop_reason or "limit"
        return True
    signalled = trainer.signals.received is not None
    timed_out = bool(tc.max_time_s) and trainer.train_time_s >= tc.max_time_s
    if trainer.dist.enabled:
        if trainer.step % trainer.config.stability.check_every:
            return False
        signalled, timed_out = ddp.broadcast_object((signalled, timed_out), trainer.dist)
    if signalled:
        trainer.signals.received = trainer.signals.received or signal.SIGTERM  # rank 0 was signalled
        return True
    if timed_out:
        trainer.stop_reason = trainer.stop_reason or "limit"
        return True
    return False
