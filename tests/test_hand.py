"""Tests of the open hand asset, HandModel over smplx.MANO, joint limits and pose sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from amt_core.errors import UserError
from amt_core.hand import HandModel
from amt_core.hand.limits import (
    LIMITS_HIGH,
    LIMITS_LOW,
    MIRROR_AXIS_ANGLE,
    clamp_pose,
    flexion_pose,
    local_to_pose,
    pose_to_local,
    sample_pose,
    within_limits,
)
from amt_core.hand.model import default_hand_path
from amt_core.hand.skeleton import MANO_FINGER_JOINTS, TIP_ORDER
from amt_core.joints import MANO_PARENTS, MANO_TO_PROJECT

WRIST, MIDDLE_MCP, MIDDLE_TIP = 0, 9, 12  # project joint order


@pytest.fixture(scope="module")
def right() -> HandModel:
    return HandModel()


@pytest.fixture(scope="module")
def left() -> HandModel:
    return HandModel(side="left")


def _rest(model: HandModel, shape: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rest vertices (V, 3) and joints (21, 3) for one shape vector (10,)."""
    shape = torch.zeros(1, 10) if shape is None else shape[None]
    out = model(torch.zeros(1, 45), shape)
    return out.verts[0].numpy().astype(np.float64), out.joints[0].numpy().astype(np.float64)


def _palm_width(model: HandModel, verts: np.ndarray, joints: np.ndarray) -> float:
    """Breadth (m) across the knuckles: x extent of non-thumb skin in a band just proximal to the finger bases."""
    weights = model.mano.lbs_weights.numpy()
    thumb = weights[:, 13:].sum(axis=1)
    top = joints[[5, 9, 13, 17], 1].min()
    band = (verts[:, 1] > top - 0.015) & (verts[:, 1] < top) & (thumb < 0.1)
    return float(np.ptp(verts[band, 0]))


def _finger_length(joints: np.ndarray, finger: int) -> float:
    base = 1 + 4 * finger
    return float(np.linalg.norm(np.diff(joints[base : base + 4], axis=0), axis=1).sum())


def test_proportions(right: HandModel) -> None:
    verts, joints = _rest(right)
    assert 0.18 <= np.linalg.norm(joints[MIDDLE_TIP] - joints[WRIST]) <= 0.19
    assert 0.08 <= _palm_width(right, verts, joints) <= 0.09
    # Fingers in their usual order of length: middle > ring > index > little.
    lengths = [np.linalg.norm(joints[4 * f + 4] - joints[WRIST]) for f in range(1, 5)]
    assert lengths[1] > lengths[2] > lengths[0] > lengths[3]


@pytest.mark.parametrize("side", ["right", "left"])
def test_mesh_closed_and_sized(side: str) -> None:
    model = HandModel(side=side)
    mesh = trimesh.Trimesh(model.mano.v_template.numpy(), model.faces, process=False)
    assert 700 <= model.num_verts <= 2000
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 2e-4  # outward normals (positive volume), about a real hand's 300-500 ml
    assert len(mesh.split(only_watertight=False)) == 1


def _global_rotations(pose: torch.Tensor) -> torch.Tensor:
    """Per-joint world rotations (B, 16, 3, 3) of MANO's chain for poses (B, 45) and no global rotation."""
    from smplx.lbs import batch_rodrigues

    batch = pose.shape[0]
    local = batch_rodrigues(torch.cat([pose.new_zeros(batch, 3), pose], dim=1).reshape(-1, 3)).reshape(batch, 16, 3, 3)
    world = [local[:, 0]]
    for j in range(1, 16):
        world.append(world[MANO_PARENTS[j]] @ local[:, j])
    return torch.stack(world, dim=1)


