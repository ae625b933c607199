"""The contact pipeline: hand and object tokens fused by cross-attention, then per-vertex contact and contact slots.

Fusion follows the seed's pattern in both directions: hand = hand + dropout(cross_attn(hand, object)), and object =
object + dropout(cross_attn(object, hand)), each followed by an MLP (pre-norm, DropPath). Per hand vertex, a narrow
feature (a learned per-vertex embedding plus the vertex's position in the object's frame and relative to the wrist)
is modulated (FiLM) by the fused hand and object summary tokens and scored: attention from each of the ~1.5k
vertices to every token cost more than the rest of the head on a CPU, while FiLM keeps the per-vertex work to two
narrow linear layers, and the geometry carries what decides contact (distance to the object). C learned slot
queries (DETR-style) attend to the fused tokens; each slot's point is an attention-weighted average of the predicted
hand vertices (contacts lie on the hand surface) plus a small learned offset, with a confidence in [0, 1] and a 3D
force in newtons (camera frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from amt_core.models.attention import Attention
from amt_core.models.layers import Block

_POINT_OFFSET_SCALE = 0.01  # metres per unit of the point-offset head


@dataclass(frozen=True, kw_only=True)
class ContactHeadConfig:
    depth: int = 1
    """Bidirectional cross-attention fusion layers, >= 1."""
    block: Block.Config = field(default_factory=Block.Config)
    """Heads, dropout and DropPath of the fusion layers."""
    num_contacts: int = 16
    """Contact slots C, >= 1."""
    force_scale: float = 5.0
    """Newtons per unit of the force head's output, > 0."""
    vertex_dim: int = 32
    """Width of the per-vertex branch (it runs on every hand vertex, so it is kept narrow), >= 4."""

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"ContactHeadConfig.depth must be >= 1, got {self.depth}")
        if self.num_contacts < 1:
            raise ValueError(f"ContactHeadConfig.num_contacts must be >= 1, got {self.num_contacts}")
        if self.force_scale <= 0:
            raise ValueError(f"ContactHeadConfig.force_scale must be > 0, got {self.force_scale}")
        if self.vertex_dim < 4:
            raise ValueError(f"ContactHeadConfig.vertex_dim must be >= 4, got {self.vertex_dim}")


@dataclass
class ContactOutput:
    prob: torch.Tensor
    """(B, V) contact probability per hand vertex."""
    points: torch.Tensor
    """(B, C, 3) metres, camera frame."""
    conf: torch.Tensor
    """(B, C) in [0, 1]."""
    forces: torch.Tensor
    """(B, C, 3) newtons, camera frame."""


class ContactHead(nn.Module):
    Config = ContactHeadConfig

    def __init__(self, config: ContactHeadConfig, dim: int, num_verts: int):
        super().__init__()
        self.config = config
        # Cross-attention only: the tokens already attended among themselves in their own encoders.
        self.hand_layers = nn.ModuleList(Block(config.block, dim, self_attention=False) for _ in range(config.depth))
        self.object_layers = nn.ModuleList(Block(config.block, dim, self_attention=False) for _ in range(config.depth))
        vertex_dim = config.vertex_dim
        self.vertex_embed = nn.Parameter(torch.randn(num_verts, vertex_dim) * 0.02)
        self.vertex_geometry = nn.Linear(6, vertex_dim)
        self.vertex_film = nn.Linear(2 * dim, 2 * vertex_dim)
        self.vertex_mlp = nn.Sequential(nn.GELU(), nn.Linear(vertex_dim, vertex_dim), nn.GELU())
        self.vertex_head = nn.Linear(vertex_dim, 1)
        self.slots = nn.Parameter(torch.randn(config.num_contacts, dim) * 0.02)
        self.slot_attn = Attention(config.block.attention, dim)
        self.slot_norm = nn.LayerNorm(dim)
        self.slot_query = nn.Linear(dim, vertex_dim)
        self.slot_head = nn.Linear(dim, 3 + 1 + 3)

    def forward(
        self,
        hand_tokens: torch.Tensor,
        object_tokens: torch.Tensor,
        verts: torch.Tensor,
        wrist: torch.Tensor,
        obj_rot: torch.Tensor,
        obj_trans: torch.Tensor,
    ) -> ContactOutput:
        """hand_tokens (B, Th, C), object_tokens (B, To, C), verts (B, V, 3), wrist (B, 3), obj pose -> contacts."""
        hand, obj = hand_tokens, object_tokens
        for hand_layer, object_layer in zip(self.hand_layers, self.object_layers):
            hand, obj = hand_layer(hand, obj), object_layer(obj, hand)

        in_object = (verts - obj_trans.unsqueeze(1)) @ obj_rot  # (B, V, 3) object frame
        from_wrist = verts - wrist.unsqueeze(1)
        geometry = torch.cat([in_object, from_wrist], dim=-1) * 10.0  # decimetres
        summary = torch.cat([hand[:, 0], obj[:, 0]], dim=-1)  # (B, 2C) the fused global and pooled object tokens
        scale, shift = self.vertex_film(summary).unsqueeze(1).chunk(2, dim=-1)
        vertex_feat = self.vertex_embed + self.vertex_geometry(geometry)  # (B, V, vertex_dim)
        vertex_feat = self.vertex_mlp(vertex_feat * (1.0 + scale) + shift)
        prob = torch.sigmoid(self.vertex_head(vertex_feat).squeeze(-1))

        B = hand.shape[0]
        fused = torch.cat([hand, obj], dim=1)  # (B, Th + To, C)
        slots = self.slots.expand(B, -1, -1)
        slot_feat = self.slot_norm(slots + self.slot_attn(slots, fused))  # (B, C, dim)
        scores = self.slot_query(slot_feat) @ vertex_feat.transpose(1, 2) / math.sqrt(vertex_feat.shape[-1])
        on_hand = scores.softmax(dim=-1) @ verts  # (B, C, 3)
        out = self.slot_head(slot_feat)
        return ContactOutput(
            prob=prob,
            points=on_hand + _POINT_OFFSET_SCALE * torch.tanh(out[..., :3]),
            conf=torch.sigmoid(out[..., 3]),
            forces=self.config.force_scale * out[..., 4:7],
        )
