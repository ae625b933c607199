"""The studio's plots under pytest-qt, fed hand-written events (the documented schema): legends never cover data,
rollback draws a branch, runs overlay, the validation plot draws the mean-pose reference, banners hold still, CSV.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from helpers.studio import event, write_run  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, qt_settings, tmp_path):
    from amt_studio.window import MainWindow

    win = MainWindow(settings=qt_settings, show_dialogs=False, runs_dir=tmp_path / "runs")
    win.resize(1400, 900)
    qtbot.addWidget(win)
    win.show()
    return win


def fed(qtbot, window) -> None:
    """Let the round-robin feeding reach every plot and the event lane."""
    qtbot.waitUntil(lambda: not window.plots._dirty and not window.plots._lane_dirty, timeout=10_000)


def metrics(step: int, loss: float, **terms: float) -> dict:
    return event("metrics", step, loss=loss, terms=terms or {"joints": loss}, lr={"decoders": 1e-3}, images_per_s=30.0)


def test_no_legend_covers_the_last_tenth_of_any_curve(qtbot, window, tmp_path) -> None:
    """The curves' names live in the series list beside the canvas, never over the data."""
    import pyqtgraph as pg
    from PySide6.QtCore import Qt

    terms = {f"term_{i:02d}": 1.0 / (i + 1) for i in range(24)}  # the 24-term loss legend that hid everything
    events = [event("state", 0, state="running")]
    events += [event("metrics", s, loss=1.0 / s, terms={k: v / s for k, v in terms.items()}) for s in range(1, 201)]
    run = tmp_path / "many"
    run.mkdir()
    (run / "events.jsonl").write_text("".join(__import__("json").dumps(e) + "\n" for e in events))
    window.attach(run)
    qtbot.waitUntil(lambda: len(window.plots.curves_of("loss")) == 25, timeout=20_000)
    fed(qtbot, window)
    plots = window.plots
    legends = [item for p in plots.plots for item in p.widget.scene().items() if isinstance(item, pg.LegendItem)]
    other = plots.plot_by_key["loss_other"]  # terms the grouping does not name are shown there, not lost
    for name, curve in plots.curves_of("loss").items():
        x, y = curve.getData()
        tail = slice(int(len(x) * 0.9), None)
        view = (plots.loss if name == "total" else other).item.getViewBox()
        points = [view.mapViewToScene(pg.Point(px, py)) for px, py in zip(x[tail], y[tail]) if np.isfinite(py)]
        assert points, name
        for legend in legends:
            if legend.isVisible():
                rect = legend.sceneBoundingRect()
                assert not any(rect.contains(p) for p in points), f"a legend covers the end of {name}"
    # every series is listed beside the canvas (outside the plots) and a click hides its curve
    listed = plots.series_list
    plots.series_button.setChecked(True)  # folded away on a narrow panel; the button brings it back
    top = plots._plot_items["loss_other"]
    assert top.childCount() == 24 and plots._plot_items["loss_total"].childCount() == 1
    assert not plots.scroll.geometry().intersects(listed.geometry()) and listed.isVisible()
    item = top.child(0)
    item.setCheckState(0, Qt.CheckState.Unchecked)
    assert not plots.curves_of("loss")[item.text(0)].isVisible()


def test_rollback_draws_a_branch(qtbot, window, tmp_path) -> None:
    write_run(tmp_path / "run", steps=20)  # rolled back at step 12 to the checkpoint of step 10
    window.attach(tmp_path / "run")
    state = window.session.state
    qtbot.waitUntil(lambda: state.state == "finished", timeout=10_000)
    fed(qtbot, window)
    live_x, _ = window.plots.curve("loss", "total").getData()
    ghost_x, ghost_y = window.plots.ghost("loss", "total").getData()
    assert np.all(np.diff(live_x) > 0), "the live branch goes forward only: no diagonal line back to step 10"
    assert 11 not in live_x and 12 not in live_x and 13 in live_x
    assert list(ghost_x[:3]) == [10, 11, 12] and np.isnan(ghost_x[3:]).all()  # starts where it branched
    assert np.isfinite(ghost_y[:3]).all()
    pen = window.plots.ghost("loss", "total").opts["pen"]
    assert pen.color().alpha() < 255  # faded
    assert state.rollbacks == [(10, 12)]
    qtbot.wait(100)
    ranges = {tuple(np.round(p.item.getViewBox().viewRange()[0], 3)) for p in window.plots.plots}
    assert ranges == {tuple(np.round(window.plots.lane.getViewBox().viewRange()[0], 3))}  # one x range, all plots
    low, high = ranges.pop()
    assert low <= 1 and high >= 20


