"""Named model variants and one factory, timm style: `create_model(name, **overrides)`, `list_models()`.

Sizes: `micro` (tests: a 64 px convolutional trunk, a full train step in a fraction of a second on a CPU), `cpu`
(a five-block convolutional trunk, the plain CNN's, under AMT's transformer heads, trained from scratch at 128 px),
`dinov2_s|b|l|g` (the DINOv2 backbones at 224 px, pretrained weights from `backbone.weights`). The scratch sizes
use a convolutional trunk because, with the heads held fixed, it is what made AMT learn on a CPU budget: the
scratch ViT of width 192 and depth 12 (`--set model.backbone.variant=scratch`) stayed at the mean pose's error
after 5 minutes, the conv trunk reached 0.72x of it (docs/learning.md); `backbone.variant=hybrid` puts a few
transformer blocks after the conv stages. Each size exists as `amt_<size>` and as
`baseline_<size>` on the same backbone; `cnn_micro` and `cnn_cpu` are a plain CNN regressor (`models.cnn`), the
reference the side-by-side holds both to. Overrides are dotted keys into the variant's Config (`refine.steps=4`,
`backbone.weights=/path/dinov2_vits14_pretrain.pth`); an unknown key is an error naming it. The factory (not the
model) builds the hand layer, reads the class count from the object catalog and loads backbone weights.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from amt_core import config_tree
from amt_core.errors import UserError
from amt_core.models.amt import AMT, AMTConfig
from amt_core.models.attention import Attention
from amt_core.models.backbone import Backbone, BackboneConfig, load_backbone_weights
from amt_core.models.baseline import Baseline, BaselineConfig
from amt_core.models.cnn import CNNConfig, PlainCNN
from amt_core.models.contact_head import ContactHead
from amt_core.models.hand_encoder import HandEncoder
from amt_core.models.layers import Block, FeatureNoiseConfig, SigmaReparamConfig
from amt_core.models.object_head import ObjectHead
from amt_core.models.refinement import PixelAlignedRefinement

SIZES: tuple[str, ...] = ("micro", "cpu", "dinov2_s", "dinov2_b", "dinov2_l", "dinov2_g")

# Per size: the backbone, attention heads of the heads' blocks, hand-encoder depth, contact slots, ROI cells.
_BACKBONES: dict[str, Callable[[], BackboneConfig]] = {
    "micro": lambda: BackboneConfig(
        variant="cnn",
        img_size=64,
        embed_dim=64,
        depth=4,
        num_heads=2,
        patch_size=8,
        conv_width=16,
        out_dim=64,
        drop_path=0.0,
    ),
    "cpu": lambda: BackboneConfig(
        variant="cnn",
        img_size=128,
        embed_dim=192,
        depth=12,
        num_heads=3,
        patch_size=16,
        conv_width=32,
        out_dim=128,
        drop_path=0.0,
    ),
    "dinov2_s": lambda: BackboneConfig(variant="dinov2_s", img_size=224, out_dim=256),
    "dinov2_b": lambda: BackboneConfig(variant="dinov2_b", img_size=224, out_dim=256, drop_path=0.15),
    "dinov2_l": lambda: BackboneConfig(variant="dinov2_l", img_size=224, out_dim=384, drop_path=0.2),
    "dinov2_g": lambda: BackboneConfig(variant="dinov2_g", img_size=224, out_dim=512, drop_path=0.25),
}
_HEADS = {"micro": 2, "cpu": 4, "dinov2_s": 8, "dinov2_b": 8, "dinov2_l": 8, "dinov2_g": 8}
_HAND_DEPTH = {"micro": 1, "cpu": 2, "dinov2_s": 2, "dinov2_b": 3, "dinov2_l": 3, "dinov2_g": 4}
_CONTACTS = {"micro": 8}
_ROI = {"micro": 4}


# Trained from scratch on synthetic data at a small size: the seed's defences against collapse (SigmaReparam
# sampling, FeatureNoise, DropPath, dropout) are off by default here, because each measured as slowing what these
# models learn within a CPU budget (docs/learning.md); every one stays available behind its switch
# (`--set model.hand.sigma.enabled=true`, `model.noise.enabled=true`, `model.*.block.drop_path=0.1`, ...).
SCRATCH_SIZES: tuple[str, ...] = ("micro", "cpu")


def _block(size: str) -> Block.Config:
    if size in SCRATCH_SIZES:
        return Block.Config(attention=Attention.Config(num_heads=_HEADS[size]), drop_path=0.0, dropout=0.0)
    return Block.Config(attention=Attention.Config(num_heads=_HEADS[size]), drop_path=0.1)


def amt_config(size: str) -> AMTConfig:
    """The default AMT configuration of a size (the class count is filled in by `create_model`)."""
    defences = size not in SCRATCH_SIZES
    return AMTConfig(
        noise=FeatureNoiseConfig(enabled=defences),
        backbone=_BACKBONES[size](),
        hand=HandEncoder.Config(
            depth=_HAND_DEPTH[size], block=_block(size), sigma=SigmaReparamConfig(enabled=defences)
        ),
        refine=PixelAlignedRefinement.Config(steps=3, block=_block(size)),
        object=ObjectHead.Config(roi_size=_ROI.get(size, 7), block=_block(size)),
        contact=ContactHead.Config(num_contacts=_CONTACTS.get(size, 16), block=_block(size)),
    )


def baseline_config(size: str) -> BaselineConfig:
    """The default baseline configuration of a size: AMT's backbone, an MLP on its global token."""
    backbone = _BACKBONES[size]()
    return BaselineConfig(backbone=backbone, hidden=max(64, 2 * backbone.out_dim))


