"""The project's one 21-joint order, used by every dataset, model output and metric.

Wrist first, then thumb, index, middle, ring, little, each from base to tip (4 joints per finger).
MANO's own 16-joint order (wrist; index, middle, little, ring, thumb, three each) is mapped here too.
"""

from __future__ import annotations

FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "little")

JOINT_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    f"{finger}_{part}"
    for finger in FINGERS
    for part in (("cmc", "mcp", "ip", "tip") if finger == "thumb" else ("mcp", "pip", "dip", "tip"))
)
NUM_JOINTS = 21

# Parent of each joint in the 21-joint order (-1 for the wrist).
PARENTS: tuple[int, ...] = (-1,) + tuple(0 if j % 4 == 1 else j - 1 for j in range(1, 21))

# Bones as (parent, child) pairs, for drawing skeletons.
BONES: tuple[tuple[int, int], ...] = tuple((PARENTS[j], j) for j in range(1, 21))

FINGERTIPS: tuple[int, ...] = (4, 8, 12, 16, 20)
FINGER_BASES: tuple[int, ...] = (1, 5, 9, 13, 17)

# MANO's 16 kinematic joints: 0 wrist, 1-3 index, 4-6 middle, 7-9 little, 10-12 ring, 13-15 thumb.
MANO_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

# For each of our 21 joints, the index into [16 MANO joints, 5 fingertip vertices (thumb, index, middle, ring, little)].
MANO_TO_PROJECT: tuple[int, ...] = (
    0,  # wrist
    13,
    14,
    15,
    16,  # thumb: mano 13-15, then tip 16
    1,
    2,
    3,
    17,  # index
    4,
    5,
    6,
    18,  # middle
    10,
    11,
    12,
    19,  # ring
    7,
    8,
    9,
    20,  # little
)

# Per finger colours (RGB 0-255) shared by every view that draws a skeleton.
FINGER_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 80, 80),  # thumb
    (240, 170, 40),  # index
    (80, 190, 90),  # middle
    (60, 140, 230),  # ring
    (170, 90, 220),  # little
)


def finger_of(joint: int) -> int:
    """The finger (0 thumb .. 4 little) a joint belongs to, -1 for the wrist."""
    return -1 if joint == 0 else (joint - 1) // 4
