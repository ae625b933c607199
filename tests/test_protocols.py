"""Dataset protocols against independent re-implementations of the official scripts on constructed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from amt_core.joints import MANO_TO_PROJECT
from amt_core.metrics.protocols import (
    DexYCBProtocol,
    FreiHANDProtocol,
    HO3DProtocol,
    f_score,
    protocol_for,
    write_ho3d_submission,
)

# --- the official scripts' arithmetic, written out again (freihand/eval.py, ho3d/eval.py, dex-ycb hpe_eval.py) ---


def official_align_w_scale(mtx1: np.ndarray, mtx2: np.ndarray) -> np.ndarray:
    t1, t2 = mtx1.mean(0), mtx2.mean(0)
    a, b = mtx1 - t1, mtx2 - t2
    s1, s2 = np.linalg.norm(a) + 1e-8, np.linalg.norm(b) + 1e-8
    a, b = a / s1, b / s2
    R, s = orthogonal_procrustes(a, b)
    return (b @ R.T) * s * s1 + t1


def official_align_sc_tr(gt_ho3d: np.ndarray, pred_ho3d: np.ndarray) -> np.ndarray:
    """HO3D's align_sc_tr on joints in HO3D's own order (index 4 is the middle MCP there)."""
    pred = pred_ho3d / np.linalg.norm(pred_ho3d[4] - pred_ho3d[0]) * np.linalg.norm(gt_ho3d[4] - gt_ho3d[0])
    return pred - pred[0:1] + gt_ho3d[0:1]


def official_measures(errors_per_sample: list[np.ndarray]) -> tuple[float, float]:
    """EvalUtil.get_measures(0, 0.05, 100): per keypoint mean and PCK AUC, averaged over keypoints."""
    data = np.stack(errors_per_sample)  # (N, K)
    thresholds = np.linspace(0.0, 0.05, 100)
    norm = np.trapezoid(np.ones_like(thresholds), thresholds)
    means, aucs = [], []
    for k in range(data.shape[1]):
        means.append(data[:, k].mean())
        pck = [np.mean((data[:, k] <= t).astype(float)) for t in thresholds]
        aucs.append(np.trapezoid(pck, thresholds) / norm)
    return float(np.mean(means)), float(np.mean(aucs))


def official_fscore(gt: np.ndarray, pr: np.ndarray, th: float) -> float:
    d = cdist(gt, pr)
    d1, d2 = d.min(axis=1), d.min(axis=0)  # per gt point, per predicted point
    recall, precision = (d2 < th).mean(), (d1 < th).mean()
    return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


# --- constructed predictions -----------------------------------------------------------------------------------


def make_case(seed: int, n: int = 6, verts: int = 50):
    """Ground truth hands (joints and a point 'mesh') and predictions that differ by a similarity plus noise."""
    rng = np.random.default_rng(seed)
    gt_j = rng.normal(0, 0.04, (n, 21, 3)) + np.array([0.0, 0.0, 0.6])
    gt_v = rng.normal(0, 0.04, (n, verts, 3)) + np.array([0.0, 0.0, 0.6])
    R = Rotation.random(n, random_state=seed).as_matrix()
    scale = rng.uniform(0.8, 1.2, n)[:, None, None]
    shift = rng.normal(0, 0.05, (n, 1, 3))
    pred_j = scale * gt_j @ R.transpose(0, 2, 1) + shift + rng.normal(0, 0.008, gt_j.shape)
    pred_v = scale * gt_v @ R.transpose(0, 2, 1) + shift + rng.normal(0, 0.006, gt_v.shape)
    return gt_j, gt_v, pred_j, pred_v


def batch_of(gt_j, gt_v, valid=None) -> dict:
    n = len(gt_j)
    valid = np.ones(n, bool) if valid is None else valid
    return {
        "joints3d": torch.tensor(gt_j, dtype=torch.float32),
        "hand_verts": torch.tensor(gt_v, dtype=torch.float32),
        "valid": {"joints3d": torch.tensor(valid), "hand_verts": torch.tensor(valid)},
    }


def feed(protocol, gt_j, gt_v, pred_j, pred_v, split_at: int = 2, valid=None):
    """Feed in two batches, so accumulation across batches is exercised."""
    for sl in (slice(0, split_at), slice(split_at, None)):
        batch = batch_of(gt_j[sl], gt_v[sl], None if valid is None else valid[sl])
        protocol.update(torch.tensor(pred_j[sl]), batch, torch.tensor(pred_v[sl]))
    return protocol.compute()


def test_freihand_matches_the_official_arithmetic():
    gt_j, gt_v, pred_j, pred_v = make_case(0)
    gt_j32, gt_v32 = gt_j.astype(np.float32).astype(np.float64), gt_v.astype(np.float32).astype(np.float64)
    out = feed(FreiHANDProtocol(), gt_j, gt_v, pred_j, pred_v)
    pa_j = [np.linalg.norm(official_align_w_scale(g, p) - g, axis=1) for g, p in zip(gt_j32, pred_j)]
    pa_v = [np.linalg.norm(official_align_w_scale(g, p) - g, axis=1) for g, p in zip(gt_v32, pred_v)]
    mean_j, auc_j = official_measures(pa_j)
    mean_v, auc_v = official_measures(pa_v)
    assert out["freihand/num_samples"] == 6
    assert out["freihand/pa_mpjpe_mm"] == pytest.approx(mean_j * 1000, rel=1e-5)
    assert out["freihand/pa_auc_j"] == pytest.approx(auc_j, abs=1e-6)
    assert out["freihand/pa_mpvpe_mm"] == pytest.approx(mean_v * 1000, rel=1e-5)
    assert out["freihand/pa_auc_v"] == pytest.approx(auc_v, abs=1e-6)
    for th, key in ((0.005, "f_5mm"), (0.015, "f_15mm")):
        expected = np.mean([official_fscore(g, official_align_w_scale(g, p), th) for g, p in zip(gt_v32, pred_v)])
        assert out[f"freihand/{key}"] == pytest.approx(expected, abs=1e-9)
    abs_mean, _ = official_measures([np.linalg.norm(p - g, axis=1) for g, p in zip(gt_j32, pred_j)])
    assert out["freihand/mpjpe_abs_mm"] == pytest.approx(abs_mean * 1000, rel=1e-5)
    assert 0 < out["freihand/f_5mm"] < out["freihand/f_15mm"] <= 1


def test_exact_similarity_scores_perfectly():
    gt_j, gt_v, _, _ = make_case(1)
    R = Rotation.from_euler("xyz", [0.3, -1.0, 2.0]).as_matrix()
    pred_j, pred_v = 1.3 * gt_j @ R.T + 0.1, 1.3 * gt_v @ R.T + 0.1
    out = feed(FreiHANDProtocol(), gt_j, gt_v, pred_j, pred_v)
    assert out["freihand/pa_mpjpe_mm"] < 1e-3 and out["freihand/pa_mpvpe_mm"] < 1e-3
    assert out["freihand/f_5mm"] == 1.0 and out["freihand/pa_auc_j"] > 0.99


def test_ho3d_matches_the_official_arithmetic():
    gt_j, gt_v, pred_j, pred_v = make_case(2)
    out = feed(HO3DProtocol(), gt_j, gt_v, pred_j, pred_v)
    gt32 = gt_j.astype(np.float32).astype(np.float64)
    to_ho3d = np.argsort(MANO_TO_PROJECT)  # HO3D's eval works in HO3D's joint order and OpenGL axes
    gl = np.array([1.0, -1.0, -1.0])
    st = [
        np.linalg.norm(official_align_sc_tr(g[to_ho3d] * gl, p[to_ho3d] * gl) - g[to_ho3d] * gl, axis=1)
        for g, p in zip(gt32, pred_j)
    ]
    rr = [np.linalg.norm((p - p[0]) - (g - g[0]), axis=1) for g, p in zip(gt32, pred_j)]
    pa = [np.linalg.norm(official_align_w_scale(g, p) - g, axis=1) for g, p in zip(gt32, pred_j)]
    for key, errors in (("st", st), ("rr", rr), ("pa", pa)):
        mean, auc = official_measures(errors)
        assert out[f"ho3d/{key}_mpjpe_mm"] == pytest.approx(mean * 1000, rel=1e-5)
        assert out[f"ho3d/{key}_auc_j"] == pytest.approx(auc, abs=1e-6)
    assert "ho3d/pa_mpvpe_mm" in out and "ho3d/f_15mm" in out


def test_dexycb_root_relative_and_invalid_frames_skipped():
    gt_j, gt_v, pred_j, pred_v = make_case(3)
    valid = np.array([True, True, False, True, True, True])
    out = feed(DexYCBProtocol(name="dexycb_s0_test"), gt_j, gt_v, pred_j, pred_v, valid=valid)
    gt32 = gt_j.astype(np.float32).astype(np.float64)[valid]
    rr = [np.linalg.norm((p - p[0]) - (g - g[0]), axis=1) for g, p in zip(gt32, pred_j[valid])]
    pa = [np.linalg.norm(official_align_w_scale(g, p) - g, axis=1) for g, p in zip(gt32, pred_j[valid])]
    ab = [np.linalg.norm(p - g, axis=1) for g, p in zip(gt32, pred_j[valid])]
    assert out["dexycb_s0_test/num_samples"] == 5
    for key, auc_key, errors in (
        ("mpjpe_mm", "auc", rr),
        ("pa_mpjpe_mm", "pa_auc", pa),
        ("mpjpe_abs_mm", "abs_auc", ab),
    ):
        mean, auc = official_measures(errors)
        assert out[f"dexycb_s0_test/{key}"] == pytest.approx(mean * 1000, rel=1e-5)
        assert out[f"dexycb_s0_test/{auc_key}"] == pytest.approx(auc, abs=1e-6)
    # a constant 7 mm shift of every joint: no root-relative error, 7 mm absolute
    shifted = DexYCBProtocol()
    shifted.update(torch.tensor(gt_j + [0.007, 0.0, 0.0]), batch_of(gt_j, gt_v))
    res = shifted.compute()
    assert res["dexycb/mpjpe_mm"] < 1e-3 and res["dexycb/mpjpe_abs_mm"] == pytest.approx(7.0, abs=1e-3)


def test_f_score_by_hand():
    gt = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], float)
    pred = np.array([[0, 0.001, 0], [1, 0.001, 0], [10, 0, 0]], float)
    # 2 of 4 gt points have a prediction within 5 mm, 2 of 3 predictions have a gt point within it
    p, r = 2 / 4, 2 / 3
    assert f_score(gt, pred, 0.005) == pytest.approx(2 * p * r / (p + r))
    assert f_score(gt, pred[2:], 0.005) == 0.0


def test_protocol_for_specs():
    assert isinstance(protocol_for("freihand:/d/FreiHAND"), FreiHANDProtocol)
    assert protocol_for("freihand:/d/FreiHAND:eval").name == "freihand_eval"
    assert isinstance(protocol_for("ho3d:/d/HO3D_v3:train"), HO3DProtocol)
    assert protocol_for("ho3d:/d/HO3D_v3:evaluation") is None  # no labels: CodaLab computes those numbers
    assert protocol_for("dexycb:/d/dex:s1:val").name == "dexycb_s1_val"
    assert protocol_for("dexycb:/d/dex").name == "dexycb_s0_test"
    assert protocol_for("synth:live?seed=0") is None


def test_ho3d_submission_is_opengl_in_ho3d_order(tmp_path):
    rng = np.random.default_rng(4)
    joints = rng.normal(0, 0.05, (2, 21, 3)) + [0, 0, 0.6]
    verts = rng.normal(0, 0.05, (2, 778, 3)) + [0, 0, 0.6]
    path = write_ho3d_submission(tmp_path / "pred.json", joints, verts)
    xyz, mesh = json.loads(path.read_text())
    xyz, mesh = np.array(xyz), np.array(mesh)
    assert (xyz[..., 2] < 0).all()  # the challenge checks for OpenGL axes this way
    # reading it back the way the readers read HO3D labels gives the predictions again
    np.testing.assert_allclose((xyz * [1, -1, -1])[:, list(MANO_TO_PROJECT)], joints, atol=1e-12)
    np.testing.assert_allclose(mesh * [1, -1, -1], verts, atol=1e-12)
    with pytest.raises(ValueError, match="21, 3"):
        write_ho3d_submission(tmp_path / "bad.json", joints[:, :20], verts)


def test_unaligned_errors_and_f_scores_by_hand():
    # four mesh points 10 cm apart and a prediction 7 mm off along x: every nearest point is its own, 7 mm away
    gt_v = np.array([[[0.0, 0.0, 0.6], [0.1, 0.0, 0.6], [0.0, 0.1, 0.6], [0.0, 0.0, 0.7]]])
    gt_j = np.random.default_rng(5).normal(0, 0.04, (1, 21, 3)) + [0.0, 0.0, 0.6]
    shift = np.array([0.007, 0.0, 0.0])
    for protocol, name in ((FreiHANDProtocol(), "freihand"), (HO3DProtocol(), "ho3d")):
        protocol.update(torch.tensor(gt_j + shift), batch_of(gt_j, gt_v), torch.tensor(gt_v + shift))
        out = protocol.compute()
        assert out[f"{name}/mpjpe_abs_mm"] == pytest.approx(7.0, abs=1e-4)
        assert out[f"{name}/mpvpe_abs_mm"] == pytest.approx(7.0, abs=1e-4)
        assert out[f"{name}/f_5mm_abs"] == 0.0 and out[f"{name}/f_15mm_abs"] == 1.0  # 7 mm: outside 5, inside 15
        assert out[f"{name}/f_5mm"] == 1.0 and out[f"{name}/pa_mpvpe_mm"] < 1e-3  # a shift aligns away
        # the PCK AUC of a constant 7 mm error over 0-50 mm, 100 thresholds: the share of thresholds >= 7 mm
        thresholds = np.linspace(0.0, 0.05, 100)
        assert out[f"{name}/auc_abs_j"] == pytest.approx(
            np.trapezoid((thresholds >= 0.007 - 1e-12).astype(float), thresholds) / 0.05, abs=1e-6
        )


def test_unaligned_mesh_numbers_match_the_official_arithmetic():
    gt_j, gt_v, pred_j, pred_v = make_case(6)
    gt_v32 = gt_v.astype(np.float32).astype(np.float64)
    out = feed(HO3DProtocol(), gt_j, gt_v, pred_j, pred_v)
    mean_v, auc_v = official_measures([np.linalg.norm(p - g, axis=1) for g, p in zip(gt_v32, pred_v)])
    assert out["ho3d/mpvpe_abs_mm"] == pytest.approx(mean_v * 1000, rel=1e-5)
    assert out["ho3d/auc_abs_v"] == pytest.approx(auc_v, abs=1e-6)
    for th, key in ((0.005, "f_5mm_abs"), (0.015, "f_15mm_abs")):
        expected = np.mean([official_fscore(g, p, th) for g, p in zip(gt_v32, pred_v)])
        assert out[f"ho3d/{key}"] == pytest.approx(expected, abs=1e-9)
    assert out["ho3d/reflected_j"] == 0 and "ho3d/pa_mpjpe_official_mm" not in out  # no reflection: one number


def test_a_mirrored_prediction_is_reported_both_ways():
    """The official scripts' Procrustes allows a reflection, so a mirror image scores 0 mm there; ours does not."""
    gt_j, gt_v, _, _ = make_case(7, n=3)
    mirror = np.array([-1.0, 1.0, 1.0])
    centre_j, centre_v = gt_j.mean(1, keepdims=True), gt_v.mean(1, keepdims=True)
    pred_j, pred_v = (gt_j - centre_j) * mirror + centre_j, (gt_v - centre_v) * mirror + centre_v
    out = feed(FreiHANDProtocol(), gt_j, gt_v, pred_j, pred_v, split_at=1)
    gt32 = gt_j.astype(np.float32).astype(np.float64)
    official = official_measures(
        [np.linalg.norm(official_align_w_scale(g, p) - g, axis=1) for g, p in zip(gt32, pred_j)]
    )
    assert official[0] < 1e-6  # the script's own arithmetic: a perfect score
    assert out["freihand/reflected_j"] == 3 and out["freihand/reflected_v"] == 3
    assert out["freihand/pa_mpjpe_official_mm"] == pytest.approx(official[0] * 1000, abs=1e-3)
    assert out["freihand/pa_mpjpe_mm"] > 10.0  # a rotation cannot undo a mirror image
    assert out["freihand/pa_mpvpe_official_mm"] < 1e-3 and out["freihand/f_5mm_official"] == 1.0
    assert out["freihand/f_5mm"] < 1.0
