"""Qt-free studio state: a run built from hand-written events (the documented schema), snapshots, the renderer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.studio import IMAGE_PX, hand_blob, projected_vertices_on_mask, write_run, write_snapshot

from amt_core.errors import UserError
from amt_core.geometry.camera import project_to_image
from amt_studio.render import OrbitCamera, RaycastRenderer, snapshot_layers
from amt_studio.session import RunSession
from amt_studio.state.run import COLLAPSE_STD_M, RunState
from amt_studio.state.snapshot import load_snapshot


def test_run_state_from_events(tmp_path: Path) -> None:
    events = write_run(tmp_path / "run", steps=20, collapse_at=15)
    state = RunState(tmp_path / "run")
    state.load_config()
    state.ingest(events)
    assert state.state == "finished" and state.stage == 1 and state.step == 20 and state.max_steps == 20
    assert state.device == "cpu"
    assert set(state.losses.names()) == {"total", "joints", "object", "kl"}
    assert np.allclose(state.losses["joints"].y, 1.0 / np.arange(1, 21))
    assert state.training["images_per_s"].last() == pytest.approx(50.0)
    assert state.data_share == pytest.approx(0.2) and state.training["data_share"].last() == pytest.approx(0.2)
    assert state.training["lr/decoders"].last() == pytest.approx(1e-3) and "memory/rss_mb" in state.training
    assert len(state.snapshots) == 4 and [c.name for c in state.checkpoints] == ["step_00000010", "step_00000020"]
    kinds = [m.kind for m in state.markers]
    assert set(kinds) == {"checkpoint", "snapshot", "stage", "anomaly", "rollback"} and kinds.count("snapshot") == 4
    assert state.collapsed and state.pred_std["pred"].last() == pytest.approx(0.0005)
    assert COLLAPSE_STD_M == 0.01
    assert any("rolled back to step_00000010" in line.text for line in state.log)
    assert state.grad_flags == {}  # the explosion at step 7 was flagged then cleared
    assert any("exploding" in line.text for line in state.log)


def test_replay_in_batches_equals_at_once(tmp_path: Path) -> None:
    events = write_run(tmp_path / "run", steps=12)
    whole, parts = RunState(), RunState()
    whole.ingest(events)
    for i in range(0, len(events), 5):
        parts.ingest(events[i : i + 5])
    assert np.array_equal(whole.losses["object"].y, parts.losses["object"].y)
    assert whole.step == parts.step and len(whole.snapshots) == len(parts.snapshots)


def test_session_tails_a_growing_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    events = write_run(run, steps=6)
    text = (run / "events.jsonl").read_text()
    (run / "events.jsonl").write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n" + '{"v": 1, "kind": "met')
    session = RunSession.attach(run)
    session.poll()
    seen = session.state.events_seen
    assert 0 < seen < len(events)
    (run / "events.jsonl").write_text(text)
    session.poll()
    assert session.state.events_seen == len(events) and session.state.state == "finished"


def test_attach_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="events.jsonl"):
        RunSession.attach(tmp_path)


def test_crash_event_sets_error(tmp_path: Path) -> None:
    events = write_run(tmp_path / "run", steps=3, crash=True)
    state = RunState()
    seen = []
    state.error_raised.connect(lambda msg, trace: seen.append((msg, trace)))
    state.ingest(events)
    assert state.state == "failed" and seen and "Traceback" in seen[0][1]


def test_snapshot_loader_and_errors(tmp_path: Path) -> None:
    arrays = write_snapshot(tmp_path / "s.npz", step=5)
    data = load_snapshot(tmp_path / "s.npz")
    assert data.images.shape == (2, IMAGE_PX, IMAGE_PX, 3) and data.images.dtype == np.uint8
    expected = np.linalg.norm(arrays["pred_joints3d"] - arrays["gt_joints3d"], axis=-1).mean(-1) * 1000
    assert np.allclose(data.sample_errors_mm(), expected)
    assert 0 in data.obj_meshes
    with pytest.raises(UserError):
        load_snapshot(tmp_path / "missing.npz")


def test_render_puts_hand_pixels_where_the_hand_projects(tmp_path: Path) -> None:
    """Seen from the image camera, the rendered predicted hand covers the pixels its vertices project to."""
    import torch

    write_snapshot(tmp_path / "s.npz", step=1)
    data = load_snapshot(tmp_path / "s.npz")
    layers = snapshot_layers(data, 0, {"pred hand"})
    renderer = RaycastRenderer()
    renderer.set_layers(layers)
    camera = OrbitCamera(target=np.array([0.0, 0.0, 1.0]), distance=1.0)  # eye at the origin, looking along +z
    assert np.allclose(camera.eye(), 0.0)
    frame = renderer.render(camera, IMAGE_PX, IMAGE_PX, intrinsic=data.K[0])
    hand = frame.layer_index == 0
    uv = project_to_image(torch.from_numpy(data.pred_hand_verts[0]), torch.from_numpy(data.K[0])).numpy()
    lo, hi = np.floor(uv.min(0)).astype(int), np.ceil(uv.max(0)).astype(int)
    expected = np.zeros_like(hand)
    expected[max(lo[1], 0) : hi[1], max(lo[0], 0) : hi[0]] = True
    inside = (hand & expected).sum() / hand.sum()
    coverage = (hand & expected).sum() / expected.sum()
    assert hand.sum() > 200 and inside > 0.98 and coverage > 0.6  # an ellipse fills ~pi/4 of its box
    centre = project_to_image(torch.tensor(data.pred_hand_verts[0].mean(0, keepdims=True)), torch.tensor(data.K[0]))
    u, v = np.round(centre[0].numpy()).astype(int)
    assert hand[v, u]
    assert (frame.rgb[hand].mean(0) > frame.rgb[~hand].mean(0) + 40).all()  # shaded hand, dark background
    assert projected_vertices_on_mask(hand, data.pred_hand_verts[0], data.K[0]) > 0.97
    shifted = np.roll(hand, 12, axis=1)  # the same check fails for a picture that is off by 12 pixels
    assert projected_vertices_on_mask(shifted, data.pred_hand_verts[0], data.K[0]) < 0.8


def test_render_rebuild_only_on_content_change_is_fast() -> None:
    renderer = RaycastRenderer()
    blob = hand_blob(np.array([0, 0, 0.5]))
    from amt_studio.render.content import _layer

    renderer.set_layers([_layer("pred hand", blob.vertices, blob.faces, (1, 0.5, 0.2))])
    camera = OrbitCamera()
    camera.look_from_image_camera(np.array([0, 0, 0.5]))
    renderer.render(camera, 256, 256)
    start = time.perf_counter()
    for _ in range(5):
        camera.orbit(10, 3)
        frame = renderer.render(camera, 256, 256)
    assert (time.perf_counter() - start) / 5 < 0.2 and (frame.layer_index == 0).any()


def test_desktop_entry_installs_for_the_user(tmp_path: Path) -> None:
    import configparser
    import subprocess

    root = Path(__file__).resolve().parents[1] / "packaging"
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(root / "amt-studio.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Icon"] == "amt-studio" and "amt-studio" in desktop["Exec"]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["bash", str(root / "install-desktop.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    installed = tmp_path / ".local/share/applications/amt-studio.desktop"
    assert installed.exists() and (tmp_path / ".local/share/icons/hicolor/scalable/apps/amt-studio.svg").exists()
    assert "amt_studio" in installed.read_text() or "amt-studio" in installed.read_text()
    subprocess.run(["bash", str(root / "install-desktop.sh"), "--remove"], env=env, check=True, capture_output=True)
    assert not installed.exists()


def test_state_and_renderer_never_import_qt() -> None:
    """The data layer stays Qt-free (napari's split): importing it loads no PySide6 or pyqtgraph."""
    import subprocess
    import sys

    code = (
        "import sys, amt_studio.state, amt_studio.render, amt_studio.session, amt_studio.inspector\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_attached_run_whose_trainer_vanished_is_marked_lost(tmp_path: Path, monkeypatch) -> None:
    import os
    import socket

    import amt_studio.session as session_module

    run = tmp_path / "run"
    write_run(run, steps=3)
    lines = (run / "events.jsonl").read_text().splitlines()[:-1]  # no final state: it looks live
    (run / "events.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(session_module, "LIVENESS_S", 0.0)
    (run / "lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # a live owner
    session = RunSession.attach(run)
    session.poll()
    session.poll()
    assert session.state.state == "running"
    (run / "lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))  # a dead one
    session.poll()
    assert session.state.state == "lost" and not session.state.is_live


def test_status_names_how_the_run_computes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    acceleration = {
        "attention": {"backend": "sdpa_flash", "reason": "auto: measured"},
        "compiled": ["backbone.vit.blocks.0"],
        "checkpointing": {"policy": "selective", "blocks": 24},
        "fp8": {"converted": ["a", "b"]},
    }
    config = {
        "device": "cuda:0",
        "config": {"preset": "dinov2_l", "trainer": {"precision": "fp8"}, "stages": []},
        "acceleration": acceleration,
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    state = RunState(run_dir)
    state.load_config()
    assert state.compute == "fp8 · attn sdpa_flash · compiled · ckpt selective · fp8 2 layers"
    # a run directory from before the GPU path has no acceleration section: only the precision is known
    config.pop("acceleration")
    (run_dir / "config.json").write_text(json.dumps(config))
    state.load_config()
    assert state.compute == "fp8"
