"""Mesh builders for the object catalog: everyday objects modelled on YCB's, in metres, made with trimesh.

Every builder returns a closed, consistently wound mesh with positive volume, centred on its bounding-box centre
with z up for objects that stand upright. Unions and differences go through trimesh's manifold3d engine.
"""

from __future__ import annotations

import numpy as np
import trimesh

SECTIONS = 48  # segments around a body of revolution: smooth enough for 128-512 px renders


def finish(mesh: trimesh.Trimesh, what: str) -> tuple[trimesh.Trimesh, np.ndarray]:
    """Orient outward and centre a mesh on its bounding-box centre; fail loudly if it is not a solid.

    Returns:
        The centred mesh and the (3,) translation applied to it (metres), to move texture anchors along.
    """
    # process=False: manifold's output can hold distinct vertices closer than trimesh's merge tolerance, and
    # merging them would pinch the surface
    mesh = trimesh.Trimesh(vertices=np.asarray(mesh.vertices, dtype=np.float64), faces=mesh.faces, process=False)
    trimesh.repair.fix_normals(mesh)
    if mesh.volume < 0:
        mesh.invert()
    if not (mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0):
        raise RuntimeError(f"object mesh {what!r} is not a closed solid (a bug in its builder)")
    shift = -mesh.bounds.mean(axis=0)
    mesh.apply_translation(shift)
    return mesh, shift


def union(*meshes: trimesh.Trimesh) -> trimesh.Trimesh:
    return trimesh.boolean.union(list(meshes), engine="manifold")


def difference(a: trimesh.Trimesh, b: trimesh.Trimesh) -> trimesh.Trimesh:
    return trimesh.boolean.difference([a, b], engine="manifold")


def revolve(profile_rz: list[tuple[float, float]], sections: int = SECTIONS) -> trimesh.Trimesh:
    """A solid of revolution about z from an (r, z) profile that starts and ends on the axis (r = 0)."""
    profile = np.asarray(profile_rz, dtype=np.float64)  # (K, 2) metres
    if profile[0, 0] != 0 or profile[-1, 0] != 0:
        raise ValueError("a revolved profile must start and end on the axis")
    return trimesh.creation.revolve(profile, sections=sections)


def box(extents: tuple[float, float, float]) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents)


def cylinder_z(radius: float, z0: float, z1: float, sections: int = SECTIONS) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=radius, segment=[[0, 0, z0], [0, 0, z1]], sections=sections)


def cylinder_between(radius: float, a: tuple[float, float, float], b: tuple[float, float, float]) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=radius, segment=[a, b], sections=SECTIONS)


def hull(*meshes: trimesh.Trimesh) -> trimesh.Trimesh:
    """The convex hull of several parts (rounded boxes, bottle bodies)."""
    return trimesh.convex.convex_hull(np.concatenate([m.vertices for m in meshes], axis=0))


def rounded_prism(width: float, depth: float, radius: float, z0: float, z1: float) -> trimesh.Trimesh:
    """A box with rounded vertical edges: the hull of four corner cylinders. (x = width, y = depth)."""
    corners = [(sx * (width / 2 - radius), sy * (depth / 2 - radius)) for sx in (-1, 1) for sy in (-1, 1)]
    parts = [cylinder_z(radius, z0, z1, sections=16).apply_translation([x, y, 0]) for x, y in corners]
    return hull(*parts)


def ring_handle(
    center: tuple[float, float, float], major: float, minor: float, stretch_z: float, plane: str
) -> trimesh.Trimesh:
    """A (possibly elliptical) torus for a handle; plane "xz" for mug handles, "xy" for scissor rings."""
    torus = trimesh.creation.torus(major_radius=major, minor_radius=minor, major_sections=48, minor_sections=16)
    if plane == "xz":
        torus.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        torus.apply_scale([1.0, 1.0, stretch_z])
    else:
        torus.apply_scale([1.0, stretch_z, 1.0])
    return torus.apply_translation(center)


# --- the objects ---------------------------------------------------------------------------------------------


def can(diameter: float, height: float, lip: float = 0.002) -> trimesh.Trimesh:
    """A food can: a cylinder with bevelled rims."""
    r = diameter / 2
    profile = [(0, 0), (r - lip, 0), (r, lip), (r, height - lip), (r - lip, height), (0, height)]
    return revolve(profile)


