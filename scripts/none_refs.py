"""Where the studio's references to None come from: a census the soak's None-refcount figure can be read against.

    python scripts/none_refs.py

Prints, per call, how many references to None each suspect adds (after full collections): the run state ingesting
metrics events (data the studio keeps), a QPainter opened on an image and ended (PySide6's binding), and a pyqtgraph
plot's x range changed with its axes shown and hidden (one painter per axis repaint). Offscreen; about 10 s.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_call(function, calls: int, settle=lambda: None) -> float:  # noqa: ANN001
    function(0)
    settle()
    gc.collect()
    before = sys.getrefcount(None)
    for i in range(1, calls + 1):
        function(i)
        settle()
    gc.collect()
    return (sys.getrefcount(None) - before) / calls


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    import PySide6
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QApplication

    from amt_studio.state.run import RunState

    app = QApplication.instance() or QApplication([])

    def pump() -> None:
        for _ in range(4):
            app.processEvents()
            time.sleep(0.002)

    state = RunState()

    def ingest(i: int) -> None:
        event = {"v": 1, "kind": "metrics", "step": i + 1, "time": time.time(), "loss": 1.0, "terms": {"joints3d": 1.0}}
        state.ingest([event])

    images = [QImage(8, 8, QImage.Format.Format_ARGB32) for _ in range(1001)]

    def painter(i: int) -> None:
        QPainter(images[i]).end()

    widget = pg.PlotWidget()
    widget.resize(400, 300)
    widget.show()
    view = widget.getPlotItem().getViewBox()
    rows = [
        ("RunState.ingest, one metrics event", per_call(ingest, 2000)),
        (f"QPainter(QImage) then end() (PySide6 {PySide6.__version__})", per_call(painter, 1000)),
        ("pg.PlotWidget x range changed, axes shown", per_call(lambda i: view.setXRange(0, 100 + i), 60, pump)),
    ]
    widget.getPlotItem().hideAxis("bottom")
    widget.getPlotItem().hideAxis("left")
    rows.append(
        ("pg.PlotWidget x range changed, axes hidden", per_call(lambda i: view.setXRange(0, 500 + i), 60, pump))
    )
    for what, refs in rows:
        print(f"{refs:6.2f}  references to None per call: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
