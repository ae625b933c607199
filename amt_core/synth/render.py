"""Open3D ray-cast renderer for the synthetic world: RGB, depth, hand and object masks from posed triangle meshes.

Rays are cast with `open3d.t.geometry.RaycastingScene` (Embree, about 1 ms for 224x224 on this CPU) and shaded in
numpy: Lambert plus Blinn-Phong with random lights and a ray-cast shadow, skin tones, object albedo, procedural
backgrounds. Units: metres, the OpenCV camera frame (x right, y down, z forward), pixel centres at integer coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import open3d as o3d

# Geometry kinds; the masks come from which kind a ray hit first.
HAND, OBJECT, DISTRACTOR = 1, 2, 3

# Where the interpolated vertex normal and the face normal differ by more than 35 degrees, shade flat.
_CREASE_COS = float(np.cos(np.deg2rad(35)))

# Skin tones (linear-ish RGB in [0, 1]) from light to dark; a sample mixes two neighbours.
SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.90, 0.72, 0.60],
        [0.80, 0.60, 0.48],
        [0.68, 0.49, 0.37],
        [0.55, 0.38, 0.27],
        [0.40, 0.27, 0.19],
        [0.29, 0.19, 0.13],
    ],
    dtype=np.float32,
)


@dataclass(kw_only=True, slots=True)
class RenderConfig:
    """How images are lit and shaded."""

    ambient: tuple[float, float] = (0.25, 0.5)
    """Range of the ambient light intensity."""
    key_light: tuple[float, float] = (0.6, 1.1)
    """Range of the main directional light's intensity."""
    shadows: bool = True
    """Cast a shadow ray towards the main light (one extra ray per hit pixel)."""
    noise_std: float = 0.01
    """Standard deviation of the Gaussian pixel noise added to RGB, in [0, 1] units."""
    threads: int = 1
    """Ray-casting threads (0 = all cores); 1 suits many worker processes each rendering small images."""

    def __post_init__(self) -> None:
        for name in ("ambient", "key_light"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high <= 3.0:
                raise ValueError(f"RenderConfig.{name} must be 0 <= low <= high <= 3, got {(low, high)}")
        if not 0 <= self.threads <= 256:
            raise ValueError(f"RenderConfig.threads must be in [0, 256], got {self.threads}")
        if not 0.0 <= self.noise_std <= 0.2:
            raise ValueError(f"RenderConfig.noise_std must be in [0, 0.2], got {self.noise_std}")


@dataclass(kw_only=True)
class MeshInstance:
    """One triangle mesh placed in the camera frame, with its colour.

    Attributes:
        verts: (N, 3) metres, camera frame.
        faces: (F, 3) int vertex indices, counter-clockwise seen from outside.
        kind: HAND, OBJECT or DISTRACTOR.
        vertex_colors: (N, 3) albedo in [0, 1], or None to use `albedo`.
        albedo: function of (P, 3) points in the mesh's own frame -> (P, 3) albedo in [0, 1], used where
            vertex_colors is None; `to_local` maps camera-frame points into that frame.
        to_local: (R (3, 3), t (3,)) so that local = (p - t) @ R, i.e. p = local @ R.T + t.
        shininess: Blinn-Phong exponent; specular: its weight.
    """

    verts: np.ndarray
    faces: np.ndarray
    kind: int
    vertex_colors: np.ndarray | None = None
    albedo: Callable[[np.ndarray], np.ndarray] | None = None
    to_local: tuple[np.ndarray, np.ndarray] | None = None
    shininess: float = 16.0
    specular: float = 0.1
    normals: np.ndarray | None = field(default=None, repr=False)


@dataclass(kw_only=True)
class RenderOutput:
    """What one rendered view holds."""

    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    depth: np.ndarray  # (H, W) float32 metres along z, 0 where nothing was hit
    hand_mask: np.ndarray  # (H, W) bool
    obj_mask: np.ndarray  # (H, W) bool


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) unit vertex normals, the area-weighted mean of the adjacent face normals."""
    tri = verts[faces]  # (F, 3, 3)
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), length = 2 * area
    normals = np.zeros_like(verts)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_n)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def pixel_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 6) rays from the camera centre through each pixel centre; directions have z = 1, so t_hit is depth."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    y = (v - cy) / fy
    x = (u - cx - skew * y) / fx
    dirs = np.stack([x, y, np.ones_like(x)], axis=-1)
    return np.concatenate([np.zeros_like(dirs), dirs], axis=-1).astype(np.float32)


def _ray_directions(K: np.ndarray, pixels: np.ndarray, width: int) -> np.ndarray:
    """(N, 3) float32 directions (z = 1) of the rays through flat pixel indices (N,): `pixel_rays`' arithmetic."""
    v, u = np.divmod(pixels, width)
    v, u = v.astype(np.float32), u.astype(np.float32)
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    y = (v - cy) / fy
    x = (u - cx - skew * y) / fx
    return np.stack([x, y, np.ones_like(x)], axis=-1).astype(np.float32)


