"""The Sample: one schema for every dataset (synthetic, FreiHAND, HO3D, DexYCB).

A sample is a dict of torch tensors with the field names below, so `torch.utils.data.default_collate` batches it.
Every field is always present with a fixed shape, so batches of mixed datasets collate; `valid[name]` says whether
the sample really has it (a loss for an invalid field is skipped, never faked). Units: metres, the OpenCV camera
frame (x right, y down, z forward), the 21-joint order of `amt_core.joints`. `Batch` types a collated batch.
"""

from __future__ import annotations

from typing import TypedDict

import torch

from amt_core.joints import NUM_JOINTS

# Contact points are padded to this many slots; `contact_point_mask` marks the real ones.
MAX_CONTACTS = 32

# Names of the `valid` flags and the fields each one covers.
VALID_FIELDS: dict[str, tuple[str, ...]] = {
    "joints3d": ("joints3d",),
    "joints2d": ("joints2d",),
    "mano": ("hand_pose", "hand_shape", "hand_rot", "hand_trans"),
    "hand_verts": ("hand_verts",),
    "obj": ("obj_class", "obj_rot", "obj_trans"),
    "contact": ("contact",),
    "contact_points": ("contact_points", "contact_point_mask"),
    "forces": ("contact_forces",),
    "masks": ("hand_mask", "obj_mask"),
}


def field_shapes(height: int, width: int, num_verts: int) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor field for an image of (height, width) and a hand mesh of num_verts vertices."""
    return {
        "image": (3, height, width),
        "K": (3, 3),
        "joints3d": (NUM_JOINTS, 3),
        "joints2d": (NUM_JOINTS, 2),
        "hand_pose": (45,),
        "hand_shape": (10,),
        "hand_rot": (3,),
        "hand_trans": (3,),
        "hand_verts": (num_verts, 3),
        "obj_class": (),
        "obj_rot": (3, 3),
        "obj_trans": (3,),
        "contact": (num_verts,),
        "contact_points": (MAX_CONTACTS, 3),
        "contact_forces": (MAX_CONTACTS, 3),
        "contact_point_mask": (MAX_CONTACTS,),
        "hand_mask": (height, width),
        "obj_mask": (height, width),
    }


class Valid(TypedDict):
    """The `valid` flags of a batch: (B,) bool each, one per entry of `VALID_FIELDS` (a single sample's are ())."""

    joints3d: torch.Tensor
    joints2d: torch.Tensor
    mano: torch.Tensor
    hand_verts: torch.Tensor
    obj: torch.Tensor
    contact: torch.Tensor
    contact_points: torch.Tensor
    forces: torch.Tensor
    masks: torch.Tensor


class _BatchExtras(TypedDict, total=False):
    """The fields of a batch that only some sources add (a base class, as `NotRequired` is not seen through
    `from __future__ import annotations` on Python 3.11)."""

    index: torch.Tensor
    """(B,) int64: the samples' indices in the dataset, from the trainer's loader (dropped before the step)."""
    depth: torch.Tensor
    """(B, H, W) metres along z, 0 where no surface (synthetic data, as the other extras below)."""
    gravity_dir: torch.Tensor
    """(B, 3) unit gravity direction, camera frame."""
    contact_normals: torch.Tensor
    """(B, MAX_CONTACTS, 3) unit normals into the object at the contact points."""
    grasp_stable: torch.Tensor
    """(B,) bool: the solved contact forces hold the object."""
    wrench_residual: torch.Tensor
    """(B, 2) net force (N) and torque (N·m) the solved contact forces leave."""


class Batch(_BatchExtras):
    """Collated Samples, as the trainer's step, MixUp and the losses receive them: the fields of `field_shapes`
    with a leading batch dimension B, the `valid` flags, and the fields only some sources add. A function given a
    batch reads it; one that changes a field returns a new dict (`mixup_batch`, `slice_batch`, `permute_batch`).
    """

    image: torch.Tensor
    """(B, 3, H, W) float, RGB in [0, 1]."""
    K: torch.Tensor
    """(B, 3, 3) intrinsics of the (cropped, resized) image."""
    joints3d: torch.Tensor
    """(B, 21, 3) metres, camera frame."""
    joints2d: torch.Tensor
    """(B, 21, 2) pixels."""
    hand_pose: torch.Tensor
    """(B, 45) MANO-layout pose."""
    hand_shape: torch.Tensor
    """(B, 10)."""
    hand_rot: torch.Tensor
    """(B, 3) axis-angle."""
    hand_trans: torch.Tensor
    """(B, 3) metres."""
    hand_verts: torch.Tensor
    """(B, V, 3) metres, camera frame."""
    obj_class: torch.Tensor
    """(B,) int64, -1 for no object."""
    obj_rot: torch.Tensor
    """(B, 3, 3)."""
    obj_trans: torch.Tensor
    """(B, 3) metres."""
    contact: torch.Tensor
    """(B, V) per hand vertex contact label."""
    contact_points: torch.Tensor
    """(B, MAX_CONTACTS, 3) metres."""
    contact_forces: torch.Tensor
    """(B, MAX_CONTACTS, 3) newtons."""
    contact_point_mask: torch.Tensor
    """(B, MAX_CONTACTS) bool, the real contact slots."""
    hand_mask: torch.Tensor
    """(B, H, W) bool."""
    obj_mask: torch.Tensor
    """(B, H, W) bool."""
    valid: Valid


_DTYPES = {"obj_class": torch.int64, "contact_point_mask": torch.bool, "hand_mask": torch.bool, "obj_mask": torch.bool}


def empty_sample(height: int, width: int, num_verts: int) -> dict:
    """A sample with every field zero (obj_class -1, obj_rot identity) and every `valid` flag False."""
    sample: dict = {}
    for name, shape in field_shapes(height, width, num_verts).items():
        sample[name] = torch.zeros(shape, dtype=_DTYPES.get(name, torch.float32))
    sample["obj_class"] = torch.tensor(-1, dtype=torch.int64)
    sample["obj_rot"] = torch.eye(3)
    sample["valid"] = {name: torch.tensor(False) for name in VALID_FIELDS}
    return sample


def check_sample(sample: dict, num_verts: int | None = None) -> list[str]:
    """Problems with a sample's fields and shapes, one line each; an empty list means it is well formed."""
    problems = []
    if "image" not in sample:
        return ["no 'image' field"]
    _, height, width = sample["image"].shape
    if num_verts is None:
        num_verts = sample["hand_verts"].shape[0] if "hand_verts" in sample else 0
    for name, shape in field_shapes(height, width, num_verts).items():
        if name not in sample:
            problems.append(f"missing field '{name}'")
        elif tuple(sample[name].shape) != shape:
            problems.append(f"field '{name}' has shape {tuple(sample[name].shape)}, expected {shape}")
    valid = sample.get("valid", {})
    for name in VALID_FIELDS:
        if name not in valid:
            problems.append(f"missing valid flag '{name}'")
    for name, value in sample.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            problems.append(f"field '{name}' has non-finite values")
    return problems
