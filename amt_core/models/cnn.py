"""A plain CNN hand-pose regressor: the floor the AMT must beat to earn its complexity (`scripts/side_by_side.sh`).

Five blocks of (3x3 conv, GroupNorm, GELU) x2 with a stride-2 first conv, global average pooling, an MLP to the
root-relative joints (a canonical hand plus a residual) and the root placed as the AMT places it (`root_from_image`:
wrist pixel and apparent size with the sample's own K). No pretrained weights, no attention, no local frames. It
returns `AMTOutput` with joints only, so it trains and evaluates through the same trainer, loss and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from amt_core.geometry.camera import project_to_image
from amt_core.geometry.frames import CANONICAL_JOINTS
from amt_core.joints import NUM_JOINTS
from amt_core.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from amt_core.models.baseline import joints_from_output
from amt_core.models.conv_trunk import conv_block, conv_widths
from amt_core.schema.output import AMTOutput


@dataclass(frozen=True, kw_only=True)
class CNNConfig:
    width: int = 32
    """Channels of the first block (doubled each block, capped at 8x), >= 8."""
    blocks: int = 5
    """Stride-2 blocks, in [1, 8]."""
    hidden: int = 256
    """Width of the MLP's hidden layer, >= 8."""
    hand_extent: float = 0.2
    """Reference hand size (metres) for depth from apparent size, as in the hand encoder, > 0."""

    def __post_init__(self) -> None:
        if self.width < 8:
            raise ValueError(f"CNNConfig.width must be >= 8, got {self.width}")
        if not 1 <= self.blocks <= 8:
            raise ValueError(f"CNNConfig.blocks must be in [1, 8], got {self.blocks}")
        if self.hidden < 8:
            raise ValueError(f"CNNConfig.hidden must be >= 8, got {self.hidden}")
        if self.hand_extent <= 0:
            raise ValueError(f"CNNConfig.hand_extent must be > 0 metres, got {self.hand_extent}")


class PlainCNN(nn.Module):
    Config = CNNConfig

    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        widths = conv_widths(config.width, config.blocks)
        self.features = nn.Sequential(*(conv_block(cin, cout) for cin, cout in zip([3, *widths[:-1]], widths)))
        self.head = nn.Sequential(
            nn.Linear(widths[-1], config.hidden), nn.GELU(), nn.Linear(config.hidden, NUM_JOINTS * 3 + 3)
        )
        self.register_buffer("template", torch.tensor(CANONICAL_JOINTS), persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.zero_()

    def param_group_of(self, name: str) -> str:
        return "encoders" if name.startswith("features.") else "decoders"

    def forward(self, batch: dict) -> AMTOutput:
        image, K = batch["image"], batch["K"].to(batch["image"].dtype)
        pooled = self.features((image - self.mean) / self.std).mean(dim=(2, 3))
        out = self.head(pooled)
        joints3d = joints_from_output(out, self.template, K, tuple(image.shape[-2:]), self.config.hand_extent)
        return AMTOutput(joints3d=joints3d, joints2d=project_to_image(joints3d, K))
