"""Training plots (pyqtgraph) as a TensorBoard user expects them: loss terms, validation MPJPE against the mean-pose
reference, learning rate, images/s, memory, prediction std with the collapse line, attention entropy by layer,
gradient norm by group and each loss term's share of the gradient at the trunk.

Legends live outside the data, in a series list beside the plots (a click toggles a curve); hovering a plot reads the
values under the mouse; smoothing (TensorBoard's debiased EMA), log or linear y and an x axis by step or wall time
apply to every plot; checkpoints, anomalies and rollbacks are small marks on one event lane under the plots. After a
rollback the abandoned branch stays, faded, and the run continues from the rollback step. Other runs can be
overlaid (dashed) for comparison, and any plot exports its series as CSV (right-click a plot).

Curves are created once per series and then only fed with `setData`, one plot per timer tick.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from amt_studio.state.run import COLLAPSE_STD_M, GRAD_EXPLODE, GRAD_VANISH, RunState
from amt_studio.state.series import Series
from amt_studio.views import theme

# key, title, log y by default (and under the "log y" switch), grid cell (row, col, colspan)
PLOT_SPECS: tuple[tuple[str, str, bool, tuple[int, int, int]], ...] = (
    ("loss", "loss terms", True, (0, 0, 6)),
    ("val", "validation MPJPE (mm)", False, (1, 0, 3)),
    ("std", "prediction std (mm)", False, (1, 3, 3)),
    ("grad", "gradient norm by group", True, (2, 0, 2)),
    ("share", "gradient share at the trunk", False, (2, 2, 2)),
    ("entropy", "attention entropy (layers: blue ▸ yellow)", False, (2, 4, 2)),
    ("lr", "learning rate", True, (3, 0, 2)),
    ("speed", "images / s", False, (3, 2, 2)),
    ("memory", "memory (MB)", False, (3, 4, 2)),
)
PLOT_KEYS = tuple(spec[0] for spec in PLOT_SPECS)
METRIC_PLOTS = ("loss", "val", "lr", "speed", "memory")
DIAGNOSTIC_PLOTS = ("std", "entropy", "grad", "share")
# New curves made per refresh at most: a first metrics event with 20 loss terms would otherwise stall the window
# (each curve costs a few ms); the rest appear on the next ticks.
MAX_NEW_CURVES_PER_REFRESH = 4
REFERENCE_PREFIX = "ref_"
"""Validation series that are references (a constant predictor's error), drawn dashed and grey."""
REFERENCE_LABELS = {
    "ref_mean_pose_mpjpe_mm": "mean-pose reference",
    "ref_mean_pose_pa_mpjpe_mm": "mean-pose reference (PA)",
    "ref_wrist_mpjpe_mm": "wrist-only reference",
}
LANE_ROWS = {"checkpoint": 0.2, "anomaly": 0.5, "rollback": 0.8}
OVERLAY_STYLES = (Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine)


def smooth(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average debiased for its zero start; NaNs are skipped."""
    if weight <= 0.0 or len(y) < 2:
        return y
    from scipy.signal import lfilter

    out = np.full_like(y, np.nan)
    finite = np.isfinite(y)
    values = y[finite]
    if len(values):
        ema = lfilter([1.0 - weight], [1.0, -weight], values)
        out[finite] = ema / (1.0 - weight ** np.arange(1, len(values) + 1))
    return out


def plot_series(state: RunState, key: str) -> dict[str, tuple[Series, float]]:
    """The series a plot shows for one run, by display name, with the scale applied to their values."""
    if key == "loss":
        return {name: (s, 1.0) for name, s in state.losses.series.items()}
    if key == "val":
        return {
            REFERENCE_LABELS.get(name, name): (s, 1.0)
            for name, s in state.validation.series.items()
            if name.endswith("mpjpe_mm")
        }
    if key == "std":
        return {name: (s, 1000.0) for name, s in state.pred_std.series.items()}  # metres in the state, mm here
    if key == "entropy":
        names = list(state.attention_entropy.series)
        shorts = [_short(name) for name in names]
        return {
            (short if shorts.count(short) == 1 else name): (state.attention_entropy[name], 1.0)
            for name, short in zip(names, shorts)
        }
    if key == "grad":
        return {name: (s, 1.0) for name, s in state.grad_norm.series.items()}
    if key == "share":  # by loss term: sums to 1 at each step, a term fighting the others is below 0
        return {name: (s, 1.0) for name, s in state.grad_share.series.items()}
    prefixes = {"lr": ("lr",), "speed": ("images_per_s",), "memory": ("memory", "memory_mb")}[key]
    return {name: (s, 1.0) for name, s in state.training.series.items() if name.split("/")[0] in prefixes}


@dataclass(kw_only=True)
class _Curve:
    """One series of one run in one plot: the live branch and, after a rollback, the faded abandoned branch."""

    live: pg.PlotDataItem
    ghost: pg.PlotDataItem
    item: QTreeWidgetItem
    fed: tuple = ()
    """What the curve was last fed from: (series version, smoothing, x mode, log) — skip when unchanged."""
    ghost_fed: tuple = ()
    """The same for the abandoned branches, which change only on a rollback."""
    visible: bool = True


@dataclass(kw_only=True)
class _Run:
    label: str
    state: RunState
    style: Qt.PenStyle = Qt.PenStyle.SolidLine
    curves: dict[tuple[str, str], _Curve] = field(default_factory=dict)
    """By (plot key, series name)."""


class _Plot:
    def __init__(self, key: str, item: pg.PlotItem, log_default: bool) -> None:
        self.key = key
        self.item = item
        self.log_default = log_default
        self.colours: dict[str, str] = {}
        self.hover_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#5a6070", width=1))
        self.hover_line.setVisible(False)
        self.hover_line.setZValue(20)
        item.addItem(self.hover_line, ignoreBounds=True)
        item.showGrid(x=False, y=True, alpha=0.15)  # y only: the x grid doubles the paint time
        item.getAxis("left").setWidth(52)
        item.setLogMode(y=log_default)

    def colour(self, name: str, colormap: pg.ColorMap | None = None, index: int = 0, count: int = 1) -> QColor:
        if colormap is not None:
            return colormap.map(index / max(count - 1, 1), mode="qcolor")
        if name in REFERENCE_LABELS.values():
            return QColor("#a0a4ac")
        if name not in self.colours:
            self.colours[name] = theme.CURVE_COLORS[len(self.colours) % len(theme.CURVE_COLORS)]
        return QColor(self.colours[name])


class PlotsPanel(QWidget):
    """All training plots for one `RunState` plus overlaid runs; call `refresh()` after the states ingested events."""

    def __init__(self, parent: QWidget | None = None) -> None:
        # long: builds the panel's widgets top to bottom in the order they appear; each piece is used only here
        super().__init__(parent)
        self.banner = QLabel("")
        self.banner.setObjectName("banner")
        self.banner.setFixedHeight(26)  # always there, empty or not: a banner never moves the plots
        self.warning = self.banner
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(0)
        self.smoothing.setFixedWidth(110)
        self.smoothing.setToolTip("smoothing: TensorBoard's debiased exponential moving average (0 = raw)")
        self.smoothing_label = QLabel("smoothing 0.00")
        self.x_mode = QComboBox()
        self.x_mode.addItems(["step", "wall time (min)"])
        self.log_y = QCheckBox("log y")
        self.log_y.setChecked(True)
        self.log_y.setToolTip("log scale for the loss, learning rate and gradient norm plots")
        controls = QHBoxLayout()
        controls.setContentsMargins(4, 0, 4, 0)
        controls.addWidget(self.smoothing_label)
        controls.addWidget(self.smoothing)
        controls.addSpacing(12)
        controls.addWidget(QLabel("x:"))
        controls.addWidget(self.x_mode)
        controls.addWidget(self.log_y)
        controls.addStretch(1)
        self.readout = QLabel(" ")
        self.readout.setObjectName("readout")
        self.readout.setFixedHeight(20)
        self.readout.setTextFormat(Qt.TextFormat.PlainText)

        self.canvas = pg.GraphicsLayoutWidget()
        self.plot_by_key: dict[str, _Plot] = {}
        for key, title, log_default, (row, col, span) in PLOT_SPECS:
            item = self.canvas.addPlot(row=row, col=col, colspan=span, title=title)
            item.setMenuEnabled(True)
            self.plot_by_key[key] = _Plot(key, item, log_default)
            export = item.getViewBox().menu.addAction("Export CSV…")
            export.triggered.connect(lambda _c=False, k=key: self._export_dialog(k))
        self.plots = list(self.plot_by_key.values())
        for key in ("loss", "val", "std", "grad", "share", "entropy", "lr", "speed", "memory"):
            setattr(self, key, self.plot_by_key[key])
        self.lane = self.canvas.addPlot(row=4, col=0, colspan=6)
        self.lane.setMaximumHeight(44)
        self.lane.hideAxis("left")
        self.lane.setYRange(0, 1, padding=0.05)
        self.lane.setMouseEnabled(x=True, y=False)
        self.lane.getAxis("bottom").setLabel("step")
        self.lane.getAxis("left").setWidth(52)
        self.lane.showAxis("left")
        self.lane.getAxis("left").setStyle(showValues=False)
        self.lane.getAxis("left").setPen(pg.mkPen(None))
        self.lane.getAxis("left").setLabel("events")
        self.lane_marks = {
            "checkpoint": pg.ScatterPlotItem(
                symbol="|", size=9, pen=pg.mkPen(theme.OK, width=1.5), brush=None, hoverable=True, tip=self._mark_tip
            ),
            "anomaly": pg.ScatterPlotItem(
                symbol="x", size=8, pen=pg.mkPen(theme.ERROR, width=1.5), brush=None, hoverable=True, tip=self._mark_tip
            ),
            "rollback": pg.ScatterPlotItem(
                symbol="arrow_left",
                size=11,
                pen=None,
                brush=pg.mkBrush(theme.WARNING),
                hoverable=True,
                tip=self._mark_tip,
            ),
        }
        for scatter in self.lane_marks.values():
            self.lane.addItem(scatter)
        for row in range(4):
            self.canvas.ci.layout.setRowStretchFactor(row, 2 if row == 0 else 1)
        # One x range for all, spanning every curve of every run, so the plots line up step for step with each other
        # and with the event marks. (pyqtgraph's x link aligns screen pixels, which plots of different widths do not
        # share.) A plot zoomed by hand keeps its range until the x axis setting changes.
        self.x_extent: tuple[float, float] | None = None
        self.follow_extent = True
        for view in [plot.item.getViewBox() for plot in self.plots] + [self.lane.getViewBox()]:
            view.enableAutoRange(axis=pg.ViewBox.XAxis, enable=False)
            view.setAutoVisible(y=True)
            view.sigRangeChangedManually.connect(lambda *_: setattr(self, "follow_extent", False))
        self.entropy_map = pg.colormap.get("viridis")

        self.collapse_line = pg.InfiniteLine(
            pos=COLLAPSE_STD_M * 1000.0,
            angle=0,
            pen=pg.mkPen(theme.ERROR, width=1, style=Qt.PenStyle.DashLine),
            label="collapse 10 mm",
            labelOpts={"color": theme.ERROR, "position": 0.1, "anchors": [(0, 1), (0, 1)]},
        )
        self.std.item.addItem(self.collapse_line)
        self.grad_flags = pg.ScatterPlotItem(symbol="x", size=11, pen=pg.mkPen(theme.ERROR, width=2), brush=None)
        self.grad.item.addItem(self.grad_flags)
        for limit in (GRAD_EXPLODE, GRAD_VANISH):
            self.grad.item.addItem(
                pg.InfiniteLine(pos=np.log10(limit), angle=0, pen=pg.mkPen("#803030", style=Qt.PenStyle.DotLine))
            )

        self.series_list = QTreeWidget()
        self.series_list.setHeaderHidden(True)
        self.series_list.setMinimumWidth(150)
        self.series_list.setRootIsDecorated(True)
        self.series_list.setToolTip("click a series to show or hide its curve")
        self.series_list.itemChanged.connect(self._item_toggled)
        self._plot_items: dict[str, QTreeWidgetItem] = {}
        for key, title, _log, _cell in PLOT_SPECS:
            top = QTreeWidgetItem([title])
            top.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.series_list.addTopLevelItem(top)
            self._plot_items[key] = top
            top.setExpanded(key in ("loss", "val"))

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(2)
        left_layout.addWidget(self.canvas, 1)
        left_layout.addWidget(self.readout)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.series_list)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setSizes([800, 190])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.banner)
        layout.addLayout(controls)
        layout.addWidget(self.splitter, 1)

        self.runs: list[_Run] = []
        self.state: RunState | None = None
        self._dirty: set[str] = set()
        self._lane_dirty = False
        self._next = 0
        self.collapse_shown = False
        self.not_learning_shown = False
        self._show_banner()
        self.smoothing.valueChanged.connect(self._settings_changed)
        self.x_mode.currentIndexChanged.connect(self._settings_changed)
        self.log_y.toggled.connect(self._log_toggled)
        self.canvas.scene().sigMouseMoved.connect(self._hover)

    # ---- runs ----------------------------------------------------------------------------------------------

    def set_state(self, state: RunState) -> None:
        """Show this run (its curves replace the previous run's; overlays stay)."""
        if self.runs and self.runs[0].label == "":
            self._remove_run(self.runs.pop(0))
        run = _Run(label="", state=state)
        self.runs.insert(0, run)
        self.state = state
        self._connect(run)
        self.collapse_shown = state.collapsed
        self._show_banner()
        self._mark_all_dirty()
        self.refresh()

    def add_overlay(self, label: str, state: RunState) -> None:
        """Overlay another run (dashed, its series named 'series · label') for comparison."""
        self.remove_overlay(label)
        style = OVERLAY_STYLES[(len(self.runs) - (1 if self.state else 0)) % len(OVERLAY_STYLES)]
        run = _Run(label=label, state=state, style=style)
        self.runs.append(run)
        self._connect(run)
        self._mark_all_dirty()

    def remove_overlay(self, label: str) -> None:
        for run in [r for r in self.runs if r.label == label and label]:
            self.runs.remove(run)
            self._remove_run(run)

    @property
    def overlay_labels(self) -> list[str]:
        return [run.label for run in self.runs if run.label]

    def _connect(self, run: _Run) -> None:
        state = run.state
        state.metrics_changed.connect(lambda _new: self._dirty.update(METRIC_PLOTS))
        state.diagnostics_changed.connect(lambda _new: self._dirty.update(DIAGNOSTIC_PLOTS))
        state.rolled_back.connect(lambda _step: self._mark_all_dirty())
        if not run.label:
            state.marker_added.connect(lambda _marker: setattr(self, "_lane_dirty", True))
            state.collapse_changed.connect(self._on_collapse)
            state.banners_changed.connect(self._show_banner)

    def _remove_run(self, run: _Run) -> None:
        for (key, _name), curve in run.curves.items():
            plot = self.plot_by_key[key]
            plot.item.removeItem(curve.live)
            plot.item.removeItem(curve.ghost)
            parent = curve.item.parent()
            if parent is not None:
                parent.removeChild(curve.item)
        run.curves.clear()
        if not run.label:
            for plot in self.plots:
                plot.colours.clear()
            self.grad_flags.clear()
            for scatter in self.lane_marks.values():
                scatter.clear()

    def _mark_all_dirty(self) -> None:
        self._dirty = set(PLOT_KEYS)
        self._lane_dirty = True

    # ---- banners ---------------------------------------------------------------------------------------------

    def _on_collapse(self, collapsed: bool) -> None:
        self.collapse_shown = collapsed
        self._show_banner()

    def _show_banner(self) -> None:
        state = self.state
        self.not_learning_shown = state is not None and state.not_learning is not None
        parts = []
        if self.collapse_shown:
            parts.append("⚠  prediction std below 10 mm: the model is collapsing to a constant prediction")
        if self.not_learning_shown:
            parts.append(f"⚠  not learning: {state.not_learning} (validation MPJPE above the mean-pose reference)")
        self.banner.setText("   ·   ".join(parts))
        self.banner.setProperty("active", bool(parts))
        self.banner.setStyleSheet(
            f"background: #4a3a10; color: {theme.WARNING}; padding: 3px 10px; border-radius: 4px; font-weight: bold;"
            if parts
            else "background: transparent;"
        )
        self.banner.setToolTip(self.banner.text())

    # ---- settings ------------------------------------------------------------------------------------------

    @property
    def smoothing_weight(self) -> float:
        return self.smoothing.value() / 100.0

    @property
    def x_by_time(self) -> bool:
        return self.x_mode.currentIndex() == 1

    def _settings_changed(self) -> None:
        self.smoothing_label.setText(f"smoothing {self.smoothing_weight:.2f}")
        self.lane.getAxis("bottom").setLabel("minutes since start" if self.x_by_time else "step")
        self._mark_all_dirty()
        self.follow_extent, self.x_extent = True, None
        for plot in self.plots:
            plot.item.enableAutoRange(axis=pg.ViewBox.YAxis)

    def _log_toggled(self, on: bool) -> None:
        for plot in self.plots:
            if plot.log_default:
                plot.item.setLogMode(y=on)
        self._mark_all_dirty()
        self.grad_flags.setVisible(on)

    def _item_toggled(self, item: QTreeWidgetItem, _column: int) -> None:
        for run in self.runs:
            for curve in run.curves.values():
                if curve.item is item:
                    curve.visible = item.checkState(0) == Qt.CheckState.Checked
                    curve.live.setVisible(curve.visible)
                    curve.ghost.setVisible(curve.visible)
                    return

    def set_series_visible(self, key: str, name: str, visible: bool, label: str = "") -> None:
        """Show or hide one series (what a click in the series list does)."""
        for run in self.runs:
            if run.label == label and (key, name) in run.curves:
                state = Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked
                run.curves[(key, name)].item.setCheckState(0, state)

    # ---- feeding -------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Feed one changed plot (setData only), round robin: a repaint then covers that plot alone.

        Called on every tick of the window's timer; with nine plots each is fed about three times a second, and no
        tick pays for repainting all of them (20-40 ms on a 2-core CPU).
        """
        if self._lane_dirty:
            self._lane_dirty = False
            self._feed_lane()
            return
        if not self.runs or not self._dirty:
            return
        start = self._next % len(PLOT_KEYS)
        for offset in range(len(PLOT_KEYS)):
            key = PLOT_KEYS[(start + offset) % len(PLOT_KEYS)]
            if key in self._dirty:
                self._next = (start + offset + 1) % len(PLOT_KEYS)
                budget = [MAX_NEW_CURVES_PER_REFRESH]
                for run in self.runs:
                    self._feed(self.plot_by_key[key], run, budget)
                if key == "grad":
                    self._update_grad_flags()
                self._update_extent()
                if budget[0] > 0:  # every series of this plot has its curve
                    self._dirty.discard(key)
                return

    def _x_of(self, state: RunState, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        if not self.x_by_time:
            return x
        return (t - (state.started_time or (t[0] if len(t) else 0.0))) / 60.0

    def _feed(self, plot: _Plot, run: _Run, budget: list[int]) -> None:
        series_by_name = plot_series(run.state, plot.key)
        log = plot.log_default and self.log_y.isChecked()
        names = list(series_by_name)
        for index, (name, (series, scale)) in enumerate(series_by_name.items()):
            curve = run.curves.get((plot.key, name))
            if curve is None:
                if budget[0] <= 0:
                    continue
                budget[0] -= 1
                curve = self._new_curve(plot, run, name)
            if plot.key == "entropy":  # layers coloured along the map, first dark blue ... last yellow
                colour = plot.colour(name, self.entropy_map, index, len(names))
                curve.live.setPen(pg.mkPen(colour, width=1.3, style=run.style))
            fed = (series.version, self.smoothing_weight, self.x_by_time, log, len(names))
            if curve.fed == fed:
                continue
            curve.fed = fed
            x, y, t = series.live()
            y = y * scale
            if log:
                y = np.where(y > 0, y, np.nan)  # log axes cannot show zero or negative values
            curve.live.setData(self._x_of(run.state, x, t), smooth(y, self.smoothing_weight))
            ghost_fed = (series.branch_version, self.x_by_time, log)
            if curve.ghost_fed == ghost_fed:
                continue
            curve.ghost_fed = ghost_fed
            gx, gy, gt = series.abandoned()
            if len(gx):
                gy = gy * scale
                if log:
                    gy = np.where(gy > 0, gy, np.nan)
                curve.ghost.setData(self._x_of(run.state, gx, gt), gy)
            elif curve.ghost.xData is not None and len(curve.ghost.xData):
                curve.ghost.setData([], [])

    def _new_curve(self, plot: _Plot, run: _Run, name: str) -> _Curve:
        colour = plot.colour(name)
        reference = name in REFERENCE_LABELS.values()
        style = Qt.PenStyle.DashLine if reference else run.style
        label = f"{name} · {run.label}" if run.label else name
        live = plot.item.plot(pen=pg.mkPen(colour, width=1.6, style=style), connect="finite", name=label)
        faded = QColor(colour)
        faded.setAlpha(70)
        ghost = plot.item.plot(pen=pg.mkPen(faded, width=1.2, style=style), connect="finite")
        ghost.setZValue(-5)
        item = QTreeWidgetItem([label])
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsSelectable)
        item.setCheckState(0, Qt.CheckState.Checked)
        swatch = QPixmap(10, 10)
        swatch.fill(colour)
        item.setIcon(0, QIcon(swatch))
        item.setToolTip(0, f"{plot.item.titleLabel.text}: {label}")
        self.series_list.blockSignals(True)
        self._plot_items[plot.key].addChild(item)
        self.series_list.blockSignals(False)
        curve = _Curve(live=live, ghost=ghost, item=item)
        run.curves[(plot.key, name)] = curve
        return curve

    def curve(self, key: str, name: str, label: str = "") -> pg.PlotDataItem:
        """The live-branch curve of a series (of the main run, or of the overlay named `label`)."""
        for run in self.runs:
            if run.label == label:
                return run.curves[(key, name)].live
        raise KeyError(f"no run {label!r}")

    def ghost(self, key: str, name: str, label: str = "") -> pg.PlotDataItem:
        for run in self.runs:
            if run.label == label:
                return run.curves[(key, name)].ghost
        raise KeyError(f"no run {label!r}")

    def curves_of(self, key: str, label: str = "") -> dict[str, pg.PlotDataItem]:
        for run in self.runs:
            if run.label == label:
                return {name: c.live for (k, name), c in run.curves.items() if k == key}
        return {}

    def _update_extent(self) -> None:
        """Give every plot and the lane the x range of all curves (unless a plot was zoomed by hand)."""
        low, high = np.inf, -np.inf
        for run in self.runs:
            for curve in run.curves.values():
                for item in (curve.live, curve.ghost):
                    x = item.xData
                    if x is not None and len(x) and np.isfinite(x).any():
                        low, high = min(low, float(np.nanmin(x))), max(high, float(np.nanmax(x)))
        if low > high or not self.follow_extent:
            return
        shown = self.x_extent
        if shown is None or low < shown[0] or high > shown[1]:
            # a tenth of head room: the ten views are re-ranged (and their axes relabelled) every tenth of the run,
            # not at every step
            self.x_extent = (low, high + 0.1 * max(high - low, 1.0))
            for view in [plot.item.getViewBox() for plot in self.plots] + [self.lane.getViewBox()]:
                view.setXRange(*self.x_extent, padding=0.02)

    def _update_grad_flags(self) -> None:
        if self.state is None:
            return
        xs, ys = [], []
        for series in self.state.grad_norm.series.values():
            x, y, t = series.live()
            bad = (y > GRAD_EXPLODE) | (y < GRAD_VANISH) | ~np.isfinite(y)
            if bad.any():
                xs.append(self._x_of(self.state, x, t)[bad])
                ys.append(np.log10(np.clip(np.nan_to_num(y[bad], nan=GRAD_EXPLODE, posinf=GRAD_EXPLODE), 1e-30, None)))
        if xs:
            self.grad_flags.setData(np.concatenate(xs), np.concatenate(ys))
        elif len(self.grad_flags.data):
            self.grad_flags.clear()

    def _feed_lane(self) -> None:
        state = self.state
        if state is None:
            return
        for kind, scatter in self.lane_marks.items():
            marks = [m for m in state.markers if m.kind == kind]
            if not marks:
                scatter.clear()
                continue
            steps = np.array([m.step for m in marks], dtype=np.float64)
            times = np.array([m.time for m in marks], dtype=np.float64)
            x = self._x_of(state, steps, times)
            scatter.setData(x=x, y=np.full(len(marks), LANE_ROWS[kind]), data=[f"{kind}: {m.label}" for m in marks])

    @staticmethod
    def _mark_tip(x: float, y: float, data: object) -> str:
        return f"{data} (x {x:.0f})"

    # ---- hover read-out -------------------------------------------------------------------------------------

    def _hover(self, pos) -> None:  # noqa: ANN001 (a QPointF in scene coordinates)
        for plot in self.plots:
            inside = plot.item.sceneBoundingRect().contains(pos)
            if not inside:
                plot.hover_line.setVisible(False)
                continue
            x = plot.item.getViewBox().mapSceneToView(pos).x()
            plot.hover_line.setPos(x)
            plot.hover_line.setVisible(True)
            self.readout.setText(self.read_values(plot.key, x))
            return
        self.readout.setText(" ")

    def read_values(self, key: str, x: float) -> str:
        """'title · step N · series value, ...': the values of a plot's visible curves nearest to `x`."""
        plot = self.plot_by_key[key]
        parts = []
        for run in self.runs:
            for (plot_key, name), curve in run.curves.items():
                if plot_key != key or not curve.visible:
                    continue
                xs, ys = curve.live.getData()
                if xs is None or not len(xs):
                    continue
                i = int(np.clip(np.searchsorted(xs, x), 0, len(xs) - 1))
                if i > 0 and abs(xs[i - 1] - x) < abs(xs[i] - x):
                    i -= 1
                value = 10 ** ys[i] if plot.log_default and self.log_y.isChecked() else ys[i]
                label = f"{name} · {run.label}" if run.label else name
                parts.append(f"{label} {value:.4g}")
        where = f"{x:.1f} min" if self.x_by_time else f"step {x:.0f}"
        return f"{plot.item.titleLabel.text} · {where} · " + ", ".join(parts[:10]) if parts else " "

    # ---- CSV --------------------------------------------------------------------------------------------------

    def _export_dialog(self, key: str) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export plot as CSV", str(Path.home() / f"{key}.csv"), "CSV (*.csv)"
        )
        if path:
            self.export_csv(key, Path(path))

    def export_csv(self, key: str, path: Path) -> int:
        """Write every series of a plot, every run, both branches: run, series, branch, step, time, value, smoothed.

        Returns the number of rows written.
        """
        rows = 0
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run", "series", "branch", "step", "time_s", "value", "smoothed"])
            for run in self.runs:
                label = run.label or (run.state.run_dir.name if run.state.run_dir else "run")
                for name, (series, scale) in plot_series(run.state, key).items():
                    x, y, t = series.live()
                    for branch, (bx, by, bt, bs) in (
                        ("live", (x, y * scale, t, smooth(y * scale, self.smoothing_weight))),
                        (
                            "abandoned",
                            (
                                series.x[series.dead],
                                series.y[series.dead] * scale,
                                series.t[series.dead],
                                series.y[series.dead] * scale,
                            ),
                        ),
                    ):
                        for step, value, when, smoothed in zip(bx, by, bt, bs):
                            numbers = (f"{v:.9g}" for v in (when, value, smoothed))
                            writer.writerow([label, name, branch, int(step), *numbers])
                            rows += 1
        return rows


def _short(layer: str) -> str:
    """A layer name short enough for the series list: its last two dotted parts (`blocks.3`, `0.cross_attn`)."""
    return ".".join(layer.split(".")[-2:])
