"""`RaycastRenderer`: Open3D's Embree ray casting and numpy Lambert shading into an RGB array.

`set_layers` rebuilds the ray-casting scene (only when the content changes); `render` casts rays from an
`OrbitCamera` only in the tiles that some triangle's screen box touches (most of the background costs no ray) and
shades the hits with a headlight, returning RGB and, per pixel, which layer it shows. Open3D is imported when the
first content arrives (importing it takes seconds; the window paints before).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amt_studio.render.camera import OrbitCamera
from amt_studio.render.content import MeshLayer

BACKGROUND_TOP = np.array([0.16, 0.17, 0.20], dtype=np.float32)
BACKGROUND_BOTTOM = np.array([0.07, 0.075, 0.09], dtype=np.float32)
NEAR_M = 1e-3
"""Vertices closer to the eye than this (or behind it) have no useful projection: such a frame casts every ray."""
TILE_PX = 8
"""Rays are cast in the tiles of this many pixels a side that some triangle's screen box touches."""
CHUNK_FACES = 16
"""Consecutive faces of a layer whose vertices share one screen box when culling rays."""
CACHED_SIZES = 4
"""Frame sizes whose background and ray directions are kept (the panel alternates between a few while moving)."""


@dataclass(kw_only=True)
class Frame:
    rgb: np.ndarray
    """(H, W, 3) uint8."""
    layer_index: np.ndarray
    """(H, W) int32: index into the layers set last, -1 for background."""
    depth: np.ndarray
    """(H, W) float32 distance from the eye along the pixel's ray, metres; inf for background."""
    rays_cast: int
    """How many rays this frame cast (the pixels of the tiles some triangle's screen box touches)."""


