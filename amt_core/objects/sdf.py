"""Signed-distance grids of the catalog's objects, for physics losses: built once with Open3D, cached on disk.

Distances are in metres, negative inside the object, positive outside. Queries interpolate trilinearly with
`torch.nn.functional.grid_sample`, so they are differentiable in the query points and run on CPU or GPU.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from scipy.ndimage import map_coordinates

from amt_core.atomic import atomic_write
from amt_core.paths import cache_dir

FORMAT_VERSION = 1  # bump when the grid layout or the build changes, so stale caches are rebuilt


@dataclass(kw_only=True, frozen=True)
class Config:
    """How a grid is built."""

    resolution: int = 64
    """Samples along each axis (the same for every class, so grids stack into one tensor)."""
    padding: float = 0.15
    """Margin added on every side of the bounding box, as a fraction of the object's largest extent."""
    min_padding: float = 0.01
    """The smallest margin in metres, so thin objects keep room around them."""
    rays: int = 3
    """Rays whose majority vote decides inside/outside in Open3D (odd; more is more robust, slower)."""

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 256:
            raise ValueError(f"sdf.Config.resolution must be in [8, 256], got {self.resolution}")
        if not 0.0 <= self.padding <= 1.0:
            raise ValueError(f"sdf.Config.padding must be in [0, 1], got {self.padding}")
        if not 0.0 <= self.min_padding <= 0.5:
            raise ValueError(f"sdf.Config.min_padding must be in [0, 0.5] metres, got {self.min_padding}")
        if self.rays < 1 or self.rays % 2 == 0:
            raise ValueError(f"sdf.Config.rays must be a positive odd number, got {self.rays}")


