"""The studio's window under pytest-qt (offscreen): live runs of the real trainer started from the UI and headless,
controls confirmed through events, replay, a trainer crash, the checkpoint inspector and the 3D panel's picture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from helpers.studio import projected_vertices_on_mask, write_run  # noqa: E402

from amt_studio.render.camera import OrbitCamera  # noqa: E402
from amt_studio.render.content import snapshot_layers  # noqa: E402
from amt_studio.render.raycast import RaycastRenderer  # noqa: E402
from amt_studio.session import trainer_argv  # noqa: E402

pytestmark = pytest.mark.gui
LONG_STAGES = ["stages.0.steps=400", "stages.1.steps=400", "stages.2.steps=400"]
FAST_EVENTS = ["trainer.snapshot_every=2", "trainer.ckpt_every=4", "trainer.diag_every=2"]
WAIT_MS = 90_000


@pytest.fixture
def window(qtbot, qt_settings):
    from amt_studio.window import MainWindow

    win = MainWindow(settings=qt_settings, show_dialogs=False)
    win.resize(1400, 900)
    qtbot.addWidget(win)
    win.show()
    win.ask_live_run = lambda: "stop"  # no modal question in tests (a test that wants another answer sets its own)
    yield win
    if win.session is not None and win.session.process is not None and win.session.process.popen is not None:
        win.session.process.terminate()
        win.session.process.popen.wait(30)


@pytest.fixture(scope="module")
def headless_run(tmp_path_factory):
    """A real micro trainer started headless (as `amt-core train` would be), long enough to steer."""
    run_dir = tmp_path_factory.mktemp("headless") / "run"
    argv = trainer_argv(preset="micro", run_dir=run_dir, overrides=LONG_STAGES + FAST_EVENTS)
    log = open(tmp_path_factory.mktemp("logs") / "trainer.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    yield run_dir, process
    process.terminate()
    process.wait(30)
    log.close()


def hand_on_image_camera(snapshot, index: int = 0) -> float:
    """Render the predicted hand from the image's own camera; share of its projected vertices on hand pixels."""
    renderer = RaycastRenderer()
    renderer.set_layers(snapshot_layers(snapshot, index, {"pred hand"}))
    height, width = snapshot.images.shape[1:3]
    frame = renderer.render(
        OrbitCamera(target=np.array([0.0, 0.0, 1.0]), distance=1.0), width, height, snapshot.K[index]
    )
    mask = frame.layer_index == 0
    assert mask.sum() > 20, "the predicted hand is not in the picture"
    return projected_vertices_on_mask(mask, snapshot.pred_hand_verts[index], snapshot.K[index])


def test_attach_to_headless_run_and_steer_it(qtbot, window, headless_run) -> None:
    run_dir, process = headless_run
    qtbot.waitUntil(lambda: (run_dir / "events.jsonl").exists(), timeout=WAIT_MS)
    session = window.attach(run_dir)
    state = session.state
    assert session.process is None  # watched, not owned: closing the window leaves it alone
    qtbot.waitUntil(lambda: len(state.snapshots) >= 1 and len(state.losses.names()) > 0, timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: window.snapshots.current is not None and bool(window.plots.curves_of("loss")), timeout=10_000
    )
    # Plots are fed from the events; the 3D panel shows the predicted hand.
    assert len(window.plots.curve("loss", "total").getData()[0]) >= 1
    assert window.snapshots.current is not None
    qtbot.waitUntil(lambda: (window.snapshots.scene.frame.layer_index == 0).any(), timeout=10_000)
    assert hand_on_image_camera(window.snapshots.current) > 0.95
    # how the run computes comes from its config.json, as the trainer wrote it
    assert window.status_device.text() == "device cpu · fp32 · attn sdpa" and "step" in window.status_step.text()

    # Pause: the button changes only once the trainer confirms through a state event.
    assert window.pause_action.isEnabled() and window.pause_action.text() == "Pause"
    window.pause_action.trigger()
    assert window.pause_action.text() == "Pause" and not window.pause_action.isEnabled()  # sent, not confirmed
    qtbot.waitUntil(lambda: state.state == "paused", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.pause_action.text() == "Resume" and window.pause_action.isEnabled(), timeout=5000)
    paused_at = state.step

    # Switch stage while paused: the check mark follows the trainer's stage event.
    window.stage_actions[2].trigger()
    qtbot.waitUntil(lambda: state.stage == 3, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.stage_actions[2].isChecked(), timeout=5000)

    # Roll back to the first checkpoint, picked in the list.
    names = [window.checkpoint_list.item(i).data(256) for i in range(window.checkpoint_list.count())]
    assert "step_00000000" in names
    window.checkpoint_list.setCurrentRow(names.index("step_00000000"))
    window.rollback_action.trigger()
    qtbot.waitUntil(lambda: any("rolled back to step_00000000" in line.text for line in state.log), timeout=WAIT_MS)
    assert state.step == 0 and paused_at >= 0
    qtbot.waitUntil(lambda: state.stage == 1 and window.stage_actions[0].isChecked(), timeout=WAIT_MS)

    window.pause_action.trigger()  # now "Resume"
    qtbot.waitUntil(lambda: state.state == "running" and window.pause_action.text() == "Pause", timeout=WAIT_MS)
    assert not window.notifier.history, window.notifier.history
    assert process.poll() is None


