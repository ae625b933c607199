"""Per-class geometry queries on catalog objects, each built lazily once per process and kept: signed distances
(the SDF grid, exact near the surface), closest surface points, the centre of mass and area-weighted surface samples.
Open3D is imported by the queries that need it, on first use: it takes about a second, and training never needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from amt_core.objects.catalog import ObjectClass

# Points the grid puts closer than this to the surface (metres) get exact Open3D distances.
_EXACT_BAND = 0.01


class GeometryCache:
    """Geometry of the classes of a catalog, queried by class id; every structure is built on first use."""

    def __init__(self, classes: list[ObjectClass]) -> None:
        self.classes = classes
        self._scenes: dict[int, object] = {}
        self._grids: dict[int, object] = {}
        self._com: dict[int, np.ndarray] = {}
        self._face_cdf: dict[int, np.ndarray] = {}

    def scene(self, class_id: int):
        """The class's Open3D raycasting scene (exact distance and closest-point queries)."""
        import open3d as o3d  # on first use: it takes about a second to import

        if class_id not in self._scenes:
            mesh = self.classes[class_id].mesh
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(
                o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)),
            )
            self._scenes[class_id] = scene
        return self._scenes[class_id]

    def grid_distance(self, class_id: int, points: np.ndarray) -> np.ndarray:
        """Approximate signed distance (..., ) of object-frame points (..., 3) from the cached SDF grid."""
        if class_id not in self._grids:
            self._grids[class_id] = self.classes[class_id].sdf()
        return self._grids[class_id].query_numpy(points)

    def load_grids(self) -> None:
        """Load every class's distance grid now (from the disk cache) rather than on first use."""
        for class_id in range(len(self.classes)):
            self.grid_distance(class_id, np.zeros((1, 3)))

    def exact_distance(self, class_id: int, points: np.ndarray) -> np.ndarray:
        """Signed distance (N,) of object-frame points (N, 3) to the object mesh, negative inside.

        Points the distance grid puts within 1 cm of the surface get Open3D's exact distance (the only ones that can
        touch or penetrate); the rest keep the grid's value, which is accurate to well under that margin.
        """
        import open3d as o3d

        dist = self.grid_distance(class_id, points)
        near = np.nonzero(dist < _EXACT_BAND)[0]
        if len(near):
            query = o3d.core.Tensor(np.ascontiguousarray(points[near], dtype=np.float32))
            dist[near] = self.scene(class_id).compute_signed_distance(query, nthreads=1).numpy()
        return dist

    def closest_points(self, class_id: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The surface points (N, 3) nearest object-frame points (N, 3), and the outward normals (N, 3) of the faces
        they lie on (unambiguous even where a thin object has a point near both sides)."""
        import open3d as o3d

        query = o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))
        closest = self.scene(class_id).compute_closest_points(query, nthreads=1)
        return closest["points"].numpy().astype(np.float64), closest["primitive_normals"].numpy().astype(np.float64)

    def center_of_mass(self, class_id: int) -> np.ndarray:
        """(3,) centre of mass (uniform density) in the object frame."""
        if class_id not in self._com:
            self._com[class_id] = np.asarray(self.classes[class_id].mesh.center_mass, dtype=np.float64)
        return self._com[class_id]

    def surface_sample(self, class_id: int, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(count, 3) points spread by area over the surface and their outward face normals (count, 3)."""
        mesh = self.classes[class_id].mesh
        if class_id not in self._face_cdf:
            cdf = np.cumsum(mesh.area_faces)
            self._face_cdf[class_id] = cdf / cdf[-1]
        faces = np.minimum(np.searchsorted(self._face_cdf[class_id], rng.random(count)), len(mesh.faces) - 1)
        bary = rng.random((count, 2))
        flip = bary.sum(1) > 1
        bary[flip] = 1 - bary[flip]
        tri = np.asarray(mesh.vertices)[np.asarray(mesh.faces)[faces]]  # (count, 3, 3)
        points = tri[:, 0] + bary[:, :1] * (tri[:, 1] - tri[:, 0]) + bary[:, 1:] * (tri[:, 2] - tri[:, 0])
        return points, np.asarray(mesh.face_normals)[faces]
