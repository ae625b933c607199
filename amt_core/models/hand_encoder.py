"""The multi-coordinate hand encoder: 22 local frames (`amt_core.geometry.frames`), attention combines them.

1. From the backbone's global token, a first skeleton: root-relative joints (a canonical open hand plus a learned
   residual) and the root placed the way HaMeR/weak-perspective models do it but with the sample's real K: the
   wrist's pixel position (u, v) and an apparent hand size s, depth z = fx * hand_extent / (W * s), then
   unprojected with K. Depth is thus tied to the focal length and the image size, which one image does determine.
2. The 22 frames are built from that skeleton (stop-gradient: they are a geometric encoding, not a target). Each frame
   becomes a token: all 21 joints in its local coordinates, its pose relative to the root, the image feature sampled
   at its projected origin, and a learned frame-type embedding; a global token joins them.
3. Transformer blocks: self-attention over the frame tokens, cross-attention to the image tokens, MLP (DropPath,
   FeatureNoise after each block).
4. Every frame token predicts all 21 joints in its own coordinates (a residual on the first skeleton) plus a
   per-joint weight; the joints are the softmax-weighted mix of the 22 frames' predictions mapped back to the
   camera frame, so the attention decides which local frames to trust for each joint. Their mean and log-variance
   go through SigmaReparam. A pooled token predicts MANO-layout pose (45), shape (10), global rotation (6D ->
   axis-angle) and translation (wrist position plus a learned offset, camera frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import roma
import torch
from torch import nn

from amt_core.geometry.camera import project_to_image, unproject_pixels
from amt_core.geometry.frames import CANONICAL_JOINTS, NUM_FRAMES, from_local, local_frames, to_local
from amt_core.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
from amt_core.joints import NUM_JOINTS
from amt_core.models.layers import Block, FeatureNoise, FeatureNoiseConfig, SigmaReparam, sample_at_pixels

# Output scales: a unit of a head's output is this many metres (joints) so default-initialised layers start small.
_LOCAL_SCALE = 0.05
_TRANS_SCALE = 0.05


@dataclass(frozen=True, kw_only=True)
class HandEncoderConfig:
    depth: int = 2
    """Transformer blocks over the frame tokens, >= 1."""
    block: Block.Config = field(default_factory=Block.Config)
    """Heads, MLP ratio, DropPath and dropout of each block."""
    sigma: SigmaReparam.Config = field(default_factory=SigmaReparam.Config)
    """The sigma reparameterisation of the coarse joints."""
    hand_extent: float = 0.2
    """Reference hand size (metres) that turns the predicted apparent size into depth, > 0."""

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"HandEncoderConfig.depth must be >= 1, got {self.depth}")
        if self.hand_extent <= 0:
            raise ValueError(f"HandEncoderConfig.hand_extent must be > 0 metres, got {self.hand_extent}")


@dataclass
class HandEncoderOutput:
    joints: torch.Tensor
    """(B, 21, 3) coarse joints (a sample in training when SigmaReparam is on, else the mean), camera frame."""
    joints_logvar: torch.Tensor
    """(B, 21, 3) log-variance, metres^2."""
    kl: torch.Tensor
    """() SigmaReparam's KL term."""
    initial: torch.Tensor
    """(B, 21, 3) the first skeleton the frames were built from."""
    frames: torch.Tensor
    """(B, 22, 4, 4) the local frames."""
    frame_weights: torch.Tensor
    """(B, 22, 21) how much each frame contributes to each joint (sums to 1 over frames)."""
    pose: torch.Tensor
    shape: torch.Tensor
    rot: torch.Tensor
    trans: torch.Tensor
    tokens: torch.Tensor
    """(B, 23, C) hand tokens: the global token then the 22 frame tokens."""


def root_from_image(params: torch.Tensor, K: torch.Tensor, image_hw: tuple[int, int], extent: float) -> torch.Tensor:
    """(B, 3) raw (du, dv, log size) -> (B, 3) root in the camera frame with the sample's K.

    u = W (0.5 + du), v = H (0.5 + dv), apparent size s = exp(log size) (fraction of W), z = fx * extent / (W s).
    """
    H, W = image_hw
    uv = torch.stack([W * (0.5 + params[:, 0]), H * (0.5 + params[:, 1])], dim=-1)
    size = torch.exp(params[:, 2].clamp(-6.0, 6.0))
    depth = K[:, 0, 0] * extent / (W * size)
    return unproject_pixels(uv.unsqueeze(1), depth.unsqueeze(1), K).squeeze(1)


