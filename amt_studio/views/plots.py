"""Training plots (pyqtgraph) as TensorBoard and W&B users expect them: small plots in a grid that reflows to the
width it has (one to three columns) and scrolls rather than clips; the loss terms in groups (total; hand joints; mesh
and MANO; object; contact and physics; regularisers), then validation MPJPE against the mean-pose reference,
prediction std with the collapse line, gradient norm by group, each loss group's share of the gradient at the trunk,
attention entropy by layer, learning rate, images/s and memory.

Every plot and the event lane (checkpoints, snapshots, stage switches, anomalies, rollbacks) show one x range, by step
or wall time; a pan or zoom in one moves them all. Legends live outside the data, in a series list beside the plots
(a click on a name toggles its curve) that folds away on narrow windows. Hovering a plot reads, in a fixed place under
the grid, the nearest logged step's values, the curve under the mouse first. A series with few points draws markers;
an empty plot says why and when its first point is due. Smoothing (TensorBoard's debiased EMA) and log or linear y
apply to all. After a rollback the abandoned branch stays, faded. Other runs can be overlaid (dashed), and any plot
exports its series as CSV (right-click a plot).

Curves are created once per series and then only fed with `setData`, one plot per timer tick; each plot is its own
widget, so a tick repaints that plot alone.

This module is the grid and what ties it together (one x range, the settings, feeding); the parts it composes live
beside it: what each plot shows (`plot_catalog`), the event lane (`event_lane`), the series list (`series_list`), the
hover read-out (`readout`) and the CSV export (`csv_export`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSplitter,
    QToolButton,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from amt_studio.state.run import COLLAPSE_STD_M, GRAD_EXPLODE, GRAD_VANISH, RunState
from amt_studio.views import theme
from amt_studio.views.axes import CompactAxis
from amt_studio.views.csv_export import ask_csv_path, write_csv
from amt_studio.views.event_lane import EventLane
from amt_studio.views.plot_catalog import (
    DIAGNOSTIC_PLOTS,
    METRIC_PLOTS,
    PLOT_KEYS,
    PLOT_SPECS,
    REFERENCE_LABELS,
    PlotSpec,
    empty_reason,
    plot_keys,
    plot_series,
    smooth,
)
from amt_studio.views.readout import Reading, Readout, read_at
from amt_studio.views.series_list import SeriesList

# New curves made per refresh at most: a first metrics event with 20 loss terms would otherwise stall the window
# (each curve costs a few ms); the rest appear on the next ticks.
MAX_NEW_CURVES_PER_REFRESH = 4
FEW_POINTS = 12
"""A series with this many points or fewer also draws a marker at each (one point draws no line)."""
MIN_PLOT_WIDTH = 300
"""The grid has as many columns (one to three) as fit plots at least this wide."""
MIN_PLOT_HEIGHT = 150
SERIES_LIST_BELOW = 860
"""The series list folds away (a button brings it back) when the panel is narrower than this."""
REASON_EVERY_TICKS = 10
"""Empty plots re-say why and when (the pace changes) every this many refreshes."""
OVERLAY_STYLES = (Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine)
EXPANDED_GROUPS = ("loss_total", "val", "loss_hand")
"""The series list's groups that start unfolded."""


@dataclass(kw_only=True)
class _Curve:
    """One series of one run in one plot: the live branch and, after a rollback, the faded abandoned branch."""

    live: pg.PlotDataItem
    ghost: pg.PlotDataItem
    item: QTreeWidgetItem
    colour: QColor
    fed: tuple = ()
    """What the curve was last fed from: (series version, smoothing, x mode, log) — skip when unchanged."""
    ghost_fed: tuple = ()
    """The same for the abandoned branches, which change only on a rollback."""
    visible: bool = True
    markers: bool = False


@dataclass(kw_only=True)
class _Run:
    label: str
    state: RunState
    style: Qt.PenStyle = Qt.PenStyle.SolidLine
    curves: dict[tuple[str, str], _Curve] = field(default_factory=dict)
    """By (plot key, series name)."""


