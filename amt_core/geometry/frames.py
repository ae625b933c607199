"""The hand's 22 local coordinate frames (the seed's multi-coordinate representation), built from 21 joints.

Frames, in this order (joint indices in the project's 21-joint order, `amt_core.joints`):
- 5 fingertip frames: origin at each tip, x along the distal bone (its parent -> tip);
- 5 metacarpal frames: origin at each finger's base joint (thumb CMC, finger MCPs), x along wrist -> base;
- 12 finger-joint frames: the seed's "3 per finger" on the four long fingers (MCP, PIP, DIP of index, middle, ring,
  little), origin at the joint, x along the bone leaving it. The thumb has one phalanx fewer; its CMC and tip frames
  cover it, and every frame token sees all 21 joints in its own coordinates, so no joint goes unobserved.
In every frame z is the palm normal (wrist->index MCP x wrist->little MCP) made orthogonal to x, and y = z x x, so
each is a proper rigid transform. Degenerate inputs (coincident joints, a bone along the palm normal, a collapsed
palm) fall back to fixed camera axes, so the result is orthonormal with det +1 for any finite input.
"""

from __future__ import annotations

import torch

from amt_core.joints import FINGER_BASES, FINGERTIPS, PARENTS

_FINGER_JOINTS = tuple(j for base in FINGER_BASES[1:] for j in (base, base + 1, base + 2))

FRAME_NAMES: tuple[str, ...] = (
    tuple(f"tip_{f}" for f in ("thumb", "index", "middle", "ring", "little"))
    + tuple(f"metacarpal_{f}" for f in ("thumb", "index", "middle", "ring", "little"))
    + tuple(f"{f}_{p}" for f in ("index", "middle", "ring", "little") for p in ("mcp", "pip", "dip"))
)
NUM_FRAMES = 22

# Origin joint of each frame, and the bone (from, to) its x axis follows.
FRAME_ORIGINS: tuple[int, ...] = FINGERTIPS + FINGER_BASES + _FINGER_JOINTS
FRAME_X_FROM: tuple[int, ...] = tuple(PARENTS[t] for t in FINGERTIPS) + (0,) * 5 + _FINGER_JOINTS
FRAME_X_TO: tuple[int, ...] = FINGERTIPS + FINGER_BASES + tuple(j + 1 for j in _FINGER_JOINTS)

# Bones shorter than this (metres) and normals shorter than this (unit vectors) count as degenerate.
_MIN_BONE = 1e-6
_MIN_PERP = 1e-3


