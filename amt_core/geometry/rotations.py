"""Rotation conversions, thin wrappers over `roma` with the project's conventions.

The 6D representation (Zhou et al., CVPR 2019) is the first two columns of the rotation matrix, flattened as
(r00, r10, r20, r01, r11, r21); Gram-Schmidt turns any 6 numbers into a proper rotation (det +1).
"""

from __future__ import annotations

import roma
import torch


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) proper rotation (orthonormal, det +1), differentiable."""
    cols = rot6d.reshape(*rot6d.shape[:-1], 2, 3).transpose(-1, -2)  # (..., 3, 2)
    return roma.special_gramschmidt(cols)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns."""
    return matrix[..., :, :2].transpose(-1, -2).reshape(*matrix.shape[:-2], 6)


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle (radians) -> (..., 3, 3)."""
    return roma.rotvec_to_rotmat(rotvec)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3) axis-angle (radians)."""
    return roma.rotmat_to_rotvec(matrix)


def geodesic_angle(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of R1^T R2, (..., 3, 3) x2 -> (...); numerically safe near 0 and pi."""
    rel = R1.transpose(-1, -2) @ R2
    trace = rel.diagonal(dim1=-2, dim2=-1).sum(-1)
    cos = ((trace - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    return torch.acos(cos)


def transform_points(rot: torch.Tensor, trans: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Points (B, P, 3) moved by rotations (B, 3, 3) and translations (B, 3): object frame -> camera frame."""
    return points @ rot.transpose(-1, -2) + trans[:, None, :]
