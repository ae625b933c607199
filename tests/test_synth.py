"""The synthetic world: labels agree with the geometry and the pixels, forces hold, and datasets are reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amt_core.geometry import project_to_image, unproject_pixels
from amt_core.joints import FINGERTIPS
from amt_core.schema.sample import MAX_CONTACTS, check_sample
from amt_core.synth.forces import GRAVITY, ForceConfig, solve_contact_forces

NUM_SAMPLES = 14


@pytest.fixture(scope="module")
def world():
    from amt_core.synth.world import World, WorldConfig

    return World(WorldConfig(size=128, hand_only_share=0.2))


@pytest.fixture(scope="module")
def samples(world):
    from amt_core.data.synthetic import record_to_sample

    return [record_to_sample(world.record(7, i)) for i in range(NUM_SAMPLES)]


def _object_samples(samples):
    found = [s for s in samples if bool(s["valid"]["obj"])]
    assert len(found) >= 6, "too few grasp samples to test"
    return found


def test_samples_follow_the_schema(samples, world):
    kinds = {bool(s["valid"]["obj"]) for s in samples}
    assert kinds == {True, False}, "expected both grasp and hand-only samples"
    for sample in samples:
        assert check_sample(sample, world.num_verts) == []
        assert sample["image"].shape == (3, 128, 128)
        assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
        if not bool(sample["valid"]["obj"]):
            assert int(sample["obj_class"]) == -1
            assert not sample["obj_mask"].any()
            assert not sample["contact_point_mask"].any()
        else:
            assert int(sample["obj_class"]) >= 0
            assert sample["obj_mask"].any()


def test_joints2d_is_the_projection_of_joints3d(samples):
    for sample in samples:
        projected = project_to_image(sample["joints3d"], sample["K"])
        assert torch.allclose(projected, sample["joints2d"], atol=1e-2)
        assert (sample["joints3d"][:, 2] > 0.1).all()


def test_mano_parameters_reproduce_the_hand(samples, world):
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("hand_pose", "hand_shape", "hand_rot", "hand_trans")}
    with torch.no_grad():
        out = world.hand(batch["hand_pose"], batch["hand_shape"], batch["hand_rot"], batch["hand_trans"])
    assert torch.allclose(out.joints, torch.stack([s["joints3d"] for s in samples]), atol=2e-4)
    assert torch.allclose(out.verts, torch.stack([s["hand_verts"] for s in samples]), atol=2e-4)


def test_fast_hand_matches_the_hand_model(world):
    from amt_core.hand.limits import sample_pose

    rng = np.random.default_rng(3)
    poses, shape = sample_pose(4, rng), rng.normal(size=10)
    verts, joints = world.grasps.fast(poses, world.grasps.fast.shaped(shape))
    with torch.no_grad():
        out = world.hand(torch.tensor(poses).float(), torch.tensor(np.tile(shape, (4, 1))).float())
    assert np.abs(verts - out.verts.numpy()).max() < 1e-5
    assert np.abs(joints - out.joints.numpy()).max() < 1e-5


def test_fast_hand_subset_matches_the_whole_hand(world):
    """The grasp search poses a sample of finger vertices only: the same vertices as posing the whole hand."""
    from amt_core.hand.limits import sample_pose

    rng = np.random.default_rng(4)
    poses, rest = sample_pose(5, rng), world.grasps.fast.shaped(rng.normal(size=10))
    ids = world.grasps._finger_sample
    verts, _ = world.grasps.fast(poses, rest)
    assert np.abs(world.grasps.fast.posed_subset(poses, rest, ids) - verts[:, ids]).max() < 1e-12


def test_only_covered_pixels_need_rays(samples, world):
    """Pixels outside every mesh's projected box are misses: casting every ray gives the same hits."""
    import open3d as o3d

    from amt_core.synth.render import MeshInstance, covered_pixels, pixel_rays

    rng = np.random.default_rng(5)
    K = np.array([[150.0, 0.0, 60.0], [0.0, 150.0, 70.0], [0.0, 0.0, 1.0]])
    hand = samples[0]["hand_verts"].numpy().astype(np.float64)
    box = world._distractors[0]
    meshes = [
        MeshInstance(verts=hand, faces=np.asarray(world.hand.faces), kind=1),
        MeshInstance(
            verts=np.asarray(box.vertices) * 0.05 + hand.mean(0) + rng.normal(0, 0.05, 3), faces=box.faces, kind=3
        ),
    ]
    scene = o3d.t.geometry.RaycastingScene()
    for mesh in meshes:
        scene.add_triangles(
            o3d.core.Tensor(mesh.verts.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32))
        )
    hit = np.isfinite(scene.cast_rays(o3d.core.Tensor(pixel_rays(K, 128, 128).reshape(-1, 6)))["t_hit"].numpy())
    covered = covered_pixels(meshes, K, 128, 128)
    assert hit.any() and not covered.all()
    assert not (hit & ~covered).any()


