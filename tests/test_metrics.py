"""Metrics against independent numpy implementations and hand-computed cases, and the evaluation accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch
from torch.utils.data import default_collate

from amt_core.losses import ObjectTables
from amt_core.metrics import (
    MetricAccumulator,
    add,
    add_accuracy,
    add_s,
    attention_entropy,
    auc,
    auc_0_50,
    contact_counts,
    contact_f1,
    is_collapsed,
    mpjpe,
    mpvpe,
    pa_mpjpe,
    pa_mpvpe,
    pck_curve,
    penetration_depth,
    precision_recall_f1,
    prediction_std,
    rotation_error_deg,
    translation_error,
)
from amt_core.objects import SDFBank, SDFGrid
from amt_core.objects.tables import SYMMETRY_CONTINUOUS, SYMMETRY_NONE
from amt_core.schema.output import AMTOutput
from amt_core.schema.sample import empty_sample

RNG = np.random.default_rng(0)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def umeyama_numpy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent similarity Procrustes (Umeyama 1991) of one (P, 3) set onto another; returns aligned x."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    cov = yc.T @ xc / len(x)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2, 2] = -1
    rot = u @ s @ vt
    scale = np.trace(np.diag(d) @ s) / xc.var(0).sum()
    return scale * xc @ rot.T + my


# --- hand -----------------------------------------------------------------------------------------------------


def test_mpjpe_by_hand():
    gt = np.zeros((2, 21, 3))
    gt[:, 1:, 0] = np.arange(1, 21) * 0.01
    pred = gt.copy()
    pred[0, 5, 1] += 0.021  # one joint 21 mm off: mean over 21 joints is 1 mm
    pred[1] += np.array([0.3, -0.2, 0.5])  # a pure translation: root-relative error 0
    result = mpjpe(pred, gt)
    assert result.shape == (2,)
    assert result.numpy() == pytest.approx([0.001, 0.0], abs=1e-12)
    # a wrist error moves every other joint relative to it
    pred = gt.copy()
    pred[0, 0, 2] += 0.01
    assert float(mpjpe(pred[:1], gt[:1])[0]) == pytest.approx(0.01 * 20 / 21)


def test_pa_mpjpe_is_zero_for_a_similar_copy_and_matches_numpy_umeyama():
    gt = RNG.normal(scale=0.05, size=(5, 21, 3))
    copies = np.stack([1.7 * g @ random_rotation(RNG).T + RNG.normal(size=3) for g in gt])
    assert pa_mpjpe(copies, gt).numpy() == pytest.approx(np.zeros(5), abs=1e-10)
    # a rigid motion alone is not removed by the root-relative MPJPE
    assert (mpjpe(copies, gt).numpy() > 0.01).all()
    noisy = gt + RNG.normal(scale=0.01, size=gt.shape)
    expected = [np.linalg.norm(umeyama_numpy(p, g) - g, axis=-1).mean() for p, g in zip(noisy, gt)]
    assert pa_mpjpe(torch.from_numpy(noisy).float(), torch.from_numpy(gt).float()).numpy() == pytest.approx(
        expected, rel=1e-5
    )


def test_pa_mpjpe_never_returns_a_reflection_or_nan():
    gt = RNG.normal(scale=0.05, size=(1, 21, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a reflection is not a similarity transform
    assert float(pa_mpjpe(mirrored, gt)[0]) > 0.005
    collapsed = np.repeat(gt.mean(axis=1, keepdims=True), 21, axis=1)  # every joint at one point
    value = float(pa_mpjpe(collapsed, gt)[0])
    assert math.isfinite(value)
    assert value == pytest.approx(np.linalg.norm(gt[0] - gt[0].mean(0), axis=-1).mean())


def test_mpvpe_root_relative_and_centred():
    gt = RNG.normal(scale=0.05, size=(2, 50, 3))
    pred = gt + np.array([0.1, 0.0, 0.0])
    assert mpvpe(pred, gt).numpy() == pytest.approx([0, 0], abs=1e-12)  # centring removes the shift
    roots = np.zeros((2, 3))
    assert mpvpe(pred, gt, roots, roots).numpy() == pytest.approx([0.1, 0.1])
    assert mpvpe(pred, gt, roots + [0.1, 0, 0], roots).numpy() == pytest.approx([0, 0], abs=1e-12)
    scaled = np.stack([0.8 * g @ random_rotation(RNG).T for g in gt])
    assert pa_mpvpe(scaled, gt).numpy() == pytest.approx([0, 0], abs=1e-10)
    with pytest.raises(ValueError):
        mpvpe(pred, gt, roots, None)


def test_pck_and_auc_of_known_error_distributions():
    uniform = np.linspace(0, 0.05, 1001)  # uniform on [0, 50 mm]: PCK(t) = t / 50 mm, AUC 0.5
    assert auc_0_50(uniform) == pytest.approx(0.5, abs=2e-3)
    assert auc_0_50(np.zeros(10)) == pytest.approx(1.0)
    assert auc_0_50(np.full(10, 0.06)) == 0.0
    # independent numpy: PCK by counting, trapezoid normalised by the range
    errors = RNG.uniform(0, 0.08, size=(30, 21))
    thresholds = np.linspace(0, 0.05, 100)  # the official scripts' thresholds
    pck_np = np.array([(errors <= t).mean() for t in thresholds])
    assert pck_curve(errors).numpy() == pytest.approx(pck_np)
    assert auc_0_50(errors) == pytest.approx(np.trapezoid(pck_np, thresholds) / 0.05)
    assert auc(pck_np, thresholds) == pytest.approx(auc_0_50(errors))


# --- objects --------------------------------------------------------------------------------------------------


def test_add_and_add_s_against_numpy():
    points = RNG.normal(scale=0.05, size=(3, 100, 3))
    gt_rot = np.stack([random_rotation(RNG) for _ in range(3)])
    pred_rot = np.stack([random_rotation(RNG) for _ in range(3)])
    gt_t, pred_t = RNG.normal(size=(3, 3)), RNG.normal(size=(3, 3))
    pred_pts = np.einsum("bij,bpj->bpi", pred_rot, points) + pred_t[:, None]
    gt_pts = np.einsum("bij,bpj->bpi", gt_rot, points) + gt_t[:, None]
    add_np = np.linalg.norm(pred_pts - gt_pts, axis=-1).mean(-1)
    dist = np.linalg.norm(pred_pts[:, :, None] - gt_pts[:, None], axis=-1)
    add_s_np = dist.min(-1).mean(-1)
    add_v = add(pred_rot, pred_t, gt_rot, gt_t, points).numpy()
    add_s_v = add_s(pred_rot, pred_t, gt_rot, gt_t, points).numpy()
    assert add_v == pytest.approx(add_np)
    assert add_s_v == pytest.approx(add_s_np)
    assert (add_s_v <= add_v + 1e-12).all()


def test_add_s_is_zero_under_a_symmetry_and_add_is_not():
    angles = np.arange(12) * 2 * np.pi / 12  # a 12-fold symmetric ring of points about z
    ring = np.stack([0.05 * np.cos(angles), 0.05 * np.sin(angles), np.zeros(12)], axis=-1)[None]
    gt_rot = random_rotation(RNG)[None]
    turn = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 2 * np.pi / 12], dtype=torch.float64)).numpy()
    pred_rot = gt_rot @ turn
    t = np.array([[0.0, 0.0, 0.5]])
    assert float(add_s(pred_rot, t, gt_rot, t, ring)[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(add(pred_rot, t, gt_rot, t, ring)[0]) == pytest.approx(2 * 0.05 * np.sin(np.pi / 12))
    # without a pose error the two agree (both 0), and with only a translation error they are equal
    assert float(add(gt_rot, t + [0.001, 0, 0], gt_rot, t, ring)[0]) == pytest.approx(
        float(add_s(gt_rot, t + [0.001, 0, 0], gt_rot, t, ring)[0])
    )
    assert add_accuracy(np.array([0.009, 0.011]), 0.1).tolist() == [True, False]


def test_rotation_and_translation_errors():
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    rel = roma.rotvec_to_rotmat(torch.tensor(axis * np.deg2rad(30.0))).numpy()
    gt = random_rotation(RNG)
    assert float(rotation_error_deg((gt @ rel)[None], gt[None])[0]) == pytest.approx(30.0, abs=1e-6)
    assert float(rotation_error_deg(gt[None], gt[None])[0]) == pytest.approx(0.0, abs=1e-5)
    assert translation_error(np.array([[0.0, 0.3, 0.4]]), np.zeros((1, 3))).numpy() == pytest.approx([0.5])


# --- contact, penetration, diagnostics ------------------------------------------------------------------------


def test_contact_precision_recall_f1_on_a_tiny_case():
    prob = np.array([[0.9, 0.6, 0.2, 0.1], [0.1, 0.1, 0.1, 0.1]])
    gt = np.array([[1, 0, 1, 0], [0, 0, 0, 0]])
    tp, fp, fn = contact_counts(prob, gt)
    assert tp.tolist() == [1, 0] and fp.tolist() == [1, 0] and fn.tolist() == [1, 0]
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    assert precision.tolist() == [0.5, 1.0] and recall.tolist() == [0.5, 1.0]
    assert f1.tolist() == pytest.approx([0.5, 1.0])  # nothing predicted, nothing true: perfect
    assert contact_f1(np.array([[0.0, 0.9]]), np.array([[1, 0]])).tolist() == [0.0]


def test_penetration_depth():
    sdf = np.array([[0.01, -0.002, -0.006, 0.0], [0.02, 0.01, 0.03, 0.04]])
    max_depth, mean_depth = penetration_depth(sdf)
    assert max_depth.numpy() == pytest.approx([0.006, 0.0])
    assert mean_depth.numpy() == pytest.approx([0.004, 0.0])


def test_prediction_std_and_collapse():
    joints = RNG.normal(scale=0.03, size=(16, 21, 3))
    rel = joints - joints[:, :1]
    assert prediction_std(joints) == pytest.approx(rel.std(axis=0, ddof=1).mean())
    constant = np.repeat(joints[:1], 16, axis=0) + RNG.normal(scale=1e-4, size=(16, 1, 3))  # moves only as a whole
    assert prediction_std(constant) == pytest.approx(0.0, abs=1e-12)
    assert is_collapsed(prediction_std(constant)) and not is_collapsed(prediction_std(joints))


def test_attention_entropy():
    uniform = torch.full((2, 4, 5, 16), 1 / 16)
    assert attention_entropy(uniform) == pytest.approx(math.log(16))
    assert attention_entropy(uniform, normalized=True) == pytest.approx(1.0)
    one_hot = torch.nn.functional.one_hot(torch.randint(0, 16, (2, 4, 5)), 16).float()
    assert attention_entropy(one_hot) == pytest.approx(0.0, abs=1e-12)
    probs = torch.softmax(torch.randn(2, 3, 4, 7), dim=-1)
    expected = -(probs.double() * probs.double().log()).sum(-1).mean()
    assert attention_entropy(probs) == pytest.approx(float(expected))


# --- the accumulator ------------------------------------------------------------------------------------------


def _tables() -> ObjectTables:
    """One ball (radius 4 cm, continuous symmetry) and one asymmetric cloud, with analytic ball SDFs."""
    gen = torch.Generator().manual_seed(0)
    ball = torch.randn(200, 3, generator=gen)
    ball = 0.04 * ball / ball.norm(dim=-1, keepdim=True)
    axis = torch.linspace(-0.08, 0.08, 33)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    values = torch.stack([xx, yy, zz], dim=-1).norm(dim=-1) - 0.04
    grid = SDFGrid(values, torch.full((3,), -0.08), torch.full((3,), 0.08))
    return ObjectTables(
        points=torch.stack([ball, 0.03 * torch.randn(200, 3, generator=gen)]),
        symmetry_kind=torch.tensor([SYMMETRY_CONTINUOUS, SYMMETRY_NONE]),
        axis=torch.tensor([[0.0, 0.0, 1.0]] * 2),
        rotations=torch.eye(3).repeat(2, 1, 1, 1),
        mass=torch.tensor([0.1, 0.1]),
        diameter=torch.tensor([0.08, 0.1]),
        sdf=SDFBank([grid, grid]),
    )


def _batch(gt_joints: torch.Tensor, valid_joints: list[bool], with_object: bool) -> dict:
    samples = []
    for b in range(len(gt_joints)):
        s = empty_sample(32, 32, 10)
        s["joints3d"] = gt_joints[b]
        s["valid"]["joints3d"] = torch.tensor(valid_joints[b])
        if with_object:
            s["obj_class"] = torch.tensor(b % 2)
            s["obj_trans"] = torch.tensor([0.0, 0.0, 0.5])
            s["valid"]["obj"] = torch.tensor(True)
            s["contact"][: b + 1] = 1.0
            s["valid"]["contact"] = torch.tensor(True)
        samples.append(s)
    return default_collate(samples)


def test_accumulator_over_batches_matches_the_functions():
    gen = torch.Generator().manual_seed(0)
    gt = 0.03 * torch.randn(6, 21, 3, generator=gen) + torch.tensor([0.0, 0.0, 0.5])
    pred = gt + 0.005 * torch.randn(6, 21, 3, generator=gen)
    valid = [True, True, False, True, True, True]
    acc = MetricAccumulator(objects=_tables())
    for part in (slice(0, 4), slice(4, 6)):
        out = AMTOutput(joints3d=pred[part], joints2d=torch.zeros(len(pred[part]), 21, 2))
        acc.update(out, _batch(gt[part], valid[part], with_object=False))
    summary = acc.compute()
    keep = torch.tensor(valid)
    assert summary["num_samples"] == 6 and summary["num_joints3d"] == 5
    assert summary["mpjpe_mm"] == pytest.approx(float(mpjpe(pred[keep], gt[keep]).mean()) * 1000, rel=1e-6)
    assert summary["pa_mpjpe_mm"] == pytest.approx(float(pa_mpjpe(pred[keep], gt[keep]).mean()) * 1000, rel=1e-5)
    errors = torch.linalg.vector_norm((pred - pred[:, :1]) - (gt - gt[:, :1]), dim=-1)[keep]
    assert summary["auc_0_50"] == pytest.approx(auc_0_50(errors), rel=1e-6)
    # the dataset-wide std: predictions over all 6 samples, ground truth over the 5 labelled ones
    assert summary["pred_std_mm"] == pytest.approx(prediction_std(pred) * 1000, rel=1e-6)
    assert summary["gt_std_mm"] == pytest.approx(prediction_std(gt[keep]) * 1000, rel=1e-6)
    assert summary["collapsed"] is False
    assert "add_mm" not in summary and "contact_f1" not in summary  # the data has no objects or contacts
    thresholds_mm, curve = acc.pck()
    assert thresholds_mm[-1] == pytest.approx(50.0) and curve[-1] == pytest.approx(
        float((errors <= 0.05).double().mean())
    )


def test_accumulator_object_contact_penetration_and_attention():
    gt = 0.03 * torch.randn(2, 21, 3) + torch.tensor([0.0, 0.0, 0.5])
    batch = _batch(gt, [True, True], with_object=True)
    spin = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 0.5]))
    verts = torch.zeros(2, 10, 3) + torch.tensor([0.0, 0.0, 0.5])
    verts[:, :, 0] = torch.linspace(0.01, 0.1, 10)  # along x from the object centre: the first 3 are inside
    out = AMTOutput(
        joints3d=gt,
        joints2d=torch.zeros(2, 21, 2),
        hand_verts=verts,
        obj_logits=torch.tensor([[2.0, 0.0], [3.0, 0.0]]),  # right, wrong
        obj_rot=spin.repeat(2, 1, 1),
        obj_trans=torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5]]),
        contact_prob=batch["contact"].clone(),
        attention={"fusion": torch.full((2, 2, 3, 8), 1 / 8)},
    )
    acc = MetricAccumulator(objects=_tables())
    acc.update(out, batch)
    summary = acc.compute()
    assert summary["num_objects"] == 2
    assert summary["obj_class_acc"] == pytest.approx(0.5)
    assert summary["rot_err_deg"] == pytest.approx(np.rad2deg(0.5), rel=1e-5)
    assert summary["rot_err_sym_deg"] == pytest.approx(np.rad2deg(0.5) / 2, rel=1e-4)  # the ball's spin is free
    assert summary["trans_err_mm"] == pytest.approx(0.0, abs=1e-6)
    assert summary["add_s_mm"] <= summary["add_mm"]
    assert summary["contact_f1"] == pytest.approx(1.0) and summary["contact_precision"] == pytest.approx(1.0)
    # vertices at 1, 2, 3 cm from the centre of a 4 cm ball: 3 cm deep at most, 2 cm on average (both samples)
    assert summary["penetration_max_mm"] == pytest.approx(30.0, abs=0.5)
    assert summary["penetration_mean_mm"] == pytest.approx(20.0, abs=0.5)
    assert summary["attn_entropy_norm.fusion"] == pytest.approx(1.0)
    assert summary["mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)
