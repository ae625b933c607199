"""The open hand's rest surface: an implicit hand (smooth union of round cones, a rounded palm slab and muscle
ellipsoids) around the designed skeleton, meshed by marching cubes and isotropically remeshed to ~1.4k vertices.

Used only by the builder (needs scikit-image and pymeshlab); the shipped asset does not need either at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amt_core.hand.skeleton import MANO_FINGER_JOINTS, TIP_ORDER, Skeleton


@dataclass(kw_only=True)
class SurfaceConfig:
    """How finely the implicit hand is sampled and how coarse the final mesh is."""

    voxel: float = 0.0010
    """Marching-cubes grid spacing (m); 0.0005-0.003."""
    edge_length: float = 0.0056
    """Target edge length of the isotropic remesh (m); 0.002-0.015."""
    remesh_iterations: int = 12
    """Remeshing passes; 1-50."""

    def __post_init__(self) -> None:
        if not 0.0005 <= self.voxel <= 0.003:
            raise ValueError(f"SurfaceConfig.voxel must be in [0.0005, 0.003] m, got {self.voxel}")
        if not 0.002 <= self.edge_length <= 0.015:
            raise ValueError(f"SurfaceConfig.edge_length must be in [0.002, 0.015] m, got {self.edge_length}")
        if not 1 <= self.remesh_iterations <= 50:
            raise ValueError(f"SurfaceConfig.remesh_iterations must be in [1, 50], got {self.remesh_iterations}")


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (a smooth union of two distance fields), blend width k metres."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def _round_cone(p: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> np.ndarray:
    """Approximate distance to a capsule from a (radius ra) to b (radius rb); p (N, 3)."""
    ab = b - a
    t = np.clip((p - a) @ ab / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1) - (ra + t * (rb - ra))


def _ellipsoid(p: np.ndarray, centre: np.ndarray, axes: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """Approximate distance to an ellipsoid; axes (3, 3) columns are its unit axes, semi (3,) its semi-axes."""
    local = (p - centre) @ axes / semi
    return (np.linalg.norm(local, axis=1) - 1.0) * float(semi.min())


def _polygon_distance(xy: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) from points xy (N, 2) to a convex counter-clockwise polygon (M, 2)."""
    dist = np.full(len(xy), np.inf)
    inside = np.ones(len(xy), dtype=bool)
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        ab = b - a
        t = np.clip((xy - a) @ ab / float(ab @ ab), 0.0, 1.0)
        dist = np.minimum(dist, np.linalg.norm(xy - (a + t[:, None] * ab), axis=1))
        inside &= (ab[0] * (xy[:, 1] - a[1]) - ab[1] * (xy[:, 0] - a[0])) >= 0.0
    return np.where(inside, -dist, dist)


def _palm_polygon(skel: Skeleton) -> np.ndarray:
    """The palm outline (counter-clockwise, xy), inset by the slab's edge radius."""
    j = skel.joints
    return np.array(
        [
            [-0.0215, 0.006],  # wrist, ulnar side
            [0.0150, 0.006],  # wrist, radial side
            [j[1, 0] + 0.0020, j[1, 1] - 0.004],  # index knuckle
            [j[4, 0], j[4, 1] - 0.002],  # middle knuckle
            [j[10, 0], j[10, 1] - 0.003],  # ring knuckle
            [j[7, 0] - 0.0010, j[7, 1] - 0.004],  # little knuckle
        ]
    )