class HandEncoder(nn.Module):
    Config = HandEncoderConfig

    def __init__(self, config: HandEncoderConfig, dim: int, noise: FeatureNoiseConfig):
        super().__init__()
        self.config = config
        self.register_buffer("template", torch.tensor(CANONICAL_JOINTS), persistent=False)  # (21, 3) metres
        self.init_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, NUM_JOINTS * 3 + 3))
        self.geometry_embed = nn.Linear(NUM_JOINTS * 3 + 9, dim)
        self.feature_embed = nn.Linear(dim, dim)
        self.frame_embed = nn.Parameter(torch.randn(NUM_FRAMES, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(config.block, dim) for _ in range(config.depth))
        self.noise = FeatureNoise(noise)
        self.norm = nn.LayerNorm(dim)
        # Per frame: local joints residual (63), per-joint mixing logit (21), per-joint log-variance (63).
        self.frame_head = nn.Linear(dim, NUM_JOINTS * 7)
        self.mano_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 45 + 10 + 6 + 3))
        self.sigma = SigmaReparam(config.sigma)
        with torch.no_grad():
            self.init_head[-1].weight.mul_(0.1)
            self.init_head[-1].bias.zero_()
            self.frame_head.weight.mul_(0.1)
            self.frame_head.bias.zero_()
            self.mano_head[-1].weight.mul_(0.1)
            self.mano_head[-1].bias.zero_()
            self.mano_head[-1].bias[55:61] = matrix_to_rot6d(torch.eye(3))

    def forward(
        self,
        global_token: torch.Tensor,
        fused: torch.Tensor,
        stride: float,
        K: torch.Tensor,
        image_hw: tuple[int, int],
    ) -> HandEncoderOutput:
        """global_token (B, C), fused (B, C, h, w) features, K (B, 3, 3) -> HandEncoderOutput."""
        B = global_token.shape[0]
        init = self.init_head(global_token)
        rel = self.template + _LOCAL_SCALE * init[:, : NUM_JOINTS * 3].view(B, NUM_JOINTS, 3)
        root = root_from_image(init[:, NUM_JOINTS * 3 :], K, image_hw, self.config.hand_extent)
        initial = root.unsqueeze(1) + rel - rel[:, :1]  # (B, 21, 3) camera frame, wrist at the root

        frames = local_frames(initial.detach())  # (B, 22, 4, 4)
        local = to_local(initial, frames)  # (B, 22, 21, 3), differentiable in the joints
        rotation6d = matrix_to_rot6d(frames[..., :3, :3])
        origin_rel = frames[..., :3, 3] - root.detach().unsqueeze(1)
        geometry = torch.cat([local.flatten(2) * 10.0, rotation6d, origin_rel * 10.0], dim=-1)  # decimetres
        origin_uv = project_to_image(frames[..., :3, 3], K)
        sampled = sample_at_pixels(fused, origin_uv, stride)  # (B, 22, C)
        tokens = self.geometry_embed(geometry) + self.feature_embed(sampled) + self.frame_embed
        tokens = torch.cat([global_token.unsqueeze(1), tokens], dim=1)  # (B, 23, C)
        image_tokens = fused.flatten(2).transpose(1, 2)  # (B, hw, C)
        for block in self.blocks:
            tokens = self.noise(block(tokens, image_tokens))
        tokens = self.norm(tokens)

        head = self.frame_head(tokens[:, 1:])  # (B, 22, 147)
        residual = head[..., : NUM_JOINTS * 3].view(B, NUM_FRAMES, NUM_JOINTS, 3)
        logits = head[..., NUM_JOINTS * 3 : NUM_JOINTS * 4]  # (B, 22, 21)
        logvar_raw = head[..., NUM_JOINTS * 4 :].view(B, NUM_FRAMES, NUM_JOINTS, 3)
        per_frame = from_local(local + _LOCAL_SCALE * residual, frames)  # (B, 22, 21, 3) camera frame
        weights = logits.softmax(dim=1)
        mu = (weights.unsqueeze(-1) * per_frame).sum(dim=1)  # (B, 21, 3)
        logvar_mix = (weights.unsqueeze(-1) * logvar_raw).sum(dim=1)
        joints, logvar, kl = self.sigma(mu, logvar_mix)

        mano = self.mano_head(tokens.mean(dim=1))
        rot = roma.rotmat_to_rotvec(rot6d_to_matrix(mano[:, 55:61]))
        trans = joints[:, 0] + _TRANS_SCALE * mano[:, 61:64]
        return HandEncoderOutput(
            joints=joints,
            joints_logvar=logvar,
            kl=kl,
            initial=initial,
            frames=frames,
            frame_weights=weights,
            pose=mano[:, :45],
            shape=mano[:, 45:55],
            rot=rot,
            trans=trans,
            tokens=tokens,
        )