class _Plot:
    """One plot: its own PlotWidget (so a repaint covers it alone), its colours, hover line and empty-plot words."""

    def __init__(self, spec: PlotSpec) -> None:
        self.key, self.title, self.log_default = spec.key, spec.title, spec.log
        self.widget = pg.PlotWidget(
            axisItems={"left": CompactAxis("left"), "bottom": CompactAxis("bottom")}, title=spec.title
        )
        self.widget.setMinimumSize(MIN_PLOT_WIDTH - 20, MIN_PLOT_HEIGHT)
        self.widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.item: pg.PlotItem = self.widget.getPlotItem()
        self.item.titleLabel.setMaximumHeight(20)
        self.item.setMenuEnabled(True)
        self.item.hideButtons()  # the auto-range "A": x follows the run (the Follow switch), y always fits
        self.colours: dict[str, QColor] = {}
        self.hover_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#5a6070", width=1))
        self.hover_line.setVisible(False)
        self.hover_line.setZValue(20)
        self.item.addItem(self.hover_line, ignoreBounds=True)
        self.item.showGrid(x=False, y=True, alpha=0.15)  # y only: the x grid doubles the paint time
        self.item.getAxis("left").setWidth(48)
        self.item.setLogMode(y=spec.log)
        self.reason = QLabel("", self.widget)
        self.reason.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.reason.setWordWrap(True)
        self.reason.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.reason.setStyleSheet(f"color: {theme.MUTED}; background: transparent; font-style: italic;")

    @property
    def view(self) -> pg.ViewBox:
        return self.item.getViewBox()

    def colour(self, name: str) -> QColor:
        """A colour for a series name, new names taking the next unused one: no two series of a plot share a colour
        (up to the palette's length), and an overlaid run's series keep the colour of the same name."""
        if name in REFERENCE_LABELS.values():
            return QColor(theme.REFERENCE)
        if name not in self.colours:
            used = {c.name() for c in self.colours.values()}
            free = [c for c in theme.CURVE_COLORS if QColor(c).name() not in used]
            self.colours[name] = QColor(
                free[0] if free else theme.CURVE_COLORS[len(self.colours) % len(theme.CURVE_COLORS)]
            )
        return self.colours[name]

    def has_data(self) -> bool:
        return any(
            item.xData is not None and len(item.xData)
            for item in self.item.listDataItems()
            if isinstance(item, pg.PlotDataItem)
        )

    def place_reason(self) -> None:
        rect = self.view.sceneBoundingRect().toRect()
        self.reason.setGeometry(rect.adjusted(8, 4, -8, -4) if rect.width() > 40 else self.widget.rect())


class _HoverFilter(QObject):
    """Clears the read-out and the hover line when the mouse leaves a plot; places the empty-plot words on resize."""

    def __init__(self, panel: PlotsPanel, plot: _Plot) -> None:
        super().__init__(plot.widget)
        self.panel, self.plot = panel, plot

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Leave:
            self.panel.clear_hover()
        elif event.type() == QEvent.Type.Resize:
            self.plot.place_reason()
        return False


