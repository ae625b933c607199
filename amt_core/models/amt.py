"""The Advanced Manipulation Transformer: backbone -> multi-coordinate hand encoder -> pixel-aligned refinement,
object pipeline and contact pipeline, returning one `AMTOutput`.

The model is pure: it takes a batch dict (at least `image` (B, 3, H, W) RGB in [0, 1] and `K` (B, 3, 3)) and
normalises the image itself; no files, optimizers or GUIs. The hand layer (`amt_core.hand.HandModel` or anything
with its interface) is passed in by the factory and kept frozen. Attention probabilities are filled into the output
only inside `amt_core.models.attention.record_attention(model)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from amt_core.geometry.camera import project_to_image
from amt_core.models.attention import collect_attention
from amt_core.models.backbone import Backbone
from amt_core.models.contact_head import ContactHead
from amt_core.models.hand_encoder import HandEncoder
from amt_core.models.layers import FeatureNoise, FeatureNoiseConfig
from amt_core.models.object_head import ObjectHead
from amt_core.models.refinement import PixelAlignedRefinement
from amt_core.schema.output import AMTOutput


@dataclass(frozen=True, kw_only=True)
class AMTConfig:
    backbone: Backbone.Config = field(default_factory=Backbone.Config)
    """The image backbone; its `out_dim` is the width of every head."""
    hand: HandEncoder.Config = field(default_factory=HandEncoder.Config)
    refine: PixelAlignedRefinement.Config = field(default_factory=PixelAlignedRefinement.Config)
    object: ObjectHead.Config = field(default_factory=ObjectHead.Config)
    contact: ContactHead.Config = field(default_factory=ContactHead.Config)
    noise: FeatureNoiseConfig = field(default_factory=FeatureNoiseConfig)
    """FeatureNoise on the fused image features, the hand tokens and the object tokens (training only)."""


def param_group(name: str, backbone: Backbone) -> str:
    """Optimizer group of a parameter: a pretrained ViT is `backbone` (0.01x lr), new encoders, heads `decoders`."""
    if name.startswith("backbone.vit."):
        return "encoders" if backbone.config.from_scratch else "backbone"
    if name.startswith(("backbone.", "hand_encoder.", "object_head.")):
        return "encoders"
    return "decoders"


class AMT(nn.Module):
    Config = AMTConfig

    def __init__(self, config: AMTConfig, hand_layer: nn.Module):
        """Args:
        config: the model's configuration.
        hand_layer: MANO-layout hand layer: forward(pose (B,45), shape (B,10), rot (B,3), trans (B,3)) -> object
            with `verts` (B, V, 3); `num_verts` gives V. Frozen here.
        """
        super().__init__()
        self.config = config
        dim = config.backbone.out_dim
        self.backbone = Backbone(config.backbone)
        self.feature_noise = FeatureNoise(config.noise, dim=1)
        self.hand_encoder = HandEncoder(config.hand, dim, config.noise)
        self.refine = PixelAlignedRefinement(config.refine, dim)
        self.object_head = ObjectHead(config.object, dim, config.noise)
        self.hand_layer = hand_layer.requires_grad_(False)
        self.contact_head = ContactHead(config.contact, dim, int(hand_layer.num_verts))

    def param_group_of(self, name: str) -> str:
        return param_group(name, self.backbone)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def forward(self, batch: dict) -> AMTOutput:
        image, K = batch["image"], batch["K"].to(batch["image"].dtype)
        image_hw = (image.shape[-2], image.shape[-1])
        features = self.backbone(image)
        fused = self.feature_noise(features.fused)
        hand = self.hand_encoder(features.global_token, fused, features.stride, K, image_hw)
        steps = self.refine(hand.joints, features.maps, features.strides, K, hand.tokens[:, 0])
        joints3d = steps[-1] if steps else hand.joints
        num_betas = getattr(self.hand_layer, "num_betas", hand.shape.shape[-1])
        mesh = self.hand_layer(hand.pose, hand.shape[:, :num_betas], hand.rot, hand.trans)
        obj = self.object_head(fused, features.stride, features.global_token, K, image_hw)
        contact = self.contact_head(hand.tokens, obj.tokens, mesh.verts, joints3d[:, 0], obj.rot, obj.trans)
        # Only inside record_attention (which also flags the backbone) are there probabilities to gather.
        attention = {**features.attention, **collect_attention(self)} if self.backbone.record_attention else {}
        return AMTOutput(
            joints3d=joints3d,
            joints2d=project_to_image(joints3d, K),
            joints3d_coarse=hand.joints,
            joints3d_steps=steps,
            joints3d_logvar=hand.joints_logvar,
            hand_pose=hand.pose,
            hand_shape=hand.shape,
            hand_rot=hand.rot,
            hand_trans=hand.trans,
            hand_verts=mesh.verts,
            obj_logits=obj.logits,
            obj_rot=obj.rot,
            obj_trans=obj.trans,
            obj_center2d=obj.center2d,
            obj_box=obj.box,
            obj_present=obj.present,
            obj_heatmap=obj.heatmap,
            contact_prob=contact.prob,
            contact_points=contact.points,
            contact_conf=contact.conf,
            contact_forces=contact.forces,
            kl=hand.kl,
            attention=attention,
        )
