"""The loss terms as per-sample functions of (prediction, target) tensors: `AMTLoss` masks, mixes and weighs them.

Every function returns (B,) values (or (B,) values plus a (B,) mask of samples where the value is defined) and stays
finite with finite gradients for any finite input, including all-zero padding of samples that lack a field, so that
masking an invalid sample out never lets a NaN through. Distances are metres, angles radians, forces newtons.
"""

from __future__ import annotations

import numpy as np
import roma
import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F

from amt_core.geometry import axis_angle_to_matrix, project_to_image, transform_points
from amt_core.losses.kinds import ContactLoss

# Keeps asin's derivative finite at 180 degrees in the geodesic rotation loss.
_GEODESIC_CLAMP = 1.0 - 1e-6
# Probabilities are clamped this far from 0 and 1 before taking logs.
_PROB_EPS = 1e-6


def joint_distances(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B, J, 3) x2 metres -> (B, J) Euclidean distances, metres (gradient 0, not NaN, at distance 0)."""
    return torch.linalg.vector_norm(pred - gt, dim=-1)


def prior_weighted_mpjpe(pred: torch.Tensor, gt: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """(B, 21, 3) x2 metres and (21,) fixed joint weights -> (B,) weighted mean joint distance, metres."""
    prior = prior.to(pred.dtype)
    return (joint_distances(pred, gt) * prior).sum(dim=-1) / prior.sum()


def reprojection(pred2d: torch.Tensor, gt2d: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Mean 2D joint distance divided by the image's longer side: (B, J, 2) x2 pixels -> (B,) (fraction of image).

    One scale for both axes keeps the distance isotropic; a 1 px error on a 224 px image is about 0.0045.
    """
    height, width = image_size
    return torch.linalg.vector_norm(pred2d - gt2d, dim=-1).mean(dim=-1) / float(max(height, width))