class PlotsPanel(QWidget):
    """All training plots for one `RunState` plus overlaid runs; call `refresh()` after the states ingested events."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._build_header()
        self.plot_by_key: dict[str, _Plot] = {}
        for spec in PLOT_SPECS:
            plot = _Plot(spec)
            self.plot_by_key[spec.key] = plot
            export = plot.view.menu.addAction("Export CSV…")
            export.triggered.connect(lambda _c=False, k=spec.key: self._export_dialog(k))
            plot.widget.scene().sigMouseMoved.connect(lambda pos, p=plot: self._hover(p, pos))
            plot.widget.installEventFilter(_HoverFilter(self, plot))
        self.plots = list(self.plot_by_key.values())
        for key in ("val", "std", "grad", "share", "entropy", "lr", "speed", "memory"):
            setattr(self, key, self.plot_by_key[key])
        self.loss = self.plot_by_key["loss_total"]
        self._build_grid()
        self._build_lane()
        self._build_reference_lines()
        self._build_series_list()
        self._assemble()

        self.runs: list[_Run] = []
        self.state: RunState | None = None
        self._dirty: set[str] = set()
        self._lane_dirty = False
        self._next = 0
        self._ticks = 0
        self.collapse_shown = False
        self.not_learning_shown = False
        self.x_range: tuple[float, float] | None = None
        """The x range every plot and the lane show."""
        self.follow_extent = True
        """The range follows the run (grows with it); a pan or zoom by hand stops that until Follow is pressed."""
        self._syncing = False
        self._list_wanted: bool | None = None  # the series list shown or hidden by hand
        self._show_banner()
        self._update_reasons()
        self.smoothing.valueChanged.connect(self._settings_changed)
        self.x_mode.currentIndexChanged.connect(self._settings_changed)
        self.log_y.toggled.connect(self._log_toggled)

    # ---- construction --------------------------------------------------------------------------------------

    def _build_header(self) -> None:
        self.banner = QLabel("")
        self.banner.setObjectName("banner")
        self.banner.setFixedHeight(26)  # always there, empty or not: a banner never moves the plots
        self.banner.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # never widens the window
        self.warning = self.banner
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(0)
        self.smoothing.setFixedWidth(90)
        self.smoothing.setToolTip("smoothing: TensorBoard's debiased exponential moving average (0 = raw)")
        self.smoothing_label = QLabel("smoothing 0.00")
        self.x_mode = QComboBox()
        self.x_mode.addItems(["step", "wall time (min)"])
        self.log_y = QCheckBox("log y")
        self.log_y.setChecked(True)
        self.log_y.setToolTip("log scale for the loss, learning rate and gradient norm plots")
        self.follow = QToolButton()
        self.follow.setText("Follow")
        self.follow.setCheckable(True)
        self.follow.setChecked(True)
        self.follow.setToolTip("the x range follows the run; a pan or zoom by hand turns this off")
        self.follow.toggled.connect(self._follow_toggled)
        self.series_button = QToolButton()
        self.series_button.setText("Series")
        self.series_button.setCheckable(True)
        self.series_button.setChecked(True)
        self.series_button.setToolTip("show or hide the series list (curve names; a click toggles a curve)")
        self.series_button.toggled.connect(self._series_button_toggled)
        self.controls = QHBoxLayout()
        self.controls.setContentsMargins(4, 0, 4, 0)
        for widget in (self.smoothing_label, self.smoothing):
            self.controls.addWidget(widget)
        self.controls.addSpacing(8)
        self.controls.addWidget(QLabel("x:"))
        for widget in (self.x_mode, self.follow, self.log_y):
            self.controls.addWidget(widget)
        self.controls.addStretch(1)
        self.controls.addWidget(self.series_button)
        self.readout = Readout()

    def _build_grid(self) -> None:
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(4)
        self.columns = 0
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll.setWidget(self.grid_host)
        self.scroll.viewport().installEventFilter(self)
        self.scroll.setMinimumWidth(MIN_PLOT_WIDTH)
        self.reflow(MIN_PLOT_WIDTH * 2)

    def _build_lane(self) -> None:
        self.lane_widget = EventLane()
        self.lane = self.lane_widget.getPlotItem()
        self.lane_marks = self.lane_widget.marks

    def _build_reference_lines(self) -> None:
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
        self.entropy_map = pg.colormap.get("viridis")
        for view in self._views():
            view.enableAutoRange(axis=pg.ViewBox.XAxis, enable=False)
            view.setAutoVisible(y=True)
            view.sigRangeChangedManually.connect(self._changed_by_hand)
            view.sigXRangeChanged.connect(self._x_changed)

    def _build_series_list(self) -> None:
        self.series_list = SeriesList(((spec.key, spec.title) for spec in PLOT_SPECS), EXPANDED_GROUPS)
        self.series_list.toggled.connect(self._curve_toggled)
        self._plot_items = self.series_list.groups

    def _assemble(self) -> None:
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(2)
        left_layout.addWidget(self.scroll, 1)
        left_layout.addWidget(self.lane_widget)
        left_layout.addWidget(self.readout)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.series_list)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([800, 180])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.banner)
        layout.addLayout(self.controls)
        layout.addWidget(self.splitter, 1)
        self.setMinimumWidth(MIN_PLOT_WIDTH + 20)

    def _views(self) -> list[pg.ViewBox]:
        return [plot.view for plot in self.plots] + [self.lane.getViewBox()]

    # ---- layout ----------------------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if watched is self.scroll.viewport() and event.type() == QEvent.Type.Resize:
            self.reflow(self.scroll.viewport().width())
        return False

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        narrow = self.width() < SERIES_LIST_BELOW
        shown = self._list_wanted if self._list_wanted is not None else not narrow
        if narrow and self._list_wanted and self.width() < SERIES_LIST_BELOW - 200:
            shown = False  # too narrow for the list even when asked for: the plots keep their width
        if self.series_list.isVisibleTo(self) != shown or self.series_button.isChecked() != shown:
            self.series_list.setVisible(shown)
            self.series_button.blockSignals(True)
            self.series_button.setChecked(shown)
            self.series_button.blockSignals(False)

    def reflow(self, width: int) -> None:
        """Lay the plots out in as many columns (one to three) as fit `MIN_PLOT_WIDTH` each."""
        columns = int(min(3, max(1, width // MIN_PLOT_WIDTH)))
        if columns == self.columns:
            return
        self.columns = columns
        for plot in self.plot_by_key.values():
            self.grid.removeWidget(plot.widget)
        for column in range(3):
            self.grid.setColumnStretch(column, 1 if column < columns else 0)
        for index, plot in enumerate(self.plot_by_key.values()):
            self.grid.addWidget(plot.widget, index // columns, index % columns)

    def _series_button_toggled(self, on: bool) -> None:
        self._list_wanted = on
        self.series_list.setVisible(on)

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
        self.follow_extent, self.x_range = True, None
        self.follow.setChecked(True)
        self._show_banner()
        self._mark_all_dirty()
        self.refresh()
        self._update_reasons()

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
            SeriesList.remove(curve.item)
        run.curves.clear()
        if not run.label:
            for plot in self.plots:
                plot.colours.clear()
            self.grad_flags.clear()
            self.lane_widget.clear_marks()

    def _mark_all_dirty(self) -> None:
        self._dirty = set(PLOT_KEYS)
        self._lane_dirty = True

    # ---- banners and empty plots -----------------------------------------------------------------------------

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

    def _update_reasons(self) -> None:
        """Each empty plot says why, and when its first point is due; a plot with data says nothing."""
        for plot in self.plots:
            text = "" if plot.has_data() else empty_reason(self.state, plot.key)
            if plot.reason.text() != text:
                plot.reason.setText(text)
                plot.place_reason()
            plot.reason.setVisible(bool(text))

    # ---- settings ------------------------------------------------------------------------------------------

    @property
    def smoothing_weight(self) -> float:
        return self.smoothing.value() / 100.0

    @property
    def x_by_time(self) -> bool:
        return self.x_mode.currentIndex() == 1

    def _settings_changed(self) -> None:
        self.smoothing_label.setText(f"smoothing {self.smoothing_weight:.2f}")
        self.lane_widget.set_x_by_time(self.x_by_time)
        self._mark_all_dirty()
        self.x_range = None
        self.follow.setChecked(True)
        for plot in self.plots:
            plot.item.enableAutoRange(axis=pg.ViewBox.YAxis)

    def _log_toggled(self, on: bool) -> None:
        for plot in self.plots:
            if plot.log_default:
                plot.item.setLogMode(y=on)
        self._mark_all_dirty()
        self.grad_flags.setVisible(on)

    def _follow_toggled(self, on: bool) -> None:
        self.follow_extent = on
        if on:
            self.x_range = None
            self._update_extent()

    def _curve_toggled(self, item: QTreeWidgetItem, visible: bool) -> None:
        for run in self.runs:
            for curve in run.curves.values():
                if curve.item is item:
                    curve.visible = visible
                    curve.live.setVisible(visible)
                    curve.ghost.setVisible(visible)
                    return

    def set_series_visible(self, key: str, name: str, visible: bool, label: str = "") -> None:
        """Show or hide one series (what a click in the series list does)."""
        for run in self.runs:
            for member in plot_keys(key):
                if run.label == label and (member, name) in run.curves:
                    SeriesList.set_checked(run.curves[(member, name)].item, visible)

    # ---- feeding -------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Feed one changed plot (setData only), round robin: a repaint then covers that plot alone.

        Called on every tick of the window's timer; with 14 plots each is fed about once a second at most, and no
        tick pays for repainting all of them.
        """
        self._ticks += 1
        if self._ticks % REASON_EVERY_TICKS == 0:
            self._update_reasons()
        if self._lane_dirty:
            self._lane_dirty = False
            self._feed_lane()
            self._update_extent()
            return
        if not self.runs or not self._dirty:
            return
        start = self._next % len(PLOT_KEYS)
        for offset in range(len(PLOT_KEYS)):
            key = PLOT_KEYS[(start + offset) % len(PLOT_KEYS)]
            if key in self._dirty:
                self._next = (start + offset + 1) % len(PLOT_KEYS)
                budget = [MAX_NEW_CURVES_PER_REFRESH]
                plot = self.plot_by_key[key]
                had_data = plot.has_data()
                for run in self.runs:
                    self._feed(plot, run, budget)
                if key == "grad":
                    self._update_grad_flags()
                self._update_extent()
                if had_data != plot.has_data():
                    self._update_reasons()
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
                curve.colour = self.entropy_map.map(index / max(len(names) - 1, 1), mode="qcolor")
                curve.live.setPen(pg.mkPen(curve.colour, width=1.3, style=run.style))
            fed = (series.version, self.smoothing_weight, self.x_by_time, log, len(names))
            if curve.fed == fed:
                continue
            curve.fed = fed
            x, y, t = series.live()
            y = y * scale
            if log:
                y = np.where(y > 0, y, np.nan)  # log axes cannot show zero or negative values
            curve.live.setData(self._x_of(run.state, x, t), smooth(y, self.smoothing_weight))
            self._set_markers(curve, len(x) <= FEW_POINTS)
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

    @staticmethod
    def _set_markers(curve: _Curve, on: bool) -> None:
        """A marker at each point while a series has few (a single point draws no line)."""
        if curve.markers == on:
            return
        curve.markers = on
        if on:
            curve.live.setSymbol("o")
            curve.live.setSymbolSize(5)
            curve.live.setSymbolPen(None)
            curve.live.setSymbolBrush(pg.mkBrush(curve.colour))
        else:
            curve.live.setSymbol(None)

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
        item = self.series_list.add(plot.key, label, colour, f"{plot.title}: {label} (click to show or hide)")
        curve = _Curve(live=live, ghost=ghost, item=item, colour=colour)
        run.curves[(plot.key, name)] = curve
        return curve

    def _run(self, label: str) -> _Run:
        for run in self.runs:
            if run.label == label:
                return run
        raise KeyError(f"no run {label!r}")

    def _find(self, key: str, name: str, label: str) -> _Curve:
        curves = self._run(label).curves
        for member in plot_keys(key):
            if (member, name) in curves:
                return curves[(member, name)]
        raise KeyError(f"no series {name!r} in plot {key!r}")

    def curve(self, key: str, name: str, label: str = "") -> pg.PlotDataItem:
        """The live-branch curve of a series (of the main run, or of the overlay named `label`)."""
        return self._find(key, name, label).live

    def ghost(self, key: str, name: str, label: str = "") -> pg.PlotDataItem:
        return self._find(key, name, label).ghost

    def curves_of(self, key: str, label: str = "") -> dict[str, pg.PlotDataItem]:
        members = plot_keys(key)
        for run in self.runs:
            if run.label == label:
                return {name: c.live for (k, name), c in run.curves.items() if k in members}
        return {}

    # ---- one x range -----------------------------------------------------------------------------------------

    def _extent(self) -> tuple[float, float] | None:
        """The x span of every curve of every run and of the event marks."""
        low, high = np.inf, -np.inf
        for run in self.runs:
            for curve in run.curves.values():
                for item in (curve.live, curve.ghost):
                    x = item.xData
                    if x is not None and len(x) and np.isfinite(x).any():
                        low, high = min(low, float(np.nanmin(x))), max(high, float(np.nanmax(x)))
        marks = self.lane_widget.extent()
        if marks is not None:
            low, high = min(low, marks[0]), max(high, marks[1])
        return (low, high) if low <= high else None

    def _update_extent(self) -> None:
        """Give every plot and the lane the x range of all curves and marks (unless one was zoomed by hand)."""
        extent = self._extent()
        if extent is None or not self.follow_extent:
            return
        low, high = extent
        shown = self.x_range
        if shown is None or low < shown[0] or high > shown[1]:
            # a tenth of head room: the views are re-ranged (and their axes relabelled) every tenth of the run, not
            # at every step
            pad = 0.02 * max(high - low, 1.0)
            self.set_x_range(low - pad, high + 0.1 * max(high - low, 1.0))

    def set_x_range(self, low: float, high: float) -> None:
        """Show [low, high] on every plot and the lane."""
        self.x_range = (low, high)
        self._syncing = True
        try:
            for view in self._views():
                view.setXRange(low, high, padding=0.0)
        finally:
            self._syncing = False

    def _changed_by_hand(self, *_args) -> None:
        self.follow.setChecked(False)

    def _x_changed(self, view: pg.ViewBox, x_range) -> None:  # noqa: ANN001
        """A pan or zoom on one view (by hand, or its menu): every other view takes the same range."""
        if self._syncing:
            return
        low, high = (float(v) for v in x_range)
        if self.x_range is not None and np.allclose(self.x_range, (low, high)):
            return
        self.set_x_range(low, high)

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
        if state is not None:
            self.lane_widget.feed(state.markers, lambda steps, times: self._x_of(state, steps, times))

    # ---- hover read-out -------------------------------------------------------------------------------------

    def _hover(self, plot: _Plot, pos) -> None:  # noqa: ANN001 (a QPointF in the plot's scene coordinates)
        if not plot.view.sceneBoundingRect().contains(pos):
            self.clear_hover()
            return
        point = plot.view.mapSceneToView(pos)
        for other in self.plots:
            if other is not plot:
                other.hover_line.setVisible(False)
        text, x = self.read_values(plot.key, point.x(), point.y(), with_x=True)
        plot.hover_line.setPos(point.x() if x is None else x)
        plot.hover_line.setVisible(True)
        self._set_readout(text)

    def clear_hover(self) -> None:
        for plot in self.plots:
            plot.hover_line.setVisible(False)
        self._set_readout(" ")

    def _set_readout(self, text: str) -> None:
        self.readout.show_text(text)

    @property
    def readout_text(self) -> str:
        """The whole read-out (the label shows it elided to its width)."""
        return self.readout.full_text

    def read_values(self, key: str, x: float, y: float | None = None, with_x: bool = False):  # noqa: ANN201
        """'title · step N · series value, ...' at the logged step nearest to `x` (the step the values belong to),
        the curve nearest to `y` (in the plot's own y units) first. With `with_x`, also that step's x. `key` may
        name a family ('loss': every loss plot)."""
        title = self.plot_by_key[key].title if key in self.plot_by_key else key
        text, at = read_at(title, self._readings(key), x, y, self.x_by_time)
        return (text, at) if with_x else text

    def _readings(self, key: str) -> list[Reading]:
        """The shown curves of a plot (or family), every run, as the read-out reads them."""
        members = plot_keys(key)
        readings = []
        for run in self.runs:
            for (plot_key, name), curve in run.curves.items():
                if plot_key in members and curve.visible:
                    xs, ys = curve.live.getData()
                    log = self.plot_by_key[plot_key].log_default and self.log_y.isChecked()
                    readings.append(Reading(f"{name} · {run.label}" if run.label else name, xs, ys, log))
        return readings

    # ---- CSV --------------------------------------------------------------------------------------------------

    def _export_dialog(self, key: str) -> None:
        folder = self.state.run_dir if self.state is not None and self.state.run_dir else Path.home()
        path = ask_csv_path(self, folder / f"{key}.csv")
        if path is not None:
            self.export_csv(key, path)

    def export_csv(self, key: str, path: Path) -> int:
        """Write every series of a plot (or family), every run, both branches (see `csv_export.write_csv`). Returns
        the number of rows written."""
        runs = (
            (run.label or (run.state.run_dir.name if run.state.run_dir else "run"), plot_series(run.state, key))
            for run in self.runs
        )
        return write_csv(path, runs, self.smoothing_weight)
