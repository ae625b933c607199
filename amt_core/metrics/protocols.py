"""Each dataset's own evaluation protocol (FreiHAND, HO3D, DexYCB), fed batch by batch, reported as the papers do.

`protocol_for(spec)` picks the protocol of a dataset spec; `update(pred_joints, batch, pred_verts)` adds a batch;
`compute()` returns flat numbers keyed `<protocol>/<metric>` (millimetres as `_mm`, AUC and F-scores in [0, 1]).
The numbers follow the official scripts (freihand/eval.py, ho3d/eval.py, dex-ycb-toolkit hpe_eval.py): per-keypoint
PCK over 0-50 mm in 100 steps, the AUC normalised to [0, 1], errors averaged per keypoint then over keypoints.
Procrustes alignment is `amt_core.metrics.procrustes_align` (similarity, proper rotation). The official scripts use
scipy's `orthogonal_procrustes`, which allows any orthogonal matrix: they pick a reflection whenever the prediction
fits the mirror image of the ground truth better than any rotation of it (a left hand predicted for a right one, a
pose with the fingers bent the wrong way), and then score it as if it were right. The two agree exactly when the best
orthogonal fit is a rotation. Where they differ, both are reported: `pa_*` (rotation only) beside `pa_*_official`
(reflection allowed, the scripts' numbers), with `reflected_j`/`reflected_v` counting the samples concerned.

Unaligned numbers are reported as the scripts do too: FreiHAND's and HO3D's joint and mesh errors in the camera frame
(`mpjpe_abs_mm`, `mpvpe_abs_mm`) and the F-scores of the unaligned mesh (`f_5mm_abs`, `f_15mm_abs`) beside the aligned
ones (`f_5mm`, `f_15mm`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from amt_core.data.ho3d import has_evaluation_truth
from amt_core.data.registry import parse_spec
from amt_core.joints import MANO_TO_PROJECT
from amt_core.metrics.hand import as_float64, procrustes_align

# The official scripts' PCK thresholds: 0 to 50 mm in 100 steps.
AUC_MAX_M = 0.05
AUC_STEPS = 100
F_THRESHOLDS_M = (0.005, 0.015)
MM = 1000.0
HO3D_SCALE_JOINT = 9  # ho3d's align_sc_tr scales by the wrist-to-joint-4 bone of HO3D's order: the middle MCP (ours 9)


def keypoint_summary(errors: np.ndarray) -> tuple[float, float]:
    """(mean error, AUC) as the official EvalUtil computes them from per-keypoint errors (N, K) in metres.

    Each keypoint gets its mean over samples and the area under its PCK curve over 0-50 mm (100 thresholds,
    trapezoid rule, normalised by the range); both are then averaged over keypoints.
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return float("nan"), float("nan")
    thresholds = np.linspace(0.0, AUC_MAX_M, AUC_STEPS)
    pck = (errors[None, :, :] <= thresholds[:, None, None]).mean(axis=1)  # (T, K)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz
    auc = trapezoid(pck, thresholds, axis=0) / trapezoid(np.ones_like(thresholds), thresholds)
    return float(errors.mean(axis=0).mean()), float(auc.mean())


