"""Adaptive MPJPE: the seed's learnable per-joint weights with a fixed fingertip prior of 1.5x, kept from collapse.

Minimising `sum_j w_j e_j` over learnable weights w_j drives them all to zero, so the learnable weight enters with a
regulariser r(w) = w - 1 - log w (zero at w = 1, growing without bound as w -> 0) and a floor:

    w_j = floor + softplus(raw_j)                                   (initialised to 1)
    loss = sum_j prior_j * (w_j * e_j + scale * r(w_j)) / sum_j prior_j

For a joint whose mean error is e the optimum is w = scale / (scale + e): 1 for joints the model gets right, smoothly
lower (never below `floor`, never zero) for joints that stay hard, e.g. often occluded, so that label noise on them
does not dominate; the fixed prior still weights fingertips 1.5x. The pair (w, r) is a robust loss in e
(approximately e for e << scale, growing only logarithmically for e >> scale). At the initial weights a perfect
prediction has loss 0. The weights are `nn.Parameter`s: the trainer must give `AMTLoss.parameters()` to its
optimizer, and they round-trip through `state_dict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from amt_core.joints import FINGERTIPS, NUM_JOINTS


@dataclass(frozen=True, kw_only=True)
class AdaptiveConfig:
    """Settings of the adaptive per-joint weights."""

    fingertip_prior: float = 1.5
    """Fixed importance of the five fingertips relative to the other joints (the seed's 1.5x), > 0."""
    floor: float = 0.1
    """Lower bound of each learnable weight, in (0, 1): the weights can never collapse below it."""
    scale: float = 0.05
    """Error scale (metres, > 0) of the regulariser: joints with mean error `scale` settle at weight 0.5."""
    learnable: bool = True
    """False keeps every learnable weight at 1 (plain prior-weighted MPJPE)."""

    def __post_init__(self) -> None:
        if not self.fingertip_prior > 0:
            raise ValueError(f"AdaptiveConfig.fingertip_prior must be > 0, got {self.fingertip_prior}")
        if not 0 < self.floor < 1:
            raise ValueError(f"AdaptiveConfig.floor must be in (0, 1), got {self.floor}")
        if not self.scale > 0:
            raise ValueError(f"AdaptiveConfig.scale must be > 0 (metres), got {self.scale}")


def joint_prior(fingertip_prior: float = 1.5) -> torch.Tensor:
    """(21,) fixed importance: 1 everywhere, `fingertip_prior` at the fingertips."""
    prior = torch.ones(NUM_JOINTS)
    prior[list(FINGERTIPS)] = fingertip_prior
    return prior


class AdaptiveMPJPELoss(nn.Module):
    """Per-sample adaptive MPJPE over per-joint distances; see the module docstring for the formulation."""

    def __init__(self, config: AdaptiveConfig | None = None) -> None:
        super().__init__()
        self.config = config or AdaptiveConfig()
        self.register_buffer("prior", joint_prior(self.config.fingertip_prior), persistent=False)
        init = math.log(math.expm1(1.0 - self.config.floor))  # softplus(init) + floor == 1
        self.raw_weights = nn.Parameter(torch.full((NUM_JOINTS,), init), requires_grad=self.config.learnable)

    def learned_weights(self) -> torch.Tensor:
        """(21,) the learnable factors w_j >= floor (1 at initialisation)."""
        if not self.config.learnable:
            return torch.ones_like(self.raw_weights)
        return self.config.floor + F.softplus(self.raw_weights)

    def joint_weights(self) -> torch.Tensor:
        """(21,) effective weights prior_j * w_j, detached, for logging."""
        return (self.prior * self.learned_weights()).detach()

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        """Per-sample loss from per-joint distances.

        Args:
            distances: (B, 21) metres, >= 0.

        Returns:
            (B,) metres-scaled loss.
        """
        weights = self.learned_weights().to(distances.dtype)  # (21,)
        prior = self.prior.to(distances.dtype)
        regulariser = self.config.scale * (weights - 1.0 - torch.log(weights))  # (21,) >= 0
        per_joint = prior * (weights * distances + regulariser)  # (B, 21)
        return per_joint.sum(dim=-1) / prior.sum()
