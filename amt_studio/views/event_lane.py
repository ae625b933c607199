"""The event lane under the plots: checkpoints, snapshots, stage switches, anomalies and rollbacks, each kind on its
own row, on the plots' x range (by step or wall time); hovering a mark says what it was and at which step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pyqtgraph as pg

from amt_studio.state.run import Marker
from amt_studio.views import theme
from amt_studio.views.axes import CompactAxis

LANE_ROWS = {"checkpoint": 0.1, "snapshot": 0.3, "stage": 0.5, "anomaly": 0.7, "rollback": 0.9}
"""Each kind's row, bottom to top, in the lane's 0..1 y range."""


def _looks() -> dict[str, dict]:
    """Each kind's mark (a function: pens and brushes need the Qt application)."""
    return {
        "checkpoint": {"symbol": "|", "size": 9, "pen": pg.mkPen(theme.OK, width=1.5), "brush": None},
        "snapshot": {"symbol": "o", "size": 4, "pen": None, "brush": pg.mkBrush(theme.MUTED)},
        "stage": {"symbol": "s", "size": 7, "pen": None, "brush": pg.mkBrush(theme.ACCENT)},
        "anomaly": {"symbol": "x", "size": 8, "pen": pg.mkPen(theme.ERROR, width=1.5), "brush": None},
        "rollback": {"symbol": "arrow_left", "size": 11, "pen": None, "brush": pg.mkBrush(theme.WARNING)},
    }


class EventLane(pg.PlotWidget):
    """A short plot of the run's events; its view joins the plots' shared x range (pan only in x, no menu)."""

    def __init__(self) -> None:
        super().__init__(axisItems={"bottom": CompactAxis("bottom")})
        self.setFixedHeight(72)
        lane = self.getPlotItem()
        lane.hideButtons()
        lane.setYRange(0, 1, padding=0.05)
        lane.setMouseEnabled(x=True, y=False)
        lane.getAxis("bottom").setLabel("step")
        axis = lane.getAxis("left")
        axis.setWidth(48)
        axis.setStyle(showValues=False)
        axis.setPen(pg.mkPen(None))
        axis.setLabel("events")
        self.marks: dict[str, pg.ScatterPlotItem] = {}
        """A scatter per kind of event, by kind."""
        for kind, look in _looks().items():
            scatter = pg.ScatterPlotItem(hoverable=True, tip=self._mark_tip, **look)
            self.marks[kind] = scatter
            lane.addItem(scatter)
        lane.getViewBox().menu.setEnabled(False)

    @staticmethod
    def _mark_tip(x: float, y: float, data: object) -> str:
        return str(data)

    def set_x_by_time(self, by_time: bool) -> None:
        self.getPlotItem().getAxis("bottom").setLabel("minutes since start" if by_time else "step")

    def feed(self, markers: Iterable[Marker], x_of: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        """Show these events; `x_of(steps, times)` gives their x (the plots' step or minutes)."""
        markers = list(markers)
        for kind, scatter in self.marks.items():
            marks = [m for m in markers if m.kind == kind]
            if not marks:
                scatter.clear()
                continue
            steps = np.array([m.step for m in marks], dtype=np.float64)
            times = np.array([m.time for m in marks], dtype=np.float64)
            labels = [f"{kind}: {m.label} (step {m.step})" for m in marks]
            scatter.setData(x=x_of(steps, times), y=np.full(len(marks), LANE_ROWS[kind]), data=labels)

    def clear_marks(self) -> None:
        for scatter in self.marks.values():
            scatter.clear()

    def extent(self) -> tuple[float, float] | None:
        """The x span of the marks shown (None: no mark)."""
        xs = [scatter.data["x"] for scatter in self.marks.values() if len(scatter.data)]
        xs = [x for x in xs if len(x)]
        if not xs:
            return None
        return min(float(np.min(x)) for x in xs), max(float(np.max(x)) for x in xs)