def _normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = verts[:, faces]
    normal = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    return normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _limit_poses() -> tuple[np.ndarray, list[str]]:
    """Each finger with all its joints at one bound of one axis, plus all joints at full flexion / extension."""
    poses, names = [], []
    for finger in TIP_ORDER:
        for axis, axis_name in enumerate(("flexion", "abduction", "twist")):
            for bound_name, bound in (("low", LIMITS_LOW), ("high", LIMITS_HIGH)):
                local = np.zeros((15, 3))
                for j in MANO_FINGER_JOINTS[finger]:
                    local[j - 1, axis] = bound[j - 1, axis]
                poses.append(local_to_pose(local[None])[0])
                names.append(f"{finger} {axis_name} {bound_name}")
    for bound_name, bound in (("low", LIMITS_LOW), ("high", LIMITS_HIGH)):
        local = np.zeros((15, 3))
        local[:, 0] = bound[:, 0]
        poses.append(local_to_pose(local[None])[0])
        names.append(f"all flexion {bound_name}")
    return np.stack(poses), names


def test_skinning_at_joint_limits(right: HandModel) -> None:
    """A face 'flips' if its normal turns by more than 90 degrees from the same face moved rigidly by its dominant
    bone (the joint with the largest summed weight on its corners); fewer than 1% of faces may flip at any limit."""
    poses, names = _limit_poses()
    pose = torch.as_tensor(poses, dtype=torch.float32)
    out = right(pose)
    assert torch.isfinite(out.verts).all()
    faces = right.faces_tensor
    dominant = right.mano.lbs_weights[faces].sum(dim=1).argmax(dim=1)  # (F,)
    rigid = torch.einsum(
        "bfij,fj->bfi", _global_rotations(pose)[:, dominant], _normals(right.mano.v_template[None], faces)[0]
    )
    flipped = ((rigid * _normals(out.verts, faces)).sum(dim=-1) < 0).float().mean(dim=1)
    worst = int(flipped.argmax())
    assert float(flipped[worst]) < 0.01, f"{names[worst]}: {float(flipped[worst]):.2%} of faces flip"
    # The posed finger really moved: at full flexion the middle tip comes back toward the wrist.
    closed = out.joints[names.index("all flexion high"), MIDDLE_TIP].norm()
    assert float(closed) < 0.6 * float(out.joints[0, MIDDLE_TIP].norm() + 0.0)


# Shape coefficient -> (measure that must change by about the given relative amount, measures that must not move).
def _measures(model: HandModel, shape: torch.Tensor) -> dict[str, float]:
    verts, joints = _rest(model, shape)
    dominant = model.mano.lbs_weights.numpy().argmax(axis=1)
    prox = (dominant == 4) & (np.abs(verts[:, 1] - joints[9:11, 1].mean()) < 0.004)  # middle proximal phalanx
    palm = (dominant == 0) & (np.abs(verts[:, 1] - 0.05) < 0.01) & (np.abs(verts[:, 0]) < 0.01)
    distal = (dominant == 6) & (np.abs(verts[:, 1] - (joints[11, 1] + 0.008)) < 0.004)  # middle distal phalanx
    return {
        "hand_length": float(np.linalg.norm(joints[MIDDLE_TIP] - joints[WRIST])),
        "palm_width": _palm_width(model, verts, joints),
        "palm_length": float(np.linalg.norm(joints[MIDDLE_MCP] - joints[WRIST])),
        "middle_length": _finger_length(joints, 2),
        "finger_girth": float(np.ptp(verts[prox, 0])),
        "thumb_length": float(np.linalg.norm(joints[4] - joints[1])),
        "index_length": _finger_length(joints, 1),
        "ring_length": _finger_length(joints, 3),
        "little_length": _finger_length(joints, 4),
        "palm_thickness": float(np.ptp(verts[palm, 2])),
        "tip_girth": float(np.ptp(verts[distal, 0])),
    }


