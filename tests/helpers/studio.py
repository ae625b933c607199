"""Hand-made studio runs for the studio tests: a run directory written event by event in the documented schema
(every kind, snapshots included), snapshot files, and where projected vertices land on a rendered mask. The Qt tests
use these before (and besides) the real trainer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import trimesh

from amt_core.geometry.camera import project_to_image

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


def projected_vertices_on_mask(mask: np.ndarray, verts: np.ndarray, K: np.ndarray) -> float:
    """Share of the vertices (projected by K, inside the image) that land on the mask, dilated by one pixel."""
    import torch
    from scipy.ndimage import binary_dilation

    uv = project_to_image(torch.as_tensor(verts, dtype=torch.float64), torch.as_tensor(K, dtype=torch.float64))
    u, v = np.floor(uv.numpy()).astype(int).T
    inside = (u >= 0) & (v >= 0) & (u < mask.shape[1]) & (v < mask.shape[0])
    grown = binary_dilation(mask, iterations=1)
    return float(grown[v[inside], u[inside]].mean()) if inside.any() else 0.0
