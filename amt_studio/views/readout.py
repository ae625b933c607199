"""The hover read-out: one line in a fixed place under the plots that says, for the plot under the mouse, the values
logged at the step nearest to it (the curve nearest the mouse first). The line is elided to the label's width; its
tooltip holds all of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy

MAX_VALUES = 10
"""Values said at most (the nearest to the mouse first)."""


@dataclass(frozen=True)
class Reading:
    """A curve as the read-out reads it: its label and the points it draws (y in the plot's own units)."""

    label: str
    x: np.ndarray | None
    y: np.ndarray | None
    log: bool
    """The plot's y is log10 of the value."""


def read_at(
    title: str, readings: Iterable[Reading], x: float, y: float | None, by_time: bool
) -> tuple[str, float | None]:
    """('title · step N · series value, ...', N's x) at the logged point nearest to `x`: the values logged there,
    the curve nearest to `y` (in the plot's own y units) first. (" ", None) when no curve has a point."""
    found = []  # (distance in x, distance in y, label, x, value)
    for reading in readings:
        xs, ys = reading.x, reading.y
        if xs is None or not len(xs):
            continue
        i = int(np.clip(np.searchsorted(xs, x), 0, len(xs) - 1))
        if i > 0 and abs(xs[i - 1] - x) < abs(xs[i] - x):
            i -= 1
        shown = ys[i]
        value = 10**shown if reading.log else shown
        dy = abs(shown - y) if y is not None and np.isfinite(shown) else math.inf
        found.append((abs(xs[i] - x), dy, reading.label, float(xs[i]), value))
    if not found:
        return " ", None
    nearest_x = min(found)[3]
    same_step = [f for f in found if abs(f[3] - nearest_x) < 1e-9]  # values logged at that step only
    same_step.sort(key=lambda f: f[1])
    where = f"{nearest_x:.2f} min" if by_time else f"step {nearest_x:.0f}"
    parts = [f"{label} {value:.4g}" for _dx, _dy, label, _x, value in same_step[:MAX_VALUES]]
    return f"{title} · {where} · " + ", ".join(parts), nearest_x


class Readout(QLabel):
    """The read-out's line: a fixed height, never wider than the window gives it."""

    def __init__(self) -> None:
        super().__init__(" ")
        self.setObjectName("readout")
        self.setFixedHeight(20)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # never widens the window
        self.full_text = ""
        """The whole read-out (the label shows it elided to its width; its tooltip shows all of it)."""

    def show_text(self, text: str) -> None:
        self.full_text = text
        self.setToolTip(text.strip())
        self._elide()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.width() - 8, 20)
        self.setText(self.fontMetrics().elidedText(self.full_text, Qt.TextElideMode.ElideRight, width))