def test_rollback_drops_the_abandoned_snapshot_and_the_eta_stays_sane(qtbot, window, tmp_path) -> None:
    from helpers.studio import write_snapshot

    run = tmp_path / "live"
    events = [event("state", 0, state="running")]
    t0 = 1_700_000_000.0
    for step in range(1, 31):
        events.append({**metrics(step, 1.0 / step), "time": t0 + step})
        if step in (10, 30):
            write_snapshot(run / "snapshots" / f"step_{step:08d}.npz", step)
            events.append(event("snapshot", step, path=f"snapshots/step_{step:08d}.npz"))
    events.append({**event("rollback", 10, checkpoint="step_00000010", from_step=30), "time": t0 + 31})
    for step in range(11, 14):
        events.append({**metrics(step, 0.5 / step), "time": t0 + 31 + (step - 10)})
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text('{"config": {"trainer": {"max_steps": 1000}}}')
    (run / "events.jsonl").write_text("".join(__import__("json").dumps(e) + "\n" for e in events))
    window.attach(run)
    state = window.session.state
    qtbot.waitUntil(lambda: state.step == 13 and window.snapshots.current is not None, timeout=10_000)
    assert [step for step, _ in state.snapshots.entries] == [10]
    qtbot.waitUntil(lambda: window.snapshots.current.step == 10, timeout=10_000)
    assert state.eta_seconds() == pytest.approx((1000 - 13) * 1.0, rel=0.01)  # one step a second since the rollback


def test_two_runs_overlay(qtbot, window, tmp_path) -> None:
    write_run(tmp_path / "amt", steps=20)
    write_run(tmp_path / "baseline", steps=12)
    window.attach(tmp_path / "amt")
    overlay = window.add_overlay(tmp_path / "baseline")
    assert overlay is not None and window.plots.overlay_labels == ["baseline"]
    qtbot.waitUntil(lambda: "total" in window.plots.curves_of("loss", "baseline"), timeout=10_000)
    fed(qtbot, window)
    mine, theirs = window.plots.curve("loss", "total"), window.plots.curve("loss", "total", "baseline")
    assert len(mine.getData()[0]) == 18 and len(theirs.getData()[0]) == 10  # each its own live branch
    assert mine.opts["pen"].color() == theirs.opts["pen"].color()  # same series, same colour ...
    assert theirs.opts["pen"].style() != mine.opts["pen"].style()  # ... dashed for the compared run
    top = window.plots._plot_items["loss_total"]
    assert [top.child(i).text(0) for i in range(top.childCount())] == ["total", "total · baseline"]
    assert "total · baseline" in window.plots.read_values("loss", 5.0)
    window.add_overlay(tmp_path / "amt")  # the run shown cannot be compared with itself: one line
    assert "is the run shown" in window.notifier.history[-1].message
    window.clear_overlays()
    assert window.plots.overlay_labels == [] and not window.plots.curves_of("loss", "baseline")


