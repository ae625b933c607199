"""Pixel-aligned refinement: project the joints with the sample's K, sample the multi-scale features there, move.

Each step projects the current joints with `project_to_image` and the sample's own K, bilinearly samples every
pyramid level at the projected pixels (zeros off the image), and builds one token per joint from the samples, the
joint's root-relative position, a joint embedding and a step embedding. One self-attention block lets the joints
see each other (a finger's evidence constrains its neighbours); a linear head predicts a 3D offset in metres, and
joints += step_size * offset with the step size halving each step (coarse to fine). Weights are shared across steps
(the step embedding tells them apart); every step's joints are returned for the per-step losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from amt_core.geometry.camera import project_to_image
from amt_core.joints import NUM_JOINTS
from amt_core.models.layers import Block, sample_at_pixels

_OFFSET_SCALE = 0.05  # metres per unit of the offset head's output


@dataclass(frozen=True, kw_only=True)
class RefinementConfig:
    steps: int = 3
    """Refinement steps, >= 0 (0 returns the coarse joints)."""
    initial_step: float = 1.0
    """Step size of the first step (halved each step), > 0."""
    block: Block.Config = field(default_factory=Block.Config)
    """The joint self-attention block."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"RefinementConfig.steps must be >= 0, got {self.steps}")
        if self.initial_step <= 0:
            raise ValueError(f"RefinementConfig.initial_step must be > 0, got {self.initial_step}")


class PixelAlignedRefinement(nn.Module):
    Config = RefinementConfig

    def __init__(self, config: RefinementConfig, dim: int, num_levels: int = 3):
        super().__init__()
        self.config = config
        self.feature_proj = nn.Linear(num_levels * dim, dim)
        self.position_proj = nn.Linear(3, dim)
        self.joint_embed = nn.Parameter(torch.randn(NUM_JOINTS, dim) * 0.02)
        self.step_embed = nn.Parameter(torch.randn(max(config.steps, 1), dim) * 0.02)
        self.context_proj = nn.Linear(dim, dim)
        self.block = Block(config.block, dim, cross=False)
        self.norm = nn.LayerNorm(dim)
        self.offset_head = nn.Linear(dim, 3)
        with torch.no_grad():
            self.offset_head.weight.mul_(0.1)
            self.offset_head.bias.zero_()

    def forward(
        self,
        joints: torch.Tensor,
        maps: tuple[torch.Tensor, ...],
        strides: tuple[float, ...],
        K: torch.Tensor,
        context: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """joints (B, 21, 3) metres, maps [(B, C, h_i, w_i)], K (B, 3, 3), context (B, C) -> one (B, 21, 3) a step."""
        steps = []
        step_size = self.config.initial_step
        context_token = self.context_proj(context).unsqueeze(1)
        for step in range(self.config.steps):
            uv = project_to_image(joints, K)  # (B, 21, 2) pixels
            sampled = torch.cat([sample_at_pixels(m, uv, s) for m, s in zip(maps, strides)], dim=-1)
            relative = (joints - joints[:, :1]) * 10.0  # decimetres
            tokens = (
                self.feature_proj(sampled)
                + self.position_proj(relative)
                + self.joint_embed
                + self.step_embed[step]
                + context_token
            )
            offset = self.offset_head(self.norm(self.block(tokens)))
            joints = joints + step_size * _OFFSET_SCALE * offset
            steps.append(joints)
            step_size *= 0.5
        return tuple(steps)
