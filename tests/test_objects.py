"""The object catalog: real-world sizes, masses, closed meshes, stable ids, textures and signed-distance grids."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import trimesh

from amt_core.errors import UserError
from amt_core.objects import SDFConfig, Symmetry, catalog, class_names, get_object, num_classes, sdf_batch

# bounding-box extents, sorted small to large, in millimetres: (low, high) ranges of the real objects
SIZE_MM = {
    "002_master_chef_can": [(95, 110), (95, 110), (130, 145)],
    "003_cracker_box": [(55, 65), (150, 165), (200, 220)],
    "004_sugar_box": [(35, 42), (85, 95), (168, 182)],
    "005_tomato_soup_can": [(63, 70), (63, 70), (95, 105)],
    "006_mustard_bottle": [(45, 60), (80, 95), (170, 195)],
    "007_tuna_fish_can": [(30, 37), (82, 90), (82, 90)],
    "008_pudding_box": [(32, 40), (85, 95), (105, 115)],
    "009_gelatin_box": [(25, 32), (70, 77), (82, 90)],
    "010_potted_meat_can": [(45, 55), (78, 86), (92, 102)],
    "011_banana": [(30, 42), (35, 65), (170, 210)],
    "013_apple": [(60, 80), (70, 85), (70, 85)],
    "019_pitcher_base": [(100, 125), (140, 190), (220, 250)],
    "021_bleach_cleanser": [(60, 70), (90, 105), (240, 260)],
    "024_bowl": [(45, 60), (150, 165), (150, 165)],
    "025_mug": [(75, 90), (78, 90), (100, 125)],
    "035_power_drill": [(50, 65), (170, 200), (170, 200)],
    "036_wood_block": [(80, 90), (80, 90), (195, 205)],
    "037_scissors": [(10, 18), (75, 95), (180, 210)],
    "040_large_marker": [(15, 20), (15, 20), (115, 130)],
    "056_tennis_ball": [(63, 68), (63, 68), (63, 68)],
    "061_foam_brick": [(48, 52), (48, 52), (73, 77)],
}
# kilograms: (low, high)
MASS_KG = {
    "002_master_chef_can": (0.33, 0.50),
    "003_cracker_box": (0.30, 0.50),
    "004_sugar_box": (0.40, 0.60),
    "005_tomato_soup_can": (0.30, 0.40),
    "006_mustard_bottle": (0.40, 0.70),
    "007_tuna_fish_can": (0.14, 0.20),
    "008_pudding_box": (0.15, 0.22),
    "009_gelatin_box": (0.08, 0.12),
    "010_potted_meat_can": (0.30, 0.42),
    "011_banana": (0.06, 0.20),
    "013_apple": (0.06, 0.25),
    "019_pitcher_base": (0.15, 0.45),
    "021_bleach_cleanser": (0.90, 1.30),
    "024_bowl": (0.10, 0.35),
    "025_mug": (0.10, 0.40),
    "035_power_drill": (0.70, 1.60),
    "036_wood_block": (0.60, 0.80),
    "037_scissors": (0.05, 0.12),
    "040_large_marker": (0.010, 0.025),
    "056_tennis_ball": (0.055, 0.06),
    "061_foam_brick": (0.02, 0.04),
}


GRID = SDFConfig(resolution=40)  # coarser than the default 64 to keep the file fast; tolerances scale with the voxel


@pytest.fixture(scope="module")
def grid_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Build SDF grids into a temporary cache (about 2 s for all classes at resolution 40)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AMT_CACHE_DIR", str(tmp_path_factory.mktemp("amt-cache")))
    yield
    mp.undo()


def winding_number(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Generalized winding number (about 1 inside, 0 outside), independent of Open3D's ray voting."""
    tri = mesh.triangles[None] - points[:, None, None, :]  # (N, F, 3, 3)
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (a, b, c))
    numer = np.einsum("nfi,nfi->nf", a, np.cross(b, c))
    denom = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
    return 2 * np.arctan2(numer, denom).sum(-1) / (4 * np.pi)