def rounded_can(width: float, depth: float, height: float, corner: float) -> trimesh.Trimesh:
    """A rectangular can with rounded corners (potted meat)."""
    body = rounded_prism(width, depth, corner, 0.002, height - 0.002)
    lid = rounded_prism(width - 0.003, depth - 0.003, corner - 0.0015, 0.0, height)
    return union(body, lid)


def mug(diameter: float = 0.080, height: float = 0.082, wall: float = 0.004, bottom: float = 0.006) -> trimesh.Trimesh:
    """A mug: an open cup with a D-shaped handle fused into its wall."""
    r = diameter / 2
    cup = revolve(
        [(0, 0), (r - 0.002, 0), (r, 0.002), (r, height), (r - wall, height), (r - wall, bottom), (0, bottom)]
    )
    ring = ring_handle((r, 0, height * 0.52), major=0.021, minor=0.0055, stretch_z=1.25, plane="xz")
    handle = difference(ring, cylinder_z(r - wall / 2, -0.1, 0.2))  # ends sink half into the wall, never the cavity
    return union(cup, handle)


def bowl(diameter: float = 0.159, height: float = 0.053, wall: float = 0.003, foot: float = 0.030) -> trimesh.Trimesh:
    """A bowl: a thin shell of revolution whose outer profile is a quarter ellipse from the foot to the rim."""
    r = diameter / 2
    phi = np.linspace(0, np.pi / 2, 16)
    outer = [(foot + (r - foot) * np.sin(p), height * (1 - np.cos(p))) for p in phi]
    inner = [(foot - wall + (r - foot) * np.sin(p), wall + (height - wall) * (1 - np.cos(p))) for p in phi[::-1]]
    inner[0] = (r - wall, height)
    return revolve([(0, 0), *outer, *inner, (0, wall)])


def pitcher(height: float = 0.235, wall: float = 0.0025) -> trimesh.Trimesh:
    """A pitcher: a bulging open vessel with a tall handle."""
    z = np.linspace(0, height, 14)
    radius = 0.049 + 0.007 * np.sin(np.pi * np.clip(z / (0.75 * height), 0, 1)) - 0.003 * (z / height) ** 2
    outer = list(zip(radius, z, strict=True))
    inner = [(rr - wall, zz) for rr, zz in outer[::-1] if zz > 0.004]
    cup = revolve([(0, 0), *outer, *inner, (0, 0.004)])
    solid = revolve([(0, 0), *[(rr - wall / 2, zz) for rr, zz in outer], (0, height)])
    ring = ring_handle((0.05, 0, 0.13), major=0.038, minor=0.008, stretch_z=2.2, plane="xz")
    return union(cup, difference(ring, solid))


def bottle(
    width: float, depth: float, body_height: float, shoulder: float, corner: float, cap_radius: float, cap_height: float
) -> trimesh.Trimesh:
    """A squeeze or cleaner bottle: a rounded body tapering at the shoulder into a cylindrical cap."""
    body = rounded_prism(width, depth, corner, 0.0, body_height)
    top = rounded_prism(width * 0.55, depth * 0.7, min(corner, depth * 0.3), body_height, body_height + shoulder)
    cap = cylinder_z(cap_radius, body_height + shoulder - 0.002, body_height + shoulder + cap_height, sections=32)
    return union(hull(body, top), cap)


def banana(length: float = 0.20, thickness: float = 0.036, bend_radius: float = 0.16) -> trimesh.Trimesh:
    """A banana: a slightly five-sided ellipsoid bent along an arc, ends up."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    v = sphere.vertices.copy()  # (N, 3) unit sphere
    psi = np.arctan2(v[:, 2], v[:, 1])
    ridge = 1 + 0.05 * np.cos(5 * psi)  # the banana's faceted cross-section
    x = v[:, 0] * length / 2
    y = v[:, 1] * thickness / 2 * ridge
    zl = v[:, 2] * thickness / 2 * ridge
    phi = x / bend_radius
    out = np.stack([(bend_radius - zl) * np.sin(phi), y, bend_radius - (bend_radius - zl) * np.cos(phi)], axis=1)
    return trimesh.Trimesh(vertices=out, faces=sphere.faces, process=False)


def apple(diameter: float = 0.075, height: float = 0.070) -> trimesh.Trimesh:
    """An apple: a sphere with dimples at both poles and a faint five-lobed bottom, plus a stem."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    v = sphere.vertices.copy()
    theta = np.arccos(np.clip(v[:, 2], -1, 1))  # polar angle
    lon = np.arctan2(v[:, 1], v[:, 0])
    radius = 1 - 0.16 * np.exp(-((theta / 0.38) ** 2)) - 0.10 * np.exp(-(((np.pi - theta) / 0.35) ** 2))
    radius = radius * (1 + 0.025 * np.cos(5 * lon) * np.clip((theta - np.pi / 2) / (np.pi / 2), 0, 1))
    v = v * radius[:, None] * np.array([diameter / 2, diameter / 2, height / 2])
    body = trimesh.Trimesh(vertices=v, faces=sphere.faces, process=False)
    top = float(v[:, 2].max())
    stem = cylinder_between(0.0016, (0, 0, top - 0.010), (0.002, 0, top + 0.006))
    return union(body, stem)


