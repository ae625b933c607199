"""A minimal Qt-free signal: the state layer emits, views connect (the napari `EventEmitter` idea, much smaller)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Signal:
    """A list of callbacks called in order on `emit`; a failing callback does not stop the others."""

    def __init__(self) -> None:
        self._slots: list[Callable[..., Any]] = []
        self.errors: list[BaseException] = []
        """Exceptions raised by callbacks, kept for the app's notifier to report (then cleared by it)."""

    def connect(self, slot: Callable[..., Any]) -> None:
        if slot not in self._slots:
            self._slots.append(slot)

    def disconnect(self, slot: Callable[..., Any]) -> None:
        if slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self._slots):
            try:
                slot(*args)
            except Exception as err:  # a broken view must not stop the others from updating
                self.errors.append(err)
