"""The seed's "previous approach": one global token -> MLP -> 21 joints, for side-by-side comparison with AMT.

It shares AMT's backbone (same variant, same input) and its root placement (wrist pixel plus depth from the focal
length, `root_from_image`), so a comparison isolates what the seed blames: a single global representation with no
local frames, no pixel-aligned refinement and no collapse defences. It returns `AMTOutput` with joints only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from amt_core.geometry.camera import project_to_image
from amt_core.geometry.frames import CANONICAL_JOINTS
from amt_core.joints import NUM_JOINTS
from amt_core.models.backbone import Backbone
from amt_core.models.hand_encoder import root_from_image
from amt_core.schema.output import AMTOutput


def joints_from_output(
    out: torch.Tensor, template: torch.Tensor, K: torch.Tensor, image_hw: tuple[int, int], extent: float
) -> torch.Tensor:
    """(B, 63 + 3) regressor output -> (B, 21, 3) camera-frame joints, metres: the template plus a residual (0.05 m
    per unit) for the root-relative pose, and the root placed from the wrist pixel and apparent size with K."""
    B = out.shape[0]
    rel = template + 0.05 * out[:, : NUM_JOINTS * 3].view(B, NUM_JOINTS, 3)
    root = root_from_image(out[:, NUM_JOINTS * 3 :], K, image_hw, extent)
    return root.unsqueeze(1) + rel - rel[:, :1]


@dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    backbone: Backbone.Config = field(default_factory=Backbone.Config)
    """The image backbone (only its global token is used)."""
    hidden: int = 256
    """Width of the MLP's hidden layers, >= 8."""
    layers: int = 2
    """Hidden layers of the MLP, >= 1."""
    hand_extent: float = 0.2
    """Reference hand size (metres) for depth from apparent size, as in the hand encoder, > 0."""

    def __post_init__(self) -> None:
        if self.hidden < 8:
            raise ValueError(f"BaselineConfig.hidden must be >= 8, got {self.hidden}")
        if self.layers < 1:
            raise ValueError(f"BaselineConfig.layers must be >= 1, got {self.layers}")
        if self.hand_extent <= 0:
            raise ValueError(f"BaselineConfig.hand_extent must be > 0 metres, got {self.hand_extent}")


class Baseline(nn.Module):
    Config = BaselineConfig

    def __init__(self, config: BaselineConfig):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config.backbone, pyramid=False)
        layers: list[nn.Module] = []
        width = config.backbone.out_dim
        for _ in range(config.layers):
            layers += [nn.Linear(width, config.hidden), nn.GELU()]
            width = config.hidden
        layers.append(nn.Linear(width, NUM_JOINTS * 3 + 3))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("template", torch.tensor(CANONICAL_JOINTS), persistent=False)
        with torch.no_grad():
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.zero_()

    def param_group_of(self, name: str) -> str:
        if name.startswith("backbone.vit."):
            return "encoders" if self.config.backbone.from_scratch else "backbone"
        return "encoders" if name.startswith("backbone.") else "decoders"

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def forward(self, batch: dict) -> AMTOutput:
        image, K = batch["image"], batch["K"].to(batch["image"].dtype)
        features = self.backbone(image)
        out = self.mlp(features.global_token)
        joints3d = joints_from_output(out, self.template, K, tuple(image.shape[-2:]), self.config.hand_extent)
        return AMTOutput(joints3d=joints3d, joints2d=project_to_image(joints3d, K), attention=features.attention)