def f_score(gt: np.ndarray, pred: np.ndarray, threshold: float) -> float:
    """F-score of two point sets at a distance threshold (metres), as FreiHAND's calculate_fscore.

    precision = share of ground-truth points within `threshold` of a predicted point and recall = share of predicted
    points within it of a ground-truth point (FreiHAND's own naming, kept so numbers match); F = 2PR / (P + R).
    """
    gt, pred = np.asarray(gt, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if len(gt) == 0 or len(pred) == 0:
        return 0.0
    d_gt, _ = cKDTree(pred).query(gt)  # closest predicted point for each gt point
    d_pred, _ = cKDTree(gt).query(pred)
    precision, recall = float((d_gt < threshold).mean()), float((d_pred < threshold).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def scale_translation_align(pred: torch.Tensor, gt: torch.Tensor, ref: int = HO3D_SCALE_JOINT) -> torch.Tensor:
    """HO3D's align_sc_tr: scale pred so its wrist-to-`ref` bone matches gt's, then put its wrist on gt's wrist.

    Args:
        pred, gt: (N, 21, 3) metres, project joint order.
    """
    pred, gt = as_float64(pred), as_float64(gt)
    pred_len = torch.linalg.vector_norm(pred[:, ref] - pred[:, 0], dim=-1)
    gt_len = torch.linalg.vector_norm(gt[:, ref] - gt[:, 0], dim=-1)
    scale = torch.where(pred_len > 0, gt_len / pred_len.clamp(min=1e-12), torch.ones_like(pred_len))
    return (pred - pred[:, :1]) * scale[:, None, None] + gt[:, :1]


def orthogonal_align(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official scripts' `align_w_scale`: `pred` moved onto `gt` by the best similarity whose linear part is any
    orthogonal matrix, a reflection included (scipy's `orthogonal_procrustes`).

    Args:
        pred, gt: (N, P, 3) corresponding points, metres.

    Returns:
        (aligned (N, P, 3) float64, reflected (N,) bool: the fit used a reflection). Where `reflected` is False the
        result equals `procrustes_align`'s.
    """
    pred, gt = as_float64(pred), as_float64(gt)
    mean_p, mean_g = pred.mean(1, keepdim=True), gt.mean(1, keepdim=True)
    p, g = pred - mean_p, gt - mean_g
    u, sing, vh = torch.linalg.svd(p.transpose(1, 2) @ g)  # p^T g = U S V^T; the best orthogonal map is U V^T
    rot = u @ vh
    norm = (p * p).sum(dim=(1, 2))
    scale = torch.where(norm > 0, sing.sum(-1) / norm.clamp(min=1e-30), torch.zeros_like(norm))
    reflected = (torch.linalg.det(rot) < 0) & (norm > 0)
    return scale[:, None, None] * p @ rot + mean_g, reflected


@dataclass(kw_only=True)
class Protocol:
    """Accumulates predictions against ground truth for one dataset's protocol."""

    name: str
    _lists: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)
    num_samples: int = 0

    def _keep(self, key: str, values: torch.Tensor | np.ndarray) -> None:
        array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        self._lists.setdefault(key, []).append(array.astype(np.float64))

    def _cat(self, key: str) -> np.ndarray | None:
        return np.concatenate(self._lists[key]) if key in self._lists else None

    def update(self, pred_joints: torch.Tensor, batch: dict, pred_verts: torch.Tensor | None = None) -> None:
        """Add a batch: predicted joints (B, 21, 3) and optionally vertices (B, V, 3), metres, camera frame, the
        collated Samples' ground truth in `batch` (joints3d, hand_verts, valid). Samples without ground truth are
        skipped, as the official scripts skip unlabelled frames."""
        valid = batch["valid"]["joints3d"].to("cpu").bool()
        if not valid.any():
            return
        pred = as_float64(pred_joints).cpu()[valid]
        gt = as_float64(batch["joints3d"]).cpu()[valid]
        self.num_samples += int(valid.sum())
        verts = None
        if pred_verts is not None and pred_verts.shape[1] == batch["hand_verts"].shape[1]:
            has_verts = batch["valid"]["hand_verts"].to("cpu").bool()[valid]
            if has_verts.any():
                verts = (
                    as_float64(pred_verts).cpu()[valid][has_verts],
                    as_float64(batch["hand_verts"]).cpu()[valid][has_verts],
                )
        self._add(pred, gt, verts)

    def _add(self, pred: torch.Tensor, gt: torch.Tensor, verts: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float | int]:
        raise NotImplementedError

    def _pa_terms(
        self, pred: torch.Tensor, gt: torch.Tensor, suffix: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep the Procrustes-aligned errors of points `suffix` ("j" joints, "v" vertices) both ways: rotation only
        and the official scripts' (reflection allowed). Returns (rotation-only alignment, official alignment, whether
        each sample's official fit reflected)."""
        aligned = procrustes_align(pred, gt)
        self._keep(f"pa_err_{suffix}", torch.linalg.vector_norm(aligned - gt, dim=-1))
        official, reflected = orthogonal_align(pred, gt)
        self._keep(f"pa_err_{suffix}_official", torch.linalg.vector_norm(official - gt, dim=-1))
        self._keep(f"reflected_{suffix}", reflected)
        return aligned, official, reflected

    def _pa_summary(self, out: dict, suffix: str, mean_key: str, auc_key: str) -> None:
        """`pa_*` (rotation only) and, where some sample's best fit was a reflection, `pa_*_official` beside it."""
        out[f"{self.name}/{mean_key}"], out[f"{self.name}/{auc_key}"] = _mm_auc(self._cat(f"pa_err_{suffix}"))
        reflected = int(self._cat(f"reflected_{suffix}").sum())
        out[f"{self.name}/reflected_{suffix}"] = reflected
        if reflected:
            mean, auc = _mm_auc(self._cat(f"pa_err_{suffix}_official"))
            out[f"{self.name}/{mean_key.removesuffix('_mm')}_official_mm"] = mean
            out[f"{self.name}/{auc_key}_official"] = auc

    def _mesh_terms(self, verts: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Vertex errors unaligned and Procrustes-aligned (both ways), and F-scores of the unaligned and aligned
        meshes (FreiHAND's and HO3D's mesh protocol)."""
        if verts is None:
            return
        pred_v, gt_v = verts
        self._keep("abs_vert_err", torch.linalg.vector_norm(pred_v - gt_v, dim=-1))
        aligned, official, reflected = self._pa_terms(pred_v, gt_v, "v")
        gt_np = gt_v.numpy()
        for threshold in F_THRESHOLDS_M:
            key = f"f_{round(threshold * MM)}mm"
            scores = np.asarray([f_score(g, p, threshold) for g, p in zip(gt_np, aligned.numpy())])
            self._keep(key, scores)
            self._keep(key + "_abs", np.asarray([f_score(g, p, threshold) for g, p in zip(gt_np, pred_v.numpy())]))
            official_scores = scores.copy()  # the same alignment wherever no reflection was picked
            for i in np.flatnonzero(reflected.numpy()):
                official_scores[i] = f_score(gt_np[i], official[i].numpy(), threshold)
            self._keep(key + "_official", official_scores)

    def _mesh_summary(self, out: dict) -> None:
        vert_err = self._cat("abs_vert_err")
        if vert_err is None:
            return
        out[f"{self.name}/mpvpe_abs_mm"], out[f"{self.name}/auc_abs_v"] = _mm_auc(vert_err)
        self._pa_summary(out, "v", "pa_mpvpe_mm", "pa_auc_v")
        reflected = out[f"{self.name}/reflected_v"] > 0
        for threshold in F_THRESHOLDS_M:
            key = f"f_{round(threshold * MM)}mm"
            out[f"{self.name}/{key}"] = float(self._cat(key).mean())
            out[f"{self.name}/{key}_abs"] = float(self._cat(key + "_abs").mean())
            if reflected:
                out[f"{self.name}/{key}_official"] = float(self._cat(key + "_official").mean())
        out[f"{self.name}/num_meshes"] = int(len(vert_err))


@dataclass(kw_only=True)
class FreiHANDProtocol(Protocol):
    """FreiHAND (its eval.py): Procrustes-aligned joint and mesh errors (PA-MPJPE, PA-MPVPE) and their AUCs (PCK
    over 0-50 mm), F@5mm and F@15mm of the aligned and the unaligned mesh, and the unaligned (camera-frame) joint and
    mesh errors and AUCs."""

    name: str = "freihand"

    def _add(self, pred, gt, verts) -> None:
        self._keep("abs_err", torch.linalg.vector_norm(pred - gt, dim=-1))
        self._pa_terms(pred, gt, "j")
        self._mesh_terms(verts)

    def compute(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {f"{self.name}/num_samples": self.num_samples}
        if self.num_samples == 0:
            return out
        self._pa_summary(out, "j", "pa_mpjpe_mm", "pa_auc_j")
        out[f"{self.name}/mpjpe_abs_mm"], out[f"{self.name}/auc_abs_j"] = _mm_auc(self._cat("abs_err"))
        self._mesh_summary(out)
        return out


@dataclass(kw_only=True)
class HO3DProtocol(Protocol):
    """HO3D (its eval.py, the CodaLab challenge's numbers; on the evaluation split with the ground truth published in
    2024, or on a labelled split): Procrustes-aligned joint and mesh errors and AUCs, the scale-and-translation-aligned
    and root-relative joint errors, the unaligned (camera-frame) joint and mesh errors, and F-scores of the aligned
    and the unaligned mesh."""

    name: str = "ho3d"

    def _add(self, pred, gt, verts) -> None:
        rel = (pred - pred[:, :1]) - (gt - gt[:, :1])
        self._keep("abs_err", torch.linalg.vector_norm(pred - gt, dim=-1))
        self._keep("rr_err", torch.linalg.vector_norm(rel, dim=-1))
        self._keep("st_err", torch.linalg.vector_norm(scale_translation_align(pred, gt) - gt, dim=-1))
        self._pa_terms(pred, gt, "j")
        self._mesh_terms(verts)

    def compute(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {f"{self.name}/num_samples": self.num_samples}
        if self.num_samples == 0:
            return out
        self._pa_summary(out, "j", "pa_mpjpe_mm", "pa_auc_j")
        out[f"{self.name}/mpjpe_abs_mm"], out[f"{self.name}/auc_abs_j"] = _mm_auc(self._cat("abs_err"))
        out[f"{self.name}/st_mpjpe_mm"], out[f"{self.name}/st_auc_j"] = _mm_auc(self._cat("st_err"))
        out[f"{self.name}/rr_mpjpe_mm"], out[f"{self.name}/rr_auc_j"] = _mm_auc(self._cat("rr_err"))
        self._mesh_summary(out)
        return out


@dataclass(kw_only=True)
class DexYCBProtocol(Protocol):
    """DexYCB (the toolkit's hand pose evaluation) for one setup and split: root-relative MPJPE and PA-MPJPE (the
    numbers papers report), the absolute error, and the AUC of each, keyed `dexycb_<setup>_<split>/...`."""

    name: str = "dexycb"

    def _add(self, pred, gt, verts) -> None:
        rel = (pred - pred[:, :1]) - (gt - gt[:, :1])
        self._keep("abs_err", torch.linalg.vector_norm(pred - gt, dim=-1))
        self._keep("rr_err", torch.linalg.vector_norm(rel, dim=-1))
        self._pa_terms(pred, gt, "j")

    def compute(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {f"{self.name}/num_samples": self.num_samples}
        if self.num_samples == 0:
            return out
        out[f"{self.name}/mpjpe_mm"], out[f"{self.name}/auc"] = _mm_auc(self._cat("rr_err"))
        self._pa_summary(out, "j", "pa_mpjpe_mm", "pa_auc")
        out[f"{self.name}/mpjpe_abs_mm"], out[f"{self.name}/abs_auc"] = _mm_auc(self._cat("abs_err"))
        return out


def _mm_auc(errors: np.ndarray) -> tuple[float, float]:
    mean, auc = keypoint_summary(errors)
    return mean * MM, auc


def protocol_for(spec: str) -> Protocol | None:
    """The protocol of a dataset spec, or None when it has none (synth, mix, HO3D's evaluation split without its
    published ground truth).

    `freihand:...` -> FreiHANDProtocol; `ho3d:PATH[:train]` -> HO3DProtocol; `ho3d:PATH:evaluation` with
    PATH/evaluation_xyz.json -> HO3DProtocol named ho3d_eval; `dexycb:PATH:s1:test` -> DexYCBProtocol named
    dexycb_s1_test.
    """
    parsed = parse_spec(spec)
    parts = [p.strip().lower() for p in parsed.target.split(":")[1:]]
    if parsed.scheme == "freihand":
        split = parts[0] if parts else "train"
        return FreiHANDProtocol(name="freihand" if split == "train" else "freihand_eval")
    if parsed.scheme == "ho3d":
        split = parts[0] if parts else "train"
        if split not in ("evaluation", "eval", "test"):
            return HO3DProtocol()
        root = Path(parsed.target.split(":")[0])
        return HO3DProtocol(name="ho3d_eval") if has_evaluation_truth(root) else None
    if parsed.scheme == "dexycb":
        setup, split = (parts + ["s0", "test"][len(parts) :])[:2]
        return DexYCBProtocol(name=f"dexycb_{setup}_{split}")
    return None


def _check_predictions(joints: np.ndarray, verts: np.ndarray | None) -> None:
    if joints.ndim != 3 or joints.shape[1:] != (21, 3):
        raise ValueError(f"joints must be (N, 21, 3), got {joints.shape}")
    if verts is not None and (verts.ndim != 3 or verts.shape[0] != joints.shape[0] or verts.shape[2] != 3):
        raise ValueError(f"verts must be (N, V, 3) with N = {joints.shape[0]}, got {verts.shape}")


def write_ho3d_submission(path: str | Path, joints: np.ndarray, verts: np.ndarray) -> Path:
    """The CodaLab file for HO3D's evaluation split: JSON [joints, verts] in HO3D's joint order and OpenGL axes.

    Args:
        path: where to write (zip it as pred.zip to upload).
        joints: (N, 21, 3) metres, OpenCV camera frame, project order, in the order of evaluation.txt.
        verts: (N, 778, 3) metres, OpenCV camera frame (MANO vertices).
    """
    joints, verts = np.asarray(joints, dtype=np.float64), np.asarray(verts, dtype=np.float64)
    _check_predictions(joints, verts)
    to_ho3d = np.argsort(MANO_TO_PROJECT)  # MANO_TO_PROJECT[ours] = theirs, so theirs -> ours is its inverse
    flip = np.array([1.0, -1.0, -1.0])
    payload = [(joints[:, to_ho3d] * flip).tolist(), (verts * flip).tolist()]
    path = Path(path)
    path.write_text(json.dumps(payload))
    return path


def write_freihand_submission(path: str | Path, joints: np.ndarray, verts: np.ndarray) -> Path:
    """The CodaLab file for FreiHAND's evaluation split: JSON [joints, verts], metres, OpenCV axes, FreiHAND's joint
    order (the project's own)."""
    joints, verts = np.asarray(joints, dtype=np.float64), np.asarray(verts, dtype=np.float64)
    _check_predictions(joints, verts)
    path = Path(path)
    path.write_text(json.dumps([joints.tolist(), verts.tolist()]))
    return path


__all__ = [
    "DexYCBProtocol",
    "FreiHANDProtocol",
    "HO3DProtocol",
    "Protocol",
    "f_score",
    "keypoint_summary",
    "orthogonal_align",
    "protocol_for",
    "scale_translation_align",
    "write_freihand_submission",
    "write_ho3d_submission",
]