def cnn_config(size: str) -> CNNConfig:
    """The plain CNN of a size: a reference regressor that shares nothing with AMT but the root placement."""
    return CNNConfig(width=16 if size == "micro" else 32)


_REGISTRY: dict[str, tuple[str, str]] = {
    **{f"{kind}_{size}": (kind, size) for kind in ("amt", "baseline") for size in SIZES},
    **{f"cnn_{size}": ("cnn", size) for size in ("micro", "cpu")},
}


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell pattern (`amt_*`, `*_micro`)."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


ModelConfig = AMTConfig | BaselineConfig | CNNConfig
"""The configuration of any registered model: what a run config stores and a checkpoint is rebuilt from."""

MODEL_KINDS: dict[str, type] = {"amt": AMTConfig, "baseline": BaselineConfig, "cnn": CNNConfig}
"""The model kind each configuration class builds (the tag of a stored config)."""


def model_kind(config: ModelConfig) -> str:
    """The kind (`amt`, `baseline`, `cnn`) of a model configuration."""
    for kind, cls in MODEL_KINDS.items():
        if type(config) is cls:
            return kind
    raise TypeError(f"{type(config).__name__} is not a model configuration ({', '.join(MODEL_KINDS)})")


def model_config_from_dict(kind: str, data: dict[str, Any]) -> ModelConfig:
    """A stored model configuration (`dataclasses.asdict` output) rebuilt, with its `kind`.

    Raises:
        UserError: an unknown kind or key, or a value the config's checks refuse.
    """
    if kind not in MODEL_KINDS:
        raise UserError(f"unknown model kind {kind!r}; kinds are {', '.join(MODEL_KINDS)}")
    return config_tree.build(MODEL_KINDS[kind], data, "model")


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of a model config with dotted-key overrides (`config_tree.override`; checks rerun on every level).

    Raises:
        UserError: a key names no field (naming the ones there), or a value fails the field's type or check.
    """
    return config_tree.override(config, overrides, source="model override ")


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The resolved configuration of a registered model with overrides (dotted keys) applied."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model '{name}'; choose one of {', '.join(list_models())}")
    kind, size = _REGISTRY[name]
    if kind == "amt":
        config = amt_config(size)
        if "object.num_classes" not in overrides:
            from amt_core.objects import num_classes  # the catalog loads trimesh: only an AMT config needs it

            overrides = {**overrides, "object.num_classes": num_classes()}
    elif kind == "baseline":
        config = baseline_config(size)
    else:
        config = cnn_config(size)
    return apply_overrides(config, overrides)


def create_model(name: str, *, hand_layer: nn.Module | None = None, **overrides: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of `list_models()`.
        hand_layer: the hand layer for AMT (default: `amt_core.hand.HandModel()`, the shipped open hand).
        **overrides: dotted config keys, e.g. `**{"refine.steps": 4, "backbone.weights": "dinov2_vits14.pth"}`.

    Raises:
        UserError: unknown name or key, a bad value, or backbone weights that cannot be loaded.
    """
    return model_from_config(model_config(name, **overrides), hand_layer=hand_layer)


def model_from_config(config: ModelConfig, *, hand_layer: nn.Module | None = None) -> nn.Module:
    """Build the model a resolved configuration describes (a run config's `model`, a checkpoint's).

    Raises:
        UserError: backbone weights that cannot be loaded.
    """
    if isinstance(config, AMTConfig):
        if hand_layer is None:
            from amt_core.hand import HandModel  # smplx and the hand asset: only an AMT model needs them

            hand_layer = HandModel()
        model: nn.Module = AMT(config, hand_layer)
    elif isinstance(config, CNNConfig):
        return PlainCNN(config)
    else:
        model = Baseline(config)
    if config.backbone.weights:
        backbone: Backbone = model.backbone
        load_backbone_weights(backbone, config.backbone.weights)
    return model