SHAPE_EFFECTS = [
    (0, {"hand_length": 0.05, "palm_width": 0.05, "thumb_length": 0.05}, []),
    (1, {"palm_width": 0.04}, ["palm_length", "middle_length"]),
    (2, {"palm_length": 0.05}, ["palm_width", "middle_length", "thumb_length"]),
    (3, {"middle_length": 0.05, "index_length": 0.05, "little_length": 0.05}, ["palm_length", "thumb_length"]),
    (4, {"finger_girth": 0.06, "palm_thickness": 0.06}, ["hand_length", "palm_length"]),
    (5, {"thumb_length": 0.06}, ["index_length", "palm_width", "hand_length"]),
    (6, {"index_length": 0.03, "ring_length": -0.03}, ["middle_length", "little_length"]),
    (7, {"little_length": 0.06}, ["middle_length", "index_length", "thumb_length"]),
    (8, {"palm_thickness": 0.10}, ["palm_width", "hand_length", "finger_girth"]),
    (9, {"tip_girth": 0.08}, ["finger_girth", "hand_length"]),
]


@pytest.mark.parametrize(("coefficient", "changes", "unchanged"), SHAPE_EFFECTS)
def test_shape_coefficients_mean_what_they_say(
    right: HandModel, coefficient: int, changes: dict[str, float], unchanged: list[str]
) -> None:
    base = _measures(right, torch.zeros(10))
    shape = torch.zeros(10)
    shape[coefficient] = 1.0
    moved = _measures(right, shape)
    for name, expected in changes.items():
        relative = moved[name] / base[name] - 1.0
        assert relative == pytest.approx(expected, abs=0.35 * abs(expected)), f"{name}: {relative:+.3f}"
    for name in unchanged:
        assert abs(moved[name] / base[name] - 1.0) < 0.01, f"{name} moved by {moved[name] / base[name] - 1.0:+.3f}"
    # Linear, as in MANO: two units move twice as far.
    assert torch.allclose(
        right.mano.shapedirs[..., coefficient] * 2.0,
        right(torch.zeros(1, 45), 2.0 * shape[None]).verts[0] - right.mano.v_template,
        atol=1e-5,
    )


@pytest.mark.parametrize("side", ["right", "left"])
def test_fingertip_ids_are_most_distal(side: str) -> None:
    model = HandModel(side=side)
    verts, joints = _rest(model)
    weights = model.mano.lbs_weights.numpy()
    for f, finger in enumerate(TIP_ORDER):
        last = MANO_FINGER_JOINTS[finger][2]
        direction = joints[4 * f + 3] - joints[4 * f + 2]  # along the middle phalanx (straight at rest)
        owned = np.flatnonzero(weights[:, last] > 0.5)
        tip = model.fingertip_ids[f]
        assert tip in owned
        assert (((verts[tip] - verts[owned]) @ direction) >= -1e-6 * np.linalg.norm(direction)).all()
        assert np.allclose(joints[4 * f + 4], verts[tip])


@pytest.mark.parametrize("side", ["right", "left"])
def test_plain_smplx_loads_asset_and_agrees(side: str) -> None:
    import smplx

    path = default_hand_path(side)
    mano = smplx.MANO(str(path), ext="npz", use_pca=False, flat_hand_mean=True, num_betas=10)
    assert mano.is_rhand == (side == "right")
    model = HandModel(side=side)
    gen = torch.Generator().manual_seed(0)
    pose = torch.as_tensor(sample_pose(3, np.random.default_rng(1), side=side), dtype=torch.float32)
    shape, rot, trans = (torch.randn(3, n, generator=gen) * s for n, s in ((10, 1.0), (3, 0.5), (3, 0.1)))
    ref = mano(betas=shape, global_orient=rot, hand_pose=pose, transl=trans)
    ours = model(pose, shape, rot, trans)
    assert ref.joints.shape[1] == 16
    assert torch.allclose(ours.verts, ref.vertices, atol=1e-6)
    mapped = torch.cat([ref.joints, ref.vertices[:, model.fingertip_ids]], dim=1)[:, list(MANO_TO_PROJECT)]
    assert torch.allclose(ours.joints, mapped, atol=1e-6)
    # trans is added after the global rotation about the (rest) wrist joint.
    rotated = model(pose, shape, rot)
    assert torch.allclose(ours.verts, rotated.verts + trans[:, None], atol=1e-6)
    wrist = model(pose, shape).joints[:, 0]
    assert torch.allclose(rotated.joints[:, 0], wrist, atol=1e-6)


