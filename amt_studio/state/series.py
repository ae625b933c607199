"""Time series that grow without copying on every append: numpy buffers doubled when full.

Each point keeps its step, value and wall time, and whether a rollback abandoned it: after a rollback to step s, the
points past s stay (drawn faded, as the abandoned branch) while the run continues from s on the live branch.
"""

from __future__ import annotations

import numpy as np


class Series:
    """One named (step, value, time) series; `x`, `y`, `t` and `dead` are views of the first `len(self)` entries."""

    def __init__(self, name: str, capacity: int = 256) -> None:
        self.name = name
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self._t = np.empty(capacity, dtype=np.float64)
        self._dead = np.zeros(capacity, dtype=bool)
        self._n = 0
        self.version = 0
        """Bumped on every change, so a view can tell whether it must feed its curve again."""
        self.branch_version = 0
        """Bumped only when a rollback abandons points (the abandoned branches change only then)."""
        self._abandoned: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def __len__(self) -> int:
        return self._n

    def append(self, step: float, value: float, time: float = float("nan")) -> None:
        if self._n == len(self._x):
            self._x = np.concatenate([self._x, np.empty_like(self._x)])
            self._y = np.concatenate([self._y, np.empty_like(self._y)])
            self._t = np.concatenate([self._t, np.empty_like(self._t)])
            self._dead = np.concatenate([self._dead, np.zeros_like(self._dead)])
        self._x[self._n] = step
        self._y[self._n] = value
        self._t[self._n] = time
        self._dead[self._n] = False
        self._n += 1
        self.version += 1

    def abandon_after(self, step: float) -> int:
        """A rollback to `step`: live points past it join the abandoned branch. Returns how many did."""
        live_after = (self._x[: self._n] > step) & ~self._dead[: self._n]
        count = int(live_after.sum())
        if count:
            self._dead[: self._n] |= live_after
            self.version += 1
            self.branch_version += 1
        return count

    @property
    def x(self) -> np.ndarray:
        return self._x[: self._n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self._n]

    @property
    def t(self) -> np.ndarray:
        return self._t[: self._n]

    @property
    def dead(self) -> np.ndarray:
        return self._dead[: self._n]

    def live(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, t) of the live branch: steps ascending, no point a rollback abandoned."""
        if self.branch_version == 0:  # never rolled back: every point is live
            return self.x, self.y, self.t
        keep = ~self.dead
        return self.x[keep], self.y[keep], self.t[keep]

    def abandoned(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, t) of abandoned branches, each starting at the live point it branched from, NaN-separated.

        Computed once per rollback (appends only add live points), so feeding a plot does not pay for it each time.
        """
        if self._abandoned is not None and self._abandoned[0] == self.branch_version:
            return self._abandoned[1]
        result = self._compute_abandoned()
        self._abandoned = (self.branch_version, result)
        return result

    def _compute_abandoned(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dead = self.dead
        if not dead.any():
            empty = np.empty(0)
            return empty, empty, empty
        index = np.flatnonzero(dead)
        breaks = np.flatnonzero(np.diff(index) > 1) + 1  # runs of consecutive abandoned points
        xs, ys, ts = [], [], []
        for run in np.split(index, breaks):
            first = run[0]
            # the branch point: the last point before this run that is still on the live branch at or before its step
            before = np.flatnonzero((np.arange(len(dead)) < first) & ~dead & (self.x <= self.x[first]))
            if len(before):
                j = before[-1]
                xs.append([self.x[j]])
                ys.append([self.y[j]])
                ts.append([self.t[j]])
            xs += [self.x[run], [np.nan]]
            ys += [self.y[run], [np.nan]]
            ts += [self.t[run], [np.nan]]
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ts)

    def last(self) -> float | None:
        return float(self._y[self._n - 1]) if self._n else None


class SeriesGroup:
    """Series by name, created on first append (loss terms, entropy by layer, gradient norm by group)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.series: dict[str, Series] = {}

    def append(self, name: str, step: float, value: float, time: float = float("nan")) -> bool:
        """Append to `name`'s series; True when the series is new (a view then adds a curve)."""
        created = name not in self.series
        if created:
            self.series[name] = Series(name)
        self.series[name].append(step, value, time)
        return created

    def abandon_after(self, step: float) -> int:
        return sum(series.abandon_after(step) for series in self.series.values())

    def names(self) -> list[str]:
        return list(self.series)

    def __getitem__(self, name: str) -> Series:
        return self.series[name]

    def __contains__(self, name: str) -> bool:
        return name in self.series