def test_visible_joints_project_inside_the_hand_mask(samples):
    inside, total = 0, 0
    for sample in samples:
        size = sample["hand_mask"].shape[0]
        uv = sample["joints2d"].round().long()
        for j, ((u, v), z) in enumerate(zip(uv.tolist(), sample["joints3d"][:, 2].tolist())):
            if not (0 <= u < size and 0 <= v < size):
                continue
            # Hidden when a non-hand surface (the object, a distractor) in front of the joint covers its pixel.
            depth = float(sample["depth"][v, u])
            if not sample["hand_mask"][v, u] and 0 < depth < z:
                continue
            total += 1
            # Fingertip joints are vertices on the surface, so on a silhouette they may round to the pixel beside it.
            reach = 1 if j in FINGERTIPS else 0
            inside += bool(
                sample["hand_mask"][max(v - reach, 0) : v + reach + 1, max(u - reach, 0) : u + reach + 1].any()
            )
    assert total > 100
    assert inside / total >= 0.95, f"only {inside}/{total} visible joints fall inside the hand mask"


def test_object_mask_pixels_reproject_onto_the_object(samples, world):
    for sample in _object_samples(samples):
        vs, us = torch.nonzero(sample["obj_mask"], as_tuple=True)
        uv = torch.stack([us, vs], dim=1).float()
        points = unproject_pixels(uv, sample["depth"][vs, us], sample["K"])  # (N, 3) camera frame
        local = (points - sample["obj_trans"]) @ sample["obj_rot"]  # object frame
        import open3d as o3d

        scene = world.grasps.geometry.scene(int(sample["obj_class"]))
        dist = scene.compute_distance(o3d.core.Tensor(local.numpy().astype(np.float32))).numpy()
        assert np.median(dist) < 3e-4
        assert np.quantile(dist, 0.99) < 1.5e-3, "object pixels do not land on the posed object mesh"


def test_contact_labels_agree_with_distances(samples, world):
    threshold = world.config.contact_threshold
    for sample in _object_samples(samples):
        local = ((sample["hand_verts"] - sample["obj_trans"]) @ sample["obj_rot"]).double().numpy()
        import open3d as o3d

        scene = world.grasps.geometry.scene(int(sample["obj_class"]))
        dist = scene.compute_signed_distance(o3d.core.Tensor(local.astype(np.float32)), nsamples=3).numpy()
        label = sample["contact"].numpy() > 0.5
        clear = np.abs(dist - threshold) > 2e-4  # float32 round trips may flip labels right at the threshold
        assert (label[clear] == (dist[clear] < threshold)).all()
        assert dist.min() > -world.config.grasp.max_penetration - 2e-4, "hand penetrates the object by more than 2 mm"
        mask = sample["contact_point_mask"]
        assert int(mask.sum()) == 0 or label.any()