def test_inspect_a_checkpoint(qtbot, window, headless_run, tmp_path) -> None:
    run_dir, _ = headless_run
    ckpt = run_dir / "checkpoints" / "step_00000000"
    qtbot.waitUntil(lambda: (ckpt / "config.json").exists(), timeout=WAIT_MS)
    panel = window.inspect
    window.tabs.setCurrentWidget(panel)
    panel.open_checkpoint(ckpt)
    qtbot.waitUntil(lambda: panel.inspector.model is not None and not panel.working, timeout=WAIT_MS)
    assert "step 0" in panel.model_label.text()
    panel.spec.setText("synth:live?seed=777&size=64&num=16")
    panel.start.setValue(3)
    panel.run_dataset()
    qtbot.waitUntil(lambda: panel.data is not None and not panel.working, timeout=WAIT_MS)
    assert not window.notifier.history, [n.details for n in window.notifier.history]
    data = panel.data
    assert data.num_samples == 8 and panel.table.rowCount() == 8 and panel.table.item(0, 0).text() == "3"
    errors = data.sample_errors_mm()
    assert np.isfinite(errors).all() and float(panel.table.item(1, 1).text()) == pytest.approx(errors[1], abs=0.06)
    assert data.attention is not None and panel.image.attention is not None and data.attention.shape[0] == 8
    qtbot.waitUntil(lambda: panel.scene.frame is not None and (panel.scene.frame.layer_index >= 0).any(), timeout=5000)
    assert hand_on_image_camera(data, 2) > 0.95
    # The comparison is complete: the true object in 3D, its error and class in the table.
    with_object = [i for i in range(8) if data.has("obj", i) and data.gt_obj_class[i] >= 0]
    assert with_object, "the synthetic samples hold objects"
    row = with_object[0]
    panel.table.selectRow(row)
    assert panel.current_index == row
    qtbot.waitUntil(lambda: "gt object" in [layer.name for layer in panel.scene.renderer.layers], timeout=5000)
    headers = [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())]
    assert headers[3:] == ["object mm", "class", "true class"]
    header = panel.table.horizontalHeader()  # every column fits the table's width: nothing behind a sideways scroll
    assert sum(header.sectionSize(c) for c in range(len(headers))) <= panel.table.viewport().width()
    assert float(panel.table.item(row, 3).text()) >= 0.0 and panel.table.item(row, 5).text() not in ("–", "")
    # The camera frames hand and object together: every vertex in front of it and inside the frame.
    scene = panel.scene
    width, height = scene.render_size()
    everything = np.concatenate([layer.verts for layer in scene.renderer.layers])
    cam = everything @ scene.camera.extrinsic()[:3, :3].T + scene.camera.extrinsic()[:3, 3]
    assert (cam[:, 2] > 0).all()
    uv = cam @ scene.camera.intrinsic(width, height).T
    uv = uv[:, :2] / uv[:, 2:]
    assert (uv >= -1).all() and (uv <= np.array([width, height]) + 1).all()
    # The attention overlay is visible (inferno colour map, min to max) and its strength follows the slider.
    rgba = panel.image.attention_rgba()
    assert rgba is not None and np.ptp(rgba[..., :3].astype(int), axis=(0, 1)).max() > 100
    assert rgba[..., 3].max() == pytest.approx(0.65 * 255, abs=2)
    panel.attention_strength.setValue(100)
    assert panel.image.attention_rgba()[..., 3].max() == 255
    panel.table.selectRow(2)
    assert panel.current_index == 2
    written = panel.export(tmp_path / "meshes")
    import trimesh

    assert any("pred_hand" in p.name for p in written) and all(len(trimesh.load(p).faces) > 0 for p in written)
    image = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray((data.images[0]).astype(np.uint8)).save(image)
    panel.run_images([image])
    qtbot.waitUntil(lambda: panel.data is not data and not panel.working, timeout=WAIT_MS)
    assert panel.data.num_samples == 1 and panel.data.gt_joints3d is None and panel.table.item(0, 1).text() == "–"
    assert panel.table.item(0, 0).text() == "photo.png" and panel.scene.caption.startswith("photo.png")