def test_left_is_mirror_of_right(right: HandModel, left: HandModel) -> None:
    rng = np.random.default_rng(2)
    pose = torch.as_tensor(sample_pose(2, rng), dtype=torch.float32)
    rot = torch.as_tensor(rng.normal(0, 0.5, (2, 3)), dtype=torch.float32)
    trans = torch.as_tensor(rng.normal(0, 0.1, (2, 3)), dtype=torch.float32)
    shape = torch.as_tensor(rng.normal(0, 1, (2, 10)), dtype=torch.float32)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    mirror = torch.as_tensor(MIRROR_AXIS_ANGLE, dtype=torch.float32)
    out_r = right(pose, shape, rot, trans)
    out_l = left((pose.reshape(2, 15, 3) * mirror).reshape(2, 45), shape, rot * mirror, trans * flip)
    assert torch.allclose(out_l.verts, out_r.verts * flip, atol=1e-5)
    assert torch.allclose(out_l.joints, out_r.joints * flip, atol=1e-5)
    assert np.array_equal(left.faces, right.faces[:, [0, 2, 1]])
    assert np.array_equal(left.fingertip_ids, right.fingertip_ids)


def test_pose_sampling_limits_and_controls() -> None:
    for side in ("right", "left"):
        poses = sample_pose(500, np.random.default_rng(0), side=side)
        assert poses.shape == (500, 45) and within_limits(poses, side).all()
        assert poses.std(axis=0).max() > 0.2  # not a constant pose
    wild = np.random.default_rng(1).normal(0, 1.5, (200, 45))
    assert not within_limits(wild).all()
    clamped = clamp_pose(wild)
    assert within_limits(clamped).all() and np.allclose(clamp_pose(clamped), clamped)
    inside = sample_pose(10, np.random.default_rng(2))
    assert np.allclose(clamp_pose(inside), inside)
    torch_clamped = clamp_pose(torch.tensor(wild, requires_grad=True), side="left")
    assert within_limits(torch_clamped.detach().numpy(), "left").all()
    assert np.allclose(pose_to_local(local_to_pose(pose_to_local(wild))), pose_to_local(wild))
    # Curl 0 is the flat template; flexion grows monotonically with curl and stays inside the limits.
    assert np.allclose(flexion_pose(np.zeros((1, 5))), 0.0)
    curls = np.linspace(0, 1, 6)[:, None].repeat(5, axis=1)
    flex = pose_to_local(flexion_pose(curls))[:, :, 0]
    assert within_limits(flexion_pose(curls, np.ones((6, 5)))).all()
    assert (np.diff(flex, axis=0) >= 0).all() and (flex[-1, [0, 1, 2, 3, 4, 5]] > 0.5).all()


def test_grasp_closes_fingers(right: HandModel) -> None:
    curls = torch.as_tensor(flexion_pose(np.linspace(0, 1, 5)[:, None].repeat(5, axis=1)), dtype=torch.float32)
    joints = right(curls).joints
    palm_centre = joints[0, [0, 5, 17]].mean(dim=0)
    tip_distance = (joints[:, [8, 12, 16, 20]] - palm_centre).norm(dim=-1).mean(dim=1)  # (5,)
    assert (tip_distance.diff() < 0).all()


