"""AMTLoss and its terms: zero at a perfect prediction, positive otherwise, gradients, skipping of missing fields,
the seed's schedule, adaptive weights that do not collapse, MixUp mixing, config errors and state round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import roma
import torch
import trimesh
from torch.utils.data import default_collate

from amt_core.errors import UserError
from amt_core.geometry import project_to_image
from amt_core.joints import FINGERTIPS
from amt_core.losses import AMTLoss, LossSchedule, MixInfo, ObjectTables, Ramp
from amt_core.losses import terms as T
from amt_core.objects import SDFBank, SDFGrid, Symmetry
from amt_core.objects.tables import SYMMETRY_CONTINUOUS, SYMMETRY_DISCRETE, SYMMETRY_NONE
from amt_core.schema.output import AMTOutput
from amt_core.schema.sample import MAX_CONTACTS, empty_sample

HEIGHT = WIDTH = 64
NUM_VERTS = 40
NUM_CONTACTS = 3
SLOTS = 4
GRAVITY = torch.tensor([0.0, 1.0, 0.0])
BALL_RADIUS = 0.04
BRICK = (0.08, 0.05, 0.03)


# --- a tiny object world with analytic SDFs -------------------------------------------------------------------


def _grid(sdf_fn, half: float = 0.08, res: int = 33) -> SDFGrid:
    axis = torch.linspace(-half, half, res)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    values = sdf_fn(torch.stack([xx, yy, zz], dim=-1))  # (R, R, R) indexed [z, y, x]
    return SDFGrid(values.float(), torch.full((3,), -half), torch.full((3,), half))


def _ball_sdf(p: torch.Tensor) -> torch.Tensor:
    return p.norm(dim=-1) - BALL_RADIUS


def _box_sdf(p: torch.Tensor) -> torch.Tensor:
    q = p.abs() - torch.tensor(BRICK) / 2
    return q.clamp(min=0).norm(dim=-1) + q.amax(dim=-1).clamp(max=0)


def make_tables(num_points: int = 128) -> ObjectTables:
    """Three classes: a ball (continuous symmetry), a brick (no symmetry), the brick again with its box symmetries."""
    gen = torch.Generator().manual_seed(0)
    ball = torch.randn(num_points, 3, generator=gen)
    ball = BALL_RADIUS * ball / ball.norm(dim=-1, keepdim=True)
    brick = torch.as_tensor(trimesh.creation.box(extents=BRICK).sample(num_points, seed=0), dtype=torch.float32)
    box_rotations = torch.as_tensor(np.asarray(Symmetry.of_box(BRICK).rotations), dtype=torch.float32)
    rotations = torch.eye(3).repeat(3, len(box_rotations), 1, 1)
    rotations[2] = box_rotations
    grids = [_grid(_ball_sdf), _grid(_box_sdf), _grid(_box_sdf)]
    return ObjectTables(
        points=torch.stack([ball, brick, brick]),
        symmetry_kind=torch.tensor([SYMMETRY_CONTINUOUS, SYMMETRY_NONE, SYMMETRY_DISCRETE]),
        axis=torch.tensor([[0.0, 0.0, 1.0]] * 3),
        rotations=rotations,
        mass=torch.tensor([0.1, 0.2, 0.2]),
        diameter=torch.tensor([2 * BALL_RADIUS, float(np.linalg.norm(BRICK)), float(np.linalg.norm(BRICK))]),
        sdf=SDFBank(grids),
    )


TABLES = make_tables()


def make_batch(batch_size: int = 4, seed: int = 0) -> dict:
    """Collated samples of a consistent world: hand touching an object at 3 vertices with forces in equilibrium."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for b in range(batch_size):
        s = empty_sample(HEIGHT, WIDTH, NUM_VERTS)
        K = torch.tensor([[80.0, 0, 32], [0, 80.0, 32], [0, 0, 1]])
        joints = torch.tensor([0.0, 0.0, 0.40]) + 0.05 * torch.randn(21, 3, generator=gen)
        cls = b % 3
        rot = roma.rotvec_to_rotmat(torch.randn(3, generator=gen))
        trans = torch.tensor([0.0, 0.0, 0.55]) + 0.02 * torch.randn(3, generator=gen)
        directions = torch.randn(NUM_VERTS, 3, generator=gen)
        verts = trans + 0.15 * directions / directions.norm(dim=-1, keepdim=True)  # well outside every object
        verts[:NUM_CONTACTS] = TABLES.points[cls, :NUM_CONTACTS] @ rot.T + trans  # on the surface
        contact = torch.zeros(NUM_VERTS)
        contact[:NUM_CONTACTS] = 1.0
        force = -TABLES.mass[cls] * 9.81 * GRAVITY / NUM_CONTACTS
        s.update(
            K=K,
            joints3d=joints,
            joints2d=project_to_image(joints, K),
            hand_pose=0.3 * torch.randn(45, generator=gen),
            hand_shape=torch.randn(10, generator=gen),
            hand_rot=torch.randn(3, generator=gen),
            hand_trans=0.1 * torch.randn(3, generator=gen),
            hand_verts=verts,
            obj_class=torch.tensor(cls),
            obj_rot=rot,
            obj_trans=trans,
            contact=contact,
        )
        s["contact_points"][:NUM_CONTACTS] = verts[:NUM_CONTACTS]
        s["contact_point_mask"][:NUM_CONTACTS] = True
        s["contact_forces"][:NUM_CONTACTS] = force
        s["valid"] = {name: torch.tensor(True) for name in s["valid"]}
        samples.append(s)
    return default_collate(samples)


