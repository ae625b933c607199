"""Snapshots: predictions and ground truth of the fixed visualization samples, as a small .npz the studio draws.

Arrays (N samples): `image` (N, h, w, 3) uint8 at most 128 px high, `K` (N, 3, 3) for that image size, then
`gt_<field>` and `pred_<field>` for joints3d, joints2d (pixels of the stored image), hand_verts, obj_class, obj_rot,
obj_trans, contact (gt per-vertex labels / pred per-vertex probability), contact_points, contact_forces; `valid_<flag>`
per sample; `hand_faces` (F, 3) when the model has a hand mesh; `index`. Fields a model does not predict are absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from amt_core.atomic import atomic_write

MAX_SIDE = 128


def _np(value: torch.Tensor) -> np.ndarray:
    value = value.detach().to("cpu")
    return value.float().numpy() if value.is_floating_point() else value.numpy()


def snapshot_arrays(batch: dict, output, hand_faces: torch.Tensor | None) -> dict[str, np.ndarray]:
    """The arrays of a snapshot (see the module docstring)."""
    image = batch["image"].float()  # (N, 3, H, W) in [0, 1]
    height, width = image.shape[-2:]
    scale = min(1.0, MAX_SIDE / max(height, width))
    K = batch["K"].float().clone()
    if scale < 1.0:
        image = F.interpolate(image, size=(round(height * scale), round(width * scale)), mode="area")
        K[:, :2] *= scale
    arrays = {
        "image": (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy(),
        "K": _np(K),
        "image_scale": np.float32(scale),
    }
    for name in (
        "joints3d",
        "hand_verts",
        "obj_rot",
        "obj_trans",
        "contact_points",
        "contact_forces",
        "contact_point_mask",
    ):
        if name in batch:
            arrays[f"gt_{name}"] = _np(batch[name])
    for name in ("obj_class", "contact"):
        if name in batch:
            arrays[f"gt_{name}"] = _np(batch[name])
    if "joints2d" in batch:
        arrays["gt_joints2d"] = _np(batch["joints2d"] * scale)
    for name in (
        "joints3d",
        "hand_verts",
        "obj_rot",
        "obj_trans",
        "contact_points",
        "contact_conf",
        "contact_forces",
        "hand_pose",
        "hand_shape",
        "hand_rot",
        "hand_trans",
    ):
        value = getattr(output, name, None)
        if value is not None:
            arrays[f"pred_{name}"] = _np(value)
    arrays["pred_joints2d"] = _np(output.joints2d * scale)
    if output.obj_logits is not None:
        arrays["pred_obj_class"] = _np(output.obj_logits.argmax(dim=-1))
    if output.contact_prob is not None:
        arrays["pred_contact"] = _np(output.contact_prob)
    for flag, value in batch.get("valid", {}).items():
        arrays[f"valid_{flag}"] = _np(value)
    if "index" in batch:
        arrays["index"] = _np(batch["index"])
    if hand_faces is not None:
        arrays["hand_faces"] = _np(hand_faces).astype(np.int32)
    return arrays


def write_snapshot(folder: Path, step: int, batch: dict, output, hand_faces: torch.Tensor | None) -> Path:
    """Write snapshots/step_N.npz atomically; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.npz"
    with atomic_write(path) as handle:
        np.savez_compressed(handle, **snapshot_arrays(batch, output, hand_faces))
    return path
