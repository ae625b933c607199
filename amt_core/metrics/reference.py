"""The training data's mean root-relative hand pose, the trivial predictor every accuracy figure stands beside.

The trainer accumulates it from the batches it trains on (on the device, no host sync), keeps it in its state for an
exact resume, and writes it into every checkpoint's config as `reference_pose`; `amt-core eval` and the trainer's
validation score it as a constant prediction on the same samples as the model (`MetricAccumulator`).
"""

from __future__ import annotations

import torch

from amt_core.joints import NUM_JOINTS


class MeanPose:
    """Running mean of root-relative joints (21, 3), metres, over the samples that have ground-truth joints."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.total = torch.zeros(NUM_JOINTS, 3, dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, joints3d: torch.Tensor, valid: torch.Tensor) -> None:
        """Add a batch: joints3d (B, 21, 3) metres in any frame, valid (B,) bool (samples with 3D joints)."""
        joints = joints3d.detach().to(self.total.device, torch.float64)
        relative = joints - joints[:, :1]
        weight = valid.detach().to(self.total.device, torch.float64)
        self.total += (relative * weight[:, None, None]).sum(dim=0)
        self.count += weight.sum()

    def mean(self) -> torch.Tensor | None:
        """(21, 3) metres on the CPU, or None before any sample with joints (reads the device once)."""
        count = float(self.count)
        return None if count == 0 else (self.total / count).cpu()

    def state_dict(self) -> dict:
        return {"total": self.total.cpu(), "count": self.count.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.total = state["total"].to(self.total.device, torch.float64)
        self.count = state["count"].to(self.count.device, torch.float64)