def perfect_output(batch: dict) -> AMTOutput:
    joints = batch["joints3d"].clone()
    batch_size = joints.shape[0]
    cls = batch["obj_class"]
    box, center = T.box_and_center(batch["obj_rot"], batch["obj_trans"], TABLES.points[cls], batch["K"])
    slots_points = torch.cat([batch["contact_points"][:, :NUM_CONTACTS], torch.ones(batch_size, 1, 3)], dim=1)
    forces = torch.cat([batch["contact_forces"][:, :NUM_CONTACTS], torch.zeros(batch_size, 1, 3)], dim=1)
    return AMTOutput(
        joints3d=joints,
        joints2d=batch["joints2d"].clone(),
        joints3d_coarse=joints.clone(),
        joints3d_steps=(joints.clone(), joints.clone(), joints.clone()),
        hand_pose=batch["hand_pose"].clone(),
        hand_shape=batch["hand_shape"].clone(),
        hand_rot=batch["hand_rot"].clone(),
        hand_trans=batch["hand_trans"].clone(),
        hand_verts=batch["hand_verts"].clone(),
        obj_logits=20.0 * torch.nn.functional.one_hot(cls, 3).float(),
        obj_rot=batch["obj_rot"].clone(),
        obj_trans=batch["obj_trans"].clone(),
        obj_center2d=center,
        obj_box=box,
        obj_present=torch.full((batch_size,), 20.0),
        obj_heatmap=torch.log(T.heatmap_target(box, (8, 8), (HEIGHT, WIDTH))),
        contact_prob=batch["contact"].clone(),
        contact_points=slots_points,
        contact_conf=torch.tensor([1.0, 1.0, 1.0, 0.0]).repeat(batch_size, 1),
        contact_forces=forces,
        kl=torch.tensor(0.0),
    )


def make_loss(**config) -> AMTLoss:
    return AMTLoss(AMTLoss.Config(**config), objects=TABLES)


ALL_TERMS = (
    "joints3d root joints2d coarse refine_steps mano_pose mano_shape mano_rot mano_trans hand_verts "
    "obj_points obj_rot obj_trans obj_class obj_present obj_box obj_heatmap "
    "contact contact_points contact_conf forces penetration attraction equilibrium kl diversity"
).split()
PHYSICS = {"penetration", "attraction"}  # the grids' interpolation leaves a residual of a fraction of a millimetre


def _shift_object_into_hand(out: AMTOutput) -> AMTOutput:
    # move each object onto its far-away vertices so some of them sink in: penetration
    verts = out.hand_verts
    return dataclasses.replace(out, obj_trans=verts[:, NUM_CONTACTS + 1] + 0.0 * out.obj_trans)


# (21, 1): 0 at the wrist, 1 elsewhere; the pose terms are root-relative, so a change must move the fingers
FINGERS = torch.cat([torch.zeros(1), torch.ones(20)]).view(21, 1)