def test_forces_hold_the_object_within_the_stored_residual(samples, world):
    mu = world.config.forces.friction
    for sample in _object_samples(samples):
        obj = world.classes[int(sample["obj_class"])]
        mask = sample["contact_point_mask"]
        forces = sample["contact_forces"][mask].double()
        normals = sample["contact_normals"][mask].double()
        points = sample["contact_points"][mask].double()
        rot, trans = sample["obj_rot"].double(), sample["obj_trans"].double()
        com = rot @ torch.from_numpy(world.grasps.geometry.center_of_mass(obj.id)) + trans
        weight = obj.mass * GRAVITY * sample["gravity_dir"].double()
        net_force = forces.sum(0) + weight
        net_torque = torch.cross(points - com, forces, dim=1).sum(0)
        force_res, torque_res = sample["wrench_residual"].double()
        assert abs(float(net_force.norm()) - float(force_res)) < 1e-3 + 1e-4 * obj.mass * GRAVITY
        assert abs(float(net_torque.norm()) - float(torque_res)) < 1e-4
        normal_part = (forces * normals).sum(1)
        tangential = (forces - normal_part[:, None] * normals).norm(dim=1)
        assert (normal_part >= -1e-6).all()
        assert (tangential <= mu * normal_part + 1e-4).all(), "a force leaves its friction cone"
        stable = float(force_res) <= world.config.forces.stable_tolerance * obj.mass * GRAVITY + 1e-6
        assert bool(sample["grasp_stable"]) <= stable
    assert any(bool(s["grasp_stable"]) for s in samples), "no grasp holds its object"


def test_force_solver_pinch_and_slip():
    points = np.array([[0.03, 0.0, 0.0], [-0.03, 0.0, 0.0]])
    normals = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    down = np.array([0.0, 0.0, -1.0])
    held = solve_contact_forces(points, normals, np.zeros(3), 0.3, down, ForceConfig(friction=0.8))
    assert held.stable and held.force_residual < 0.05 * 0.3 * GRAVITY
    assert np.allclose(held.forces.sum(0), [0.0, 0.0, 0.3 * GRAVITY], atol=0.05)
    # With no friction a horizontal pinch cannot hold a weight: labelled unstable, the residual is the weight.
    slip = solve_contact_forces(points, normals, np.zeros(3), 0.3, down, ForceConfig(friction=0.0))
    assert not slip.stable
    assert slip.force_residual == pytest.approx(0.3 * GRAVITY, rel=1e-3)


def test_records_are_deterministic(world, monkeypatch):
    from amt_core.synth.world import World

    first = world.record(11, 5)
    monkeypatch.setenv("AMT_GRASP_CACHE", "0")  # build the grasp again rather than read the one just cached
    again = World(world.config).record(11, 5)
    assert first.keys() == again.keys()
    for key in first:
        assert np.array_equal(first[key], again[key]), key
    other = world.record(12, 5)
    assert not np.array_equal(first["image"], other["image"])
    assert first["contact_points"].shape == (MAX_CONTACTS, 3)


def test_grasp_bank_cache_round_trip_corruption_and_keys(world, tmp_path, monkeypatch):
    import dataclasses

    from amt_core.synth.bank_cache import GraspBankCache, fingerprint

    cache = GraspBankCache(world.config.grasp, root=tmp_path)
    key = (3, 2, 1)
    assert cache.load(key) is None
    grasp = world.bank_grasp(*key)
    cache.store(key, grasp)
    loaded = cache.load(key)
    for name, value in dataclasses.asdict(grasp).items():
        assert np.array_equal(getattr(loaded, name), value), name
    assert not list(tmp_path.rglob("*.tmp*"))  # atomic writes leave nothing behind
    # an entry that does not read is rebuilt, not trusted
    next(tmp_path.rglob("3_2_1.npz")).write_bytes(b"not an npz")
    assert cache.load(key) is None
    # other grasp settings never read these entries
    other = dataclasses.replace(world.config.grasp, **{dataclasses.fields(world.config.grasp)[0].name: 0.5})
    assert fingerprint(other) != fingerprint(world.config.grasp)
    monkeypatch.setenv("AMT_GRASP_CACHE", "0")
    off = GraspBankCache(world.config.grasp, root=tmp_path / "off")
    off.store(key, grasp)
    assert off.load(key) is None and not (tmp_path / "off").exists()
