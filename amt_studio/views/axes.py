"""Plot axes whose tick labels never overlap: fewer ticks, each label at least a label's size from the next, and
compact numbers (SI prefixes outside 0.01-10000: 300µ, 12k), on linear and log axes alike."""

from __future__ import annotations

import math

import pyqtgraph as pg

SI_PREFIXES = {-15: "f", -12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T"}
MIN_LABEL_GAP_PX = {"left": 24.0, "right": 24.0, "bottom": 64.0, "top": 64.0}
"""Least distance between two labelled ticks: a text line and a half vertically, about seven characters across."""


def si_format(value: float, digits: int = 3) -> str:
    """A short label: plain between 0.01 and 10000 ('0.25', '1200'), an SI prefix outside ('300µ', '12k')."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    magnitude = abs(value)
    if 0.01 <= magnitude < 10_000:
        return f"{value:.{digits + 1}g}"
    exponent = min(max(int(math.floor(math.log10(magnitude) / 3) * 3), -15), 12)
    mantissa = value / 10.0**exponent
    if abs(float(f"{mantissa:.{digits}g}")) >= 1000 and exponent < 12:  # 999.96k rounds to 1000k: say 1M
        exponent += 3
        mantissa /= 1000.0
    return f"{mantissa:.{digits}g}{SI_PREFIXES[exponent]}"


def thin_levels(levels: list, low: float, high: float, size_px: float, gap_px: float) -> list:
    """Keep, level by level (coarsest first), only the ticks at least `gap_px` from every tick kept so far."""
    span = high - low
    if span <= 0 or size_px <= 0:
        return levels
    per_px = span / size_px
    kept: list[float] = []
    out = []
    for spacing, values in levels:
        level = []
        for value in values:
            if all(abs(value - other) / per_px >= gap_px for other in kept):
                level.append(value)
                kept.append(value)
        out.append((spacing, level))
    return out


class CompactAxis(pg.AxisItem):
    """An AxisItem with compact labels and no two labels closer than `MIN_LABEL_GAP_PX`."""

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.gap_px = MIN_LABEL_GAP_PX[orientation]

    def tickValues(self, minVal: float, maxVal: float, size: float):  # noqa: N802, N803 (pyqtgraph's names)
        low, high = min(minVal, maxVal), max(minVal, maxVal)
        return thin_levels(super().tickValues(minVal, maxVal, size), low, high, size, self.gap_px)

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph's name)
        if self.logMode:
            return [si_format(10.0 ** float(v) * scale) for v in values]
        return [si_format(float(v) * scale) for v in values]