def covered_pixels(meshes: list[MeshInstance], K: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H * W,) bool: the pixels whose ray can hit a mesh, the union of the meshes' projected bounding boxes.

    A triangle in front of the camera projects inside the box of its vertices' projections (grown by a pixel for
    rounding), so a ray outside every box misses everything; a mesh reaching behind the camera covers every pixel.
    """
    covered = np.zeros((height, width), bool)
    for mesh in meshes:
        z = mesh.verts[:, 2]
        if not len(z):
            continue
        if z.min() <= 1e-6:
            covered[:] = True
            break
        x, y = mesh.verts[:, 0] / z, mesh.verts[:, 1] / z
        u = K[0, 0] * x + K[0, 1] * y + K[0, 2]
        v = K[1, 1] * y + K[1, 2]
        u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, width)
        v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, height)
        covered[v0:v1, u0:u1] = True
    return covered.reshape(-1)


def _interpolation_matrix(cells: int, length: int) -> np.ndarray:
    """(length, cells) weights that linearly interpolate `cells` samples onto `length` pixels."""
    pos = np.linspace(0, cells - 1, length, dtype=np.float32)
    low = np.minimum(pos.astype(int), max(cells - 2, 0))
    frac = pos - low
    weights = np.zeros((length, cells), np.float32)
    weights[np.arange(length), low] = 1 - frac
    if cells > 1:
        weights[np.arange(length), low + 1] += frac
    return weights


def procedural_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 background: a smooth colour field, optionally with stripes or a checker, plus grain."""
    cells = int(rng.integers(2, 7))
    coarse = rng.uniform(0.05, 0.95, size=(cells, cells, 3)).astype(np.float32)
    # Indoor scenes are mostly muted: pull the colours toward their grey by a random saturation.
    grey = coarse.mean(axis=2, keepdims=True)
    coarse = grey + rng.uniform(0.1, 0.6) * (coarse - grey)
    coarse = coarse * rng.uniform(0.5, 1.0) + rng.uniform(0.0, 0.3)
    # Separable bilinear upsampling: rows then columns, as two small matrix products.
    rows, cols = _interpolation_matrix(cells, height), _interpolation_matrix(cells, width)
    image = np.stack([rows @ coarse[..., k] @ cols.T for k in range(3)], axis=-1)
    pattern = rng.integers(0, 4)
    if pattern >= 2:  # stripes or a checker, like tables, shelves, tiles
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(0.08, 0.4) * width
        v = np.arange(height, dtype=np.float32)[:, None]
        u = np.arange(width, dtype=np.float32)[None, :]
        wave = np.sin(2 * np.pi * (u * np.cos(angle) + v * np.sin(angle)) / period)
        if pattern == 3:
            wave = wave * np.sin(2 * np.pi * (-u * np.sin(angle) + v * np.cos(angle)) / period)
        tint = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        image = image + rng.uniform(0.05, 0.25) * (wave > 0)[..., None] * (tint - image)
    image = image + rng.uniform(0.0, 0.04) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    vec = rng.normal(size=3)
    return vec / np.linalg.norm(vec)


