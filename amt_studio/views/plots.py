"""Training plots (pyqtgraph): loss terms, learning rate, images/s, memory, prediction std with the collapse line,
attention entropy by layer, gradient norm by group; checkpoints and anomalies as markers on every time axis.

Curves are created once per series and then only fed with `setData`; nothing is rebuilt as events arrive.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from amt_studio.state.run import COLLAPSE_STD_M, GRAD_EXPLODE, GRAD_VANISH, Marker, RunState
from amt_studio.state.series import SeriesGroup
from amt_studio.views import theme

# The training scalars shown in their own plots (others from metrics events go to the "other" plot).
LR_KEYS = ("lr",)
SPEED_KEYS = ("images_per_s",)
MEMORY_KEYS = ("memory", "memory_mb")


METRIC_PLOTS = ("loss", "lr", "speed", "memory")
DIAGNOSTIC_PLOTS = ("std", "entropy", "grad")
# New curves made per refresh at most: a first metrics event with 20 loss terms would otherwise stall the window
# (each curve and legend entry costs about 10 ms); the rest appear on the next ticks.
MAX_NEW_CURVES_PER_REFRESH = 4


class _Plot:
    """One plot item and its curves by series name."""

    def __init__(
        self, item: pg.PlotItem, log_y: bool = False, legend_columns: int = 1, colormap: str | None = None
    ) -> None:
        self.item = item
        self.log_y = log_y
        self.colormap = pg.colormap.get(colormap) if colormap else None
        """Curves coloured along this map in creation order (layers from first to last) instead of a legend."""
        self.curves: dict[str, pg.PlotDataItem] = {}
        item.showGrid(x=False, y=True, alpha=0.15)  # y only: the x grid doubles the paint time
        item.setLogMode(y=log_y)
        item.getAxis("left").setWidth(52)
        self.legend = item.addLegend(
            offset=(-5, 5), labelTextSize="7pt", brush=pg.mkBrush(20, 22, 28, 215), colCount=legend_columns,
            verSpacing=-6, horSpacing=8,
        )  # fmt: skip
        if self.colormap is not None:
            self.legend.setVisible(False)

    def curve(self, name: str) -> pg.PlotDataItem:
        if name not in self.curves:
            colour = theme.CURVE_COLORS[len(self.curves) % len(theme.CURVE_COLORS)]
            self.curves[name] = self.item.plot(name=name, pen=pg.mkPen(colour, width=1.6), connect="finite")
            self.curves[name].setToolTip(name)
            if self.colormap is not None:  # recolour all: first layer dark blue ... last layer yellow
                count = len(self.curves)
                for i, curve in enumerate(self.curves.values()):
                    colour = self.colormap.map(i / max(count - 1, 1), mode="qcolor")
                    curve.setPen(pg.mkPen(colour, width=1.3))
        return self.curves[name]

    def set(self, name: str, x: np.ndarray, y: np.ndarray, budget: list[int]) -> None:
        """Feed a curve; a new curve is made only while `budget[0]` (new curves left this refresh) allows."""
        if name not in self.curves:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        if self.log_y:
            y = np.where(y > 0, y, np.nan)  # log axes cannot show zero or negative values
        self.curve(name).setData(x, y)


class PlotsPanel(QWidget):
    """All training plots for one `RunState`; call `refresh()` after the state ingested events."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.warning = QLabel("")
        self.warning.setObjectName("warning")
        self.warning.hide()
        layout.addWidget(self.warning)
        self.canvas = pg.GraphicsLayoutWidget()
        layout.addWidget(self.canvas)
        c = self.canvas
        self.loss = _Plot(c.addPlot(row=0, col=0, colspan=2, title="loss terms"), log_y=True, legend_columns=5)
        self.lr = _Plot(c.addPlot(row=1, col=0, title="learning rate"))
        self.speed = _Plot(c.addPlot(row=1, col=1, title="images / s"))
        self.memory = _Plot(c.addPlot(row=2, col=0, title="memory (MB)"))
        self.std = _Plot(c.addPlot(row=2, col=1, title="prediction std (mm)"))
        self.entropy = _Plot(
            c.addPlot(row=3, col=0, title="attention entropy (layers: blue ▸ yellow)"),
            colormap="viridis",
        )  # fmt: skip
        self.grad = _Plot(c.addPlot(row=3, col=1, title="gradient norm by group"), log_y=True)
        self.plots = [self.loss, self.lr, self.speed, self.memory, self.std, self.entropy, self.grad]
        c.ci.layout.setRowStretchFactor(0, 2)  # the loss plot gets the most room (its legend is long)
        c.ci.layout.setColumnStretchFactor(0, 1)
        c.ci.layout.setColumnStretchFactor(1, 1)
        self.plots[-1].item.setLabel("bottom", "step")
        self.collapse_line = pg.InfiniteLine(
            pos=COLLAPSE_STD_M * 1000.0, angle=0, pen=pg.mkPen(theme.ERROR, width=1, style=pg.QtCore.Qt.DashLine),
            label="collapse 10 mm", labelOpts={"color": theme.ERROR, "position": 0.85, "anchors": [(1, 1), (1, 1)]},
        )  # fmt: skip
        self.std.item.addItem(self.collapse_line)
        self.grad_flags = pg.ScatterPlotItem(symbol="x", size=11, pen=pg.mkPen(theme.ERROR, width=2), brush=None)
        self.grad.item.addItem(self.grad_flags)
        for limit in (GRAD_EXPLODE, GRAD_VANISH):
            self.grad.item.addItem(
                pg.InfiniteLine(pos=np.log10(limit), angle=0, pen=pg.mkPen("#803030", style=pg.QtCore.Qt.DotLine))
            )
        self.markers: list[pg.InfiniteLine] = []
        self.state: RunState | None = None
        self._dirty: set[str] = set()  # names of plots whose series changed since they were last fed
        self._next = 0
        self.collapse_shown = False

    def set_state(self, state: RunState) -> None:
        """Show this run (clears curves and markers of the previous one)."""
        for plot in self.plots:
            for curve in plot.curves.values():
                plot.item.removeItem(curve)
            plot.curves.clear()
            plot.legend.clear()
        for line in self.markers:
            for plot in self.plots:
                plot.item.removeItem(line) if line in plot.item.items else None
        self.markers.clear()
        self.grad_flags.clear()
        self.state = state
        state.metrics_changed.connect(lambda _new: self._dirty.update(METRIC_PLOTS))
        state.diagnostics_changed.connect(lambda _new: self._dirty.update(DIAGNOSTIC_PLOTS))
        state.marker_added.connect(self._add_marker)
        state.collapse_changed.connect(self._on_collapse)
        for marker in state.markers:
            self._add_marker(marker)
        self._dirty = set(METRIC_PLOTS + DIAGNOSTIC_PLOTS)
        self._on_collapse(state.collapsed)
        self.refresh()

    def _add_marker(self, marker: Marker) -> None:
        colour = theme.OK if marker.kind == "checkpoint" else theme.ERROR
        style = pg.QtCore.Qt.DashLine if marker.kind == "checkpoint" else pg.QtCore.Qt.SolidLine
        for plot in self.plots:
            line = pg.InfiniteLine(pos=marker.step, angle=90, pen=pg.mkPen(colour, width=1, style=style))
            line.setToolTip(f"{marker.kind} at step {marker.step}: {marker.label}")
            line.setZValue(-10)
            plot.item.addItem(line)
            self.markers.append(line)

    def _on_collapse(self, collapsed: bool) -> None:
        self.collapse_shown = collapsed
        if collapsed:
            self.warning.setText("⚠  prediction std fell below 10 mm: the model is collapsing to a constant prediction")
            self.warning.show()
        else:
            self.warning.hide()

    def refresh(self) -> None:
        """Feed one changed plot its series (setData only), round robin: a repaint then covers that plot alone.

        Called on every tick of the window's timer; with seven plots each is fed about three times a second, and no
        tick pays for repainting all of them (20-40 ms on a 2-core CPU).
        """
        state = self.state
        if state is None or not self._dirty:
            return
        order = ["loss", "lr", "speed", "memory", "std", "entropy", "grad"]
        start = self._next % len(order)
        for offset in range(len(order)):
            name = order[(start + offset) % len(order)]
            if name in self._dirty:
                self._next = (start + offset + 1) % len(order)
                budget = [MAX_NEW_CURVES_PER_REFRESH]
                self._feed_plot(name, state, budget)
                if budget[0] > 0:  # every series of this plot has its curve
                    self._dirty.discard(name)
                return

    def _feed_plot(self, name: str, state: RunState, budget: list[int]) -> None:
        if name == "loss":
            self._feed(self.loss, state.losses, budget)
        elif name in ("lr", "speed", "memory"):
            plot, keys = {"lr": (self.lr, LR_KEYS), "speed": (self.speed, SPEED_KEYS)}.get(
                name, (self.memory, MEMORY_KEYS)
            )
            for series_name, series in state.training.series.items():
                if series_name.split("/")[0] in keys:
                    plot.set(series_name, series.x, series.y, budget)
        elif name == "std":
            for series_name, series in state.pred_std.series.items():
                self.std.set(series_name, series.x, series.y * 1000.0, budget)  # metres in the state, mm here
        elif name == "entropy":
            self._feed(self.entropy, state.attention_entropy, budget, short_names=True)
        else:
            self._feed(self.grad, state.grad_norm, budget)
            self._update_grad_flags(state)

    def _feed(self, plot: _Plot, group: SeriesGroup, budget: list[int], short_names: bool = False) -> None:
        shorts = [_short(name) for name in group.series] if short_names else list(group.series)
        for (name, series), label in zip(group.series.items(), shorts):
            plot.set(label if shorts.count(label) == 1 else name, series.x, series.y, budget)

    def _update_grad_flags(self, state: RunState) -> None:
        xs, ys = [], []
        for series in state.grad_norm.series.values():
            y = series.y
            bad = (y > GRAD_EXPLODE) | (y < GRAD_VANISH) | ~np.isfinite(y)
            if bad.any():
                xs.append(series.x[bad])
                ys.append(np.log10(np.clip(np.nan_to_num(y[bad], nan=GRAD_EXPLODE, posinf=GRAD_EXPLODE), 1e-30, None)))
        if xs:
            self.grad_flags.setData(np.concatenate(xs), np.concatenate(ys))
        elif len(self.grad_flags.data):
            self.grad_flags.clear()


def _short(layer: str) -> str:
    """A layer name short enough for a legend: its last two dotted parts (`blocks.3`, `0.cross_attn`)."""
    return ".".join(layer.split(".")[-2:])