def test_start_a_run_from_the_ui_and_stop_it_on_close(qtbot, window, tmp_path) -> None:
    run_dir = tmp_path / "ui-run"
    argv = trainer_argv(preset="micro", run_dir=run_dir, overrides=LONG_STAGES + FAST_EVENTS)
    session = window.start_run(argv, run_dir)
    assert session is not None and session.owns_live_process
    state = session.state
    qtbot.waitUntil(lambda: len(state.snapshots) >= 2 and state.state == "running", timeout=WAIT_MS)
    first = window.snapshots.current
    qtbot.waitUntil(lambda: window.snapshots.current is not first, timeout=WAIT_MS)  # follows the latest
    assert window.snapshots.slider.maximum() == len(state.snapshots) - 1 >= 1
    curve = window.plots.curve("loss", "total")
    before = len(curve.getData()[0])
    qtbot.waitUntil(lambda: len(curve.getData()[0]) > before, timeout=WAIT_MS)  # the same curve, fed new points
    assert window.plots.curve("loss", "total") is curve
    assert max(window.tick_ms) < 1000
    asked = []
    window.ask_live_run = lambda: asked.append(1) or "stop"
    window.close()  # returns at once: a detached stopper waits for the trainer's save
    assert asked
    qtbot.waitUntil(lambda: session.process.poll() is not None, timeout=WAIT_MS)  # stopped, not left behind
    assert session.process.exit_code == 0, session.process.log_tail()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    final = [e for e in events if e["kind"] == "state"][-1]
    assert final["state"] in ("stopped", "finished")
    assert [e for e in events if e["kind"] == "checkpoint"][-1]["step"] == final["step"]  # saved on the way out


def test_leave_a_run_training_headless_on_close(qtbot, window, tmp_path) -> None:
    run_dir = tmp_path / "left"
    argv = trainer_argv(preset="micro", run_dir=run_dir, overrides=LONG_STAGES)
    session = window.start_run(argv, run_dir)
    window.ask_live_run = lambda: "leave"
    window.close()
    try:
        time.sleep(0.5)
        assert session.process.popen.poll() is None  # still training, in its own session
    finally:
        session.process.terminate()
        session.process.popen.wait(30)


def test_trainer_crash_shows_traceback_and_app_stays_usable(qtbot, window, tmp_path) -> None:
    crash = "import sys; print('loading'); raise RuntimeError('boom inside the trainer')"
    session = window.start_run([sys.executable, "-c", crash], tmp_path / "crash")
    qtbot.waitUntil(lambda: session.state.state == "failed", timeout=30_000)
    notice = window.notifier.history[-1]
    assert "exited with code 1" in notice.message and "RuntimeError: boom inside the trainer" in notice.details
    assert window.error_label.isVisible() and not window.pause_action.isEnabled()
    # An error event (a trainer that caught its own exception) is shown the same way.
    write_run(tmp_path / "errored", steps=4, crash=True)
    window.attach(tmp_path / "errored")
    qtbot.waitUntil(lambda: window.session.state.state == "failed", timeout=10_000)
    assert "Traceback" in window.notifier.history[-1].details
    window.attach(tmp_path / "missing")  # a bad folder is a notice too, and the window carries on
    assert "does not exist" in window.notifier.history[-1].message and window.session.state.state == "failed"