class Renderer:
    """Ray-casts a list of `MeshInstance`s seen by a pinhole camera K and shades them."""

    def __init__(self, config: RenderConfig | None = None) -> None:
        self.config = config or RenderConfig()

    def render(
        self,
        meshes: list[MeshInstance],
        K: np.ndarray,
        height: int,
        width: int,
        rng: np.random.Generator,
        background: np.ndarray | None = None,
    ) -> RenderOutput:
        # long: one pass over the pixels (cast, per-mesh attributes, lights, shadows, noise); arrays flow straight
        # through it, and the random draws keep a fixed order
        """Render meshes (camera frame) into an image of (height, width) with intrinsics K (3, 3).

        Args:
            meshes: posed meshes; the first hit along each ray decides the pixel.
            K: (3, 3) intrinsics.
            height, width: image size in pixels.
            rng: randomness for lights and noise.
            background: (H, W, 3) image behind the meshes, or None for a procedural one.
        """
        cfg = self.config
        scene = o3d.t.geometry.RaycastingScene()
        for mesh in meshes:
            scene.add_triangles(
                o3d.core.Tensor(np.ascontiguousarray(mesh.verts, dtype=np.float32)),
                o3d.core.Tensor(np.ascontiguousarray(mesh.faces, dtype=np.uint32)),
            )
        # Only rays that can hit something are cast (often under half the image): the rest are misses anyway, and
        # Open3D's cost is mostly per ray.
        cast = np.nonzero(covered_pixels(meshes, K, height, width))[0]  # (C,) flat pixel indices
        cast_dirs = _ray_directions(K, cast, width)  # (C, 3)
        rays = np.concatenate([np.zeros_like(cast_dirs), cast_dirs], axis=1)
        hit = scene.cast_rays(o3d.core.Tensor(rays), nthreads=cfg.threads)
        t_cast = hit["t_hit"].numpy()  # (C,) depth, since ray directions have z = 1
        is_hit = np.zeros(height * width, bool)
        is_hit[cast] = np.isfinite(t_cast)
        t_hit = np.full(height * width, np.inf, np.float32)
        t_hit[cast] = t_cast
        hit_in_cast = np.nonzero(np.isfinite(t_cast))[0]  # (Q,) hits, as indices into the cast rays
        geom = hit["geometry_ids"].numpy()[hit_in_cast].astype(np.int64)  # (Q,)
        prim = hit["primitive_ids"].numpy()[hit_in_cast].astype(np.int64)
        bary_uv = hit["primitive_uvs"].numpy()[hit_in_cast]  # (Q, 2)
        face_normals = hit["primitive_normals"].numpy()[hit_in_cast]  # (Q, 3) unit, camera frame

        rgb = background if background is not None else procedural_background(rng, height, width)
        rgb = rgb.reshape(-1, 3).copy()
        depth = np.where(is_hit, t_hit, 0.0).astype(np.float32)
        kinds = np.zeros(len(t_hit), dtype=np.int64)

        # Lights: a key light from the camera's side of the scene (so the visible side is mostly lit), a fill.
        key_dir = _random_unit(rng)
        key_dir[2] = -abs(key_dir[2]) - 0.3  # towards the camera: light travels from -z side
        key_dir /= np.linalg.norm(key_dir)  # direction from surface to the light
        key_color = np.array([1.0, rng.uniform(0.9, 1.0), rng.uniform(0.75, 1.0)], np.float32)
        key_color *= rng.uniform(*cfg.key_light)
        ambient = rng.uniform(*cfg.ambient) * np.array([rng.uniform(0.85, 1.0), 1.0, rng.uniform(0.9, 1.1)], np.float32)
        fill_dir = _random_unit(rng)
        fill_strength = rng.uniform(0.0, 0.35)

        hit_idx = cast[hit_in_cast]  # (Q,) flat pixel indices, increasing
        points = cast_dirs[hit_in_cast] * t_cast[hit_in_cast, None]  # (Q, 3) camera frame
        normals = np.zeros_like(points)
        albedo = np.zeros_like(points)
        shininess = np.zeros(len(hit_idx), np.float32)
        specular = np.zeros(len(hit_idx), np.float32)
        for gid, mesh in enumerate(meshes):
            sel = geom == gid
            if not sel.any():
                continue
            kinds[hit_idx[sel]] = mesh.kind
            if mesh.normals is None:
                mesh.normals = vertex_normals(mesh.verts.astype(np.float64), mesh.faces).astype(np.float32)
            tri = mesh.faces[prim[sel]]  # (S, 3)
            u, v = bary_uv[sel, 0:1], bary_uv[sel, 1:2]
            w = 1.0 - u - v
            n = w * mesh.normals[tri[:, 0]] + u * mesh.normals[tri[:, 1]] + v * mesh.normals[tri[:, 2]]
            n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
            # Smooth shading, except across creases (box edges): there the face normal is the true one.
            flat = face_normals[sel]
            crease = (n * flat).sum(1) < _CREASE_COS
            normals[sel] = np.where(crease[:, None], flat, n)
            if mesh.vertex_colors is not None:
                col = mesh.vertex_colors
                albedo[sel] = w * col[tri[:, 0]] + u * col[tri[:, 1]] + v * col[tri[:, 2]]
            elif mesh.albedo is not None:
                rot, trans = mesh.to_local if mesh.to_local is not None else (np.eye(3), np.zeros(3))
                albedo[sel] = mesh.albedo((points[sel] - trans) @ rot)
            else:
                albedo[sel] = 0.6
            shininess[sel] = mesh.shininess
            specular[sel] = mesh.specular

        view = -points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-9)
        # Normals face the viewer (thin parts seen from inside would otherwise go black).
        flip = (normals * view).sum(1) < 0
        normals[flip] *= -1
        lambert = np.clip(normals @ key_dir, 0.0, None)
        if cfg.shadows and len(points):
            origins = points + normals * 1e-4
            shadow_rays = np.concatenate([origins, np.broadcast_to(key_dir, origins.shape)], axis=1)
            # any hit will do: an occlusion test stops at the first one, a closest-hit cast searches on
            shadow = scene.test_occlusions(o3d.core.Tensor(shadow_rays.astype(np.float32)), nthreads=cfg.threads)
            occluded = shadow.numpy().astype(bool)
            lambert = np.where(occluded, 0.0, lambert)
        else:
            occluded = np.zeros(len(points), bool)
        half = key_dir[None] + view
        half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-9)
        spec = np.where(occluded, 0.0, np.clip((normals * half).sum(1), 0.0, 1.0) ** shininess) * specular
        fill = fill_strength * np.clip(normals @ fill_dir, 0.0, None)
        shaded = albedo * (ambient + (lambert + fill)[:, None] * key_color) + spec[:, None] * key_color
        rgb[hit_idx] = shaded
        if cfg.noise_std > 0:
            rgb = rgb + cfg.noise_std * rng.standard_normal(rgb.shape, dtype=np.float32)
        rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32).reshape(height, width, 3)
        kinds = kinds.reshape(height, width)
        return RenderOutput(
            rgb=rgb, depth=depth.reshape(height, width), hand_mask=kinds == HAND, obj_mask=kinds == OBJECT
        )