def _trilinear(volume: torch.Tensor, class_index: torch.Tensor, unit: torch.Tensor, count: int) -> torch.Tensor:
    """Sample stacked grids at unit-cube coordinates.

    Args:
        volume: (1, 1, C * R, R, R) grids of C classes stacked along depth (z), each indexed [z, y, x].
        class_index: (M,) long, which grid each point reads.
        unit: (M, 3) xyz in [0, 1] inside the grid's box.
        count: C.

    Returns:
        (M,) interpolated values.
    """
    res = volume.shape[-1]
    # align_corners=True: -1 and +1 are the centres of the first and last samples. Points stay inside their own
    # class's slab (z index in [k R, k R + R - 1]), so interpolation never mixes two classes.
    z_index = class_index.to(unit.dtype) * res + unit[:, 2] * (res - 1)
    z_norm = 2 * z_index / (count * res - 1) - 1
    grid = torch.stack([2 * unit[:, 0] - 1, 2 * unit[:, 1] - 1, z_norm], dim=-1)  # (M, 3)
    out = F.grid_sample(volume, grid.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(-1)


def _query(
    volume: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, class_index: torch.Tensor, points: torch.Tensor
) -> torch.Tensor:
    """Signed distance at points (M, 3) in each class's object frame; lo, hi (M, 3) the grid boxes."""
    work = points.to(volume.dtype)
    inside_box = torch.minimum(torch.maximum(work, lo), hi)
    unit = (inside_box - lo) / (hi - lo)
    value = _trilinear(volume, class_index, unit, volume.shape[2] // volume.shape[-1])
    # outside the grid: the value at the nearest grid point plus the distance to the grid box (an upper bound on
    # the true distance that keeps a gradient pointing back toward the object)
    outside = torch.linalg.vector_norm(work - inside_box, dim=-1)
    return (value + outside).to(points.dtype)


class SDFGrid:
    """One object's signed distances on a regular grid over its padded bounding box, in the object frame.

    Attributes:
        values: (R, R, R) metres, indexed [z, y, x]; negative inside.
        lo, hi: (3,) metres, the grid box; sample i along an axis sits at lo + i (hi - lo) / (R - 1).
    """

    def __init__(self, values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if values.ndim != 3 or len(set(values.shape)) != 1:
            raise ValueError(f"SDFGrid values must be (R, R, R), got {tuple(values.shape)}")
        self.values = values
        self.lo = lo
        self.hi = hi
        self._host: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # float64 copies for query_numpy

    @property
    def resolution(self) -> int:
        return int(self.values.shape[0])

    @property
    def voxel_size(self) -> torch.Tensor:
        """(3,) metres between neighbouring samples along x, y, z."""
        return (self.hi - self.lo) / (self.resolution - 1)

    @property
    def device(self) -> torch.device:
        return self.values.device

    def to(self, device: torch.device | str) -> SDFGrid:
        return SDFGrid(self.values.to(device), self.lo.to(device), self.hi.to(device))

    def query(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distances at points `(..., 3)` metres in the object frame -> `(...)` metres, differentiable."""
        flat = points.reshape(-1, 3)
        index = torch.zeros(len(flat), dtype=torch.long, device=flat.device)
        volume = self.values[None, None]
        lo = self.lo.expand(len(flat), 3)
        hi = self.hi.expand(len(flat), 3)
        return _query(volume, lo, hi, index, flat).reshape(points.shape[:-1])

    def query_numpy(self, points: np.ndarray) -> np.ndarray:
        """`query` for host arrays, without autograd: points `(..., 3)` metres -> `(...)` float64 metres.

        The same trilinear interpolation (scipy's `map_coordinates`, order 1) and the same bound outside the box, in
        float64; the grasp search calls this thousands of times on a few hundred points, where `query`'s tensor
        set-up costs more than the interpolation. Tests check the two agree.
        """
        if self._host is None:
            self._host = (
                self.values.detach().cpu().numpy().astype(np.float64),
                self.lo.detach().cpu().numpy().astype(np.float64),
                self.hi.detach().cpu().numpy().astype(np.float64),
            )
        values, lo, hi = self._host
        flat = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        inside_box = np.minimum(np.maximum(flat, lo), hi)
        index = (inside_box - lo) * ((self.resolution - 1) / (hi - lo))  # (M, 3) xyz in sample units
        value = map_coordinates(values, index[:, ::-1].T, order=1, mode="nearest", prefilter=False)
        outside = np.sqrt(((flat - inside_box) ** 2).sum(-1))
        return (value + outside).reshape(np.shape(points)[:-1])


def build_grid(mesh: trimesh.Trimesh, config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast signed distances with Open3D.

    Returns:
        values (R, R, R) float32 indexed [z, y, x], lo (3,), hi (3,) metres.
    """
    import open3d as o3d  # about a second to import: only building a grid (once per machine) needs it

    bounds = np.asarray(mesh.bounds, dtype=np.float64)
    pad = max(config.padding * float(np.max(bounds[1] - bounds[0])), config.min_padding)
    lo, hi = bounds[0] - pad, bounds[1] + pad
    axes = [np.linspace(lo[i], hi[i], config.resolution) for i in (2, 1, 0)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    points = np.stack([xx, yy, zz], axis=-1).reshape(-1, 3).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    distances = scene.compute_signed_distance(o3d.core.Tensor(points), nsamples=config.rays).numpy()
    values = distances.reshape((config.resolution,) * 3).astype(np.float32)
    return values, lo.astype(np.float32), hi.astype(np.float32)


def _cache_path(name: str, mesh: trimesh.Trimesh, config: Config) -> Path:
    digest = hashlib.sha1()
    digest.update(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes())
    digest.update(json.dumps({"config": asdict(config), "format": FORMAT_VERSION}, sort_keys=True).encode())
    return cache_dir() / "sdf" / f"{name}-r{config.resolution}-{digest.hexdigest()[:16]}.npz"


def load_or_build(name: str, mesh: trimesh.Trimesh, config: Config | None = None) -> SDFGrid:
    """The grid of a mesh from the cache, building and caching it (atomically) on first use."""
    config = config or Config()
    path = _cache_path(name, mesh, config)
    if path.exists():
        try:
            with np.load(path) as data:
                values, lo, hi = data["values"], data["lo"], data["hi"]
            if values.shape == (config.resolution,) * 3:
                return SDFGrid(torch.from_numpy(values), torch.from_numpy(lo), torch.from_numpy(hi))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    values, lo, hi = build_grid(mesh, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, fsync=False) as handle:  # a cache: rebuilt if a crash loses it
        np.savez(handle, values=values, lo=lo, hi=hi)
    return SDFGrid(torch.from_numpy(values), torch.from_numpy(lo), torch.from_numpy(hi))


class SDFBank:
    """The grids of several classes stacked into one tensor, so one `grid_sample` serves a batch of mixed classes.

    Attributes:
        volume: (1, 1, C * R, R, R) metres.
        lo, hi: (C, 3) metres, each class's grid box.
    """

    def __init__(self, grids: list[SDFGrid]) -> None:
        if not grids or len({g.resolution for g in grids}) != 1:
            raise ValueError("SDFBank needs at least one grid, all of the same resolution")
        self.volume = torch.cat([g.values for g in grids], dim=0)[None, None]
        self.lo = torch.stack([g.lo for g in grids])
        self.hi = torch.stack([g.hi for g in grids])

    @property
    def num_classes(self) -> int:
        return int(self.lo.shape[0])

    def to(self, device: torch.device | str) -> SDFBank:
        bank = SDFBank.__new__(SDFBank)
        bank.volume, bank.lo, bank.hi = self.volume.to(device), self.lo.to(device), self.hi.to(device)
        return bank

    def query_object_frame(self, class_ids: torch.Tensor, points_obj: torch.Tensor) -> torch.Tensor:
        """Signed distances (B, P) at points (B, P, 3) given in each sample's object frame; class_ids (B,)."""
        batch, count = points_obj.shape[:2]
        class_index = class_ids.to(torch.long).view(batch, 1).expand(batch, count).reshape(-1)
        lo, hi = self.lo[class_index], self.hi[class_index]
        return _query(self.volume, lo, hi, class_index, points_obj.reshape(-1, 3)).view(batch, count)

    def query(
        self, class_ids: torch.Tensor, obj_rot: torch.Tensor, obj_trans: torch.Tensor, points: torch.Tensor
    ) -> torch.Tensor:
        """Signed distances (B, P) at camera-frame points (B, P, 3).

        Args:
            class_ids: (B,) object class ids.
            obj_rot: (B, 3, 3) object-to-camera rotation: x_cam = R x_obj + t.
            obj_trans: (B, 3) metres.
            points: (B, P, 3) metres, camera frame.
        """
        # x_obj = R^T (x_cam - t), written as a row-vector product
        points_obj = torch.einsum("bpj,bjk->bpk", points - obj_trans[:, None, :], obj_rot)
        return self.query_object_frame(class_ids, points_obj)
