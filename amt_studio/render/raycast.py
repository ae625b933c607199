"""`RaycastRenderer`: Open3D's Embree ray casting and numpy Lambert shading; about 10 ms for 512x512 on 2 cores.

`set_layers` rebuilds the ray-casting scene (only when the content changes); `render` casts one ray per pixel from
an `OrbitCamera` and shades the hits with a headlight, returning RGB and, per pixel, which layer it shows. Open3D is
imported when the first content arrives (importing it takes seconds; the window paints before).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amt_studio.render.camera import OrbitCamera
from amt_studio.render.content import MeshLayer

BACKGROUND_TOP = np.array([0.16, 0.17, 0.20], dtype=np.float32)
BACKGROUND_BOTTOM = np.array([0.07, 0.075, 0.09], dtype=np.float32)


@dataclass(kw_only=True)
class Frame:
    rgb: np.ndarray
    """(H, W, 3) uint8."""
    layer_index: np.ndarray
    """(H, W) int32: index into the layers set last, -1 for background."""
    depth: np.ndarray
    """(H, W) float32 ray distance in metres, inf for background."""


class RaycastRenderer:
    """Renders MeshLayers with Open3D's RaycastingScene; holds no Qt objects."""

    def __init__(self) -> None:
        self.layers: list[MeshLayer] = []
        self._scene = None  # an Open3D RaycastingScene once there is content
        self._face_rgb = np.zeros((1, 3), dtype=np.float32)  # all layers' face colours, concatenated
        self._face_offset = np.zeros(1, dtype=np.int64)  # by geometry id
        self._layer_of_geometry = np.zeros(1, dtype=np.int32)
        self._background: dict[tuple[int, int], np.ndarray] = {}

    def set_layers(self, layers: list[MeshLayer]) -> None:
        """Rebuild the scene from these layers (empty layers are skipped)."""
        import open3d as o3d

        self.layers = list(layers)
        scene = o3d.t.geometry.RaycastingScene()
        colours, offsets, layer_ids = [], [], []
        offset = 0
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
            offset += len(layer.faces)
        self._scene = scene
        self._face_rgb = np.concatenate(colours) if colours else np.zeros((1, 3), dtype=np.float32)
        self._face_offset = np.asarray(offsets or [0], dtype=np.int64)
        self._layer_of_geometry = np.asarray(layer_ids or [-1], dtype=np.int32)

    def bounds(self, names: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(min, max) corners over all layers (or those named), or None when there are none."""
        verts = [layer.verts for layer in self.layers if len(layer.verts) and (names is None or layer.name in names)]
        if not verts:
            return None
        stacked = np.concatenate(verts)
        return stacked.min(0), stacked.max(0)

    def _background_image(self, width: int, height: int) -> np.ndarray:
        key = (width, height)
        if key not in self._background:
            t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
            grad = BACKGROUND_TOP * (1 - t) + BACKGROUND_BOTTOM * t
            self._background = {key: np.ascontiguousarray(np.broadcast_to(grad, (height, width, 3)) * 255.0)}
        return self._background[key]

    def render(self, camera: OrbitCamera, width: int, height: int, intrinsic: np.ndarray | None = None) -> Frame:
        """Cast rays from `camera` (pinhole `intrinsic`, default from its field of view) and shade the hits."""
        if self._scene is None:  # nothing to show yet
            return Frame(
                rgb=self._background_image(width, height).astype(np.uint8),
                layer_index=np.full((height, width), -1, dtype=np.int32),
                depth=np.full((height, width), np.inf, dtype=np.float32),
            )
        import open3d as o3d

        K = camera.intrinsic(width, height) if intrinsic is None else intrinsic
        rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
            intrinsic_matrix=o3d.core.Tensor(K),
            extrinsic_matrix=o3d.core.Tensor(camera.extrinsic()),
            width_px=width,
            height_px=height,
        )
        hits = self._scene.cast_rays(rays)
        t_hit = hits["t_hit"].numpy()  # (H, W)
        hit = np.isfinite(t_hit)
        out = self._background_image(width, height).copy()
        layer_index = np.full((height, width), -1, dtype=np.int32)
        if hit.any():
            geometry = hits["geometry_ids"].numpy()[hit].astype(np.int64)
            primitive = hits["primitive_ids"].numpy()[hit].astype(np.int64)
            normals = hits["primitive_normals"].numpy()[hit]  # (n, 3) unit
            directions = rays.numpy()[..., 3:][hit]  # (n, 3) camera ray directions, not unit
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            cos = np.abs(np.einsum("ij,ij->i", normals, directions))  # two-sided headlight
            colour = self._face_rgb[self._face_offset[geometry] + primitive]
            shade = (0.28 + 0.72 * cos)[:, None]
            specular = (cos**24 * 0.25)[:, None]
            out[hit] = np.clip((colour * shade + specular) * 255.0, 0.0, 255.0)
            layer_index[hit] = self._layer_of_geometry[geometry]
        return Frame(rgb=out.astype(np.uint8), layer_index=layer_index, depth=t_hit.astype(np.float32))