class RaycastRenderer:
    """Renders MeshLayers with Open3D's RaycastingScene; holds no Qt objects."""

    def __init__(self) -> None:
        self.layers: list[MeshLayer] = []
        self._scene = None  # an Open3D RaycastingScene once there is content
        self._face_rgb = np.zeros((1, 3), dtype=np.float32)  # all layers' face colours, concatenated
        self._face_offset = np.zeros(1, dtype=np.int64)  # by geometry id
        self._layer_of_geometry = np.zeros(1, dtype=np.int32)
        self._verts = np.zeros((0, 3), dtype=np.float32)  # all layers' vertices, concatenated
        self._chunk_corners = np.zeros(0, dtype=np.int64)  # into _verts: every face's three corners in order
        self._chunk_starts = np.zeros(0, dtype=np.int64)  # where each chunk's corners begin
        self._background: dict[tuple[int, int], np.ndarray] = {}
        self._directions: dict[tuple, np.ndarray] = {}

    def set_layers(self, layers: list[MeshLayer]) -> None:
        """Rebuild the scene from these layers (empty layers are skipped)."""
        import open3d as o3d

        self.layers = list(layers)
        scene = o3d.t.geometry.RaycastingScene()
        colours, offsets, layer_ids, verts, faces = [], [], [], [], []
        offset = vert_offset = 0
        for i, layer in enumerate(self.layers):
            if len(layer.faces) == 0:
                continue
            mesh = o3d.t.geometry.TriangleMesh()
            mesh.vertex.positions = o3d.core.Tensor(np.ascontiguousarray(layer.verts, dtype=np.float32))
            mesh.triangle.indices = o3d.core.Tensor(np.ascontiguousarray(layer.faces, dtype=np.int32))
            geometry_id = scene.add_triangles(mesh)
            while len(offsets) < geometry_id:  # ids are consecutive from 0; keep the tables aligned regardless
                offsets.append(offset)
                layer_ids.append(-1)
            offsets.append(offset)
            layer_ids.append(i)
            colours.append(layer.face_rgb.astype(np.float32))
            verts.append(np.asarray(layer.verts, dtype=np.float64))
            faces.append(np.asarray(layer.faces, dtype=np.int64) + vert_offset)
            offset += len(layer.faces)
            vert_offset += len(layer.verts)
        self._scene = scene
        self._face_rgb = np.concatenate(colours) if colours else np.zeros((1, 3), dtype=np.float32)
        self._face_offset = np.asarray(offsets or [0], dtype=np.int64)
        self._layer_of_geometry = np.asarray(layer_ids or [-1], dtype=np.int32)
        self._verts = np.concatenate(verts).astype(np.float32) if verts else np.zeros((0, 3), dtype=np.float32)
        faces_all = np.concatenate(faces) if faces else np.zeros((0, 3), dtype=np.int64)
        # Runs of CHUNK_FACES consecutive faces of one layer share one screen box: meshes list neighbouring faces
        # together (primitives are built item by item), so the boxes stay tight at a fraction of the per-face cost.
        layer_starts = np.cumsum([0] + [len(f) for f in faces])[:-1]
        starts = [np.arange(first, first + len(f), CHUNK_FACES) for first, f in zip(layer_starts, faces)]
        self._chunk_corners = faces_all.reshape(-1)  # the vertices of each chunk, chunk after chunk
        self._chunk_starts = 3 * np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)

    def bounds(self, names: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(min, max) corners over all layers (or those named), or None when there are none."""
        verts = self.points(names)
        if not len(verts):
            return None
        return verts.min(0), verts.max(0)

    def points(self, names: tuple[str, ...] | None = None) -> np.ndarray:
        """(N, 3) vertices of all layers (or those named), metres."""
        verts = [layer.verts for layer in self.layers if len(layer.verts) and (names is None or layer.name in names)]
        return np.concatenate(verts) if verts else np.zeros((0, 3))

    def _background_image(self, width: int, height: int) -> np.ndarray:
        """(H, W, 3) uint8 vertical gradient, kept for the last few sizes asked."""
        key = (width, height)
        if key not in self._background:
            t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
            grad = BACKGROUND_TOP * (1 - t) + BACKGROUND_BOTTOM * t
            image = np.broadcast_to(grad * 255.0, (height, width, 3))
            self._background = _bounded(self._background, key, np.ascontiguousarray(np.round(image).astype(np.uint8)))
        return self._background[key]

    def _pixel_directions(self, K: np.ndarray, width: int, height: int) -> np.ndarray:
        """(H*W, 3) float32 unit ray directions through the pixel centres, camera frame; kept for the last few K."""
        key = (width, height, *np.round(K.ravel(), 9))
        if key not in self._directions:
            u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
            pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
            directions = pixels @ np.linalg.inv(K).T
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            self._directions = _bounded(self._directions, key, directions.astype(np.float32))
        return self._directions[key]

    def coverage(self, extrinsic: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray | None:
        """(H, W) bool: the pixels of every TILE_PX tile that some chunk of triangles' screen box touches (a superset
        of the pixels a ray can hit), or None when some vertex lies at or behind the eye (then any pixel may be hit)."""
        if not len(self._chunk_starts):
            return np.zeros((height, width), dtype=bool)
        camera_pts = times_matrix(self._verts, extrinsic[:3, :3].T) + extrinsic[:3, 3].astype(np.float32)
        z = camera_pts[:, 2]
        if z.min() <= NEAR_M:
            return None
        uv = camera_pts[:, :2] / z[:, None] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]
        corners = uv[self._chunk_corners]
        box_low = np.minimum.reduceat(corners, self._chunk_starts, axis=0)
        box_high = np.maximum.reduceat(corners, self._chunk_starts, axis=0)
        # Tiles from the one holding the box's low corner to the one holding its high corner, a pixel of slack each
        # way for rounding (a pixel is hit when its centre, i + 0.5, is inside the triangle).
        tiles = np.array([-(-width // TILE_PX), -(-height // TILE_PX)])
        low = np.clip(np.floor((box_low - 1.5) / TILE_PX).astype(np.int64), 0, tiles)
        high = np.clip(np.floor((box_high + 1.5) / TILE_PX).astype(np.int64) + 1, 0, tiles)  # exclusive
        keep = (high > low).all(1)
        low, high = low[keep], high[keep]
        # The union of boxes as a 2D difference image: +1 at each box's first tile, -1 past its right and its bottom
        # edge, +1 past both; the running sums along both axes count the boxes over each tile.
        stride = tiles[0] + 1
        marks = np.concatenate(
            [
                low[:, 1] * stride + low[:, 0],
                low[:, 1] * stride + high[:, 0],
                high[:, 1] * stride + low[:, 0],
                high[:, 1] * stride + high[:, 0],
            ]
        )
        weights = np.repeat(np.array([1.0, -1.0, -1.0, 1.0]), len(low))
        counts = np.bincount(marks, weights=weights, minlength=(tiles[1] + 1) * stride).reshape(tiles[1] + 1, stride)
        touched = counts.cumsum(0).cumsum(1)[: tiles[1], : tiles[0]] > 0.5
        return np.repeat(np.repeat(touched, TILE_PX, 0), TILE_PX, 1)[:height, :width]

    def render(self, camera: OrbitCamera, width: int, height: int, intrinsic: np.ndarray | None = None) -> Frame:
        """Cast rays from `camera` (pinhole `intrinsic`, default from its field of view) and shade the hits."""
        out = self._background_image(width, height).copy()
        layer_index = np.full((height, width), -1, dtype=np.int32)
        depth = np.full((height, width), np.inf, dtype=np.float32)
        if self._scene is None:  # nothing to show yet
            return Frame(rgb=out, layer_index=layer_index, depth=depth, rays_cast=0)
        import open3d as o3d

        K = camera.intrinsic(width, height) if intrinsic is None else np.asarray(intrinsic, dtype=np.float64)
        extrinsic = camera.extrinsic()
        covered = self.coverage(extrinsic, K, width, height)
        directions = self._pixel_directions(K, width, height)
        pixels = np.flatnonzero(covered) if covered is not None else np.arange(width * height)
        if not len(pixels):
            return Frame(rgb=out, layer_index=layer_index, depth=depth, rays_cast=0)
        rays = np.empty((len(pixels), 6), dtype=np.float32)
        rays[:, :3] = camera.eye()
        rays[:, 3:] = times_matrix(directions[pixels], extrinsic[:3, :3])  # to the world frame
        hits = self._scene.cast_rays(o3d.core.Tensor.from_numpy(rays))
        t_hit = hits["t_hit"].numpy()
        hit = np.flatnonzero(np.isfinite(t_hit))  # indices into `pixels`: integer gathers beat repeated masks
        if len(hit):
            geometry = hits["geometry_ids"].numpy()[hit]
            face = self._face_offset[geometry] + hits["primitive_ids"].numpy()[hit]
            normals = hits["primitive_normals"].numpy()[hit]  # (n, 3) unit
            cos = np.abs(np.einsum("ij,ij->i", normals, rays[hit, 3:]))  # two-sided headlight; rays are unit
            cos8 = np.square(np.square(np.square(cos)))
            shaded = self._face_rgb[face] * (71.4 + 183.6 * cos)[:, None]  # 255 * (0.28 + 0.72 cos)
            shaded += (cos8 * cos8 * cos8 * 63.75)[:, None]  # a specular highlight, 255 * 0.25 cos^24
            hit_pixels = pixels[hit]
            out.reshape(-1, 3)[hit_pixels] = np.minimum(shaded, 255.0)
            layer_index.reshape(-1)[hit_pixels] = self._layer_of_geometry[geometry]
            depth.reshape(-1)[hit_pixels] = t_hit[hit]
        return Frame(rgb=out, layer_index=layer_index, depth=depth, rays_cast=len(pixels))


def times_matrix(rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 3) float32 `rows @ matrix` for a (3, 3) matrix, as three scaled sums: BLAS on such thin products is many
    times slower, and its threads spin on the cores the ray caster and a training run need."""
    m = np.asarray(matrix, dtype=np.float32)
    out = rows[:, 0:1] * m[0]
    out += rows[:, 1:2] * m[1]
    out += rows[:, 2:3] * m[2]
    return out


def _bounded(cache: dict, key, value: np.ndarray) -> dict:
    """`cache` with `key` set to `value`, the oldest entries dropped beyond CACHED_SIZES."""
    cache[key] = value
    while len(cache) > CACHED_SIZES:
        cache.pop(next(iter(cache)))
    return cache