def ball(diameter: float) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=3, radius=diameter / 2)


def marker(length: float = 0.121, diameter: float = 0.018) -> trimesh.Trimesh:
    """A large marker standing on its cap end: barrel, a cap ring, and a tapered chisel tip on top."""
    r = diameter / 2
    profile = [
        (0, 0),
        (r - 0.001, 0),
        (r, 0.001),
        (r, 0.050),
        (r - 0.0008, 0.052),
        (r - 0.0008, length - 0.022),
        (0.0045, length - 0.008),
        (0.0030, length - 0.007),
        (0.0025, length),
        (0, length),
    ]
    return revolve(profile, sections=32)


def power_drill() -> trimesh.Trimesh:
    """A cordless drill standing on its battery: battery pack, grip, motor housing and chuck."""
    battery = box((0.080, 0.057, 0.045)).apply_translation([0.0, 0, 0.0225])
    grip = rounded_prism(0.036, 0.040, 0.014, 0.040, 0.140)
    grip.apply_transform(trimesh.transformations.rotation_matrix(-0.18, [0, 1, 0], point=[0, 0, 0.04]))
    housing = cylinder_between(0.028, (-0.045, 0, 0.155), (0.070, 0, 0.155))
    rear = trimesh.creation.icosphere(subdivisions=3, radius=0.028).apply_translation([-0.045, 0, 0.155])
    collar = cylinder_between(0.022, (0.065, 0, 0.155), (0.085, 0, 0.155))
    chuck = cylinder_between(0.016, (0.080, 0, 0.155), (0.112, 0, 0.155))
    trigger = box((0.014, 0.012, 0.026)).apply_translation([0.024, 0, 0.117])
    return union(battery, grip, housing, rear, collar, chuck, trigger)


def scissors() -> trimesh.Trimesh:
    """Scissors lying flat (z is the thin axis): two crossed blades, two finger rings, a pivot screw."""

    def slab(points_xy: list[tuple[float, float]], z0: float, z1: float) -> trimesh.Trimesh:
        pts = np.array([(x, y, z) for x, y in points_xy for z in (z0, z1)])
        return trimesh.convex.convex_hull(pts)

    blade_a = slab([(-0.008, 0.006), (-0.008, -0.004), (0.112, 0.010), (0.112, 0.013)], -0.0003, 0.0022)
    blade_b = slab([(-0.008, -0.006), (-0.008, 0.004), (0.112, -0.010), (0.112, -0.013)], -0.0022, 0.0003)
    arm_a = slab([(-0.006, 0.000), (-0.006, 0.008), (-0.045, 0.020), (-0.045, 0.010)], -0.004, 0.004)
    arm_b = slab([(-0.006, -0.000), (-0.006, -0.008), (-0.045, -0.020), (-0.045, -0.010)], -0.004, 0.004)
    ring_a = ring_handle((-0.060, 0.021, 0.0), major=0.017, minor=0.0045, stretch_z=1.0, plane="xy")
    ring_b = ring_handle((-0.062, -0.021, 0.0), major=0.017, minor=0.0045, stretch_z=1.0, plane="xy")
    ring_a.apply_scale([1.0, 1.0, 1.5])
    ring_b.apply_scale([1.0, 1.0, 1.5])
    screw = cylinder_z(0.0045, -0.0035, 0.0035, sections=24)
    return union(blade_a, blade_b, arm_a, arm_b, ring_a, ring_b, screw)