def hand_sdf(points: np.ndarray, skel: Skeleton) -> np.ndarray:
    """Approximate signed distance (m, negative inside) of the rest hand at points (N, 3)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    # Palm: a slab with rounded edges, palm side slightly thicker than the back.
    edge_radius, half_core, centre_z = 0.0090, 0.0032, 0.0015
    d2 = _polygon_distance(points[:, :2], _palm_polygon(skel))
    qz = np.abs(z - centre_z) - half_core
    q = np.stack([d2, qz], axis=1)
    palm = np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0) - edge_radius
    # Wrist: an elliptic stub cut flat 2 cm proximal to the wrist joint.
    sx, sz = 1.25, 0.80
    scaled = np.stack([x / sx, y, (z - 0.0010) / sz], axis=1)
    stub = _round_cone(scaled, np.array([0.0, -0.03, 0.0]), np.array([0.0, 0.025, 0.0]), 0.0205, 0.0205) * sz
    stub = -_smin(-stub, (y + 0.020), 0.003)  # smooth intersection with the half space y > -0.020
    # Thenar (thumb) and hypothenar (little finger side) muscle pads on the palm side.
    cmc, mcp = skel.joints[13], skel.joints[14]
    along = (mcp - cmc) / np.linalg.norm(mcp - cmc)
    across = np.cross(np.array([0.0, 0.0, 1.0]), along)
    across /= np.linalg.norm(across)
    normal = np.cross(along, across)
    thenar_axes = np.stack([along, across, normal], axis=1)
    thenar_centre = cmc + 0.40 * (mcp - cmc) + np.array([-0.0060, 0.0, 0.0050])
    thenar = _ellipsoid(points, thenar_centre, thenar_axes, np.array([0.030, 0.0175, 0.0135]))
    hypothenar = _ellipsoid(points, np.array([-0.0255, 0.043, 0.0040]), np.eye(3), np.array([0.0125, 0.034, 0.0115]))
    metacarpal = _round_cone(points, cmc, mcp, skel.radii[13], skel.radii[14])
    body = _smin(_smin(_smin(palm, stub, 0.012), _smin(thenar, metacarpal, 0.006), 0.010), hypothenar, 0.010)
    # Fingers: a chain of round cones each; sharp union between fingers so they do not web together.
    fingers = np.full(len(points), np.inf)
    for name in TIP_ORDER:
        chain = MANO_FINGER_JOINTS[name]
        if name == "thumb":
            chain = chain[1:]  # the thumb metacarpal belongs to the palm body above
        finger = np.full(len(points), np.inf)
        tip_index = TIP_ORDER.index(name)
        for k, j in enumerate(chain):
            a = skel.joints[j]
            if k + 1 < len(chain):
                b, rb = skel.joints[chain[k + 1]], skel.radii[chain[k + 1]]
            else:
                tip, rb = skel.tips[tip_index], skel.tip_radii[tip_index]
                b = tip - rb * (tip - a) / np.linalg.norm(tip - a)
            finger = (
                _smin(finger, _round_cone(points, a, b, skel.radii[j], rb), 0.002)
                if k
                else _round_cone(points, a, b, skel.radii[j], rb)
            )
        fingers = np.minimum(fingers, finger)
    return _smin(body, fingers, 0.007)


def build_surface(skel: Skeleton, config: SurfaceConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the implicit rest hand: marching cubes, then isotropic remeshing.

    Returns:
        vertices (V, 3) float64 metres and faces (F, 3) int64, outward-oriented, closed.
    """
    import pymeshlab  # builder-only dependencies
    from skimage.measure import marching_cubes

    config = config or SurfaceConfig()
    lo = np.minimum(skel.joints.min(axis=0), skel.tips.min(axis=0)) - 0.035
    hi = np.maximum(skel.joints.max(axis=0), skel.tips.max(axis=0)) + 0.035
    lo[1] = -0.03
    axes = [np.arange(lo[i], hi[i] + config.voxel, config.voxel) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    values = np.concatenate([hand_sdf(chunk, skel) for chunk in np.array_split(grid.reshape(-1, 3), 16)])
    volume = values.reshape(grid.shape[:3])
    verts, faces, _, _ = marching_cubes(volume, level=0.0, spacing=(config.voxel,) * 3)
    verts = verts + lo
    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=verts, face_matrix=faces.astype(np.int32)))
    ms.meshing_merge_close_vertices()
    ms.meshing_isotropic_explicit_remeshing(
        iterations=config.remesh_iterations, targetlen=pymeshlab.PureValue(config.edge_length)
    )
    # Remeshing can leave a stray sliver (a fin on one edge): drop non-manifold pieces and tiny components.
    ms.meshing_remove_duplicate_faces()
    ms.meshing_repair_non_manifold_edges(method=0)
    ms.meshing_remove_connected_component_by_face_number(mincomponentsize=100)
    ms.meshing_close_holes(maxholesize=8)
    ms.meshing_remove_unreferenced_vertices()
    mesh = ms.current_mesh()
    return np.asarray(mesh.vertex_matrix(), dtype=np.float64), np.asarray(mesh.face_matrix(), dtype=np.int64)
