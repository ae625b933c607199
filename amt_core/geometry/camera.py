"""Pinhole projection with intrinsics K, in the OpenCV camera frame (z forward)."""

from __future__ import annotations

import torch

# Points closer than this (metres) to the camera plane are clamped before dividing, so gradients stay finite.
MIN_DEPTH = 1e-4


def project_to_image(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Project camera-frame points to pixels.

    Args:
        points: (..., N, 3) metres, camera frame.
        K: (..., 3, 3) intrinsics, broadcastable against points' leading dims.

    Returns:
        (..., N, 2) pixel coordinates (u, v).
    """
    z = points[..., 2:3].clamp(min=MIN_DEPTH)
    xy = points[..., :2] / z
    fx, fy = K[..., 0, 0].unsqueeze(-1), K[..., 1, 1].unsqueeze(-1)
    cx, cy = K[..., 0, 2].unsqueeze(-1), K[..., 1, 2].unsqueeze(-1)
    skew = K[..., 0, 1].unsqueeze(-1)
    u = fx * xy[..., 0] + skew * xy[..., 1] + cx
    v = fy * xy[..., 1] + cy
    return torch.stack([u, v], dim=-1)


def unproject_pixels(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Inverse of `project_to_image` given depth.

    Args:
        uv: (..., N, 2) pixels. depth: (..., N) metres. K: (..., 3, 3).

    Returns:
        (..., N, 3) camera-frame points.
    """
    fx, fy = K[..., 0, 0].unsqueeze(-1), K[..., 1, 1].unsqueeze(-1)
    cx, cy = K[..., 0, 2].unsqueeze(-1), K[..., 1, 2].unsqueeze(-1)
    skew = K[..., 0, 1].unsqueeze(-1)
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - skew * y) / fx
    return torch.stack([x * depth, y * depth, depth], dim=-1)
