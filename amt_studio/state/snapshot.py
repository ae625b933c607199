"""Snapshots: small .npz files of predictions and ground truth for fixed visualization samples, and their timeline.

`load_snapshot` reads the trainer's file (docs/events.md) into `SnapshotData`, arrays with a leading sample axis S.
Fields the file lacks are None, and views skip them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from amt_core.errors import UserError


@dataclass(kw_only=True)
class SnapshotData:
    """Predictions and ground truth for S samples, metres, OpenCV camera frame."""

    step: int = 0
    images: np.ndarray | None = None
    """(S, H, W, 3) uint8 RGB."""
    K: np.ndarray | None = None
    """(S, 3, 3) intrinsics of the images."""
    gt_joints3d: np.ndarray | None = None
    """(S, 21, 3)"""
    pred_joints3d: np.ndarray | None = None
    """(S, 21, 3)"""
    gt_hand_verts: np.ndarray | None = None
    """(S, V, 3)"""
    pred_hand_verts: np.ndarray | None = None
    """(S, V, 3)"""
    hand_faces: np.ndarray | None = None
    """(F, 3) int, shared by every hand mesh."""
    gt_obj_class: np.ndarray | None = None
    """(S,) int, -1 where no object."""
    pred_obj_class: np.ndarray | None = None
    gt_obj_rot: np.ndarray | None = None
    """(S, 3, 3)"""
    pred_obj_rot: np.ndarray | None = None
    gt_obj_trans: np.ndarray | None = None
    """(S, 3)"""
    pred_obj_trans: np.ndarray | None = None
    pred_contact_points: np.ndarray | None = None
    """(S, C, 3)"""
    pred_contact_conf: np.ndarray | None = None
    """(S, C) in [0, 1]."""
    pred_contact_forces: np.ndarray | None = None
    """(S, C, 3) newtons."""
    gt_contact_points: np.ndarray | None = None
    """(S, C, 3)"""
    gt_contact_mask: np.ndarray | None = None
    """(S, C) bool: which ground-truth contact slots are real."""
    gt_contact_forces: np.ndarray | None = None
    """(S, C, 3)"""
    obj_meshes: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Object meshes (verts (N, 3) metres in the object frame, faces (M, 3)) by class id, where the file has them."""
    attention: np.ndarray | None = None
    """(S, h, w) attention over the image patches, where the snapshot has it."""
    valid: dict[str, np.ndarray] = field(default_factory=dict)
    """(S,) bool per flag of the Sample schema (joints3d, hand_verts, obj, ...), where the file has them."""

    def has(self, flag: str, index: int) -> bool:
        """Whether sample `index` really has the ground truth `flag` covers (True when the file has no flags)."""
        values = self.valid.get(flag)
        return True if values is None or index >= len(values) else bool(values[index])

    @property
    def num_samples(self) -> int:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and f.name not in ("hand_faces",) and value.ndim >= 1:
                return int(value.shape[0])
        return 0

    def sample_errors_mm(self) -> np.ndarray | None:
        """(S,) mean per-joint position error, millimetres, where both joint sets are present."""
        if self.pred_joints3d is None or self.gt_joints3d is None:
            return None
        errors = np.linalg.norm(self.pred_joints3d - self.gt_joints3d, axis=-1).mean(-1) * 1000.0
        return np.where([self.has("joints3d", i) for i in range(len(errors))], errors, np.nan)


# Accepted spellings for each field: ours (gt_x / pred_x) first, then the trainer's alternatives (x_gt, x_pred, x).
_ALIASES: dict[str, tuple[str, ...]] = {
    "images": ("images", "image"),
    "K": ("K", "intrinsics"),
    "hand_faces": ("hand_faces", "faces"),
    "attention": ("attention", "attention_map"),
}


def _candidates(name: str) -> tuple[str, ...]:
    if name in _ALIASES:
        return _ALIASES[name]
    for side in ("gt", "pred"):
        if name.startswith(side + "_"):
            base = name[len(side) + 1 :]
            alt = "target" if side == "gt" else "predicted"
            return (name, f"{base}_{side}", f"{alt}_{base}", f"{side}/{base}", f"{base}_{alt}")
    return (name,)


def load_snapshot(path: Path | str, step: int = 0) -> SnapshotData:
    """Read one snapshot file.

    Raises:
        UserError: the file is missing or is not a readable .npz.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read snapshot {path}: {err}; is the run directory complete?") from err
    data = SnapshotData(step=int(arrays.get("step", step)) if np.ndim(arrays.get("step", 0)) == 0 else step)
    for f in fields(SnapshotData):
        if f.name in ("step", "obj_meshes", "valid"):
            continue
        for key in _candidates(f.name):
            if key in arrays:
                setattr(data, f.name, arrays[key])
                break
    data.images = _as_uint8_hwc(data.images)
    data.valid = {key[6:]: value.astype(bool).reshape(-1) for key, value in arrays.items() if key.startswith("valid_")}
    for key, value in arrays.items():  # object meshes stored as obj_verts_<class> / obj_faces_<class>
        if key.startswith("obj_verts_") and f"obj_faces_{key[10:]}" in arrays:
            data.obj_meshes[int(key[10:])] = (
                value.astype(np.float64),
                arrays[f"obj_faces_{key[10:]}"].astype(np.int32),
            )
    return data


def _as_uint8_hwc(images: np.ndarray | None) -> np.ndarray | None:
    """Images as (S, H, W, 3) uint8 whatever their layout ((S, 3, H, W) float in [0, 1] is the Sample's)."""
    if images is None:
        return None
    if images.ndim == 3:
        images = images[None]
    if images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    if images.dtype != np.uint8:
        images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return np.ascontiguousarray(images)


class SnapshotTimeline:
    """The snapshots of a run in step order; files are loaded on demand and a few kept in memory."""

    def __init__(self, cache_size: int = 8) -> None:
        self.entries: list[tuple[int, Path]] = []
        self._cache: OrderedDict[Path, SnapshotData] = OrderedDict()
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, step: int, path: Path) -> int:
        """Record a snapshot; returns its index on the timeline."""
        self.entries.append((step, path))
        self.entries.sort(key=lambda e: e[0])
        return self.entries.index((step, path))

    def drop_after(self, step: int) -> int:
        """Forget snapshots past `step` (a rollback abandoned them); returns how many."""
        keep = [entry for entry in self.entries if entry[0] <= step]
        dropped = len(self.entries) - len(keep)
        self.entries = keep
        return dropped

    def get(self, index: int) -> SnapshotData:
        """The snapshot at `index` (negative counts from the latest)."""
        step, path = self.entries[index]
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        data = load_snapshot(path, step)
        data.step = step
        self._cache[path] = data
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return data
