"""The studio's layout on the screens researchers have (offscreen: a 1280x800 laptop and a 1920x1080 desktop, see
conftest): the window fits the screen, nothing overlaps, every plot can be seen whole, hovering never resizes the
window, all plots share one x range, one-point series draw a marker, empty plots say why, a click on a name toggles.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from helpers.studio import event, write_run  # noqa: E402

pytestmark = pytest.mark.gui
SCREENS = {"laptop": (1280, 800), "desktop": (1920, 1080)}


def _screen(name: str):
    from PySide6.QtGui import QGuiApplication

    for screen in QGuiApplication.screens():
        if screen.name() == name:
            return screen
    pytest.skip(f"no screen named {name!r} (a real display is in use; conftest's offscreen screens are not)")


@pytest.fixture(params=list(SCREENS))
def on_screen(request, qtbot, qt_settings, tmp_path):
    """(window, screen): a fresh studio window opened on the named screen, attached to a finished run."""
    from PySide6.QtCore import QPoint

    from amt_studio.window import MainWindow

    screen = _screen(request.param)
    window = MainWindow(settings=qt_settings, show_dialogs=False, runs_dir=tmp_path / "runs")
    window.move(screen.geometry().topLeft() + QPoint(20, 20))
    window.resize(2400, 1400)  # larger than either screen: the window must come back inside it
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    write_run(tmp_path / "run", steps=30)
    window.attach(tmp_path / "run")
    qtbot.waitUntil(lambda: window.session.state.state == "finished", timeout=10_000)
    fed(qtbot, window)
    return window, screen


def fed(qtbot, window) -> None:
    qtbot.waitUntil(lambda: not window.plots._dirty and not window.plots._lane_dirty, timeout=15_000)
    for _ in range(3):
        window.tick()
        qtbot.wait(20)


def _in_window(window, widget):
    from PySide6.QtCore import QRect

    return QRect(widget.mapTo(window, widget.rect().topLeft()), widget.size())


def test_the_window_fits_its_screen_and_nothing_overlaps(on_screen, qtbot) -> None:
    window, screen = on_screen
    area = screen.availableGeometry()
    assert area.contains(window.frameGeometry()), (window.frameGeometry(), area)
    plots = window.plots
    leaves = [
        window.snapshots,
        plots.scroll,
        plots.lane_widget,
        plots.readout,
        plots.series_list,
        window.run_dock,
        window.log_dock,
        window.statusBar(),
        window.tabs.tabBar(),
    ]
    shown = [w for w in leaves if w.isVisible()]
    for i, a in enumerate(shown):
        for b in shown[i + 1 :]:
            assert not _in_window(window, a).intersects(_in_window(window, b)), (a, b)
    viewport = plots.scroll.viewport()
    for plot in plots.plots:
        # never cut at the sides; every plot fits the viewport's height, so scrolling shows each one whole
        assert plot.widget.width() >= 280 and plot.widget.height() <= viewport.height(), plot.key
        bar = plots.scroll.verticalScrollBar()
        bar.setValue(min(plot.widget.y(), bar.maximum()))  # scroll the plot's row to the top (or as far as it goes)
        qtbot.wait(10)
        canvas = plot.widget.viewport()  # (a widget's own visible region leaves out its opaque children)
        region = canvas.visibleRegion().boundingRect()
        assert region.size() == canvas.rect().size(), (plot.key, region, canvas.rect())
        title = plot.item.titleLabel
        assert title.item.boundingRect().width() <= title.boundingRect().width() + 1, plot.key  # not cut


def test_hovering_every_plot_keeps_the_window_size_and_reads_the_logged_step(on_screen, qtbot) -> None:
    window, _screen_ = on_screen
    plots = window.plots
    size = window.size()
    for plot in plots.plots:
        scene_pos = plot.view.sceneBoundingRect().center()
        plot.widget.scene().sigMouseMoved.emit(scene_pos)
        qtbot.wait(5)
        assert window.size() == size, plot.key
        if plot.has_data():
            assert plots.readout_text.startswith(plot.title), plot.key
    assert window.size() == size
    plots.clear_hover()
    assert plots.readout_text.strip() == ""
    # the values read belong to the logged step nearest the mouse, and the step said is that step
    text = plots.read_values("loss_total", 13.4)
    total = plots.curve("loss", "total").getData()
    assert "step 13 " in text and f"total {10 ** total[1][list(total[0]).index(13)]:.4g}" in text


def test_every_plot_and_the_event_lane_share_one_x_range(on_screen, qtbot) -> None:
    window, _screen_ = on_screen
    plots = window.plots
    ranges = {tuple(np.round(v.viewRange()[0], 6)) for v in plots._views()}
    assert len(ranges) == 1
    low, high = ranges.pop()
    assert low <= 0 and high >= 30  # the checkpoints and snapshots at the ends are inside it too
    plots.plot_by_key["lr"].view.setXRange(5, 15, padding=0)  # a zoom on one plot moves them all
    qtbot.wait(10)
    assert {tuple(np.round(v.viewRange()[0], 6)) for v in plots._views()} == {(5.0, 15.0)}


def test_one_point_series_draw_markers_and_empty_plots_say_why(qtbot, qt_settings, tmp_path) -> None:
    from amt_studio.window import MainWindow

    window = MainWindow(settings=qt_settings, show_dialogs=False, runs_dir=tmp_path / "runs")
    qtbot.addWidget(window)
    window.show()
    run = tmp_path / "live"
    run.mkdir()
    config = {"config": {"trainer": {"log_every": 1, "eval_every": 250, "diag_every": 50}}, "device": "cpu"}
    (run / "config.json").write_text(json.dumps(config))
    start = time.time() - 60.0
    events = [event("state", 0, state="running")]
    for step in range(1, 31):  # a step every 2 s: 220 steps to the first validation are about 7 minutes
        events.append(dict(event("metrics", step, loss=1.0, terms={"joints3d": 1.0}), time=start + 2.0 * step))
    events.append(dict(event("diagnostics", 30, pred_std_mm=30.0, grad_norm={"heads": 1.0}), time=start + 60.0))
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    window.attach(run)
    plots = window.plots
    qtbot.waitUntil(lambda: window.session.state.step == 30, timeout=10_000)
    fed(qtbot, window)
    plots._update_reasons()
    reason = plots.val.reason
    assert reason.isVisible() and reason.text() == "first validation at step 250 (about 7 min at the current pace)"
    assert plots.entropy.reason.text().startswith("no attention layers recorded")
    assert plots.plot_by_key["loss_object"].reason.text() == "this run's loss has no object terms"
    assert not plots.loss.reason.isVisible()  # a plot with data says nothing
    std = plots.curve("std", "pred")
    assert len(std.getData()[0]) == 1 and std.opts["symbol"] == "o"  # one point: a marker, not nothing
    assert plots.curve("loss", "total").opts["symbol"] is None  # thirty points: a line
    config["config"]["trainer"]["eval_every"] = 0
    (run / "config.json").write_text(json.dumps(config))
    window.session.state.load_config()
    plots._update_reasons()
    assert reason.text() == "validation is off in this run (trainer.eval_every=0)"


def test_a_click_on_a_series_name_toggles_its_curve(qtbot, qt_settings, tmp_path) -> None:
    from PySide6.QtCore import QPoint, Qt

    from amt_studio.window import MainWindow

    window = MainWindow(settings=qt_settings, show_dialogs=False, runs_dir=tmp_path / "runs")
    window.resize(1900, 1000)
    qtbot.addWidget(window)
    window.show()
    write_run(tmp_path / "run", steps=10)
    window.attach(tmp_path / "run")
    fed(qtbot, window)
    plots = window.plots
    plots.series_button.setChecked(True)
    tree = plots.series_list
    item = plots._plot_items["loss_total"].child(0)
    tree.scrollToItem(item)
    qtbot.wait(10)
    rect = tree.visualItemRect(item)
    on_name = QPoint(rect.right() - 8, rect.center().y())  # the name, not the check box at the left
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=on_name)
    assert not plots.curve("loss", "total").isVisible()
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=on_name)
    assert plots.curve("loss", "total").isVisible()