def test_validation_plot_draws_the_mean_pose_reference_and_not_learning_banner(qtbot, window, tmp_path) -> None:
    from PySide6.QtCore import Qt

    run = tmp_path / "val"
    run.mkdir()
    events = [event("state", 0, state="running"), metrics(1, 1.0)]
    for step, error in ((100, 210.0), (200, 190.0)):
        events.append(
            event(
                "validation",
                step,
                metrics={
                    "mpjpe_mm": error,
                    "ref_mean_pose_mpjpe_mm": 150.0,
                    "ref_mean_pose_pa_mpjpe_mm": 60.0,
                    "ref_wrist_mpjpe_mm": 95.0,
                    "skill_mpjpe": 1.0 - error / 150.0,
                },
            )
        )
    events.append(event("anomaly", 200, what="not_learning", message="not better than a constant yet"))
    (run / "events.jsonl").write_text("".join(__import__("json").dumps(e) + "\n" for e in events))
    window.attach(run)
    plots = window.plots
    qtbot.waitUntil(lambda: "mean-pose reference" in plots.curves_of("val"), timeout=10_000)
    fed(qtbot, window)
    reference = plots.curve("val", "mean-pose reference")
    x, y = reference.getData()
    assert list(x) == [100, 200] and np.allclose(y, 150.0)
    assert reference.opts["pen"].style() == Qt.PenStyle.DashLine  # a reference, not a result
    assert np.allclose(plots.curve("val", "mpjpe_mm").getData()[1], [210.0, 190.0])
    assert "wrist-only reference" in plots.curves_of("val") and "skill_mpjpe" not in plots.curves_of("val")
    assert plots.not_learning_shown and "not better than a constant yet" in plots.banner.text()
    height = plots.banner.height()
    canvas_y = plots.scroll.mapTo(window, plots.scroll.rect().topLeft()).y()
    # two validations below the reference clear the banner; the layout does not move
    more = [event("validation", s, metrics={"mpjpe_mm": 120.0, "ref_mean_pose_mpjpe_mm": 150.0}) for s in (300, 400)]
    with open(run / "events.jsonl", "a") as f:
        f.write("".join(__import__("json").dumps(e) + "\n" for e in more))
    qtbot.waitUntil(lambda: not plots.not_learning_shown, timeout=10_000)
    assert plots.banner.text() == "" and plots.banner.height() == height
    assert plots.scroll.mapTo(window, plots.scroll.rect().topLeft()).y() == canvas_y


def test_collapse_banner_has_hysteresis(qtbot, window, tmp_path) -> None:
    run = tmp_path / "flap"
    run.mkdir()
    events = [event("state", 0, state="running")]
    flapping = [9.0, 11.0, 9.5, 10.5, 9.0, 8.0, 7.0, 10.5, 11.5, 9.9, 13.0, 14.0, 15.0]  # mm
    for step, std in enumerate(flapping, start=1):
        events.append(event("diagnostics", step, pred_std_mm=std, gt_std_mm=30.0))
    (run / "events.jsonl").write_text("".join(__import__("json").dumps(e) + "\n" for e in events))
    state = window.attach(run).state
    changes = []
    state.collapse_changed.connect(changes.append)
    qtbot.waitUntil(lambda: state.events_seen == len(events), timeout=10_000)
    # raised once after three readings below 10 mm (steps 5-7), cleared once after three above 12 mm (11-13)
    assert changes == [True, False] and not window.plots.collapse_shown


def test_plot_settings_and_csv_export(qtbot, window, tmp_path) -> None:
    write_run(tmp_path / "run", steps=20)
    window.attach(tmp_path / "run")
    fed(qtbot, window)
    plots = window.plots
    raw = plots.curve("loss", "joints").getData()[1].copy()
    plots.smoothing.setValue(90)
    fed(qtbot, window)
    smoothed = plots.curve("loss", "joints").getData()[1]
    assert smoothed[0] == pytest.approx(raw[0]) and np.std(np.diff(smoothed)) < np.std(np.diff(raw))
    plots.log_y.setChecked(False)
    fed(qtbot, window)
    assert plots.curve("loss", "kl").getData()[1][0] == pytest.approx(0.01)  # linear values now
    plots.x_mode.setCurrentIndex(1)  # wall time, minutes since the run's first event
    fed(qtbot, window)
    x = plots.curve("loss", "kl").getData()[0]
    assert 0.0 <= x[0] < 1.0 and np.all(np.diff(x) >= 0)
    rows = plots.export_csv("loss", tmp_path / "loss.csv")
    with open(tmp_path / "loss.csv") as f:
        table = list(csv.DictReader(f))
    assert rows == len(table) == 4 * 20  # 4 series, 18 live + 2 abandoned points each
    assert {r["branch"] for r in table} == {"live", "abandoned"}
    assert {r["series"] for r in table} == {"total", "joints", "object", "kl"}
    joints = [r for r in table if r["series"] == "joints" and r["branch"] == "live"]
    assert float(joints[0]["value"]) == pytest.approx(1.0) and joints[0]["step"] == "1"
    logged = window.session.state.losses["joints"].t[0]  # Unix seconds: kept to the microsecond, not 10 s
    assert abs(float(joints[0]["time_s"]) - logged) < 1e-5 and float(joints[1]["time_s"]) != float(joints[0]["time_s"])