def rotation_chordal(pred_rotvec: torch.Tensor, gt_rotvec: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius distance of rotation matrices from axis-angle (..., K, 3) x2 -> (...,) mean over K.

    Chordal rather than raw axis-angle differences: it has no wrap-around at pi and is smooth everywhere
    (|R1 - R2|_F^2 = 8 sin^2(angle / 2), at most 8).
    """
    diff = axis_angle_to_matrix(pred_rotvec) - axis_angle_to_matrix(gt_rotvec)  # (..., K, 3, 3)
    return diff.square().sum(dim=(-1, -2)).mean(dim=-1)


def geodesic(pred_rot: torch.Tensor, gt_rot: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between rotation matrices, (..., 3, 3) x2 -> (...) radians, with finite gradients."""
    return roma.rotmat_geodesic_distance(pred_rot, gt_rot, clamping=_GEODESIC_CLAMP)


def object_points(
    pred_rot: torch.Tensor,
    pred_trans: torch.Tensor,
    gt_rot: torch.Tensor,
    gt_trans: torch.Tensor,
    points: torch.Tensor,
    symmetric: torch.Tensor,
) -> torch.Tensor:
    """Symmetry-aware point matching: ADD for asymmetric objects, ADD-S (closest point) for symmetric ones.

    Args:
        pred_rot, gt_rot: (B, 3, 3). pred_trans, gt_trans: (B, 3) metres.
        points: (B, P, 3) model points of each sample's object, object frame, metres.
        symmetric: (B,) bool, use ADD-S for these samples.

    Returns:
        (B,) mean point distance, metres.
    """
    pred = transform_points(pred_rot, pred_trans, points)  # (B, P, 3)
    gt = transform_points(gt_rot, gt_trans, points)
    add = torch.linalg.vector_norm(pred - gt, dim=-1).mean(dim=-1)
    # ADD-S for every row, also when no sample is symmetric: testing that would sync the host each step.
    add_s = torch.cdist(pred, gt).amin(dim=-1).mean(dim=-1)
    return torch.where(symmetric, add_s, add)


def box_and_center(
    rot: torch.Tensor, trans: torch.Tensor, points: torch.Tensor, K: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2D box (u0, v0, u1, v1) of the projected model points and its centre, pixels.

    Args:
        rot: (B, 3, 3). trans: (B, 3) metres. points: (B, P, 3) object frame. K: (B, 3, 3).

    Returns:
        box (B, 4) and box centre (B, 2), pixels.
    """
    uv = project_to_image(transform_points(rot, trans, points), K)  # (B, P, 2)
    box = torch.cat([uv.amin(dim=1), uv.amax(dim=1)], dim=-1)
    return box, (box[:, :2] + box[:, 2:]) / 2


def heatmap_target(box: torch.Tensor, grid_hw: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """A Gaussian around each box centre on a (h, w) cell grid over the image, normalised to sum 1.

    Cell (i, j) covers pixels [j s_x, (j + 1) s_x) x [i s_y, (i + 1) s_y), s = image size / grid size; the spread is
    0.15 of the box's shorter side (at least half a cell), so small objects get sharp targets.

    Args:
        box: (B, 4) pixels (u0, v0, u1, v1).

    Returns:
        (B, h, w) probabilities.
    """
    h, w = grid_hw
    stride_y, stride_x = image_size[0] / h, image_size[1] / w
    center = (box[:, :2] + box[:, 2:]) / 2  # (B, 2) pixels
    cell_v = (torch.arange(h, device=box.device, dtype=box.dtype) + 0.5) * stride_y - 0.5
    cell_u = (torch.arange(w, device=box.device, dtype=box.dtype) + 0.5) * stride_x - 0.5
    du = (cell_u[None, None, :] - center[:, 0, None, None]) / stride_x  # (B, 1, w) cells
    dv = (cell_v[None, :, None] - center[:, 1, None, None]) / stride_y  # (B, h, 1) cells
    shorter = torch.minimum((box[:, 2] - box[:, 0]) / stride_x, (box[:, 3] - box[:, 1]) / stride_y)
    sigma = (0.15 * shorter).clamp(min=0.5)[:, None, None]  # (B, 1, 1) cells
    logits = -(du.square() + dv.square()) / (2 * sigma.square())  # (B, h, w)
    return torch.softmax(logits.flatten(1), dim=-1).view(-1, h, w)


def heatmap_kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax over all cells of logits): (B, h, w) x2 -> (B,), 0 when they agree.

    On the softmax because the model reads the object centre out by soft-argmax over that softmax; a per-cell
    sigmoid focal loss (CenterNet's) would train a quantity the read-out does not use.
    """
    log_prob = torch.log_softmax(logits.flatten(1).float(), dim=-1)
    target = target.flatten(1)
    cross = torch.where(target > 0, target * log_prob, 0.0)  # 0 log 0 = 0, even where a logit is -inf
    return (torch.special.xlogy(target, target) - cross).sum(dim=-1)


def detection(
    pred_box: torch.Tensor | None,
    pred_center: torch.Tensor | None,
    gt_box: torch.Tensor,
    gt_center: torch.Tensor,
    image_size: tuple[int, int],
) -> torch.Tensor:
    """L1 error of the detected box and centre, divided by the image's longer side: -> (B,)."""
    scale = float(max(image_size))
    parts = []
    if pred_box is not None:
        parts.append((pred_box - gt_box).abs().mean(dim=-1))
    if pred_center is not None:
        parts.append((pred_center - gt_center).abs().mean(dim=-1))
    return torch.stack(parts, dim=0).sum(dim=0) / scale


def binary_contact(
    prob: torch.Tensor, target: torch.Tensor, kind: ContactLoss, gamma: float, alpha: float
) -> torch.Tensor:
    """Per-vertex contact loss on probabilities, mean over vertices: (B, V) x2 -> (B,).

    Args:
        prob: predicted probabilities in [0, 1] (clamped away from 0 and 1 before the log).
        target: labels in [0, 1].
        kind: bce (binary cross entropy) or focal (Lin et al. 2017: alpha_t (1 - p_t)^gamma times BCE).
        gamma, alpha: focal parameters (ignored by bce); alpha weighs the positives, 1 - alpha the negatives.
    """
    prob = prob.float().clamp(_PROB_EPS, 1.0 - _PROB_EPS)
    target = target.float()
    bce = -(target * torch.log(prob) + (1.0 - target) * torch.log1p(-prob))
    if kind == ContactLoss.BCE:
        return bce.mean(dim=-1)
    p_t = target * prob + (1.0 - target) * (1.0 - prob)
    alpha_t = target * alpha + (1.0 - target) * (1.0 - alpha)
    return (alpha_t * (1.0 - p_t).pow(gamma) * bce).mean(dim=-1)


def match_contacts(pred_points: torch.Tensor, gt_points: torch.Tensor, gt_mask: torch.Tensor) -> list[np.ndarray]:
    """Hungarian matching of predicted contact slots to ground-truth contacts by distance (no gradients).

    Args:
        pred_points: (B, C, 3) metres. gt_points: (B, M, 3) metres. gt_mask: (B, M) bool, the real contacts.

    Returns:
        per sample, an (n, 2) int array of (predicted slot, ground-truth index) pairs, n = min(C, real contacts).
    """
    cost = torch.cdist(pred_points.detach().float(), gt_points.detach().float()).cpu().numpy()  # (B, C, M)
    mask = gt_mask.detach().cpu().numpy().astype(bool)
    pairs = []
    for b in range(cost.shape[0]):
        real = np.flatnonzero(mask[b])
        if real.size == 0 or cost.shape[1] == 0:
            pairs.append(np.zeros((0, 2), dtype=np.int64))
            continue
        rows, cols = linear_sum_assignment(cost[b][:, real])
        pairs.append(np.stack([rows, real[cols]], axis=1).astype(np.int64))
    return pairs


def _gather_pairs(pairs: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten per-sample pairs to (batch index, predicted slot, ground-truth index), each (n,) int64."""
    rows = [np.column_stack([np.full(len(p), b), p]) for b, p in enumerate(pairs) if len(p)]
    if not rows:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, empty
    flat = torch.from_numpy(np.concatenate(rows, axis=0)).to(device)
    return flat[:, 0], flat[:, 1], flat[:, 2]


def per_sample_mean(values: torch.Tensor, batch_index: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Mean of flat (n,) values by sample: -> (B,) means (0 where a sample has none) and (B,) bool has-any."""
    sums = values.new_zeros(batch_size).index_add(0, batch_index, values)
    counts = values.new_zeros(batch_size).index_add(0, batch_index, torch.ones_like(values))
    return sums / counts.clamp(min=1.0), counts > 0


def matched_contacts(
    pred_points: torch.Tensor,
    pred_conf: torch.Tensor | None,
    pred_forces: torch.Tensor | None,
    gt_points: torch.Tensor,
    gt_mask: torch.Tensor,
    gt_forces: torch.Tensor,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Contact point, confidence and force losses after Hungarian matching.

    Returns:
        name -> ((B,) loss, (B,) bool defined), for "contact_points" (mean distance of matched pairs, metres; defined
        where the sample has real contacts), "contact_conf" (BCE of every slot's confidence against matched = 1,
        unmatched = 0; defined everywhere) and "forces" (mean force error over matched pairs, newtons).
    """
    batch, slots = pred_points.shape[:2]
    device = pred_points.device
    b, slot, gt_index = _gather_pairs(match_contacts(pred_points, gt_points, gt_mask), device)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    distances = torch.linalg.vector_norm(pred_points[b, slot] - gt_points[b, gt_index], dim=-1)
    out["contact_points"] = per_sample_mean(distances, b, batch)
    if pred_conf is not None:
        target = torch.zeros(batch, slots, device=device)
        target[b, slot] = 1.0
        out["contact_conf"] = (
            binary_contact(pred_conf, target, ContactLoss.BCE, 0.0, 0.5),
            torch.ones_like(target[:, 0]) > 0,
        )
    if pred_forces is not None:
        errors = torch.linalg.vector_norm(pred_forces[b, slot] - gt_forces[b, gt_index], dim=-1)
        out["forces"] = per_sample_mean(errors, b, batch)
    return out


def penetration(sdf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean depth of the hand vertices inside the object: (B, V) signed distances (negative inside) -> (B,) metres.

    Averaged over the vertices that are inside (0 when none is), so one vertex deep in the object is penalised as
    much as many, independent of the mesh resolution. Also returns (B,) bool: any vertex inside.
    """
    depth = F.relu(-sdf)  # (B, V) metres
    inside = (sdf < 0).float()
    count = inside.sum(dim=-1)
    return depth.sum(dim=-1) / count.clamp(min=1.0), count > 0


def attraction(
    sdf: torch.Tensor, contact_prob: torch.Tensor, threshold: float, margin: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull vertices predicted in contact to within `margin` of the surface.

    Args:
        sdf: (B, V) signed distances, metres (negative inside; inside is penetration's business, so only the
            outside distance counts here).
        contact_prob: (B, V) predicted contact probability; used as a weight without gradient, so the contact head
            cannot lower this loss by predicting no contact.
        threshold: vertices with probability >= threshold count as predicted in contact.
        margin: metres; distances up to it are free (contact labels count vertices this close as touching).

    Returns:
        (B,) probability-weighted mean distance beyond the margin, metres, and (B,) bool: any such vertex.
    """
    weight = contact_prob.detach().float()
    weight = weight * (weight >= threshold)
    total = weight.sum(dim=-1)
    return (weight * F.relu(sdf - margin)).sum(dim=-1) / total.clamp(min=1e-6), total > 0


def equilibrium(
    forces: torch.Tensor,
    conf: torch.Tensor | None,
    mass: torch.Tensor,
    gravity: torch.Tensor | None,
    g: float = 9.81,
) -> torch.Tensor:
    """Static equilibrium of the hand's forces with the object's weight, relative to the weight.

    Args:
        forces: (B, C, 3) predicted forces the hand applies, newtons, camera frame.
        conf: (B, C) contact confidences weighting the slots (no gradient), or None for all 1.
        mass: (B,) object masses, kilograms (> 0).
        gravity: (3,) or (B, 3) gravity direction in the camera frame, or None when unknown. Where it is unknown
            (None, or a zero vector for a sample) only the magnitude of the net hand force is compared with the
            weight; other vectors are normalised.
        g: gravitational acceleration, m/s^2.

    Returns:
        (B,) |sum_c conf_c f_c + m g| / (m g) (dimensionless), or | |sum_c conf_c f_c| - m g | / (m g).
    """
    weights = torch.ones_like(forces[..., 0]) if conf is None else conf.detach()
    net = (weights[..., None] * forces).sum(dim=1)  # (B, 3) newtons
    weight_n = (mass * g).clamp(min=1e-6)  # (B,) newtons
    magnitude_only = (torch.linalg.vector_norm(net, dim=-1) - weight_n).abs() / weight_n
    if gravity is None:
        return magnitude_only
    gravity = gravity.to(net).expand_as(net)  # (B, 3)
    length = torch.linalg.vector_norm(gravity, dim=-1, keepdim=True)
    known = length[:, 0] > 0.5
    direction = gravity / length.clamp(min=1e-6)
    residual = net + weight_n[:, None] * direction
    return torch.where(known, torch.linalg.vector_norm(residual, dim=-1) / weight_n, magnitude_only)


def diversity(
    pred_joints: torch.Tensor,
    gt_joints: torch.Tensor | None,
    ratio: float,
    min_std: float,
    eps: float = 1e-8,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hinge on the spread of predictions across the batch (the seed's collapse defence).

    Per coordinate of the root-relative joints, the batch std of the prediction is compared with a target:
    `ratio` times the ground truth's std over the same samples, or `min_std` metres without ground truth; only a
    shortfall is penalised. A collapsed model (std ~ 0) gets the largest loss, with finite gradients (the std is
    sqrt(var + eps)).

    Args:
        pred_joints: (B, 21, 3) metres, B >= 2.
        gt_joints: (B, 21, 3) metres for the same samples, or None.
        weights: (B,) bool, the samples whose ground truth is valid (default: all). With two or more, both stds are
            taken over them; with fewer, the prediction's std over the whole batch is held to `min_std`. Decided on
            the device: no host sync.

    Returns:
        () mean shortfall, metres.
    """
    rel = pred_joints - pred_joints[:, :1]
    batch = pred_joints.shape[0]
    if weights is None:
        weights = torch.ones(batch, dtype=torch.bool, device=pred_joints.device)
    if gt_joints is None:
        weights = torch.zeros_like(weights)
    count = weights.sum()
    use_gt = count >= 2
    w = torch.where(use_gt, weights.float(), 1.0)  # (B,) the samples the stds run over
    std = torch.sqrt(_weighted_var(rel, w) + eps)  # (21, 3)
    if gt_joints is None:
        target = torch.full_like(std, min_std)
    else:
        gt_rel = (gt_joints - gt_joints[:, :1]).detach()
        target = torch.where(use_gt, ratio * torch.sqrt(_weighted_var(gt_rel, w)), min_std)
    # The wrist is the origin of root-relative coordinates: its std is 0 for prediction and target alike.
    return F.relu(target - std)[1:].mean()


def _weighted_var(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over dim 0 of (B, ...) `x` restricted to the samples with weight 1 (w (B,) 0/1 floats)."""
    w = w.view(-1, *([1] * (x.dim() - 1)))
    n = w.sum()
    mean = (w * x).sum(dim=0) / n.clamp(min=1)
    return (w * (x - mean).square()).sum(dim=0) / (n - 1).clamp(min=1)
