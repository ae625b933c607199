"""Drawing and measuring helpers shared by the miniature-dataset tests: Gaussian dots at known pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image


def blob_image(width: int, height: int, blobs: dict[int, np.ndarray], sigma: float) -> Image.Image:
    """Black RGB image with a Gaussian blob per channel at a sub-pixel position (u, v), pixel centres at integers."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    for channel, (bu, bv) in blobs.items():
        image[..., channel] = np.exp(-((u - bu) ** 2 + (v - bv) ** 2) / (2 * sigma**2))
    return Image.fromarray((image * 255).round().astype(np.uint8))


def centroid(channel: np.ndarray) -> np.ndarray:
    """(u, v) brightness-weighted centroid of an (H, W) channel, above a small floor."""
    weights = np.where(channel > 0.05, channel, 0.0)
    v, u = np.nonzero(weights)
    w = weights[v, u]
    return np.array([(u * w).sum() / w.sum(), (v * w).sum() / w.sum()])


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) pixels."""
    uvw = points @ K.T
    return uvw[:, :2] / uvw[:, 2:]
