"""The object catalog as stacked tensors indexed by class id: model points, symmetries, masses, diameters, SDFs.

Losses and metrics look objects up for a whole batch at once (`tables.points[class_ids]`), so the catalog's
per-class Python objects are turned into tensors once, then moved to each device once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch

from amt_core.objects.catalog import catalog, sdf_bank
from amt_core.objects.sdf import SDFBank

# Symmetry kinds as stored in `ObjectTables.symmetry_kind`.
SYMMETRY_NONE, SYMMETRY_CONTINUOUS, SYMMETRY_DISCRETE = 0, 1, 2
_KIND_CODES = {"none": SYMMETRY_NONE, "continuous": SYMMETRY_CONTINUOUS, "discrete": SYMMETRY_DISCRETE}


@dataclass(kw_only=True)
class ObjectTables:
    """Per-class tensors (C classes, in catalog id order) for batched lookups by class id."""

    points: torch.Tensor
    """(C, P, 3) model points spread over each surface, object frame, metres."""
    symmetry_kind: torch.Tensor
    """(C,) long: 0 none, 1 continuous about `axis`, 2 discrete (`rotations`)."""
    axis: torch.Tensor
    """(C, 3) unit axis of a continuous symmetry, object frame."""
    rotations: torch.Tensor
    """(C, K, 3, 3) the discrete symmetry rotations, padded with the identity (identity only for other kinds)."""
    mass: torch.Tensor
    """(C,) kilograms."""
    diameter: torch.Tensor
    """(C,) largest vertex distance, metres."""
    sdf: SDFBank | None = None
    """Signed-distance grids of every class (negative inside), or None to fetch the catalog's on first use."""

    @property
    def num_classes(self) -> int:
        return int(self.points.shape[0])

    @property
    def symmetric(self) -> torch.Tensor:
        """(C,) bool: the class has a symmetry (ADD-S instead of ADD)."""
        return self.symmetry_kind != SYMMETRY_NONE

    @property
    def device(self) -> torch.device:
        return self.points.device

    @classmethod
    def from_catalog(cls, num_points: int = 512, seed: int = 0, classes: Sequence | None = None) -> ObjectTables:
        """Tables of `amt_core.objects.catalog()` (or of the given `ObjectClass` list), on the CPU.

        The SDF grids are left to the catalog's `sdf_bank`, fetched (and built on the first run) only when a
        physics term or the penetration metric first needs them.
        """
        classes = list(catalog() if classes is None else classes)
        rotation_sets = [torch.as_tensor(obj.symmetry.rotation_set(), dtype=torch.float32) for obj in classes]
        count = max([len(r) for r, o in zip(rotation_sets, classes) if o.symmetry.kind == "discrete"], default=1)
        rotations = torch.eye(3).repeat(len(classes), count, 1, 1)
        for index, obj in enumerate(classes):
            if obj.symmetry.kind == "discrete":
                rotations[index, : len(rotation_sets[index])] = rotation_sets[index]
        return cls(
            points=torch.stack(
                [torch.as_tensor(obj.surface_points(num_points, seed=seed), dtype=torch.float32) for obj in classes]
            ),
            symmetry_kind=torch.tensor([_KIND_CODES[obj.symmetry.kind] for obj in classes], dtype=torch.long),
            axis=torch.tensor([obj.symmetry.axis for obj in classes], dtype=torch.float32),
            rotations=rotations,
            mass=torch.tensor([obj.mass for obj in classes], dtype=torch.float32),
            diameter=torch.tensor([obj.diameter for obj in classes], dtype=torch.float32),
        )

    def to(self, device: torch.device | str) -> ObjectTables:
        """A copy on `device` (the SDF bank too, when one is held)."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value.to(device) if value is not None else None
        return ObjectTables(**values)

    def sdf_bank(self, device: torch.device) -> SDFBank:
        """The SDF grids on `device`: the held bank, or the catalog's (built and cached on first use)."""
        if self.sdf is None:
            return sdf_bank(device)
        if self.sdf.volume.device != device:
            self.sdf = self.sdf.to(device)
        return self.sdf

    def signed_distance(
        self, class_ids: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor, points: torch.Tensor
    ) -> torch.Tensor:
        """Signed distances (B, N) metres from camera-frame points (B, N, 3) to objects posed by (B, 3, 3), (B, 3)."""
        return self.sdf_bank(points.device).query(class_ids, rot, trans, points)


def symmetric_rotation_error(
    pred_rot: torch.Tensor,
    gt_rot: torch.Tensor,
    kind: torch.Tensor,
    axis: torch.Tensor,
    rotations: torch.Tensor,
    geodesic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Rotation error (radians) that ignores each object's symmetry.

    None: the geodesic angle. Continuous about an axis a: the angle between R_pred a and R_gt a, which is the
    smallest geodesic angle over all rotations about a. Discrete: the smallest geodesic angle over the set.

    Args:
        pred_rot, gt_rot: (B, 3, 3). kind: (B,) long. axis: (B, 3). rotations: (B, K, 3, 3).
        geodesic: function (..., 3, 3) x2 -> (...) radians.

    Returns:
        (B,) radians.
    """
    plain = geodesic(pred_rot, gt_rot)
    # discrete: R_gt S_k for every symmetry S_k (identity padding repeats the plain angle)
    candidates = gt_rot[:, None] @ rotations  # (B, K, 3, 3)
    discrete = geodesic(pred_rot[:, None].expand_as(candidates), candidates).amin(dim=1)
    a_pred = (pred_rot @ axis[..., None])[..., 0]  # (B, 3)
    a_gt = (gt_rot @ axis[..., None])[..., 0]
    # atan2(|a x b|, a . b): accurate at 0 and pi, unlike acos; the epsilon keeps the norm's gradient finite at 0
    cross = torch.sqrt(torch.linalg.cross(a_pred, a_gt).square().sum(dim=-1) + 1e-12)
    continuous = torch.atan2(cross, (a_pred * a_gt).sum(dim=-1))
    out = torch.where(kind == SYMMETRY_DISCRETE, discrete, plain)
    return torch.where(kind == SYMMETRY_CONTINUOUS, continuous, out)
