"""Convolutional trunks for the scratch backbones: a plain CNN (`cnn`) and conv stages under a few transformer blocks
(`hybrid`), each giving the three feature levels the heads read, as the ViT does.

Both start with the plain CNN's blocks (`conv_block`: a stride-2 3x3 convolution and a 3x3 convolution, GroupNorm,
GELU; widths doubling from `width`, capped at 8x). Conv stages before attention are what lets a transformer trained
from scratch on little data and compute learn like a CNN (Xiao et al. 2021; LeViT, MobileViT, FastViT, EfficientViT).

- `cnn`: log2(stride) + 1 blocks; levels are the blocks at stride/2, stride and 2 x stride (the CNN regressor's own
  trunk, `models.cnn`, at the same widths).
- `hybrid`: log2(stride) blocks, a 1x1 projection to `embed_dim`, a class token and learned positions, then `depth`
  timm transformer blocks on the stride-`stride` tokens; levels are the block at stride/2, the middle transformer
  block (the last conv block when depth < 2) and the last transformer block.

The global feature is the class token and the mean of the last level (`hybrid`), or the mean alone (`cnn`).
"""

from __future__ import annotations

import math

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Block as VitBlock
from torch import nn

from amt_core.models.attention import TimmAttention


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """(3x3 stride-2 conv, GroupNorm, GELU, 3x3 conv, GroupNorm, GELU): halves the resolution."""
    groups = math.gcd(8, cout)
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.GELU(),
    )


def conv_widths(width: int, blocks: int) -> list[int]:
    """Channels of each block: `width` doubling, capped at 8x."""
    return [min(width * 2**i, width * 8) for i in range(blocks)]


class ConvTrunk(nn.Module):
    """Image (B, 3, H, W), normalised -> three levels [(B, C_i, h_i, w_i)], their strides, the global feature, and the
    transformer blocks' outputs for attention capture."""

    def __init__(
        self,
        kind: str,
        *,
        stride: int,
        width: int,
        img_size: int,
        embed_dim: int = 192,
        depth: int = 0,
        num_heads: int = 3,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if kind not in ("cnn", "hybrid"):
            raise ValueError(f"ConvTrunk kind must be 'cnn' or 'hybrid', got {kind!r}")
        self.kind = kind
        self.stride = stride
        steps = int(math.log2(stride))
        blocks = steps + 1 if kind == "cnn" else steps
        widths = conv_widths(width, blocks)
        self.stages = nn.ModuleList(conv_block(cin, cout) for cin, cout in zip([3, *widths[:-1]], widths))
        self.blocks = nn.ModuleList()
        if kind == "cnn":
            self.level_dims = (widths[steps - 2], widths[steps - 1], widths[steps])
            self.global_dim = widths[steps]
            return
        grid = max(1, img_size // stride)
        self.proj = nn.Conv2d(widths[-1], embed_dim, 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, embed_dim) * 0.02)
        self.grid = grid
        rates = torch.linspace(0, drop_path, depth).tolist() if depth else []
        self.blocks.extend(
            VitBlock(embed_dim, num_heads, qkv_bias=True, drop_path=rate, attn_layer=TimmAttention) for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.level_dims = (widths[steps - 2], embed_dim, embed_dim)
        self.global_dim = 2 * embed_dim

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], tuple[float, ...], torch.Tensor]:
        """image (B, 3, H, W) normalised -> (three maps shallow to deep, their strides, (B, global_dim))."""
        x = image
        stages = []
        for stage in self.stages:
            x = stage(x)
            stages.append(x)
        s = float(self.stride)
        if self.kind == "cnn":
            deep = stages[-1]
            return [stages[-3], stages[-2], deep], (s / 2, s, 2 * s), deep.mean(dim=(2, 3))
        x = self.proj(x)
        B, C, h, w = x.shape
        pos = self.pos_embed
        if (h, w) != (self.grid, self.grid):
            pos = resample_abs_pos_embed(pos, (h, w), (self.grid, self.grid), num_prefix_tokens=0)
        tokens = torch.cat([self.cls_token.expand(B, -1, -1), x.flatten(2).transpose(1, 2) + pos], dim=1)
        middle = x
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index == len(self.blocks) // 2 - 1:
                middle = self._as_map(self.norm(tokens), h, w)
        tokens = self.norm(tokens)
        deep = self._as_map(tokens, h, w)
        pooled = torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=-1)
        return [stages[-2], middle, deep], (s / 2, s, s), pooled

    @staticmethod
    def _as_map(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, 1 + h w, C) with a class token -> (B, C, h, w)."""
        return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
