"""The loss settings that take one of a fixed set of values, as `StrEnum`s (`AMTLoss.Config.contact_loss`,
`physics_pose`). A member equals its string and JSON writes it as that string, so `--set` and config.json keep the
strings they always had.
"""

from __future__ import annotations

from enum import StrEnum


class ContactLoss(StrEnum):
    """`loss.contact_loss`: the per-vertex contact loss."""

    BCE = "bce"
    """Binary cross entropy."""
    FOCAL = "focal"
    """Focal loss (Lin et al. 2017): alpha_t (1 - p_t)^gamma times BCE."""


class PhysicsPose(StrEnum):
    """`loss.physics_pose`: the object pose the physics terms use."""

    PREDICTED = "predicted"
    """The model's prediction (gradients reach the object too)."""
    TARGET = "target"
    """The ground truth."""