def test_pinch_and_pose_correctives(right: HandModel) -> None:
    # Thumb and index curled together meet (their tip vertices come within a finger's width).
    curl = np.linspace(0.3, 1.0, 15)[:, None] * np.array([[1.0, 1.0, 0.0, 0.0, 0.0]])
    joints = right(torch.as_tensor(flexion_pose(curl), dtype=torch.float32)).joints
    assert float((joints[:, 4] - joints[:, 8]).norm(dim=-1).min()) < 0.012
    # posedirs undo skinning's volume loss: a fist keeps its rest volume within 3% (about 10% lost without them).
    fist = torch.as_tensor(flexion_pose(np.ones((1, 5))), dtype=torch.float32)
    rest = trimesh.Trimesh(right.mano.v_template.numpy(), right.faces, process=False).volume
    closed = trimesh.Trimesh(right(fist).verts[0].detach().numpy(), right.faces, process=False).volume
    assert abs(closed / rest - 1.0) < 0.03
    assert float(right.mano.posedirs.abs().max()) > 0.0
    # The PCA basis is orthonormal and its mean pose is plausible.
    arrays = np.load(default_hand_path("right"))
    components = arrays["hands_components"].astype(np.float64)
    assert np.allclose(components @ components.T, np.eye(45), atol=1e-4)
    assert within_limits(arrays["hands_mean"][None]).all()


def test_differentiable_batched(right: HandModel) -> None:
    pose = torch.zeros(4, 45, requires_grad=True)
    shape = torch.zeros(4, 10, requires_grad=True)
    out = right(pose, shape, torch.zeros(4, 3), torch.zeros(4, 3))
    assert out.verts.shape == (4, right.num_verts, 3) and out.joints.shape == (4, 21, 3)
    out.joints[:, [4, 8, 12, 16, 20]].sum().backward()
    assert pose.grad.abs().sum() > 0 and shape.grad.abs().sum() > 0
    assert right.faces.dtype == np.int64 and right.faces_tensor.dtype == torch.long
    assert "OPENHAND_RIGHT.npz" in repr(right) and str(right.num_verts) in repr(right)
    double = HandModel().to(dtype=torch.float64)
    assert double(torch.zeros(1, 45, dtype=torch.float64)).verts.dtype == torch.float64


def test_bad_files_raise_user_error(tmp_path, right: HandModel) -> None:
    with pytest.raises(UserError, match="not found"):
        HandModel(tmp_path / "nope.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file at all")
    with pytest.raises(UserError, match="corrupt.npz"):
        HandModel(corrupt)
    arrays = dict(np.load(default_hand_path("right")))
    partial = tmp_path / "partial.npz"
    np.savez(partial, **{k: v for k, v in arrays.items() if k != "weights"})
    with pytest.raises(UserError, match="weights"):
        HandModel(partial)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{**arrays, "J_regressor": arrays["J_regressor"][:, :-1]})
    with pytest.raises(UserError, match="shapes"):
        HandModel(wrong)
    no_tips = tmp_path / "no_tips.npz"
    np.savez(no_tips, **{k: v for k, v in arrays.items() if k != "fingertip_ids"})
    with pytest.raises(UserError, match="fingertip_ids"):
        HandModel(no_tips)
    with pytest.raises(UserError, match="side"):
        HandModel(side="middle")
    with pytest.raises(UserError, match="side='left'"):
        HandModel(default_hand_path("left"))
    # A valid MANO-layout file under any name loads and matches the shipped hand.
    copy = tmp_path / "my_hand.npz"
    np.savez(copy, **arrays)
    assert torch.allclose(HandModel(copy)(torch.zeros(1, 45)).verts, right(torch.zeros(1, 45)).verts)


@pytest.mark.slow
def test_builder_is_deterministic(tmp_path) -> None:
    pytest.importorskip("skimage", reason="the hand builder needs pip install .[hand-build]")
    pytest.importorskip("pymeshlab", reason="the hand builder needs pip install .[hand-build]")
    from amt_core.hand.builder import write_assets

    for built in write_assets(tmp_path):
        shipped = np.load(default_hand_path("right" if "RIGHT" in built.name else "left"))
        fresh = np.load(built)
        assert set(shipped.files) == set(fresh.files)
        for key in shipped.files:
            assert np.allclose(shipped[key], fresh[key], atol=1e-6), key
