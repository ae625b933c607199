"""Joint limits of the open hand, plausible-pose sampling, clamping and a grasp-friendly flexion control.

Pose layout (MANO's): pose (N, 45) = 15 joints (MANO joints 1-15: index, middle, little, ring, thumb, three each)
x axis-angle (3,) in the template frame (fingers along +y, palm facing +z, right thumb on +x; see skeleton.py).
Limits are boxes on the axis-angle vector expressed in each joint's anatomical frame, whose columns are
  flexion   (+ curls the bone toward the palm / thumb pad),
  abduction (+ turns the bone radially, toward the thumb side; spreading the ring and little fingers is negative),
  twist     (about the bone; + is counter-clockwise looking from the tip toward the palm).
For a left hand (the right one mirrored x -> -x) the same table applies to the mirrored pose: a left pose is a right
pose with its y and z axis-angle components negated, which is how every function here treats side="left".
"""

from __future__ import annotations

import numpy as np
import torch

from amt_core.hand.skeleton import MANO_FINGER_JOINTS, TIP_ORDER, rest_skeleton

# (flexion, abduction, twist) x (low, high) radians, per joint kind.
_FINGER_LIMITS = {
    "mcp": ((-0.35, 1.57), (-0.35, 0.35), (-0.15, 0.15)),
    "pip": ((-0.09, 1.92), (-0.05, 0.05), (-0.10, 0.10)),
    "dip": ((-0.17, 1.40), (-0.05, 0.05), (-0.08, 0.08)),
}
_THUMB_LIMITS = {
    "cmc": ((-0.50, 0.95), (-0.35, 0.85), (-0.35, 0.60)),
    "mcp": ((-0.20, 1.05), (-0.15, 0.15), (-0.10, 0.15)),
    "ip": ((-0.35, 1.40), (-0.05, 0.05), (-0.05, 0.05)),
}
# Flexion (and for the thumb CMC also abduction/twist) reached at curl = 1: a firm power grasp, inside the limits.
_FINGER_CURLED = {"mcp": (1.40, 0.0, 0.0), "pip": (1.65, 0.0, 0.0), "dip": (1.05, 0.0, 0.0)}
_THUMB_CURLED = {"cmc": (0.50, 0.20, 0.0), "mcp": (0.70, 0.0, 0.0), "ip": (0.50, 0.0, 0.0)}
# Abduction per unit spread, per finger (thumb: CMC abduction); index radial, ring and little ulnar.
_SPREAD = {"thumb": 0.45, "index": 0.22, "middle": 0.03, "ring": -0.18, "little": -0.32}

MIRROR_AXIS_ANGLE = np.array([1.0, -1.0, -1.0])  # right <-> left pose, per joint