def _normalize(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors and norms of (..., 3); zero vectors stay finite (gradients too)."""
    norm = v.norm(dim=-1, keepdim=True)
    return v / norm.clamp(min=1e-12), norm


def _first_valid(candidates: list[torch.Tensor], norms: list[torch.Tensor], threshold: float) -> torch.Tensor:
    """Per element, the first candidate whose norm exceeds threshold (the last one otherwise)."""
    out = candidates[-1]
    for vec, norm in zip(reversed(candidates[:-1]), reversed(norms[:-1])):
        out = torch.where(norm > threshold, vec, out)
    return out


def local_frames(joints: torch.Tensor) -> torch.Tensor:
    """The 22 local frames of a hand.

    Args:
        joints: (..., 21, 3) metres, any frame (normally the camera frame).

    Returns:
        (..., 22, 4, 4) transforms from each local frame to the joints' frame: rotation columns are the frame's
        x, y, z axes, the translation is its origin joint. Always proper (orthonormal rotation, det +1).
    """
    dtype, device = joints.dtype, joints.device
    origin = joints[..., FRAME_ORIGINS, :]  # (..., 22, 3)
    bone = joints[..., FRAME_X_TO, :] - joints[..., FRAME_X_FROM, :]
    x_main, x_norm = _normalize(bone)
    x_hand, hand_norm = _normalize(joints[..., 9, :] - joints[..., 0, :])  # wrist -> middle MCP
    x_hand = x_hand.unsqueeze(-2).expand_as(x_main)
    hand_norm = hand_norm.unsqueeze(-2).expand_as(x_norm)
    up = torch.tensor([0.0, -1.0, 0.0], dtype=dtype, device=device).expand_as(x_main)
    x_axis = _first_valid([x_main, x_hand, up], [x_norm, hand_norm, torch.ones_like(x_norm)], _MIN_BONE)

    palm = torch.linalg.cross(joints[..., 5, :] - joints[..., 0, :], joints[..., 17, :] - joints[..., 0, :])
    palm_unit, palm_norm = _normalize(palm)
    candidates, norms = [], []
    for ref in (
        palm_unit.unsqueeze(-2).expand_as(x_axis),
        torch.tensor([0.0, 0.0, 1.0], dtype=dtype, device=device).expand_as(x_axis),
        torch.tensor([1.0, 0.0, 0.0], dtype=dtype, device=device).expand_as(x_axis),
    ):
        perp = ref - (ref * x_axis).sum(-1, keepdim=True) * x_axis
        unit, norm = _normalize(perp)
        candidates.append(unit)
        norms.append(norm)
    # The palm normal only counts where the palm itself is not degenerate.
    norms[0] = torch.where(palm_norm.unsqueeze(-2) > 1e-12, norms[0], torch.zeros_like(norms[0]))
    z_axis = _first_valid(candidates, norms, _MIN_PERP)
    # A second Gram-Schmidt pass ("twice is enough"): in float32 one pass leaves z up to ~1e-5 off orthogonal when
    # the reference was nearly parallel to x.
    z_axis, _ = _normalize(z_axis - (z_axis * x_axis).sum(-1, keepdim=True) * x_axis)
    y_axis = torch.linalg.cross(z_axis, x_axis)
    rotation = torch.stack([x_axis, y_axis, z_axis], dim=-1)  # (..., 22, 3, 3)
    transform = torch.zeros(*rotation.shape[:-2], 4, 4, dtype=dtype, device=device)
    transform[..., :3, :3] = rotation
    transform[..., :3, 3] = origin
    transform[..., 3, 3] = 1.0
    return transform


def to_local(points: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Points (..., N, 3) expressed in each frame (..., F, 4, 4) -> (..., F, N, 3)."""
    rotation, origin = frames[..., :3, :3], frames[..., :3, 3]
    rel = points.unsqueeze(-3) - origin.unsqueeze(-2)  # (..., F, N, 3)
    return rel @ rotation


def from_local(local: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_local`: (..., F, N, 3) local points -> (..., F, N, 3) in the frames' parent frame."""
    rotation, origin = frames[..., :3, :3], frames[..., :3, 3]
    return local @ rotation.transpose(-1, -2) + origin.unsqueeze(-2)


# A neutral open right hand, wrist at the origin, fingers along -y (up in the image), palm facing the camera,
# metres; used as the hand encoder's starting skeleton so its first frames are well defined.
CANONICAL_JOINTS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0),
    (0.020, -0.020, -0.005),
    (0.042, -0.045, -0.010),
    (0.058, -0.068, -0.012),
    (0.068, -0.090, -0.014),
    (0.025, -0.088, 0.0),
    (0.028, -0.128, -0.004),
    (0.030, -0.153, -0.008),
    (0.031, -0.173, -0.012),
    (0.005, -0.090, 0.0),
    (0.005, -0.135, -0.004),
    (0.005, -0.163, -0.008),
    (0.005, -0.185, -0.012),
    (-0.015, -0.086, 0.0),
    (-0.017, -0.128, -0.004),
    (-0.018, -0.155, -0.008),
    (-0.019, -0.176, -0.012),
    (-0.033, -0.076, 0.0),
    (-0.036, -0.108, -0.004),
    (-0.038, -0.128, -0.008),
    (-0.039, -0.146, -0.012),
)