# term -> a change of the perfect output that must make the term positive
PERTURB = {
    "joints3d": lambda o: dataclasses.replace(o, joints3d=o.joints3d + 0.01 * FINGERS),
    "root": lambda o: dataclasses.replace(o, joints3d=o.joints3d + 0.01),
    "joints2d": lambda o: dataclasses.replace(o, joints2d=o.joints2d + 2.0),
    "coarse": lambda o: dataclasses.replace(o, joints3d_coarse=o.joints3d_coarse + 0.01 * FINGERS),
    "refine_steps": lambda o: dataclasses.replace(
        o, joints3d_steps=(o.joints3d + 0.02 * FINGERS, o.joints3d, o.joints3d)
    ),
    "mano_pose": lambda o: dataclasses.replace(o, hand_pose=o.hand_pose + 0.1),
    "mano_shape": lambda o: dataclasses.replace(o, hand_shape=o.hand_shape + 0.1),
    "mano_rot": lambda o: dataclasses.replace(o, hand_rot=o.hand_rot + 0.1),
    "mano_trans": lambda o: dataclasses.replace(o, hand_trans=o.hand_trans + 0.01),
    "hand_verts": lambda o: dataclasses.replace(o, hand_verts=o.hand_verts + 0.01),
    "obj_points": lambda o: dataclasses.replace(o, obj_trans=o.obj_trans + 0.01),
    "obj_rot": lambda o: dataclasses.replace(o, obj_rot=o.obj_rot @ roma.rotvec_to_rotmat(torch.tensor([0.3, 0, 0]))),
    "obj_trans": lambda o: dataclasses.replace(o, obj_trans=o.obj_trans + 0.01),
    "obj_class": lambda o: dataclasses.replace(o, obj_logits=o.obj_logits.roll(1, dims=1)),
    "obj_present": lambda o: dataclasses.replace(o, obj_present=-o.obj_present),
    "obj_box": lambda o: dataclasses.replace(o, obj_box=o.obj_box + 3.0),
    "obj_heatmap": lambda o: dataclasses.replace(o, obj_heatmap=o.obj_heatmap.roll(2, dims=-1)),
    "contact": lambda o: dataclasses.replace(o, contact_prob=1.0 - o.contact_prob),
    "contact_points": lambda o: dataclasses.replace(o, contact_points=o.contact_points + 0.01),
    "contact_conf": lambda o: dataclasses.replace(o, contact_conf=1.0 - o.contact_conf),
    "forces": lambda o: dataclasses.replace(o, contact_forces=o.contact_forces + 0.5),
    "penetration": _shift_object_into_hand,
    "attraction": lambda o: dataclasses.replace(o, obj_trans=o.obj_trans + torch.tensor([0.0, 0.0, 0.02])),
    "equilibrium": lambda o: dataclasses.replace(o, contact_forces=2.0 * o.contact_forces),
    "kl": lambda o: dataclasses.replace(o, kl=torch.tensor(0.5)),
    "diversity": lambda o: dataclasses.replace(o, joints3d=o.joints3d[:1].expand_as(o.joints3d).clone()),
}


def test_every_term_is_zero_at_a_perfect_prediction():
    batch = make_batch()
    result = make_loss()(perfect_output(batch), batch, epoch=60.0)
    assert set(result.terms) == set(ALL_TERMS)
    for name, value in result.terms.items():
        assert torch.isfinite(value), name
        assert float(value) < (1e-3 if name in PHYSICS else 1e-4), (name, float(value))
    assert float(result.total.detach()) < 0.05


