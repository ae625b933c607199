"""The object pipeline: centre-heatmap detection, an encoder on the detected region, 6D pose and class.

Detection is CenterNet-style on the fused feature map: a centre heatmap (logits, exposed for a focal heatmap loss),
a sub-cell offset and a log box size per cell. The centre and box are read out by soft-argmax over the heatmap (one
object per image, differentiable). `torchvision.ops.roi_align` crops the fused map to the box; its cells become
object tokens (with a learned position embedding and a token for the box geometry), one self-attention block and a
learned object query pool them. Heads: 6D rotation -> proper rotation (Gram-Schmidt), class logits, object-present
logit, and the translation like the hand's root: the object origin's pixel (box centre plus a learned offset) and
depth from the box size and K, z = fx * extent / box_size_px with a learned per-image metric extent, unprojected
with the sample's K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torchvision.ops import roi_align

from amt_core.geometry.camera import unproject_pixels
from amt_core.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
from amt_core.models.attention import Attention
from amt_core.models.layers import Block, FeatureNoise, FeatureNoiseConfig

_MIN_BOX_PX = 2.0


@dataclass(frozen=True, kw_only=True)
class ObjectHeadConfig:
    num_classes: int = 16
    """Object classes (the model factory sets it from `amt_core.objects.num_classes()`), >= 1."""
    roi_size: int = 7
    """Cells per side of the region crop, >= 1."""
    block: Block.Config = field(default_factory=Block.Config)
    """The object-token self-attention block."""
    object_extent: float = 0.15
    """Initial metric size (metres) of an object, used for depth from the box size, > 0."""

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"ObjectHeadConfig.num_classes must be >= 1, got {self.num_classes}")
        if self.roi_size < 1:
            raise ValueError(f"ObjectHeadConfig.roi_size must be >= 1, got {self.roi_size}")
        if self.object_extent <= 0:
            raise ValueError(f"ObjectHeadConfig.object_extent must be > 0 metres, got {self.object_extent}")


@dataclass
class ObjectOutput:
    logits: torch.Tensor
    """(B, N) class logits."""
    rot: torch.Tensor
    """(B, 3, 3) proper rotation."""
    trans: torch.Tensor
    """(B, 3) metres, camera frame."""
    center2d: torch.Tensor
    """(B, 2) pixels."""
    box: torch.Tensor
    """(B, 4) (u0, v0, u1, v1) pixels."""
    present: torch.Tensor
    """(B,) logit."""
    heatmap: torch.Tensor
    """(B, h, w) centre heatmap logits on the fused map's grid."""
    tokens: torch.Tensor
    """(B, 1 + roi_size^2, C) object tokens (the pooled one first)."""


class ObjectHead(nn.Module):
    Config = ObjectHeadConfig

    def __init__(self, config: ObjectHeadConfig, dim: int, noise: FeatureNoiseConfig):
        super().__init__()
        self.config = config
        self.detect = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=1), nn.GELU(), nn.Conv2d(dim, 1 + 2 + 2, kernel_size=1)
        )
        cells = config.roi_size**2
        self.roi_pos = nn.Parameter(torch.randn(cells, dim) * 0.02)
        self.box_embed = nn.Linear(4, dim)
        self.present_head = nn.Linear(2 * dim, 1)
        self.block = Block(config.block, dim, cross=False)
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pool = Attention(config.block.attention, dim)
        self.noise = FeatureNoise(noise)
        self.norm = nn.LayerNorm(dim)
        self.pose_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 6 + 3))
        self.class_head = nn.Linear(dim, config.num_classes)
        with torch.no_grad():
            self.detect[-1].bias.zero_()
            self.detect[-1].bias[3:5] = math.log(0.3)  # boxes start at 30% of the image
            self.pose_head[-1].weight.mul_(0.1)
            self.pose_head[-1].bias.zero_()
            self.pose_head[-1].bias[:6] = matrix_to_rot6d(torch.eye(3))

    def forward(
        self,
        fused: torch.Tensor,
        stride: float,
        global_token: torch.Tensor,
        K: torch.Tensor,
        image_hw: tuple[int, int],
    ) -> ObjectOutput:
        """fused (B, C, h, w), global_token (B, C), K (B, 3, 3) -> ObjectOutput."""
        B, C, h, w = fused.shape
        H, W = image_hw
        det = self.detect(fused)  # (B, 5, h, w)
        heatmap = det[:, 0]
        prob = heatmap.flatten(1).softmax(dim=-1).view(B, 1, h, w)
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=fused.dtype, device=fused.device),
            torch.arange(w, dtype=fused.dtype, device=fused.device),
            indexing="ij",
        )
        cell_u = (xs + 0.5 + torch.tanh(det[:, 1])) * stride - 0.5  # (B, h, w) pixel centre of each cell + offset
        cell_v = (ys + 0.5 + torch.tanh(det[:, 2])) * stride - 0.5
        center = torch.stack([(prob[:, 0] * cell_u).sum((1, 2)), (prob[:, 0] * cell_v).sum((1, 2))], dim=-1)
        log_size = (prob * det[:, 3:5]).sum((2, 3)).clamp(-6.0, 1.0)  # (B, 2) log fraction of (W, H)
        size = torch.exp(log_size) * center.new_tensor([W, H]) + _MIN_BOX_PX
        box = torch.cat([center - size / 2, center + size / 2], dim=-1)  # (B, 4)

        rois = torch.cat([torch.arange(B, dtype=box.dtype, device=box.device).unsqueeze(1), box.detach()], dim=1)
        crop = roi_align(fused, rois, output_size=self.config.roi_size, spatial_scale=1.0 / stride, aligned=True)
        box_geometry = torch.cat(
            [(center - K[:, :2, 2]) / K[:, 0, :1], torch.log(size / K[:, 0, :1])], dim=-1
        )  # focal-normalised centre and log size
        tokens = crop.flatten(2).transpose(1, 2) + self.roi_pos + self.box_embed(box_geometry).unsqueeze(1)
        tokens = self.noise(self.block(tokens))
        pooled = self.pool(self.query.expand(B, -1, -1), tokens)  # (B, 1, C)
        tokens = self.norm(torch.cat([pooled, tokens], dim=1))
        summary = tokens[:, 0]

        pose = self.pose_head(summary)
        rot = rot6d_to_matrix(pose[:, :6])
        uv = center + size * 0.5 * torch.tanh(pose[:, 6:8])
        extent = self.config.object_extent * torch.exp(pose[:, 8].clamp(-5.0, 5.0))
        depth = K[:, 0, 0] * extent / size.max(dim=-1).values
        trans = unproject_pixels(uv.unsqueeze(1), depth.unsqueeze(1), K).squeeze(1)
        attended = (prob * fused).sum((2, 3))  # (B, C) features at the detected centre
        present = self.present_head(torch.cat([global_token, attended], dim=-1)).squeeze(-1)
        return ObjectOutput(
            logits=self.class_head(summary),
            rot=rot,
            trans=trans,
            center2d=center,
            box=box,
            present=present,
            heatmap=heatmap,
            tokens=tokens,
        )
