"""Time series that grow without copying on every append: numpy buffers doubled when full.

Plots call `x`/`y` (views into the buffers) and hand them to `setData`, so a plot never rebuilds its items.
"""

from __future__ import annotations

import numpy as np


class Series:
    """One named (step, value) series; `x` and `y` are views of the first `len(self)` entries."""

    def __init__(self, name: str, capacity: int = 256) -> None:
        self.name = name
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, step: float, value: float) -> None:
        if self._n == len(self._x):
            self._x = np.concatenate([self._x, np.empty_like(self._x)])
            self._y = np.concatenate([self._y, np.empty_like(self._y)])
        self._x[self._n] = step
        self._y[self._n] = value
        self._n += 1

    @property
    def x(self) -> np.ndarray:
        return self._x[: self._n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self._n]

    def last(self) -> float | None:
        return float(self._y[self._n - 1]) if self._n else None


class SeriesGroup:
    """Series by name, created on first append (loss terms, entropy by layer, gradient norm by group)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.series: dict[str, Series] = {}

    def append(self, name: str, step: float, value: float) -> bool:
        """Append to `name`'s series; True when the series is new (a view then adds a curve)."""
        created = name not in self.series
        if created:
            self.series[name] = Series(name)
        self.series[name].append(step, value)
        return created

    def names(self) -> list[str]:
        return list(self.series)

    def __getitem__(self, name: str) -> Series:
        return self.series[name]

    def __contains__(self, name: str) -> bool:
        return name in self.series
