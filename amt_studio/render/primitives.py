"""Batched mesh primitives for the 3D panel: spheres at points, cylinders along segments, arrows.

Each returns one merged (verts, faces) so a skeleton of 21 joints and 20 bones is a single ray-casting geometry.
"""

from __future__ import annotations

import numpy as np
import trimesh

_SPHERE = trimesh.creation.icosphere(subdivisions=1)
_CYLINDER = trimesh.creation.cylinder(radius=1.0, height=1.0, sections=10)  # along z, centred at the origin
_CONE = trimesh.creation.cone(radius=1.0, height=1.0, sections=10)  # base at z=0, apex at z=1


def _merge(verts_per_item: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, v, 3) copies of one template -> merged (N*v, 3) verts and (N*f, 3) faces."""
    n, v = verts_per_item.shape[:2]
    offsets = (np.arange(n) * v)[:, None, None]
    return verts_per_item.reshape(-1, 3), (faces[None] + offsets).reshape(-1, 3).astype(np.int32)


def spheres(centers: np.ndarray, radius: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spheres at (N, 3) centres; radius in metres (scalar or (N,))."""
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(centers),))
    verts = _SPHERE.vertices[None] * r[:, None, None] + centers[:, None]
    return _merge(verts, np.asarray(_SPHERE.faces))


def _frames(direction: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations whose z axis is each (N, 3) unit direction."""
    z = direction
    helper = np.where(np.abs(z[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=2)


def cylinders(starts: np.ndarray, ends: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Cylinders from (N, 3) starts to (N, 3) ends; zero-length segments are dropped."""
    starts = np.asarray(starts, dtype=np.float64).reshape(-1, 3)
    ends = np.asarray(ends, dtype=np.float64).reshape(-1, 3)
    vec = ends - starts
    length = np.linalg.norm(vec, axis=1)
    keep = length > 1e-9
    if not keep.any():
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int32)
    starts, vec, length = starts[keep], vec[keep], length[keep]
    R = _frames(vec / length[:, None])
    template = np.asarray(_CYLINDER.vertices)  # (v, 3)
    scaled = template[None] * np.stack([np.full_like(length, radius), np.full_like(length, radius), length], 1)[:, None]
    scaled[..., 2] += length[:, None] / 2.0
    verts = np.einsum("nij,nvj->nvi", R, scaled) + starts[:, None]
    return _merge(verts, np.asarray(_CYLINDER.faces))


def arrows(starts: np.ndarray, vectors: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Arrows from (N, 3) starts along (N, 3) vectors (metres): a shaft and a cone head of 30% length."""
    starts = np.asarray(starts, dtype=np.float64).reshape(-1, 3)
    vectors = np.asarray(vectors, dtype=np.float64).reshape(-1, 3)
    length = np.linalg.norm(vectors, axis=1)
    keep = length > 1e-6
    if not keep.any():
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int32)
    starts, vectors, length = starts[keep], vectors[keep], length[keep]
    shaft_end = starts + vectors * 0.7
    shaft_v, shaft_f = cylinders(starts, shaft_end, radius)
    R = _frames(vectors / length[:, None])
    head = (
        np.asarray(_CONE.vertices)[None]
        * np.stack([np.full_like(length, radius * 2.5)] * 2 + [length * 0.3], 1)[:, None]
    )
    head_v = np.einsum("nij,nvj->nvi", R, head) + shaft_end[:, None]
    head_v, head_f = _merge(head_v, np.asarray(_CONE.faces))
    return np.concatenate([shaft_v, head_v]), np.concatenate([shaft_f, head_f + len(shaft_v)])