def test_loss_runs_in_float32_inside_a_bf16_autocast_region():
    batch = make_batch()
    out = perfect_output(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = make_loss()(out, batch, epoch=60.0)
    for name, value in result.terms.items():
        assert value.dtype == torch.float32, name
        # in bf16 the rotation products alone leave a few 1e-4 rad and px of error
        assert float(value) < (1e-3 if name in PHYSICS else 1e-4), (name, float(value))


@pytest.mark.parametrize("name", ALL_TERMS)
def test_each_term_is_positive_for_a_wrong_prediction(name):
    batch = make_batch()
    loss = make_loss(weights={other: 0.0 for other in ALL_TERMS if other != name})  # only this term is computed
    perfect = loss(perfect_output(batch), batch, epoch=60.0)
    wrong = loss(PERTURB[name](perfect_output(batch)), batch, epoch=60.0)
    assert set(wrong.terms) == {name}
    assert float(wrong.terms[name]) > 10 * float(perfect.terms[name]) + 1e-4, (name, perfect.terms, wrong.terms)


def test_gradients_reach_every_predicted_field():
    batch = make_batch()
    out = perfect_output(batch)
    gen = torch.Generator().manual_seed(1)
    leaves = {}
    changes = {}
    for f in dataclasses.fields(out):
        value = getattr(out, f.name)
        if isinstance(value, torch.Tensor) and f.name not in ("kl",):
            noisy = value + 0.01 * torch.randn(value.shape, generator=gen)
            if f.name in ("contact_prob", "contact_conf"):
                noisy = noisy.clamp(0.05, 0.95)
            if f.name in ("obj_logits", "obj_present"):
                noisy = noisy / 10  # away from saturation, where float32 gradients underflow
            leaves[f.name] = noisy.detach().requires_grad_()
            changes[f.name] = leaves[f.name]
    steps = tuple((out.joints3d + 0.01).detach().requires_grad_() for _ in range(3))
    kl = torch.tensor(0.3, requires_grad=True)
    out = dataclasses.replace(out, **changes, joints3d_steps=steps, kl=kl)
    result = make_loss()(out, batch, epoch=60.0)
    assert torch.isfinite(result.total)
    result.total.backward()
    for name, leaf in {**leaves, "steps0": steps[0], "kl": kl}.items():
        assert leaf.grad is not None, name
        assert torch.isfinite(leaf.grad).all(), name
        assert leaf.grad.abs().sum() > 0, name
    # the last step is `joints3d` itself and carries no separate loss
    assert steps[2].grad is None


def test_a_batch_without_any_target_gives_no_nan_and_a_usable_graph():
    batch = make_batch()
    batch["valid"] = {name: torch.zeros_like(flag) for name, flag in batch["valid"].items()}
    out = perfect_output(batch)
    joints = (out.joints3d + 0.01).requires_grad_()
    out = dataclasses.replace(out, joints3d=joints)
    result = make_loss()(out, batch, epoch=60.0)
    # every target-based term averaged over no sample: count 0, value 0, no contribution (decided on the device)
    target_terms = set(result.terms) - {"kl", "diversity"}
    assert target_terms and all(int(result.counts[name]) == 0 for name in target_terms)
    assert all(float(result.terms[name]) == 0.0 for name in target_terms)
    assert torch.isfinite(result.total)
    result.total.backward()
    assert joints.grad is not None and torch.isfinite(joints.grad).all()


def test_a_baseline_output_with_only_joints_is_scored_on_joints_only():
    batch = make_batch()
    full = perfect_output(batch)
    joints = (full.joints3d + 0.01).requires_grad_()
    out = AMTOutput(joints3d=joints, joints2d=full.joints2d)
    result = make_loss()(out, batch, epoch=60.0)
    assert set(result.terms) == {"joints3d", "root", "joints2d", "diversity"}
    result.total.backward()
    assert torch.isfinite(joints.grad).all() and joints.grad.abs().sum() > 0


def test_terms_average_only_over_samples_that_have_the_field():
    batch = make_batch()
    out = dataclasses.replace(perfect_output(batch), joints3d_coarse=batch["joints3d"] + 0.0)
    error = torch.tensor([0.01, 0.03, 0.05, 0.07])
    out.joints3d_coarse[:, 1:, 0] += error[:, None]  # every joint but the wrist of sample b off by error[b] along x
    batch["valid"]["joints3d"] = torch.tensor([True, False, True, False])
    result = make_loss()(out, batch, epoch=60.0)
    # prior-weighted over 21 joints: the wrist (weight 1 of 23.5) has no root-relative error
    assert float(result.terms["coarse"]) == pytest.approx((0.01 + 0.05) / 2 * 22.5 / 23.5, rel=1e-5)


def test_obj_class_ignores_class_minus_one_and_invalid_objects():
    batch = make_batch()
    out = perfect_output(batch)
    out.obj_logits[:] = out.obj_logits.roll(1, dims=1)  # every sample wrong
    batch["obj_class"][0] = -1
    batch["valid"]["obj"][1] = False
    loss = make_loss(weights={k: 0.0 for k in ALL_TERMS if k not in ("obj_class", "obj_present")})
    result = loss(out, batch, epoch=60.0)
    expected = torch.nn.functional.cross_entropy(out.obj_logits[2:], batch["obj_class"][2:])
    assert float(result.terms["obj_class"]) == pytest.approx(float(expected), rel=1e-5)
    assert set(result.terms) == {"obj_class", "obj_present"}


def test_obj_present_knows_absence_from_labels_or_segmentation():
    batch = make_batch()
    out = dataclasses.replace(perfect_output(batch), obj_present=torch.tensor([2.0, 2.0, 2.0, 2.0]))
    batch["valid"]["obj"][1:] = False
    batch["obj_class"][1:] = -1
    batch["valid"]["masks"][2] = False  # sample 2: no object label, no segmentation -> unknown
    batch["obj_mask"][3, 5, 5] = True  # sample 3: object pixels but no label -> unknown
    loss = make_loss()
    per_sample, valid = loss._per_sample_terms(out, batch, {"obj_present"})["obj_present"]
    assert valid.tolist() == [True, True, False, False]  # sample 1: a segmentation without object pixels
    expected = torch.nn.functional.softplus(torch.tensor([-2.0, 2.0]))  # BCE of logit 2 against 1 and 0
    assert per_sample[:2].tolist() == pytest.approx(expected.tolist())


def test_equilibrium_is_skipped_where_the_grasp_cannot_hold():
    batch = make_batch()
    out = PERTURB["equilibrium"](perfect_output(batch))
    batch["grasp_stable"] = torch.tensor([True, False, True, False])
    _, valid = make_loss()._per_sample_terms(out, batch, {"equilibrium"})["equilibrium"]
    assert valid.tolist() == [True, False, True, False]


def test_vertex_terms_are_skipped_when_the_mesh_sizes_differ():
    batch = make_batch()
    out = perfect_output(batch)
    out = dataclasses.replace(out, hand_verts=torch.zeros(4, NUM_VERTS + 1, 3), contact_prob=torch.zeros(4, 7))
    result = make_loss()(out, batch, epoch=60.0)
    assert "hand_verts" not in result.terms and "contact" not in result.terms


def test_symmetric_objects_use_add_s_and_symmetry_aware_rotation():
    batch = make_batch(batch_size=3)  # classes 0 (ball, continuous), 1 (brick, none), 2 (brick, discrete)
    out = perfect_output(batch)
    half_turn_z = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, np.pi]))
    out = dataclasses.replace(out, obj_rot=batch["obj_rot"] @ half_turn_z)  # a symmetry of the ball and the brick
    loss = make_loss()
    points, _ = loss._per_sample_terms(out, batch, {"obj_points"})["obj_points"]
    angle, _ = loss._per_sample_terms(out, batch, {"obj_rot"})["obj_rot"]
    cls = batch["obj_class"]
    add = T.object_points(
        out.obj_rot,
        out.obj_trans,
        batch["obj_rot"],
        batch["obj_trans"],
        TABLES.points[cls],
        torch.zeros(3, dtype=torch.bool),
    )
    # ADD-S under a symmetry is only the sampling gap of 128 surface points (~6 mm), far below ADD
    assert points[0] < 0.2 * add[0] and points[2] < 0.2 * add[2]
    assert points[1] == pytest.approx(float(add[1]))  # the asymmetric class uses ADD and sees the half turn
    assert angle[0] < 1e-3 and angle[2] < 1e-3
    assert angle[1] == pytest.approx(np.pi, abs=1e-2)