def closest_distance(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Unsigned distance to the surface by brute force over all triangles (trimesh, no spatial index)."""
    tri = mesh.triangles
    out = [
        np.linalg.norm(trimesh.triangles.closest_point(tri, np.repeat(p[None], len(tri), 0)) - p, axis=1).min()
        for p in points
    ]
    return np.asarray(out)


def test_ids_names_and_lookup() -> None:
    classes = catalog()
    assert num_classes() == len(classes) >= 12
    assert [c.id for c in classes] == list(range(len(classes)))
    assert [c.name for c in classes] == class_names()
    assert len({c.name for c in classes}) == len({c.ycb_name for c in classes}) == len(classes)
    # ids are part of the data contract: these must never move
    assert get_object("mug").id == 14 and get_object("025_mug").ycb_name == "025_mug"
    assert get_object(0).ycb_name == "002_master_chef_can" and get_object("banana").id == 9
    assert set(SIZE_MM) == {c.ycb_name for c in classes}
    with pytest.raises(UserError, match="valid names are .*mug"):
        get_object("teapot")
    with pytest.raises(UserError, match="valid ids"):
        get_object(len(classes))
    assert catalog() is classes  # built once


@pytest.mark.parametrize("ycb_name", sorted(SIZE_MM))
def test_mesh_size_mass_and_closure(ycb_name: str) -> None:
    obj = get_object(ycb_name)
    mesh = obj.mesh
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert np.allclose(mesh.bounds.mean(axis=0), 0.0, atol=1e-9), "origin is the bounding-box centre"
    sizes_mm = np.sort(mesh.extents) * 1000
    for size, (low, high) in zip(sizes_mm, SIZE_MM[ycb_name], strict=True):
        assert low <= size <= high, f"{ycb_name}: extents {sizes_mm.round(1)} mm"
    low, high = MASS_KG[ycb_name]
    assert low <= obj.mass <= high, f"{ycb_name}: mass {obj.mass:.3f} kg"
    assert obj.mass == pytest.approx(mesh.volume * obj.density)
    assert np.max(mesh.extents) <= obj.diameter <= np.linalg.norm(mesh.extents) + 1e-9
    assert all(0 <= v <= 1 for v in obj.color)


def test_upright_objects_have_z_up() -> None:
    for name in ("master_chef_can", "mustard_bottle", "bleach_cleanser", "large_marker", "pitcher_base"):
        extents = get_object(name).extents
        assert extents[2] == extents.max(), name
    mug = get_object("mug").mesh  # the opening faces +z: the top slice is a ring, the bottom slice solid
    top = mug.vertices[mug.vertices[:, 2] > mug.bounds[1, 2] - 1e-6]
    assert len(top) > 0 and np.linalg.norm(top[:, :2] - top[:, :2].mean(0), axis=1).min() > 0.03


def test_albedo_is_valid_and_textured() -> None:
    for obj in catalog():
        points = obj.surface_points(2000, seed=3)
        colors = obj.albedo(points)
        assert colors.shape == (2000, 3) and np.isfinite(colors).all()
        assert colors.min() >= 0 and colors.max() <= 1
        assert np.allclose(colors, obj.albedo(points)), "textures are deterministic"
        assert colors.std(axis=0).max() > 0.004, f"{obj.name} has no visible texture"
    soup = get_object("tomato_soup_can")
    rim = soup.albedo(np.array([[0.0, 0.0, soup.extents[2] / 2]]))[0]  # the lid is metal, not the red label
    assert abs(rim[0] - rim[2]) < 0.1


def test_surface_points_deterministic() -> None:
    obj = get_object("banana")
    a, b, c = obj.surface_points(500, seed=7), obj.surface_points(500, seed=7), obj.surface_points(500, seed=8)
    assert a.shape == (500, 3) and np.array_equal(a, b) and not np.allclose(a, c)
    assert closest_distance(obj.mesh, a[:20]).max() < 1e-7


def test_symmetry() -> None:
    assert get_object("bowl").symmetric and get_object("bowl").symmetry.kind == "continuous"
    assert not get_object("mug").symmetric and not get_object("cracker_box").symmetric
    block = get_object("wood_block")
    rotations = block.symmetry.rotation_set()
    assert len(rotations) == 8  # square section: quarter turns about z times the flip
    points = block.mesh.vertices
    for rot in rotations:  # each symmetry maps the vertex set onto itself
        moved = points @ rot.T
        assert np.abs(moved[:, None] - points[None]).sum(-1).min(1).max() < 1e-9
    assert len(Symmetry.of_box((0.075, 0.05, 0.04)).rotations) == 4
    assert len(get_object("bowl").symmetry.rotation_set(12)) == 12
    ball = get_object("tennis_ball")  # the seam pattern is unchanged by its symmetries
    pts = ball.surface_points(3000, seed=0)
    for rot in ball.symmetry.rotation_set():
        assert np.mean(np.all(np.abs(ball.albedo(pts @ rot.T) - ball.albedo(pts)) < 0.15, axis=1)) > 0.97


def test_objects_pickle_for_workers() -> None:
    obj = pickle.loads(pickle.dumps(get_object("mug")))
    assert obj.name == "mug" and obj.mesh.is_watertight
    assert np.allclose(obj.albedo(obj.mesh.vertices[:10]), get_object("mug").albedo(obj.mesh.vertices[:10]))


def test_sdf_sign_and_distance(grid_cache: None) -> None:
    rng = np.random.default_rng(0)
    for obj in catalog():
        grid = obj.sdf(GRID)
        voxel = float(grid.voxel_size.max())
        assert grid.values.shape == (40, 40, 40) and voxel < 0.009
        # sign against an independent inside test, away from the surface by more than interpolation can blur
        probe = rng.uniform(obj.mesh.bounds[0] - 0.01, obj.mesh.bounds[1] + 0.01, size=(50, 3))
        inside = winding_number(obj.mesh, probe) > 0.5
        value = grid.query(torch.from_numpy(probe)).numpy()
        clear = closest_distance(obj.mesh, probe) > voxel
        assert np.all((value < 0)[clear] == inside[clear]), obj.name
        # magnitudes near the surface match trimesh's exact distance within a voxel
        surface, faces = trimesh.sample.sample_surface(obj.mesh, 30, seed=1)
        near = surface + rng.normal(0, 0.003, size=surface.shape)
        got = grid.query(torch.from_numpy(near)).abs().numpy()
        assert np.abs(got - closest_distance(obj.mesh, near)).max() < voxel, obj.name
        # just outside along the normal is positive everywhere
        outward = surface + 0.5 * voxel * obj.mesh.face_normals[faces]
        assert (grid.query(torch.from_numpy(outward)) > 0).all(), obj.name
    block = get_object("wood_block").sdf(GRID)  # a solid object: deep points are clearly negative
    assert block.query(torch.zeros(3, dtype=torch.float64)).item() == pytest.approx(-0.0425, abs=0.002)


def test_sdf_outside_grid_and_gradient(grid_cache: None) -> None:
    grid = get_object("tennis_ball").sdf(GRID)
    far = torch.tensor([[0.5, 0.0, 0.0], [0.0, -0.3, 0.2]], dtype=torch.float32, requires_grad=True)
    value = grid.query(far)
    assert torch.allclose(value, far.detach().norm(dim=-1) - 0.0325, atol=0.004)  # an upper bound, close for a ball
    value.sum().backward()
    assert torch.allclose(far.grad, far.detach() / far.detach().norm(dim=-1, keepdim=True), atol=0.05)
    points = (torch.randn(4, 5, 3, dtype=torch.float64) * 0.02).requires_grad_()
    out = grid.query(points)
    assert out.shape == (4, 5) and out.dtype == torch.float64
    out.sum().backward()  # near the centre of a ball the gradient points outward
    direction = (points.grad * points.detach()).sum(-1)
    assert (direction > 0).float().mean() > 0.9


def test_sdf_query_numpy_matches_query(grid_cache: None) -> None:
    """The host path the grasp search uses gives the torch path's values, inside the grid and beyond it."""
    rng = np.random.default_rng(0)
    for name in ("mug", "banana", "wood_block"):
        grid = get_object(name).sdf(GRID)
        lo, hi = grid.lo.numpy().astype(np.float64), grid.hi.numpy().astype(np.float64)
        points = rng.uniform(lo - 0.05, hi + 0.05, size=(6, 50, 3))
        expected = grid.query(torch.from_numpy(points)).numpy()
        got = grid.query_numpy(points)
        assert got.shape == (6, 50) and got.dtype == np.float64
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_sdf_cache_reused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amt_core.objects import sdf as sdf_module

    monkeypatch.setenv("AMT_CACHE_DIR", str(tmp_path))
    mesh = get_object("foam_brick").mesh
    config = SDFConfig(resolution=16)
    first = sdf_module.load_or_build("foam_brick", mesh, config)
    files = list((tmp_path / "sdf").glob("*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(sdf_module, "build_grid", lambda *a, **k: pytest.fail("rebuilt despite the cache"))
    second = sdf_module.load_or_build("foam_brick", mesh, config)
    assert torch.equal(first.values, second.values)
    with pytest.raises(ValueError, match="resolution"):
        SDFConfig(resolution=4)


def test_sdf_batch_mixed_classes(grid_cache: None) -> None:
    classes = catalog()
    ids = torch.tensor([c.id for c in classes])
    batch = len(ids)
    rot = torch.linalg.qr(torch.randn(batch, 3, 3, dtype=torch.float64))[0]
    rot = rot * torch.det(rot).sign()[:, None, None]  # proper rotations
    trans = torch.randn(batch, 3, dtype=torch.float64) * 0.1 + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    local = torch.randn(batch, 50, 3, dtype=torch.float64) * 0.05  # object frame
    camera = (local @ rot.transpose(1, 2) + trans[:, None]).requires_grad_()
    got = sdf_batch(ids, rot.float(), trans.float(), camera.float(), config=GRID)
    expected = torch.stack([c.sdf(GRID).query(local[i].float()) for i, c in enumerate(classes)])
    assert got.shape == (batch, 50)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    got.sum().backward()
    assert camera.grad is not None and torch.isfinite(camera.grad).all() and camera.grad.abs().sum() > 0
