"""The open hand's designed rest skeleton: joint centres, bone radii and anatomical joint frames (right hand).

Template frame (metres): wrist joint at the origin, fingers point along +y, the palm faces +z, the thumb is on the
+x side. Joints are in MANO's 16-joint order (amt_core.joints.MANO_PARENTS); fingertips in the order thumb, index,
middle, ring, little. The builder makes the mesh around this skeleton and limits.py states joint limits in its frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MANO's finger blocks: (finger name, first MANO joint of its three) in MANO order.
MANO_FINGER_JOINTS: dict[str, tuple[int, int, int]] = {
    "index": (1, 2, 3),
    "middle": (4, 5, 6),
    "little": (7, 8, 9),
    "ring": (10, 11, 12),
    "thumb": (13, 14, 15),
}
TIP_ORDER: tuple[str, ...] = ("thumb", "index", "middle", "ring", "little")
PALM_NORMAL = np.array([0.0, 0.0, 1.0])

# Per finger design: base joint position (m), in-plane splay angle (degrees, positive toward the thumb / +x),
# bone lengths (base->2nd, 2nd->3rd, 3rd->tip surface, m) and radii at the base, 2nd, 3rd joint and near the tip (m).
_FINGER_DESIGN: dict[str, dict] = {
    "index": dict(
        base=(0.0310, 0.0925, 0.0), splay=7.0, lengths=(0.0390, 0.0230, 0.0195), radii=(0.0093, 0.0085, 0.0077, 0.0070)
    ),
    "middle": dict(
        base=(0.0085, 0.0980, 0.0), splay=1.0, lengths=(0.0430, 0.0260, 0.0200), radii=(0.0096, 0.0088, 0.0079, 0.0071)
    ),
    "ring": dict(
        base=(-0.0125, 0.0935, 0.0), splay=-6.0, lengths=(0.0405, 0.0255, 0.0195), radii=(0.009, 0.0082, 0.0074, 0.0067)
    ),
    "little": dict(
        base=(-0.0325, 0.0835, 0.0), splay=-14, lengths=(0.0310, 0.0190, 0.0180), radii=(0.008, 0.0072, 0.0066, 0.006)
    ),
}
# Thumb: carpometacarpal joint position, direction (in-plane angle from +y toward +x, palmar elevation toward +z),
# bone lengths (CMC->MCP, MCP->IP, IP->tip surface) and radii, and how far its pad turns from the palm normal.
_THUMB_DESIGN = dict(
    base=(0.0200, 0.0230, 0.0030),
    angle=40.0,
    elevation=14.0,
    lengths=(0.0440, 0.0320, 0.0285),
    radii=(0.0120, 0.0108, 0.0098, 0.0086),
    pad_turn=55.0,
)


@dataclass(kw_only=True)
class Skeleton:
    """The designed rest skeleton of the right open hand (all metres, template frame)."""

    joints: np.ndarray  # (16, 3) MANO order
    tips: np.ndarray  # (5, 3) fingertip surface points, thumb..little
    radii: np.ndarray  # (16,) flesh radius at each joint (the wrist entry is unused)
    tip_radii: np.ndarray  # (5,) radius near each fingertip, thumb..little
    frames: np.ndarray  # (16, 3, 3) columns: flexion axis, abduction axis, twist (bone) axis; identity for the wrist
    finger_of_joint: tuple[str, ...]  # (16,) finger name of each MANO joint ("wrist" for 0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _frame(direction: np.ndarray, pad_normal: np.ndarray) -> np.ndarray:
    """Columns (flexion, abduction, twist): flexing rotates the bone toward the pad; abduction turns it radially."""
    twist = _unit(direction)
    normal = _unit(pad_normal - twist * float(pad_normal @ twist))
    flexion = np.cross(twist, normal)  # rotating about it by +angle moves the bone toward the pad normal
    abduction = -normal  # rotating about -normal by +angle moves a +y bone toward +x (the thumb side)
    return np.stack([flexion, abduction, twist], axis=1)


def rest_skeleton() -> Skeleton:
    """The open hand's rest skeleton, computed from the design tables above (deterministic)."""
    joints = np.zeros((16, 3))
    radii = np.zeros(16)
    frames = np.tile(np.eye(3), (16, 1, 1))
    tips = np.zeros((5, 3))
    tip_radii = np.zeros(5)
    finger_of = ["wrist"] + [""] * 15
    for name, design in _FINGER_DESIGN.items():
        a = np.deg2rad(design["splay"])
        direction = np.array([np.sin(a), np.cos(a), 0.0])
        point = np.array(design["base"], dtype=float)
        for k, j in enumerate(MANO_FINGER_JOINTS[name]):
            joints[j] = point
            radii[j] = design["radii"][k]
            frames[j] = _frame(direction, PALM_NORMAL)
            finger_of[j] = name
            point = point + design["lengths"][k] * direction
        tips[TIP_ORDER.index(name)] = point
        tip_radii[TIP_ORDER.index(name)] = design["radii"][3]
    a, e = np.deg2rad(_THUMB_DESIGN["angle"]), np.deg2rad(_THUMB_DESIGN["elevation"])
    direction = np.array([np.sin(a) * np.cos(e), np.cos(a) * np.cos(e), np.sin(e)])
    # The thumb pad faces partly toward the palm normal and partly toward the index finger.
    toward_index = _unit(np.cross(PALM_NORMAL, direction))
    turn = np.deg2rad(_THUMB_DESIGN["pad_turn"])
    pad = np.cos(turn) * PALM_NORMAL + np.sin(turn) * toward_index
    point = np.array(_THUMB_DESIGN["base"], dtype=float)
    for k, j in enumerate(MANO_FINGER_JOINTS["thumb"]):
        joints[j] = point
        radii[j] = _THUMB_DESIGN["radii"][k]
        frames[j] = _frame(direction, pad)
        finger_of[j] = "thumb"
        point = point + _THUMB_DESIGN["lengths"][k] * direction
    tips[0] = point
    tip_radii[0] = _THUMB_DESIGN["radii"][3]
    return Skeleton(
        joints=joints, tips=tips, radii=radii, tip_radii=tip_radii, frames=frames, finger_of_joint=tuple(finger_of)
    )
