"""Contact and physical plausibility metrics: per-vertex contact precision, recall and F1, and how deep hand
vertices sink into the object (from signed distances, negative inside, metres).
"""

from __future__ import annotations

import numpy as np
import torch

from amt_core.metrics.hand import as_float64

CONTACT_THRESHOLD = 0.5


def contact_counts(
    prob: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, threshold: float = CONTACT_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives and false negatives per sample.

    Args:
        prob: (N, V) predicted contact probability per hand vertex.
        gt: (N, V) ground-truth contact labels (0/1, or probabilities: >= 0.5 counts as contact).
        threshold: a vertex is predicted in contact when prob >= threshold.

    Returns:
        (tp, fp, fn), each (N,) int64.
    """
    pred = as_float64(prob) >= threshold
    truth = as_float64(gt).to(pred.device) >= 0.5
    tp = (pred & truth).sum(dim=-1)
    fp = (pred & ~truth).sum(dim=-1)
    fn = (~pred & truth).sum(dim=-1)
    return tp, fp, fn


def precision_recall_f1(
    tp: torch.Tensor | int, fp: torch.Tensor | int, fn: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and F1 from counts (elementwise, float64).

    Conventions for empty sets: precision is 1 when nothing is predicted, recall is 1 when nothing is true, so a
    sample with no contact predicted and none true scores 1 on all three.
    """
    tp, fp, fn = (torch.as_tensor(x, dtype=torch.float64) for x in (tp, fp, fn))
    predicted, true = tp + fp, tp + fn
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.ones_like(tp))
    recall = torch.where(true > 0, tp / true.clamp(min=1), torch.ones_like(tp))
    denominator = precision + recall
    f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-12), torch.zeros_like(tp))
    return precision, recall, f1


def contact_f1(
    prob: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, threshold: float = CONTACT_THRESHOLD
) -> torch.Tensor:
    """Per-sample contact F1: (N, V) x2 -> (N,) (see `precision_recall_f1` for the empty-set conventions)."""
    return precision_recall_f1(*contact_counts(prob, gt, threshold))[2]


def penetration_depth(sdf: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """How deep hand vertices are inside the object.

    Args:
        sdf: (N, V) signed distance of each hand vertex to the object's surface, metres, negative inside.

    Returns:
        (max_depth, mean_depth), each (N,) metres >= 0: the deepest vertex, and the mean depth over the vertices that
        are inside (0 when none is).
    """
    depth = (-as_float64(sdf)).clamp(min=0.0)  # (N, V) metres, 0 outside
    inside = (depth > 0).sum(dim=-1)
    max_depth = depth.amax(dim=-1) if depth.shape[-1] else torch.zeros(depth.shape[0], dtype=torch.float64)
    mean_depth = depth.sum(dim=-1) / inside.clamp(min=1)
    return max_depth, mean_depth
