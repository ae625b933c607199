"""The object catalog: everyday objects modelled on YCB's, with stable class ids, masses, symmetries and textures.

Object frame: origin at the centre of the mesh's axis-aligned bounding box, metres, z up for objects that stand
upright (cans, boxes, bottles, mug, drill), the long axis along x for objects that lie down (banana, scissors).
Class ids are positions in `_SPECS` below and never change with import order; new classes go at the end.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import trimesh
from scipy.spatial.distance import pdist

from amt_core.errors import UserError
from amt_core.objects import shapes
from amt_core.objects import textures as tx
from amt_core.objects.sdf import Config as SDFConfig
from amt_core.objects.sdf import SDFBank, SDFGrid, load_or_build

Albedo = Callable[[np.ndarray], np.ndarray]  # (N, 3) object-frame metres -> (N, 3) RGB in [0, 1]


@dataclass(frozen=True, kw_only=True)
class Symmetry:
    """Which rotations leave an object's shape and pattern unchanged (the faint mottling of plain colours aside).

    Attributes:
        kind: "none", "continuous" (any angle about `axis`) or "discrete" (the finite set `rotations`).
        axis: (3,) unit axis of a continuous symmetry, object frame.
        rotations: discrete symmetries as (K, 3, 3) nested tuples, identity included.
    """

    kind: Literal["none", "continuous", "discrete"] = "none"
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    rotations: tuple[tuple[tuple[float, ...], ...], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("none", "continuous", "discrete"):
            raise ValueError(f"Symmetry.kind must be none, continuous or discrete, got {self.kind!r}")
        if self.kind == "discrete" and len(self.rotations) < 2:
            raise ValueError("Symmetry.rotations must list at least the identity and one more rotation")

    @property
    def symmetric(self) -> bool:
        """Whether pose errors should use ADD-S (closest point) instead of ADD."""
        return self.kind != "none"

    def rotation_set(self, steps: int = 36) -> np.ndarray:
        """The symmetry rotations (K, 3, 3); a continuous symmetry is sampled every 360/steps degrees."""
        if self.kind == "none":
            return np.eye(3)[None]
        if self.kind == "discrete":
            return np.asarray(self.rotations, dtype=np.float64)
        axis = np.asarray(self.axis, dtype=np.float64)
        angles = np.linspace(0, 2 * np.pi, steps, endpoint=False)
        return np.stack([trimesh.transformations.rotation_matrix(a, axis)[:3, :3] for a in angles])

    @staticmethod
    def of_box(extents: tuple[float, float, float]) -> Symmetry:
        """The rotations of a plain box onto itself: 4 for three different sides, 8 for a square section."""
        ext = np.asarray(extents)
        found = []
        for perm in itertools.permutations(range(3)):
            for signs in itertools.product((1, -1), repeat=3):
                rot = np.zeros((3, 3))
                rot[np.arange(3), perm] = signs
                if np.linalg.det(rot) > 0 and np.allclose(np.abs(rot) @ ext, ext):
                    found.append(tuple(map(tuple, rot)))
        return Symmetry(kind="discrete", rotations=tuple(found))


@dataclass(kw_only=True, eq=False)
class ObjectClass:
    """One object class of the catalog."""

    id: int
    """Stable class id (its place in the catalog)."""
    name: str
    """Short name, e.g. "mug"."""
    ycb_name: str
    """The YCB object it models, e.g. "025_mug", so dataset readers can map onto the catalog."""
    mesh: trimesh.Trimesh
    """Closed surface in the object frame, metres."""
    density: float
    """kg/m^3; an effective density for objects of several materials or that are not solid (cans, boxes)."""
    symmetry: Symmetry
    color: tuple[float, float, float]
    """Base RGB in [0, 1] (for legends and flat shading)."""
    albedo: Albedo
    """Procedural texture: (N, 3) object-frame points -> (N, 3) RGB in [0, 1]."""
    mass: float = field(init=False)
    """kg, volume x density."""
    diameter: float = field(init=False)
    """Largest distance between two vertices, metres (the ADD threshold is a fraction of it)."""
    _sdf: dict[SDFConfig, SDFGrid] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.mass = float(self.mesh.volume * self.density)
        self.diameter = float(pdist(np.asarray(self.mesh.convex_hull.vertices)).max())

    @property
    def symmetric(self) -> bool:
        return self.symmetry.symmetric

    @property
    def extents(self) -> np.ndarray:
        """(3,) bounding-box size along x, y, z, metres."""
        return np.asarray(self.mesh.extents)

    def surface_points(self, n: int, seed: int = 0) -> np.ndarray:
        """(n, 3) points spread uniformly by area over the surface, object frame; the same for the same seed."""
        points, _ = trimesh.sample.sample_surface(self.mesh, n, seed=seed)
        return np.asarray(points, dtype=np.float64)

    def sdf(self, config: SDFConfig | None = None) -> SDFGrid:
        """The signed-distance grid (built with Open3D on first use, then cached on disk and here)."""
        config = config or SDFConfig()
        if config not in self._sdf:
            self._sdf[config] = load_or_build(self.name, self.mesh, config)
        return self._sdf[config]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_sdf"] = {}  # grids reload from the disk cache in the receiving process
        return state


# --- the classes ---------------------------------------------------------------------------------------------
# Each factory returns (mesh, albedo) with texture anchors expressed in the centred object frame.

Made = tuple[trimesh.Trimesh, Albedo]


def _box(extents: tuple[float, float, float], base: tx.RGB, band: tx.RGB, logo: tx.RGB) -> Made:
    mesh, _ = shapes.finish(shapes.box(extents), "box")
    return mesh, tx.BoxPrint(base=base, band=band, logo=logo, extents=extents)


def _can(diameter: float, height: float, label: tx.RGB, stripe: tx.RGB, logo: tx.RGB) -> Made:
    mesh, _ = shapes.finish(shapes.can(diameter, height), "can")
    rim = max(0.1 * height, 0.004)
    band = (-height / 2 + rim, height / 2 - rim)
    return mesh, tx.CanLabel(metal=(0.76, 0.76, 0.79), label=label, stripe=stripe, logo=logo, band=band)


def _potted_meat_can() -> Made:
    mesh, _ = shapes.finish(shapes.rounded_can(0.097, 0.050, 0.082, 0.012), "potted_meat_can")
    return mesh, tx.CanLabel(
        metal=(0.76, 0.76, 0.79),
        label=(0.15, 0.30, 0.65),
        stripe=(0.95, 0.80, 0.20),
        logo=(0.95, 0.95, 0.92),
        band=(-0.033, 0.033),
    )


def _bottle(kind: str) -> Made:
    if kind == "mustard":
        dims = {"width": 0.085, "depth": 0.050, "body_height": 0.125, "shoulder": 0.025, "corner": 0.020}
        cap = {"cap_radius": 0.013, "cap_height": 0.025}
        colors = {"body": (0.96, 0.80, 0.10), "label": (0.12, 0.22, 0.70), "cap": (0.90, 0.72, 0.08)}
    else:
        dims = {"width": 0.098, "depth": 0.065, "body_height": 0.185, "shoulder": 0.035, "corner": 0.025}
        cap = {"cap_radius": 0.016, "cap_height": 0.030}
        colors = {"body": (0.93, 0.93, 0.96), "label": (0.10, 0.40, 0.80), "cap": (0.90, 0.30, 0.10)}
    mesh, shift = shapes.finish(shapes.bottle(**dims, **cap), kind)
    z_cap = dims["body_height"] + dims["shoulder"] + shift[2]
    band = (0.25 * dims["body_height"] + shift[2], 0.85 * dims["body_height"] + shift[2])
    return mesh, tx.Bottle(**colors, cap_z=z_cap, band=band)


def _banana() -> Made:
    mesh, _ = shapes.finish(shapes.banana(), "banana")
    return mesh, tx.Speckled(base=(0.95, 0.82, 0.20), speck=(0.35, 0.22, 0.08), tip=(0.30, 0.25, 0.10), tip_x=0.085)


def _apple() -> Made:
    mesh, _ = shapes.finish(shapes.apple(), "apple")
    return mesh, tx.AppleSkin(red=(0.72, 0.07, 0.08), yellow=(0.95, 0.78, 0.22))


def _vessel(kind: str) -> Made:
    raw = shapes.mug() if kind == "mug" else shapes.pitcher()
    mesh, shift = shapes.finish(raw, kind)
    # textures are radial about the vessel's own axis, which sits at -shift in xy after centring; move the points
    inner_radius, floor = (0.036, 0.006) if kind == "mug" else (0.046, 0.004)
    outer, inner = ((0.80, 0.16, 0.12), (0.95, 0.93, 0.88)) if kind == "mug" else ((0.25, 0.55, 0.85),) * 2
    glaze = tx.Glaze(outer=outer, inner=inner, inner_radius=inner_radius, floor_z=floor + shift[2])
    return mesh, _Offset(texture=glaze, offset=(float(shift[0]), float(shift[1]), 0.0))


@dataclass(frozen=True)
class _Offset:
    """A texture defined about another origin: evaluates `texture(points - offset)`."""

    texture: Albedo
    offset: tuple[float, float, float]

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return self.texture(points - np.asarray(self.offset))


def _bowl() -> Made:
    mesh, _ = shapes.finish(shapes.bowl(), "bowl")
    return mesh, tx.Solid(color=(0.80, 0.14, 0.10))


def _drill() -> Made:
    mesh, shift = shapes.finish(shapes.power_drill(), "power_drill")
    black, big = (0.08, 0.08, 0.09), 1.0
    boxes = (
        ((-big, -big, -big), (big, big, 0.047), black),  # battery pack
        ((0.062, -big, -big), (big, big, big), black),  # collar and chuck
        ((-big, -big, -big), (0.045, big, 0.127), (0.15, 0.15, 0.16)),  # grip
    )
    moved = tuple((tuple(np.add(lo, shift)), tuple(np.add(hi, shift)), c) for lo, hi, c in boxes)
    return mesh, tx.Regions(default=(0.10, 0.55, 0.55), boxes=moved)


def _wood_block() -> Made:
    mesh, _ = shapes.finish(shapes.box((0.085, 0.085, 0.200)), "wood_block")
    return mesh, tx.WoodGrain(light=(0.85, 0.68, 0.45), dark=(0.55, 0.38, 0.20))


def _scissors() -> Made:
    mesh, shift = shapes.finish(shapes.scissors(), "scissors")
    blades = ((-0.0075 + shift[0], -1.0, -1.0), (1.0, 1.0, 1.0), (0.72, 0.74, 0.78))
    return mesh, tx.Regions(default=(0.10, 0.30, 0.80), boxes=(blades,))


def _marker() -> Made:
    length = 0.121
    mesh, shift = shapes.finish(shapes.marker(length=length), "large_marker")
    z0, big = shift[2], 1.0
    boxes = (
        ((-big, -big, -big), (big, big, 0.052 + z0), (0.06, 0.06, 0.07)),  # cap
        ((-big, -big, length - 0.022 + z0), (big, big, big), (0.25, 0.25, 0.27)),  # tip cone
        ((-big, -big, 0.070 + z0), (big, big, 0.085 + z0), (0.06, 0.06, 0.07)),  # label band
    )
    return mesh, tx.Regions(default=(0.92, 0.92, 0.90), boxes=boxes)


def _tennis_ball() -> Made:
    mesh, _ = shapes.finish(shapes.ball(0.065), "tennis_ball")
    return mesh, tx.TennisBall(felt=(0.80, 0.90, 0.20), seam=(0.96, 0.96, 0.94))


def _foam_brick() -> Made:
    mesh, _ = shapes.finish(shapes.box((0.075, 0.050, 0.050)), "foam_brick")
    return mesh, tx.Solid(color=(0.85, 0.16, 0.12))


def _rot(axis: tuple[float, float, float], angle: float) -> tuple[tuple[float, ...], ...]:
    matrix = np.round(trimesh.transformations.rotation_matrix(angle, axis)[:3, :3], 12)
    return tuple(map(tuple, matrix))


_NONE = Symmetry()
_AXIAL = Symmetry(kind="continuous", axis=(0.0, 0.0, 1.0))
# the seam of a tennis ball is unchanged by half turns about x, y and z
_SEAM = Symmetry(kind="discrete", rotations=(_rot((0, 0, 1), 0.0), *[_rot(a, np.pi) for a in np.eye(3)]))

# (name, ycb_name, factory, density kg/m^3, symmetry, base colour); the id of a class is its index here
_SPECS: tuple[tuple[str, str, Callable[[], Made], float, Symmetry, tx.RGB], ...] = (
    (
        "master_chef_can",
        "002_master_chef_can",
        lambda: _can(0.102, 0.139, (0.10, 0.25, 0.60), (0.95, 0.82, 0.30), (0.85, 0.10, 0.10)),
        365.0,
        _NONE,
        (0.10, 0.25, 0.60),
    ),
    (
        "cracker_box",
        "003_cracker_box",
        lambda: _box((0.158, 0.060, 0.210), (0.80, 0.12, 0.10), (0.98, 0.85, 0.20), (0.96, 0.92, 0.78)),
        206.0,
        _NONE,
        (0.80, 0.12, 0.10),
    ),
    (
        "sugar_box",
        "004_sugar_box",
        lambda: _box((0.089, 0.038, 0.175), (0.96, 0.85, 0.25), (0.10, 0.20, 0.60), (0.97, 0.97, 0.95)),
        868.0,
        _NONE,
        (0.96, 0.85, 0.25),
    ),
    (
        "tomato_soup_can",
        "005_tomato_soup_can",
        lambda: _can(0.066, 0.101, (0.80, 0.10, 0.10), (0.90, 0.75, 0.30), (0.97, 0.97, 0.95)),
        1010.0,
        _NONE,
        (0.80, 0.10, 0.10),
    ),
    ("mustard_bottle", "006_mustard_bottle", lambda: _bottle("mustard"), 1075.0, _NONE, (0.96, 0.80, 0.10)),
    (
        "tuna_fish_can",
        "007_tuna_fish_can",
        lambda: _can(0.0856, 0.0334, (0.20, 0.35, 0.70), (0.97, 0.97, 0.95), (0.95, 0.80, 0.20)),
        890.0,
        _NONE,
        (0.20, 0.35, 0.70),
    ),
    (
        "pudding_box",
        "008_pudding_box",
        lambda: _box((0.110, 0.035, 0.089), (0.45, 0.25, 0.12), (0.97, 0.97, 0.95), (0.90, 0.75, 0.30)),
        545.0,
        _NONE,
        (0.45, 0.25, 0.12),
    ),
    (
        "gelatin_box",
        "009_gelatin_box",
        lambda: _box((0.085, 0.028, 0.073), (0.85, 0.20, 0.35), (0.97, 0.97, 0.95), (0.30, 0.10, 0.50)),
        558.0,
        _NONE,
        (0.85, 0.20, 0.35),
    ),
    ("potted_meat_can", "010_potted_meat_can", _potted_meat_can, 950.0, _NONE, (0.15, 0.30, 0.65)),
    ("banana", "011_banana", _banana, 950.0, _NONE, (0.95, 0.82, 0.20)),
    ("apple", "013_apple", _apple, 800.0, _NONE, (0.72, 0.07, 0.08)),
    ("pitcher_base", "019_pitcher_base", lambda: _vessel("pitcher"), 900.0, _NONE, (0.25, 0.55, 0.85)),
    ("bleach_cleanser", "021_bleach_cleanser", lambda: _bottle("bleach"), 920.0, _NONE, (0.93, 0.93, 0.96)),
    ("bowl", "024_bowl", _bowl, 1350.0, _AXIAL, (0.80, 0.14, 0.10)),
    ("mug", "025_mug", lambda: _vessel("mug"), 2400.0, _NONE, (0.80, 0.16, 0.12)),
    ("power_drill", "035_power_drill", _drill, 1300.0, _NONE, (0.10, 0.55, 0.55)),
    ("wood_block", "036_wood_block", _wood_block, 505.0, Symmetry.of_box((0.085, 0.085, 0.200)), (0.85, 0.68, 0.45)),
    ("scissors", "037_scissors", _scissors, 2850.0, _NONE, (0.10, 0.30, 0.80)),
    ("large_marker", "040_large_marker", _marker, 630.0, _AXIAL, (0.92, 0.92, 0.90)),
    ("tennis_ball", "056_tennis_ball", _tennis_ball, 400.0, _SEAM, (0.80, 0.90, 0.20)),
    ("foam_brick", "061_foam_brick", _foam_brick, 150.0, Symmetry.of_box((0.075, 0.050, 0.050)), (0.85, 0.16, 0.12)),
)


@functools.cache
def catalog() -> list[ObjectClass]:
    """All object classes, in id order (built once per process, in under a second)."""
    classes = []
    for index, (name, ycb_name, factory, density, symmetry, color) in enumerate(_SPECS):
        mesh, albedo = factory()
        classes.append(
            ObjectClass(
                id=index,
                name=name,
                ycb_name=ycb_name,
                mesh=mesh,
                density=density,
                symmetry=symmetry,
                color=color,
                albedo=albedo,
            )
        )
    return classes


def num_classes() -> int:
    return len(_SPECS)


def class_names() -> list[str]:
    """Names in id order, without building any mesh."""
    return [spec[0] for spec in _SPECS]


def get_object(key: str | int) -> ObjectClass:
    """A class by id, name ("mug") or YCB name ("025_mug"); unknown keys raise UserError listing the valid ones."""
    classes = catalog()
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        if 0 <= int(key) < len(classes):
            return classes[int(key)]
        raise UserError(f"unknown object id {key}: valid ids are 0..{len(classes) - 1}")
    for obj in classes:
        if key in (obj.name, obj.ycb_name):
            return obj
    raise UserError(f"unknown object {key!r}: valid names are {', '.join(class_names())}")


@functools.cache
def _bank(device: str, config: SDFConfig) -> SDFBank:
    return SDFBank([obj.sdf(config) for obj in catalog()]).to(device)


def sdf_bank(device: torch.device | str = "cpu", config: SDFConfig | None = None) -> SDFBank:
    """All classes' grids stacked in id order on a device (built once per device and config)."""
    return _bank(str(torch.device(device)), config or SDFConfig())


def sdf_batch(
    class_ids: torch.Tensor,
    obj_rot: torch.Tensor,
    obj_trans: torch.Tensor,
    points: torch.Tensor,
    config: SDFConfig | None = None,
) -> torch.Tensor:
    """Signed distances (B, P) metres from camera-frame points to posed objects of mixed classes.

    Args:
        class_ids: (B,) catalog ids.
        obj_rot: (B, 3, 3) object-to-camera rotation (x_cam = R x_obj + t).
        obj_trans: (B, 3) metres.
        points: (B, P, 3) metres, camera frame (e.g. hand vertices); differentiable.
        config: grid settings; the default is what the cache holds.
    """
    return sdf_bank(points.device, config).query(class_ids, obj_rot, obj_trans, points)
