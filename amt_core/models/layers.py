"""Building blocks shared by the model's heads: a pre-norm transformer block and the mode-collapse defences.

`SigmaReparam` (the seed's sigma reparameterisation) samples joints from a predicted Gaussian during training and
returns its KL term and log-variance (the uncertainty estimate). `FeatureNoise` adds Gaussian noise scaled to each
token's feature spread, in training only. DropPath is timm's. Each defence has a switch in its Config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from amt_core.models.attention import Attention


@dataclass(frozen=True, kw_only=True)
class FeatureNoiseConfig:
    enabled: bool = True
    """Add noise to features during training (off in eval regardless)."""
    std: float = 0.05
    """Noise standard deviation relative to each token's feature standard deviation, in [0, 1]."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.std <= 1.0:
            raise ValueError(f"FeatureNoiseConfig.std must be in [0, 1], got {self.std}")


class FeatureNoise(nn.Module):
    """x + std * spread(x) * N(0, 1) in training, where spread is the detached per-token std over `dim`."""

    Config = FeatureNoiseConfig

    def __init__(self, config: FeatureNoiseConfig, dim: int = -1):
        super().__init__()
        self.config = config
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.config.enabled and self.config.std > 0):
            return x
        spread = x.detach().std(dim=self.dim, keepdim=True)
        return x + self.config.std * spread * torch.randn_like(x)


@dataclass(frozen=True, kw_only=True)
class SigmaReparamConfig:
    enabled: bool = True
    """Sample mu + sigma * eps in training and compute the KL term; off: the mean passes through, KL is 0."""
    prior_std: float = 0.01
    """Std (metres) of the Gaussian prior on each coordinate's uncertainty; > 0. The KL pulls sigma towards it."""
    max_abs_logvar: float = 8.0
    """Log-variance (in prior units) is squashed smoothly into [-max, max] so exp() stays finite; > 0."""

    def __post_init__(self) -> None:
        if self.prior_std <= 0:
            raise ValueError(f"SigmaReparamConfig.prior_std must be > 0 metres, got {self.prior_std}")
        if self.max_abs_logvar <= 0:
            raise ValueError(f"SigmaReparamConfig.max_abs_logvar must be > 0, got {self.max_abs_logvar}")


class SigmaReparam(nn.Module):
    """Reparameterised sampling of a prediction from its predicted mean and log-variance.

    The seed's KL, -0.5 (1 + log var - mu^2 - var), would shrink camera-frame joints towards the camera centre;
    here the prior is N(mu, prior_std^2) per coordinate, so the KL, -0.5 mean(1 + lv - exp(lv)) with lv the
    log-variance in prior units, regularises only the uncertainty: it keeps sigma from collapsing to zero or
    exploding, and the injected noise keeps the heads from settling on one constant answer.
    """

    Config = SigmaReparamConfig

    def __init__(self, config: SigmaReparamConfig):
        super().__init__()
        self.config = config

    def forward(self, mu: torch.Tensor, raw_logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mu and raw_logvar of one shape -> (sample, log-variance in metres^2, KL scalar)."""
        bound = self.config.max_abs_logvar
        logvar_unit = bound * torch.tanh(raw_logvar / bound)  # log-variance in prior units
        logvar = logvar_unit + 2.0 * math.log(self.config.prior_std)
        if not self.config.enabled:
            return mu, logvar, mu.new_zeros(())
        kl = -0.5 * (1.0 + logvar_unit - logvar_unit.exp()).mean()
        if not self.training:
            return mu, logvar, kl
        sample = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return sample, logvar, kl


@dataclass(frozen=True, kw_only=True)
class BlockConfig:
    attention: Attention.Config = field(default_factory=Attention.Config)
    """Heads and attention dropout."""
    mlp_ratio: float = 2.0
    """MLP hidden width relative to the model width, > 0."""
    drop_path: float = 0.1
    """Stochastic depth rate (timm DropPath), in [0, 1)."""
    dropout: float = 0.1
    """Dropout on the cross-attention residual (the seed's fusion pattern), in [0, 1)."""

    def __post_init__(self) -> None:
        if self.mlp_ratio <= 0:
            raise ValueError(f"BlockConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")
        for name in ("drop_path", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"BlockConfig.{name} must be in [0, 1), got {getattr(self, name)}")


class Block(nn.Module):
    """Pre-norm transformer block: optional self-attention, optional cross-attention to a context, MLP; DropPath."""

    Config = BlockConfig

    def __init__(
        self,
        config: BlockConfig,
        dim: int,
        *,
        context_dim: int | None = None,
        cross: bool = True,
        self_attention: bool = True,
    ):
        super().__init__()
        if not (cross or self_attention):
            raise ValueError("Block needs self-attention, cross-attention or both")
        self.self_attention = self_attention
        if self_attention:
            self.norm1 = nn.LayerNorm(dim)
            self.self_attn = Attention(config.attention, dim)
        self.cross = cross
        if cross:
            self.norm_q = nn.LayerNorm(dim)
            self.norm_kv = nn.LayerNorm(context_dim or dim)
            self.cross_attn = Attention(config.attention, dim, context_dim=context_dim)
            self.cross_drop = nn.Dropout(config.dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(config.drop_path) if config.drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, dim), context (B, M, context_dim) when built with cross=True -> (B, N, dim)."""
        if self.self_attention:
            x = x + self.drop_path(self.self_attn(self.norm1(x)))
        if self.cross:
            x = x + self.drop_path(self.cross_drop(self.cross_attn(self.norm_q(x), self.norm_kv(context))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def sample_at_pixels(feature_map: torch.Tensor, uv: torch.Tensor, stride: float) -> torch.Tensor:
    """Bilinearly sample a feature map at pixel positions.

    Args:
        feature_map: (B, C, h, w); cell (i, j) covers pixels [j*stride, (j+1)*stride) horizontally.
        uv: (B, N, 2) pixels (pixel centres at integer coordinates).
        stride: pixels per cell.

    Returns:
        (B, N, C); zero outside the map.
    """
    h, w = feature_map.shape[-2:]
    size = uv.new_tensor([w * stride, h * stride])
    grid = (((uv + 0.5) / size) * 2.0 - 1.0).clamp(-2.0, 2.0)  # align_corners=False; far points read zeros
    sampled = torch.nn.functional.grid_sample(
        feature_map, grid.unsqueeze(2), mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (B, C, N, 1)
    return sampled.squeeze(-1).transpose(1, 2)
