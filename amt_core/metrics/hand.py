"""Hand pose metrics: root-relative and Procrustes-aligned joint and vertex errors, PCK curves and their AUC.

Every function takes metres (torch tensors or numpy arrays, any float dtype), computes in float64 without gradients,
and returns per-sample (or per-joint) torch tensors in metres on the input's device.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

# Default PCK thresholds: 0 to 50 mm in 100 evenly spaced steps, as the official FreiHAND and HO3D scripts do.
PCK_MAX_M = 0.05
PCK_STEPS = 100


def as_float64(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A detached float64 tensor of x (numpy arrays are converted; tensors keep their device)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    return x.detach().to(torch.float64)


def root_relative(points: torch.Tensor | np.ndarray, root: int = 0) -> torch.Tensor:
    """(N, J, 3) -> (N, J, 3) minus the root joint (the wrist, joint 0, by default)."""
    points = as_float64(points)
    return points - points[:, root : root + 1]


def joint_errors(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Per-joint root-relative distances: (N, J, 3) x2 metres -> (N, J) metres (the root's own error is 0)."""
    return torch.linalg.vector_norm(root_relative(pred) - root_relative(gt), dim=-1)


def mpjpe(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Mean per-joint position error after aligning the wrists (joint 0): (N, 21, 3) x2 metres -> (N,) metres.

    The mean runs over all 21 joints, the wrist (error 0 after alignment) included, as FreiHAND's and HO3D's
    evaluation code does.
    """
    return joint_errors(pred, gt).mean(dim=-1)


def procrustes_align(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> torch.Tensor:
    """`pred` moved onto `gt` by the best similarity transform (rotation, translation, uniform scale).

    Umeyama's least-squares solution through `roma.rigid_points_registration(..., compute_scaling=True)`; the rotation
    is proper (det +1), never a reflection. Degenerate predictions (all points equal) get scale 0 and land on gt's
    centroid, without NaN.

    Args:
        pred: (N, P, 3) points, metres.
        gt: (N, P, 3) corresponding points, metres.

    Returns:
        (N, P, 3) aligned copy of pred, metres, float64.
    """
    pred, gt = as_float64(pred), as_float64(gt)
    rot, trans, scale = roma.rigid_points_registration(pred, gt, compute_scaling=True)
    scale = torch.nan_to_num(scale, nan=0.0, posinf=0.0, neginf=0.0)
    return scale[:, None, None] * pred @ rot.transpose(-1, -2) + trans[:, None, :]


def pa_joint_errors(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Per-joint distances after similarity Procrustes alignment: (N, J, 3) x2 metres -> (N, J) metres."""
    gt = as_float64(gt)
    return torch.linalg.vector_norm(procrustes_align(pred, gt) - gt, dim=-1)


def pa_mpjpe(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Procrustes-aligned MPJPE (similarity transform): (N, 21, 3) x2 metres -> (N,) metres."""
    return pa_joint_errors(pred, gt).mean(dim=-1)


def mpvpe(
    pred_verts: torch.Tensor | np.ndarray,
    gt_verts: torch.Tensor | np.ndarray,
    pred_root: torch.Tensor | np.ndarray | None = None,
    gt_root: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Mean per-vertex position error: (N, V, 3) x2 metres -> (N,) metres.

    With `pred_root` and `gt_root` ((N, 3), the wrist joints of each), vertices are taken relative to them, the same
    alignment as `mpjpe`; without them, each mesh is centred on its vertex mean (translation removed).
    """
    pred_verts, gt_verts = as_float64(pred_verts), as_float64(gt_verts)
    if (pred_root is None) != (gt_root is None):
        raise ValueError("mpvpe needs both pred_root and gt_root, or neither")
    if pred_root is None:
        pred_verts = pred_verts - pred_verts.mean(dim=1, keepdim=True)
        gt_verts = gt_verts - gt_verts.mean(dim=1, keepdim=True)
    else:
        pred_verts = pred_verts - as_float64(pred_root)[:, None, :]
        gt_verts = gt_verts - as_float64(gt_root)[:, None, :]
    return torch.linalg.vector_norm(pred_verts - gt_verts, dim=-1).mean(dim=-1)


def pa_mpvpe(pred_verts: torch.Tensor | np.ndarray, gt_verts: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Procrustes-aligned (similarity) mean per-vertex error: (N, V, 3) x2 metres -> (N,) metres."""
    return pa_joint_errors(pred_verts, gt_verts).mean(dim=-1)


def pck_thresholds(max_m: float = PCK_MAX_M, steps: int = PCK_STEPS) -> torch.Tensor:
    """(steps,) evenly spaced thresholds from 0 to max_m metres, float64."""
    return torch.linspace(0.0, max_m, steps, dtype=torch.float64)


def pck_curve(errors: torch.Tensor | np.ndarray, thresholds: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """Percentage of correct keypoints at each threshold.

    Args:
        errors: per-joint errors of any shape (e.g. (N, J)), metres; every entry counts once.
        thresholds: (T,) metres; default 0-50 mm in 100 steps.

    Returns:
        (T,) fraction in [0, 1] of errors <= each threshold.
    """
    errors = as_float64(errors).reshape(-1)
    thresholds = pck_thresholds() if thresholds is None else as_float64(thresholds)
    thresholds = thresholds.to(errors.device)
    if errors.numel() == 0:
        return torch.zeros_like(thresholds)
    return (errors[None, :] <= thresholds[:, None]).to(torch.float64).mean(dim=1)


def auc(pck: torch.Tensor | np.ndarray, thresholds: torch.Tensor | np.ndarray | None = None) -> float:
    """Area under a PCK curve by the trapezoid rule, normalised by the threshold range, so it lies in [0, 1]."""
    pck = as_float64(pck)
    thresholds = pck_thresholds() if thresholds is None else as_float64(thresholds)
    thresholds = thresholds.to(pck.device)
    span = float(thresholds[-1] - thresholds[0])
    if span <= 0:
        raise ValueError("auc needs at least two increasing thresholds")
    return float(torch.trapezoid(pck, thresholds) / span)


def auc_0_50(errors: torch.Tensor | np.ndarray) -> float:
    """AUC of the PCK curve over 0-50 mm for per-joint errors in metres (any shape)."""
    return auc(pck_curve(errors))


def reprojection_errors(pred2d: torch.Tensor | np.ndarray, gt2d: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Mean 2D joint distance in pixels: (N, J, 2) x2 pixels -> (N,) pixels."""
    return torch.linalg.vector_norm(as_float64(pred2d) - as_float64(gt2d), dim=-1).mean(dim=-1)