def test_heatmap_target_peaks_at_the_box_centre_cell():
    box = torch.tensor([[10.0, 40.0, 30.0, 60.0], [0.0, 0.0, 64.0, 64.0]])  # centres (20, 50) and (32, 32) px
    target = T.heatmap_target(box, (8, 8), (64, 64))  # 8 px cells
    assert torch.allclose(target.sum(dim=(1, 2)), torch.ones(2))
    peak = target[0].argmax()
    assert (int(peak // 8), int(peak % 8)) == (6, 2)  # row v // 8, column u // 8
    assert float(target[0].max()) > float(target[1].max())  # a small box gives a sharper target
    logits = torch.zeros(2, 8, 8, requires_grad=True)
    loss = T.heatmap_kl(logits, target)
    loss.sum().backward()
    assert (loss > 0).all() and logits.grad.abs().sum() > 0
    assert T.heatmap_kl(torch.log(target), target).abs().max() < 1e-5


def test_contact_loss_kinds():
    batch = make_batch()
    out = dataclasses.replace(perfect_output(batch), contact_prob=torch.full((4, NUM_VERTS), 0.3))
    bce = make_loss(contact_loss="bce")(out, batch, epoch=60.0).terms["contact"]
    focal = make_loss(contact_loss="focal")(out, batch, epoch=60.0).terms["contact"]
    p, y = 0.3, batch["contact"][0]
    expected_bce = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    expected_focal = float((-(y * 0.25 * (1 - p) ** 2 * np.log(p)) - (1 - y) * 0.75 * p**2 * np.log(1 - p)).mean())
    assert float(bce) == pytest.approx(expected_bce, rel=1e-4)
    assert float(focal) == pytest.approx(expected_focal, rel=1e-4)


def test_contact_matching_is_order_invariant_and_forces_follow_the_match():
    batch = make_batch()
    out = perfect_output(batch)
    order = torch.tensor([3, 2, 0, 1])  # shuffle the slots: the Hungarian matching must undo it
    out = dataclasses.replace(
        out,
        contact_points=out.contact_points[:, order],
        contact_conf=out.contact_conf[:, order],
        contact_forces=out.contact_forces[:, order],
    )
    result = make_loss()(out, batch, epoch=60.0)
    for name in ("contact_points", "contact_conf", "forces"):
        assert float(result.terms[name]) < 1e-4, name


def test_diversity_penalises_collapse_and_not_a_spread_like_the_truth():
    gen = torch.Generator().manual_seed(0)
    gt = 0.03 * torch.randn(16, 21, 3, generator=gen)
    collapsed = gt.mean(dim=0, keepdim=True).expand_as(gt).clone().requires_grad_()
    loss = T.diversity(collapsed, gt, ratio=0.5, min_std=0.01)
    loss.backward()
    assert float(loss.detach()) > 0.01
    assert torch.isfinite(collapsed.grad).all() and collapsed.grad.abs().sum() > 0
    assert float(T.diversity(gt, gt, ratio=0.5, min_std=0.01)) == 0.0
    assert float(T.diversity(gt, None, ratio=0.5, min_std=0.01)) == 0.0  # std 3 cm > 1 cm
    assert float(T.diversity(0.001 * gt, None, ratio=0.5, min_std=0.01)) > 0.005


def test_masked_diversity_equals_diversity_of_the_valid_samples_only():
    gen = torch.Generator().manual_seed(1)
    gt = 0.03 * torch.randn(8, 21, 3, generator=gen)
    pred = 0.01 * torch.randn(8, 21, 3, generator=gen)
    valid = torch.tensor([True, False, True, True, False, True, False, True])
    masked = T.diversity(pred, gt, ratio=0.5, min_std=0.01, weights=valid)
    torch.testing.assert_close(masked, T.diversity(pred[valid], gt[valid], ratio=0.5, min_std=0.01))
    # fewer than two valid samples: the whole batch's spread is held to min_std, as without ground truth
    one = torch.zeros(8, dtype=torch.bool)
    one[3] = True
    torch.testing.assert_close(T.diversity(pred, gt, 0.5, 0.01, weights=one), T.diversity(pred, None, 0.5, 0.01))


def test_schedule_matches_the_seed():
    schedule = LossSchedule()
    diversity = [schedule.ramp_value("diversity", e) for e in (0, 15, 30, 100)]
    refinement = [schedule.ramp_value("refinement", e) for e in (0, 25, 50, 100)]
    physics = [schedule.ramp_value("physics", e) for e in (0, 10, 20, 35, 50, 100)]
    assert diversity == pytest.approx([2.0, 1.5, 1.0, 1.0])
    assert refinement == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert physics == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    assert schedule.ramp_value("hand", 7.0) == 1.0


def test_schedule_reaches_the_loss_and_stage_multipliers_apply():
    batch = make_batch()
    loss = make_loss()
    early = loss(perfect_output(batch), batch, epoch=10.0)
    assert "penetration" not in early.terms and "equilibrium" not in early.terms  # physics weight 0: not computed
    assert early.weights["diversity"] == pytest.approx(10.0 * (2.0 - 10 / 30))
    assert early.weights["refine_steps"] == pytest.approx(5.0 * 10 / 50)
    loss.set_stage_multipliers({"physics": 3.0, "obj_class": 0.5})
    late = loss(perfect_output(batch), batch, epoch=35.0)
    assert late.weights["penetration"] == pytest.approx(10.0 * 0.5 * 3.0)
    assert late.weights["obj_class"] == pytest.approx(0.5 * 0.5)
    with pytest.raises(UserError, match="physicss"):
        loss.set_stage_multipliers({"physicss": 2.0})


def test_total_is_the_weighted_sum_of_terms():
    batch = make_batch()
    out = PERTURB["joints3d"](PERTURB["obj_trans"](perfect_output(batch)))
    result = make_loss()(out, batch, epoch=40.0)
    expected = sum(result.weights[name] * float(value) for name, value in result.terms.items())
    assert float(result.total.detach()) == pytest.approx(expected, rel=1e-5)


def test_adaptive_weights_do_not_collapse_under_optimisation():
    loss = make_loss()
    floor = loss.config.adaptive.floor
    errors = 0.01 * torch.arange(1, 22, dtype=torch.float32)  # joint j off by (j + 1) cm, up to 21 cm
    gt = torch.zeros(8, 21, 3)
    pred = gt.clone()
    pred[..., 0] = errors
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.05)
    for _ in range(400):
        value = loss.adaptive(T.joint_distances(pred, gt)).mean()
        # the weighted error alone would push every weight down
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    learned = loss.adaptive.learned_weights().detach()
    assert learned.min() >= floor
    scale = loss.config.adaptive.scale
    optimum = (scale / (scale + errors)).clamp(min=floor)
    assert torch.allclose(learned, optimum, atol=0.03), (learned, optimum)
    effective = loss.joint_weights()
    assert torch.allclose(effective[list(FINGERTIPS)], 1.5 * learned[list(FINGERTIPS)])
    # without the regulariser the same optimisation drives the weights to the floor
    naive = torch.nn.Parameter(torch.zeros(21))
    optimizer = torch.optim.Adam([naive], lr=0.05)
    for _ in range(400):
        value = ((floor + torch.nn.functional.softplus(naive)) * errors).sum()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    assert (floor + torch.nn.functional.softplus(naive)).max() < floor + 0.05


def test_adaptive_weights_round_trip_through_state_dict():
    loss = make_loss()
    with torch.no_grad():
        loss.adaptive.raw_weights.copy_(torch.linspace(-2, 2, 21))
    state = loss.state_dict()
    assert list(state) == ["adaptive.raw_weights"]
    other = make_loss()
    assert not torch.allclose(other.joint_weights(), loss.joint_weights())
    other.load_state_dict(state)
    assert torch.equal(other.joint_weights(), loss.joint_weights())


def test_mixup_mixes_each_target_based_term():
    batch = make_batch()
    out = PERTURB["joints3d"](PERTURB["obj_trans"](perfect_output(batch)))
    out = dataclasses.replace(out, joints3d=out.joints3d + 0.01 * torch.arange(4.0)[:, None, None])
    loss = make_loss(weights={"diversity": 0.0})
    index, lam = torch.tensor([1, 0, 3, 2]), torch.tensor([0.7, 0.4, 1.0, 0.2])
    mixed = loss(out, batch, epoch=60.0, mix=MixInfo(index=index, lam=lam))
    own = loss._per_sample_terms(out, batch, {"joints3d", "obj_trans"})
    partner = {k: batch[k][index] if isinstance(batch[k], torch.Tensor) else batch[k] for k in batch}
    other = loss._per_sample_terms(out, partner, {"joints3d", "obj_trans"})
    for name in ("joints3d", "obj_trans"):
        expected = (lam * own[name][0] + (1 - lam) * other[name][0]).mean()
        assert float(mixed.terms[name]) == pytest.approx(float(expected.detach()), rel=1e-5), name
    # independent check on joints3d at the initial weights (1): prior-weighted mean distance against both targets
    prior = torch.ones(21)
    prior[list(FINGERTIPS)] = 1.5

    def relative(joints):
        return joints - joints[:, :1]

    d_own = (relative(out.joints3d) - relative(batch["joints3d"])).norm(dim=-1)
    d_other = (relative(out.joints3d) - relative(batch["joints3d"][index])).norm(dim=-1)
    manual = ((lam[:, None] * d_own + (1 - lam[:, None]) * d_other) * prior).sum(-1) / prior.sum()
    assert float(mixed.terms["joints3d"]) == pytest.approx(float(manual.mean()), rel=1e-5)
    # lam = 1 everywhere is no mixing at all
    plain = loss(out, batch, epoch=60.0)
    unmixed = loss(out, batch, epoch=60.0, mix=MixInfo(index=index, lam=torch.ones(4)))
    for name, value in plain.terms.items():
        assert float(unmixed.terms[name]) == pytest.approx(float(value), rel=1e-6, abs=1e-9), name


def test_mixup_skips_samples_whose_partner_lacks_the_field():
    batch = make_batch()
    batch["valid"]["joints3d"] = torch.tensor([True, False, True, True])
    out = PERTURB["joints3d"](perfect_output(batch))
    loss = make_loss()
    mix = MixInfo(index=torch.tensor([1, 0, 3, 2]), lam=torch.tensor([0.5, 0.5, 0.5, 0.5]))

    def relative(joints):
        return joints - joints[:, :1]

    prior = torch.ones(21)
    prior[list(FINGERTIPS)] = 1.5
    own = (relative(out.joints3d) - relative(batch["joints3d"])).norm(dim=-1)
    other = (relative(out.joints3d) - relative(batch["joints3d"][mix.index])).norm(dim=-1)
    own, other = ((d * prior).sum(dim=-1) / prior.sum() for d in (own, other))
    result = loss(out, batch, epoch=60.0, mix=mix)
    # samples 0 and 1 are paired with an unlabelled sample: only 2 and 3 count
    expected = (0.5 * own + 0.5 * other)[2:].mean()
    assert float(result.terms["joints3d"]) == pytest.approx(float(expected), rel=1e-5)


def test_disabled_terms_are_not_computed_and_config_errors_name_the_field():
    batch = make_batch()
    result = make_loss(weights={"obj_points": 0.0, "penetration": 0.0})(perfect_output(batch), batch, epoch=60.0)
    assert "obj_points" not in result.terms and "penetration" not in result.terms and "joints3d" in result.terms
    with pytest.raises(ValueError, match="obj_pints"):
        AMTLoss.Config(weights={"obj_pints": 1.0})
    with pytest.raises(ValueError, match="focal_alpha"):
        AMTLoss.Config(focal_alpha=1.5)
    with pytest.raises(UserError, match="diversty"):
        AMTLoss({"diversty": 1.0})
    with pytest.raises(UserError, match="start_epoc"):
        AMTLoss(
            {"schedule": {"ramps": {"physics": {"start_epoc": 1, "end_epoch": 2, "start_value": 0, "end_value": 1}}}}
        )
    with pytest.raises(UserError, match="floorr"):
        AMTLoss({"adaptive": {"floorr": 0.2}})
    with pytest.raises(ValueError, match="end_epoch"):
        Ramp(start_epoch=5.0, end_epoch=1.0, start_value=0.0, end_value=1.0)
    config = AMTLoss.Config.from_dict(
        {
            "weights": {"kl": 0.0},
            "contact_loss": "bce",
            "gravity": [0, 2, 0],
            "schedule": {"ramps": {"physics": {"start_epoch": 0, "end_epoch": 5}}},
        }
    )
    assert config.weights["kl"] == 0.0 and config.weights["joints3d"] == 10.0
    assert config.gravity == (0.0, 1.0, 0.0)
    assert config.schedule.ramp_value("physics", 2.5) == pytest.approx(0.5)
    assert config.schedule.ramp_value("diversity", 0.0) == 2.0  # the other ramps stay the seed's
    partial = AMTLoss.Config.from_dict({"schedule": {"ramps": {"physics": {"end_epoch": 40}}}})
    assert partial.schedule.ramp_value("physics", 30.0) == pytest.approx(0.5)  # from 20 to 40 now


def test_gravity_free_equilibrium_compares_magnitudes():
    forces = torch.tensor([[[0.0, -1.0, 0.0], [0.0, 0.0, -0.962]]])  # net force of magnitude ~1.3867 N
    mass = torch.tensor([1.3867 / 9.81])
    assert float(T.equilibrium(forces, None, mass, None)) < 1e-3
    assert float(T.equilibrium(forces, None, mass, GRAVITY)) > 0.5
    assert float(T.equilibrium(forces, None, mass, torch.zeros(1, 3))) < 1e-3  # a zero direction means unknown


def test_equilibrium_uses_the_batch_gravity_direction_where_given():
    batch = make_batch()
    out = perfect_output(batch)
    flipped = dataclasses.replace(out, contact_forces=-out.contact_forces)  # same magnitude, wrong direction
    loss = make_loss(weights={name: 0.0 for name in ALL_TERMS if name != "equilibrium"})
    assert float(loss(flipped, batch, epoch=60.0).terms["equilibrium"]) < 1e-4  # no direction: magnitudes agree
    batch["gravity_dir"] = torch.stack([GRAVITY, GRAVITY, torch.zeros(3), torch.zeros(3)])
    per_sample, _ = loss._per_sample_terms(flipped, batch, {"equilibrium"})["equilibrium"]
    assert per_sample[:2].tolist() == pytest.approx([2.0, 2.0])  # |-mg - mg| / mg
    assert per_sample[2:].abs().max() < 1e-4
    assert float(loss(out, batch, epoch=60.0).terms["equilibrium"]) < 1e-4


def test_the_catalog_tables_drive_the_object_terms():
    """The default tables come from `amt_core.objects`: ADD-S for the bowl (continuous symmetry) ignores a spin."""
    from amt_core.objects import get_object

    tables = ObjectTables.from_catalog(num_points=256)
    bowl, mug = get_object("bowl").id, get_object("mug").id
    assert bool(tables.symmetric[bowl]) and not bool(tables.symmetric[mug])
    spin = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 1.0]))
    rot = torch.eye(3).repeat(2, 1, 1)
    trans = torch.zeros(2, 3)
    classes = torch.tensor([bowl, mug])
    points = tables.points[classes]
    loss = T.object_points(rot @ spin, trans, rot, trans, points, tables.symmetric[classes])
    add = T.object_points(rot @ spin, trans, rot, trans, points, torch.zeros(2, dtype=torch.bool))
    assert loss[0] < 0.25 * add[0]  # ADD-S: only the gap between 256 random surface points remains
    assert loss[1] == add[1] and add[1] > 0.02  # the mug's handle makes it asymmetric: ADD


def test_padded_contact_slots_match_max_contacts_shape():
    batch = make_batch()
    assert batch["contact_points"].shape == (4, MAX_CONTACTS, 3)