def test_replay_a_finished_run(qtbot, window, tmp_path) -> None:
    write_run(tmp_path / "done", steps=20, collapse_at=15)
    window.attach(tmp_path / "done")
    state = window.session.state
    qtbot.waitUntil(lambda: state.state == "finished", timeout=10_000)
    plots = window.plots
    qtbot.waitUntil(lambda: not plots._dirty, timeout=10_000)  # one plot fed per tick, round robin
    assert set(plots.curves_of("loss")) == {"total", "joints", "object", "kl"}
    live_steps = np.array([s for s in range(1, 21) if s not in (11, 12)])  # rolled back from 12 to 10 at step 12
    x, y = plots.curve("loss", "joints").getData()
    assert np.array_equal(x, live_steps) and np.allclose(10**y, 1.0 / live_steps)  # a log10 axis
    assert np.array_equal(plots.ghost("loss", "joints").getData()[0][:3], [10, 11, 12])  # the abandoned branch
    assert plots.collapse_shown and "collapsing" in plots.banner.text()
    assert len(plots.grad_flags.data) == 1  # the exploding gradient at step 7
    lane = {kind: len(scatter.data) for kind, scatter in plots.lane_marks.items()}
    # marks on one lane, not lines on every plot: every snapshot, the stage switch, the anomaly, the rollback
    assert lane == {"checkpoint": 2, "snapshot": 4, "stage": 1, "anomaly": 1, "rollback": 1}
    assert window.checkpoint_list.count() == 2 and not window.rollback_action.isEnabled()  # finished: no controls
    # The timeline: go back to the first snapshot, then follow the latest again.
    slider = window.snapshots.slider
    assert slider.value() == slider.maximum() == 3
    qtbot.waitUntil(lambda: window.snapshots.current is not None and window.snapshots.current.step == 20, timeout=5000)
    before = window.snapshots.scene.frame
    slider.setValue(0)  # loaded on a worker thread, shown on a later tick
    assert not window.snapshots.follow.isChecked()
    qtbot.waitUntil(lambda: window.snapshots.current.step == 5, timeout=5000)
    qtbot.waitUntil(lambda: window.snapshots.scene.frame is not before, timeout=5000)
    assert window.recent_runs()[0] == str((tmp_path / "done").resolve())


def test_shortcuts_mouse_and_layout_memory(qtbot, window, qt_settings, tmp_path) -> None:
    from PySide6.QtCore import QPoint, Qt

    from amt_studio.window import MainWindow

    shortcuts = {a.shortcut().toString() for a in (window.pause_action, window.save_action, window.stop_action)}
    assert shortcuts == {"Space", "Ctrl+S", "Ctrl+."} and window.stage_actions[1].shortcut().toString() == "Ctrl+2"
    write_run(tmp_path / "run", steps=5)
    window.attach(tmp_path / "run")
    scene = window.snapshots.scene
    qtbot.waitUntil(lambda: scene.frame is not None, timeout=10_000)
    yaw, distance = scene.camera.yaw, scene.camera.distance
    qtbot.mousePress(scene, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    qtbot.mouseMove(scene, QPoint(160, 110))
    qtbot.mouseRelease(scene, Qt.MouseButton.LeftButton, pos=QPoint(160, 110))
    assert scene.camera.yaw != yaw
    scene.camera.zoom(2)
    assert scene.camera.distance < distance
    window.log_dock.hide()
    window.save_layout()
    again = MainWindow(settings=qt_settings, show_dialogs=False)
    qtbot.addWidget(again)
    assert again.log_dock.isHidden() and not again.run_dock.isHidden()  # the dock layout came back
    assert again.restoreGeometry(qt_settings.value("window/geometry"))  # (the offscreen screen clamps its size)


def test_new_run_dialog_builds_the_trainer_command(qtbot, tmp_path) -> None:
    from amt_studio.views.dialogs import NewRunDialog

    dialog = NewRunDialog(runs_dir=tmp_path)
    qtbot.addWidget(dialog)
    dialog.preset.setCurrentText("micro")
    assert "synth:live" in dialog.data.placeholderText()  # the preset's own data, shown as the default
    dialog.stage_steps[1].setValue(50)
    dialog.max_steps.setValue(120)
    dialog.overrides.setText("trainer.log_every=5")
    dialog.run_dir_edit.setText(str(tmp_path / "r1"))
    argv = dialog.argv()
    assert argv[1:4] == ["-m", "amt_core", "train"] and argv[argv.index("--preset") + 1] == "micro"
    assert argv[argv.index("--run-dir") + 1] == str(tmp_path / "r1") and "--data" not in argv
    assert "stages.1.steps=50" in argv and "stages.0.steps=0" not in argv and "trainer.log_every=5" in argv
    assert argv[argv.index("--max-steps") + 1] == "120"
