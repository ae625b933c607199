"""Object pose metrics: ADD, ADD-S, the "< 10% of the diameter" accuracy, rotation and translation error, class
accuracy. Metres in, per-sample values out (torch, float64, no gradients); rotations are (N, 3, 3) matrices.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

from amt_core.geometry import transform_points
from amt_core.metrics.hand import as_float64

# ADD-S compares every transformed model point with every other; chunk the samples so N * P * P stays bounded.
_ADDS_CHUNK_ELEMENTS = 32_000_000


def add(
    pred_rot: torch.Tensor | np.ndarray,
    pred_trans: torch.Tensor | np.ndarray,
    gt_rot: torch.Tensor | np.ndarray,
    gt_trans: torch.Tensor | np.ndarray,
    points: torch.Tensor | np.ndarray,
) -> torch.Tensor:
    """ADD (Hinterstoisser et al. 2012): mean distance between corresponding model points under both poses.

    Args:
        pred_rot, gt_rot: (N, 3, 3). pred_trans, gt_trans: (N, 3) metres.
        points: (N, P, 3) model points of each sample's object, object frame, metres.

    Returns:
        (N,) metres.
    """
    points = as_float64(points)
    pred = transform_points(as_float64(pred_rot), as_float64(pred_trans), points)
    gt = transform_points(as_float64(gt_rot), as_float64(gt_trans), points)
    return torch.linalg.vector_norm(pred - gt, dim=-1).mean(dim=-1)


def add_s(
    pred_rot: torch.Tensor | np.ndarray,
    pred_trans: torch.Tensor | np.ndarray,
    gt_rot: torch.Tensor | np.ndarray,
    gt_trans: torch.Tensor | np.ndarray,
    points: torch.Tensor | np.ndarray,
) -> torch.Tensor:
    """ADD-S: mean over predicted model points of the distance to the closest ground-truth model point.

    Invariant to the object's symmetries, and never larger than ADD. Same arguments and result as `add`.
    """
    points = as_float64(points)
    pred = transform_points(as_float64(pred_rot), as_float64(pred_trans), points)
    gt = transform_points(as_float64(gt_rot), as_float64(gt_trans), points)
    num, count = points.shape[0], points.shape[1]
    chunk = max(1, _ADDS_CHUNK_ELEMENTS // max(1, count * count))
    out = [torch.cdist(pred[i : i + chunk], gt[i : i + chunk]).amin(dim=-1).mean(dim=-1) for i in range(0, num, chunk)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=points.device)


def add_accuracy(
    distance: torch.Tensor | np.ndarray, diameter: torch.Tensor | np.ndarray | float, fraction: float = 0.1
) -> torch.Tensor:
    """Whether each ADD (or ADD-S) distance is below `fraction` of the object's diameter (metres, scalar or (N,)):
    (N,) bool."""
    distance = as_float64(distance)
    diameter = as_float64(torch.as_tensor(diameter)).to(distance.device)
    return distance < fraction * diameter


def rotation_error_deg(pred_rot: torch.Tensor | np.ndarray, gt_rot: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Geodesic angle between rotations, degrees: (N, 3, 3) x2 -> (N,) in [0, 180]."""
    return torch.rad2deg(roma.rotmat_geodesic_distance(as_float64(pred_rot), as_float64(gt_rot)))


def translation_error(pred_trans: torch.Tensor | np.ndarray, gt_trans: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Euclidean distance between translations: (N, 3) x2 metres -> (N,) metres."""
    return torch.linalg.vector_norm(as_float64(pred_trans) - as_float64(gt_trans), dim=-1)


def class_correct(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Whether each predicted class is right: pred is (N, C) logits or (N,) ids, gt (N,) ids -> (N,) bool."""
    pred = torch.as_tensor(pred).detach()
    gt = torch.as_tensor(gt).detach()
    if pred.dim() == 2:
        pred = pred.argmax(dim=-1)
    return pred.to(gt.device).long() == gt.long()
