"""A plot's series as CSV (a plot's right-click menu: Export CSV…): every run, both branches of each series, full
precision, one row per logged point.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from amt_studio.state.series import Series
from amt_studio.views.plot_catalog import smooth

CSV_COLUMNS = ("run", "series", "branch", "step", "time_s", "value", "smoothed")


def ask_csv_path(parent: QWidget, suggested: Path) -> Path | None:
    """Where to write the CSV (a save dialog starting at `suggested`); None: cancelled."""
    path, _ = QFileDialog.getSaveFileName(parent, "Export plot as CSV", str(suggested), "CSV (*.csv)")
    return Path(path) if path else None


def write_csv(path: Path, runs: Iterable[tuple[str, dict[str, tuple[Series, float]]]], smoothing: float) -> int:
    """Write each run's series (run label, {series name: (series, scale)}), both branches: run, series, branch, step,
    time (Unix seconds, microsecond resolution), value, smoothed (with weight `smoothing`; the abandoned branch is not
    smoothed). Returns the number of rows written."""
    rows = 0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for label, series_by_name in runs:
            for name, (series, scale) in series_by_name.items():
                for branch, steps, values, times, smoothed in _branches(series, scale, smoothing):
                    for step, value, when, smooth_value in zip(steps, values, times, smoothed):
                        writer.writerow(
                            [
                                label,
                                name,
                                branch,
                                int(step),
                                f"{when:.6f}",
                                repr(float(value)),
                                repr(float(smooth_value)),
                            ]
                        )
                        rows += 1
    return rows


def _branches(series: Series, scale: float, smoothing: float) -> tuple[tuple, ...]:
    """(branch, steps, values, times, smoothed values) of the live branch and of the abandoned one."""
    x, y, t = series.live()
    dead = series.dead
    return (
        ("live", x, y * scale, t, smooth(y * scale, smoothing)),
        ("abandoned", series.x[dead], series.y[dead] * scale, series.t[dead], series.y[dead] * scale),
    )