def _build_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames (15, 3, 3), limits low/high (15, 3), curled (15, 3), spread (15, 3), MANO joints 1-15, right hand."""
    frames = rest_skeleton().frames[1:]
    low, high, curled, spread = (np.zeros((15, 3)) for _ in range(4))
    for finger, joints in MANO_FINGER_JOINTS.items():
        kinds = ("cmc", "mcp", "ip") if finger == "thumb" else ("mcp", "pip", "dip")
        table = _THUMB_LIMITS if finger == "thumb" else _FINGER_LIMITS
        curl = _THUMB_CURLED if finger == "thumb" else _FINGER_CURLED
        for kind, j in zip(kinds, joints):
            low[j - 1] = [lo for lo, _ in table[kind]]
            high[j - 1] = [hi for _, hi in table[kind]]
            curled[j - 1] = curl[kind]
        spread[joints[0] - 1, 1] = _SPREAD[finger]
    return frames, low, high, curled, spread


JOINT_FRAMES, LIMITS_LOW, LIMITS_HIGH, CURLED, SPREAD = _build_tables()
"""JOINT_FRAMES (15, 3, 3): columns flexion/abduction/twist axes in the template frame; LIMITS_LOW/HIGH (15, 3) rad."""


def _check_side(side: str) -> None:
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")


def local_to_pose(local: np.ndarray, side: str = "right") -> np.ndarray:
    """Anatomical angles (N, 15, 3) (flexion, abduction, twist) -> MANO pose (N, 45) for the given side."""
    _check_side(side)
    pose = np.einsum("jab,njb->nja", JOINT_FRAMES, local)
    if side == "left":
        pose = pose * MIRROR_AXIS_ANGLE
    return pose.reshape(len(local), 45)


def pose_to_local(pose: np.ndarray, side: str = "right") -> np.ndarray:
    """MANO pose (N, 45) -> anatomical angles (N, 15, 3) (flexion, abduction, twist) for the given side."""
    _check_side(side)
    aa = np.asarray(pose, dtype=np.float64).reshape(-1, 15, 3)
    if side == "left":
        aa = aa * MIRROR_AXIS_ANGLE
    return np.einsum("jba,njb->nja", JOINT_FRAMES, aa)


def within_limits(pose: np.ndarray, side: str = "right", tol: float = 1e-5) -> np.ndarray:
    """Whether each pose (N, 45) lies inside the limit boxes (N,) bool."""
    local = pose_to_local(pose, side)
    return np.all((local >= LIMITS_LOW - tol) & (local <= LIMITS_HIGH + tol), axis=(1, 2))


def clamp_pose(pose: np.ndarray | torch.Tensor, side: str = "right") -> np.ndarray | torch.Tensor:
    """Clamp poses (N, 45) into the limit boxes; tensors stay tensors (differentiable, same device and dtype)."""
    _check_side(side)
    if isinstance(pose, torch.Tensor):
        frames = torch.as_tensor(JOINT_FRAMES, dtype=pose.dtype, device=pose.device)
        mirror = torch.as_tensor(
            MIRROR_AXIS_ANGLE if side == "left" else np.ones(3), dtype=pose.dtype, device=pose.device
        )
        aa = pose.reshape(-1, 15, 3) * mirror
        local = torch.einsum("jba,njb->nja", frames, aa)
        low = torch.as_tensor(LIMITS_LOW, dtype=pose.dtype, device=pose.device)
        high = torch.as_tensor(LIMITS_HIGH, dtype=pose.dtype, device=pose.device)
        local = torch.maximum(torch.minimum(local, high), low)
        return (torch.einsum("jab,njb->nja", frames, local) * mirror).reshape(pose.shape)
    local = np.clip(pose_to_local(pose, side), LIMITS_LOW, LIMITS_HIGH)
    return local_to_pose(local, side).reshape(np.shape(pose))


def flexion_pose(curl: np.ndarray, spread: np.ndarray | None = None, side: str = "right") -> np.ndarray:
    """Poses from per-finger curl and spread, for grasp synthesis (close each finger until contact).

    Args:
        curl: (N, 5) in [0, 1], fingers thumb, index, middle, ring, little; 0 = the flat template, 1 = a firm power
            grasp (MCP 80, PIP 95, DIP 60 degrees; the thumb opposes and wraps over the index and middle). Every
            joint of a finger moves linearly with its curl, so flexion grows monotonically with curl. With thumb
            and index both at curl ~0.6 their tips meet (a pinch).
        spread: (N, 5) in [-1, 1] or None (0): + spreads the fingers apart (index radial, ring and little ulnar,
            thumb abducted from the palm), - brings them together.
        side: "right" or "left".

    Returns:
        (N, 45) MANO pose, always inside the limits.
    """
    curl = np.clip(np.asarray(curl, dtype=np.float64), 0.0, 1.0)
    if curl.ndim != 2 or curl.shape[1] != 5:
        raise ValueError(f"curl must have shape (N, 5), got {curl.shape}")
    spread = np.zeros_like(curl) if spread is None else np.clip(np.asarray(spread, dtype=np.float64), -1.0, 1.0)
    local = np.zeros((len(curl), 15, 3))
    for f, finger in enumerate(TIP_ORDER):
        for j in MANO_FINGER_JOINTS[finger]:
            local[:, j - 1] = curl[:, f, None] * CURLED[j - 1] + spread[:, f, None] * SPREAD[j - 1]
    return local_to_pose(np.clip(local, LIMITS_LOW, LIMITS_HIGH), side)


def sample_pose(
    n: int, generator: np.random.Generator, side: str = "right", curl_range: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """Plausible random poses (n, 45) inside the limits.

    Each finger gets a curl drawn uniformly from curl_range (the joints of a finger flex together, as in real hands,
    with the distal joints coupled to the middle one), a spread, and independent per-joint noise of about 10% of each
    range; everything is clamped to the limits. Use curl_range=(0.3, 1.0) for grasp-like poses.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    lo_c, hi_c = curl_range
    if not 0.0 <= lo_c <= hi_c <= 1.0:
        raise ValueError(f"curl_range must satisfy 0 <= low <= high <= 1, got {curl_range}")
    # Neighbouring fingers curl alike: a shared hand curl plus a per-finger deviation.
    shared = generator.uniform(lo_c, hi_c, size=(n, 1))
    curl = np.clip(shared + generator.normal(0.0, 0.18, size=(n, 5)), lo_c, hi_c)
    spread = np.clip(generator.normal(0.0, 0.45, size=(n, 5)) * (1.0 - 0.6 * curl), -1.0, 1.0)
    local = pose_to_local(flexion_pose(curl, spread), "right")
    noise = generator.normal(0.0, 1.0, size=local.shape) * 0.10 * (LIMITS_HIGH - LIMITS_LOW) / 2.0
    local = np.clip(local + noise, LIMITS_LOW, LIMITS_HIGH)
    return local_to_pose(local, side)
