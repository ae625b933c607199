"""Qt-free studio state: a run built from hand-written events (the documented schema), snapshots, the renderer.

`write_run` here also makes the run directories the Qt tests use before (and besides) the real trainer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from amt_core.errors import UserError
from amt_core.geometry.camera import project_to_image
from amt_studio.render import OrbitCamera, RaycastRenderer, snapshot_layers
from amt_studio.session import RunSession
from amt_studio.state.run import COLLAPSE_STD_M, RunState
from amt_studio.state.snapshot import load_snapshot

IMAGE_PX = 96
FOCAL = 110.0


def hand_blob(center: np.ndarray) -> trimesh.Trimesh:
    """A hand-sized closed mesh (an ellipsoid, 9 x 5 x 3 cm) at `center`: the hand layer is not needed here."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    mesh.vertices = mesh.vertices * np.array([0.045, 0.025, 0.015]) + center
    return mesh


def fake_joints(center: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """(21, 3) joints fanned out from a wrist, metres."""
    joints = np.zeros((21, 3))
    joints[0] = center + np.array([0.0, 0.04, 0.0])
    for finger in range(5):
        direction = np.array([(finger - 2) * 0.3, -1.0, 0.0])
        direction /= np.linalg.norm(direction)
        for k in range(4):
            joints[1 + finger * 4 + k] = joints[0] + direction * spread * (k + 1) + rng.normal(0, 0.002, 3)
    return joints


def write_snapshot(path: Path, step: int, samples: int = 2, seed: int = 0) -> dict:
    """A snapshot .npz in the studio's schema; returns the arrays."""
    rng = np.random.default_rng(seed)
    K = np.array([[FOCAL, 0, IMAGE_PX / 2], [0, FOCAL, IMAGE_PX / 2], [0, 0, 1.0]])
    centers = np.array([[0.01 * i, 0.0, 0.45] for i in range(samples)])
    blob = hand_blob(np.zeros(3))
    arrays = {
        "images": rng.uniform(0.2, 0.5, (samples, 3, IMAGE_PX, IMAGE_PX)).astype(np.float32),
        "K": np.repeat(K[None], samples, 0),
        "gt_joints3d": np.stack([fake_joints(c, 0.02, rng) for c in centers]),
        "pred_joints3d": np.stack([fake_joints(c + 0.005, 0.02, rng) for c in centers]),
        "gt_hand_verts": np.stack([blob.vertices + c for c in centers]),
        "pred_hand_verts": np.stack([blob.vertices + c + 0.003 for c in centers]),
        "hand_faces": np.asarray(blob.faces, dtype=np.int32),
        "gt_obj_class": np.zeros(samples, dtype=np.int64),
        "pred_obj_class": np.zeros(samples, dtype=np.int64),
        "gt_obj_rot": np.repeat(np.eye(3)[None], samples, 0),
        "pred_obj_rot": np.repeat(np.eye(3)[None], samples, 0),
        "gt_obj_trans": centers + [0.07, 0.0, 0.02],
        "pred_obj_trans": centers + [0.072, 0.0, 0.02],
        "pred_contact_points": centers[:, None] + rng.normal(0, 0.02, (samples, 4, 3)),
        "pred_contact_conf": rng.uniform(0, 1, (samples, 4)),
        "pred_contact_forces": rng.normal(0, 2, (samples, 4, 3)),
        "obj_verts_0": trimesh.creation.box([0.05, 0.05, 0.08]).vertices,
        "obj_faces_0": np.asarray(trimesh.creation.box([0.05, 0.05, 0.08]).faces, dtype=np.int32),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def event(kind: str, step: int, **fields) -> dict:
    return {"v": 1, "kind": kind, "step": step, "time": time.time(), **fields}


def write_run(run_dir: Path, steps: int = 20, collapse_at: int | None = None, crash: bool = False) -> list[dict]:
    """A finished run written by hand: config, events (every kind) and snapshots."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "config": {"preset": "micro", "trainer": {"max_steps": steps}},
        "device": "cpu",
        "stage_lengths": [2, 2, 2],
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    events = [event("state", 0, state="running", device="cpu"), event("stage", 0, stage=1, name="components")]
    for step in range(1, steps + 1):
        terms = {"joints": 1.0 / step, "object": 0.5 / step, "kl": 0.01}
        lr = {"encoders": 5e-4, "decoders": 1e-3}
        memory = {"rss_mb": 500.0, "peak_mb": 510.0}
        total = sum(terms.values())
        events.append(
            event(
                "metrics",
                step,
                stage=1,
                loss=total,
                terms=terms,
                lr=lr,
                images_per_s=30.0 + step,
                memory=memory,
                data_share=0.01 * step,
            )
        )
        std = 0.5 if collapse_at is not None and step >= collapse_at else 30.0
        grad = {"encoders": 0.5, "decoders": 5e3 if step == 7 else 1.0}
        entropy = {"backbone.blocks.0": 3.0, "backbone.blocks.1": 2.5 - step * 0.01}
        events.append(
            event("diagnostics", step, pred_std_mm=std, gt_std_mm=30.0, attention_entropy=entropy, grad_norm=grad)
        )
        if step % 5 == 0:
            write_snapshot(run_dir / "snapshots" / f"step_{step:08d}.npz", step, seed=step)
            events.append(event("snapshot", step, path=f"snapshots/step_{step:08d}.npz"))
        if step % 10 == 0:
            events.append(event("checkpoint", step, name=f"step_{step:08d}", path=f"checkpoints/step_{step:08d}"))
        if step == 12:
            events.append(event("anomaly", step, what="non_finite", action="skipped"))
            events.append(event("rollback", 10, checkpoint="step_00000010", from_step=12, reason="command"))
    if crash:
        events.append(
            event("error", steps, message="RuntimeError: boom", traceback="Traceback ...\nRuntimeError: boom")
        )
    else:
        events.append(event("state", steps, state="finished"))
    with open(run_dir / "events.jsonl", "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    return events


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


def projected_vertices_on_mask(mask: np.ndarray, verts: np.ndarray, K: np.ndarray) -> float:
    """Share of the vertices (projected by K, inside the image) that land on the mask, dilated by one pixel."""
    import torch
    from scipy.ndimage import binary_dilation

    uv = project_to_image(torch.as_tensor(verts, dtype=torch.float64), torch.as_tensor(K, dtype=torch.float64))
    u, v = np.floor(uv.numpy()).astype(int).T
    inside = (u >= 0) & (v >= 0) & (u < mask.shape[1]) & (v < mask.shape[0])
    grown = binary_dilation(mask, iterations=1)
    return float(grown[v[inside], u[inside]].mean()) if inside.any() else 0.0


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
