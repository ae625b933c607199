"""The image backbone: a DINOv2 ViT from timm (S/B/L/g) or a small from-scratch ViT of the same family for the CPU.

Multi-scale features come from three depths (6/9/12 of 12 blocks, proportionally for other depths) through timm's
`forward_intermediates`, each normalised by the final norm as DINOv2 does for dense tasks, then turned into a
simple feature pyramid (ViTDet-style): the shallow level upsampled 2x (fine detail for pixel-aligned sampling), the
middle and deep levels at patch resolution; `fused` sums the three at patch resolution for detection and tokens.
Freezing follows the seed: patch embedding, positional embedding and the first 2/3 of the blocks (early + middle)
frozen, the last third fine-tuned, for the pretrained DINOv2 variants; nothing is frozen when training from scratch.
Any input size works (timm's dynamic image size interpolates the positional embedding; sizes are padded to the
patch). Pretrained weights load only from a local file (`load_backbone_weights`): the official DINOv2 `.pth` or a
timm `.safetensors`. Attention probabilities of the timm blocks, when recorded, are computed from each block's
public `attn.qkv` output (a forward hook on that nn.Linear) with the block's own q/k norms and scale.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from amt_core.errors import UserError, torch_load_problem
from amt_core.models.attention import TimmAttention
from amt_core.models.conv_trunk import ConvTrunk

# variant -> timm model name
DINOV2_MODELS: dict[str, str] = {
    "dinov2_s": "vit_small_patch14_dinov2",
    "dinov2_b": "vit_base_patch14_dinov2",
    "dinov2_l": "vit_large_patch14_dinov2",
    "dinov2_g": "vit_giant_patch14_dinov2",
}
CONV_VARIANTS: tuple[str, ...] = ("cnn", "hybrid")
"""Scratch trunks built from convolutions (`models.conv_trunk`): a plain CNN, and conv stages under a few
transformer blocks."""
VARIANTS: tuple[str, ...] = ("scratch", *CONV_VARIANTS, *DINOV2_MODELS)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    variant: str = "scratch"
    """'scratch' (a small ViT trained from scratch), 'hybrid' (conv stages, then `depth` transformer blocks), 'cnn'
    (a plain CNN trunk; `depth` unused), or one of dinov2_s, dinov2_b, dinov2_l, dinov2_g (pretrained)."""
    img_size: int = 128
    """Nominal input size in pixels (sets the positional-embedding grid; other sizes are interpolated), >= patch."""
    embed_dim: int = 192
    """Width of the scratch ViT (ignored by DINOv2 variants), divisible by num_heads."""
    depth: int | None = None
    """Transformer blocks; None: 12 for scratch, 4 for hybrid, the variant's own for DINOv2 (set it only to build a
    shallow test model); 0 is allowed for hybrid (conv stages only, with a class token)."""
    num_heads: int = 3
    """Heads of the scratch ViT (ignored by DINOv2 variants)."""
    patch_size: int = 16
    """Patch size of the scratch ViT (DINOv2 is 14); for cnn and hybrid, the stride of the token grid (a power of 2:
    log2 of it conv blocks)."""
    conv_width: int = 32
    """Channels of the first conv block of the cnn and hybrid trunks (doubling each block, capped at 8x), >= 8."""
    feature_layers: tuple[int, ...] | None = None
    """Three 1-based block depths to take features from; None: depth/2, 3*depth/4, depth."""
    freeze_blocks: int | None = None
    """Blocks frozen from the start (with patch and positional embeddings); None: 2/3 of depth for DINOv2, 0 scratch."""
    drop_path: float = 0.1
    """Stochastic depth rate across the blocks (timm DropPath), in [0, 1)."""
    out_dim: int = 128
    """Channels of the feature maps and width of the global token handed to the heads."""
    layer_scale: float | None = None
    """LayerScale init of the scratch ViT's blocks, > 0, or None for none. DINOv2 uses 1e-5 because it starts from
    pretrained weights; from scratch 1e-5 mutes every block (and the class token sees no patch) for hundreds of
    steps, which measured as the largest single cause of the micro model not memorising (docs/learning.md)."""
    stem: str = "conv"
    """Patch embedding of the scratch ViT: "conv" (a stack of 3x3 stride-2 convolutions, Xiao et al. 2021, "Early
    convolutions help transformers see better") or "patch" (one patch-sized linear projection, as DINOv2). The conv
    stem trains much faster from scratch (docs/learning.md); DINOv2 variants keep their pretrained patch embedding."""
    global_pool: str = "token+avg"
    """The global token handed to the heads: "token" (the class token), "avg" (mean of the patch tokens) or
    "token+avg" (both, concatenated before the projection)."""
    weights: str | None = None
    """Local pretrained weights file (.pth official DINOv2 or timm .safetensors) applied by the model factory."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"BackboneConfig.variant must be one of {', '.join(VARIANTS)}, got '{self.variant}'")
        if self.depth is not None and self.depth < (0 if self.variant == "hybrid" else 1):
            raise ValueError(f"BackboneConfig.depth must be >= 1 (>= 0 for hybrid), got {self.depth}")
        if self.variant in CONV_VARIANTS and (self.patch_size < 4 or self.patch_size & (self.patch_size - 1)):
            raise ValueError(f"BackboneConfig.patch_size of a {self.variant} trunk must be a power of 2 >= 4")
        if self.conv_width < 8:
            raise ValueError(f"BackboneConfig.conv_width must be >= 8, got {self.conv_width}")
        if self.embed_dim < 1 or self.embed_dim % self.num_heads:
            raise ValueError(f"BackboneConfig.embed_dim ({self.embed_dim}) must be divisible by num_heads")
        if self.patch_size < 2:
            raise ValueError(f"BackboneConfig.patch_size must be >= 2, got {self.patch_size}")
        if self.img_size < self.patch:
            raise ValueError(f"BackboneConfig.img_size must be >= the patch size {self.patch}, got {self.img_size}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"BackboneConfig.drop_path must be in [0, 1), got {self.drop_path}")
        if self.out_dim < 8:
            raise ValueError(f"BackboneConfig.out_dim must be >= 8, got {self.out_dim}")
        if self.feature_layers is not None:
            layers = tuple(self.feature_layers)
            if len(layers) != 3 or list(layers) != sorted(layers) or layers[0] < 1:
                raise ValueError(f"BackboneConfig.feature_layers must be 3 increasing depths >= 1, got {layers}")
            object.__setattr__(self, "feature_layers", layers)  # frozen: the normalised value, set once
        if self.stem not in ("conv", "patch"):
            raise ValueError(f"BackboneConfig.stem must be 'conv' or 'patch', got {self.stem!r}")
        if self.stem == "conv" and self.variant == "scratch" and self.patch_size & (self.patch_size - 1):
            raise ValueError(f"BackboneConfig.stem 'conv' needs a power-of-two patch_size, got {self.patch_size}")
        if self.global_pool not in ("token", "avg", "token+avg"):
            raise ValueError(f"BackboneConfig.global_pool must be token, avg or token+avg, got {self.global_pool!r}")
        if self.layer_scale is not None and not self.layer_scale > 0:
            raise ValueError(f"BackboneConfig.layer_scale must be > 0 or None, got {self.layer_scale}")
        if self.freeze_blocks is not None and self.freeze_blocks < 0:
            raise ValueError(f"BackboneConfig.freeze_blocks must be >= 0, got {self.freeze_blocks}")

    @property
    def patch(self) -> int:
        return self.patch_size if self.from_scratch else 14

    @property
    def from_scratch(self) -> bool:
        """Trained from scratch (a scratch ViT, cnn or hybrid trunk), not from pretrained DINOv2 weights."""
        return self.variant not in DINOV2_MODELS


@dataclass
class BackboneFeatures:
    maps: tuple[torch.Tensor, ...]
    """Three (B, C, h_i, w_i) maps, shallow (2x patch resolution) to deep (patch resolution)."""
    strides: tuple[float, ...]
    """Pixels per map cell for each of `maps`."""
    fused: torch.Tensor | None
    """(B, C, h, w) sum of the three levels at patch resolution."""
    stride: float
    """Pixels per cell of `fused`."""
    global_token: torch.Tensor
    """(B, C) the class token of the last feature depth, projected."""
    attention: dict[str, torch.Tensor]
    """Backbone attention probabilities by block, only while recording."""


def conv_stem(in_chans: int, embed_dim: int, patch_size: int) -> nn.Sequential:
    """3x3 stride-2 convolutions (GroupNorm, GELU) down to 1/patch_size, then a 1x1 projection to `embed_dim`."""
    layers: list[nn.Module] = []
    steps = int(math.log2(patch_size))
    width = in_chans
    for i in range(steps):
        out = max(16, embed_dim >> (steps - 1 - i))
        layers += [nn.Conv2d(width, out, 3, stride=2, padding=1, bias=False), nn.GroupNorm(1, out), nn.GELU()]
        width = out
    layers.append(nn.Conv2d(width, embed_dim, 1))
    return nn.Sequential(*layers)


class ConvStemEmbed(PatchEmbed):
    """timm's PatchEmbed with its patch projection replaced by `conv_stem` (same grid, padding and output format)."""

    def __init__(self, *args, in_chans: int = 3, embed_dim: int = 768, **kwargs):
        super().__init__(*args, in_chans=in_chans, embed_dim=embed_dim, **kwargs)
        self.proj = conv_stem(in_chans, embed_dim, self.patch_size[0])


def _build_vit(config: BackboneConfig) -> nn.Module:
    common = dict(
        # timm's extension point for the attention layer: a subclass computing the kernel the model's backend names
        # (`amt_core.accel.attention.set_attention_backend`), with timm's parameters and state_dict keys.
        attn_layer=TimmAttention,
        num_classes=0,
        img_size=config.img_size,
        dynamic_img_size=True,
        dynamic_img_pad=True,
        drop_path_rate=config.drop_path,
    )
    if config.variant == "scratch":
        # DINOv2-style settings: layer scale (init 1e-5), class token, learned absolute positions.
        return VisionTransformer(
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth or 12,
            num_heads=config.num_heads,
            init_values=config.layer_scale,
            **({"embed_layer": ConvStemEmbed} if config.stem == "conv" else {}),
            **common,
        )
    extra = {"depth": config.depth} if config.depth is not None else {}
    return timm.create_model(DINOV2_MODELS[config.variant], pretrained=False, **common, **extra)


class Backbone(nn.Module):
    """ViT -> three feature depths -> feature pyramid + fused map + global token."""

    Config = BackboneConfig

    def __init__(self, config: BackboneConfig, *, pyramid: bool = True):
        """Args:
        config: the backbone's configuration.
        pyramid: build the feature pyramid; False gives only the global token (the baseline's single representation).
        """
        super().__init__()
        self.config = config
        self.pyramid = pyramid
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.record_attention = False
        out = config.out_dim
        if config.variant in CONV_VARIANTS:
            self._build_conv_trunk(config, pyramid)
            return
        self.vit = _build_vit(config)
        depth = len(self.vit.blocks)
        layers = config.feature_layers or (max(1, depth // 2), max(1, (3 * depth) // 4), depth)
        if layers[-1] > depth:
            raise ValueError(f"BackboneConfig.feature_layers {layers} exceed the backbone depth {depth}")
        self.feature_indices = [layer - 1 for layer in layers] if pyramid else [depth - 1]
        width = self.vit.embed_dim
        pooled = 2 * width if config.global_pool == "token+avg" else width
        self.global_proj = nn.Sequential(nn.LayerNorm(pooled), nn.Linear(pooled, out))
        if pyramid:
            self._build_pyramid(width, out)
        frozen = config.freeze_blocks
        if frozen is None:
            frozen = 0 if config.from_scratch else (2 * depth) // 3
        self.freeze(min(frozen, depth))

    def _build_conv_trunk(self, config: BackboneConfig, pyramid: bool) -> None:
        """The cnn or hybrid trunk, its global projection and (with `pyramid`) one projection per level."""
        out = config.out_dim
        self.trunk = ConvTrunk(
            config.variant,
            stride=config.patch_size,
            width=config.conv_width,
            img_size=config.img_size,
            embed_dim=config.embed_dim,
            depth=4 if config.depth is None else config.depth,
            num_heads=config.num_heads,
            drop_path=config.drop_path,
        )
        dim = self.trunk.global_dim
        self.global_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out))
        if pyramid:
            self.levels = nn.ModuleList(
                nn.Sequential(nn.Conv2d(width, out, kernel_size=1), nn.GroupNorm(1, out), nn.GELU())
                for width in self.trunk.level_dims
            )
            self.fuse = nn.Sequential(nn.Conv2d(out, out, kernel_size=1), nn.GroupNorm(1, out), nn.GELU())
        self.freeze(config.freeze_blocks or 0)

    def _build_pyramid(self, width: int, out: int) -> None:
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width, out, kernel_size=2, stride=2), nn.GroupNorm(1, out), nn.GELU()
        )
        self.mid = nn.Sequential(nn.Conv2d(width, out, kernel_size=1), nn.GroupNorm(1, out))
        self.deep = nn.Sequential(nn.Conv2d(width, out, kernel_size=1), nn.GroupNorm(1, out))
        # 1x1: the ViT has already mixed the features spatially; the fusion only blends the three depths.
        self.fuse = nn.Sequential(nn.Conv2d(out, out, kernel_size=1), nn.GroupNorm(1, out), nn.GELU())

    @property
    def patch_size(self) -> int:
        return self.config.patch

    @property
    def blocks(self) -> nn.ModuleList:
        """The trunk's transformer blocks (timm's, attention captured from `attn.qkv`); none for a cnn trunk."""
        return self.trunk.blocks if hasattr(self, "trunk") else self.vit.blocks

    def freeze(self, num_blocks: int) -> None:
        """Freeze the embeddings and the first `num_blocks` blocks (0 unfreezes everything); the rest train.
        For a cnn or hybrid trunk the blocks are its conv blocks, then its transformer blocks."""
        self.frozen_blocks = num_blocks
        if hasattr(self, "trunk"):
            self.trunk.requires_grad_(True)
            for block in [*self.trunk.stages, *self.trunk.blocks][:num_blocks]:
                block.requires_grad_(False)
            return
        for param in self.vit.parameters():
            param.requires_grad_(True)
        if num_blocks == 0:
            return
        for module in (self.vit.patch_embed,):
            module.requires_grad_(False)
        for name in ("cls_token", "pos_embed", "reg_token"):
            param = getattr(self.vit, name, None)
            if isinstance(param, nn.Parameter):
                param.requires_grad_(False)
        for block in self.vit.blocks[:num_blocks]:
            block.requires_grad_(False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if hasattr(self, "vit"):  # the conv trunks are CPU-sized: nothing worth recomputing
            self.vit.set_grad_checkpointing(enable)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> ImageNet-normalised."""
        return (image - self.mean) / self.std

    def forward(self, image: torch.Tensor) -> BackboneFeatures:
        """image (B, 3, H, W) RGB in [0, 1], any size -> BackboneFeatures."""
        handles, attention = [], {}
        if self.record_attention:
            handles = self._attach_attention_capture(attention)
        if hasattr(self, "trunk"):
            try:
                return self._forward_conv_trunk(image, attention)
            finally:
                for handle in handles:
                    handle.remove()
        try:
            unique = sorted(set(self.feature_indices))  # a shallow model may repeat a depth
            outputs = self.vit.forward_intermediates(
                self.normalize(image),
                indices=unique,
                norm=True,
                return_prefix_tokens=True,
                output_fmt="NCHW",
                intermediates_only=True,
            )
        finally:
            for handle in handles:
                handle.remove()
        outputs = [outputs[unique.index(i)] for i in self.feature_indices]
        patch = float(self.patch_size)
        if not self.pyramid:
            (deep_map, prefix) = outputs[-1]
            return BackboneFeatures(
                maps=(),
                strides=(),
                fused=None,
                stride=patch,
                global_token=self._global_token(deep_map, prefix),
                attention=attention,
            )
        (shallow, _), (middle, _), (deep, prefix) = outputs
        fine = self.up(shallow)  # (B, C, 2h, 2w)
        mid = self.mid(middle)
        top = self.deep(deep)
        fused = self.fuse(F.avg_pool2d(fine, 2) + mid + top)
        return BackboneFeatures(
            maps=(fine, mid, top),
            strides=(patch / 2, patch, patch),
            fused=fused,
            stride=patch,
            global_token=self._global_token(deep, prefix),
            attention=attention,
        )

    def _forward_conv_trunk(self, image: torch.Tensor, attention: dict[str, torch.Tensor]) -> BackboneFeatures:
        maps, strides, pooled = self.trunk(self.normalize(image))
        global_token = self.global_proj(pooled)
        stride = float(self.config.patch_size)
        if not self.pyramid:
            return BackboneFeatures(
                maps=(), strides=(), fused=None, stride=stride, global_token=global_token, attention=attention
            )
        maps = [level(m) for level, m in zip(self.levels, maps)]
        size = maps[1].shape[-2:]
        fused = self.fuse(sum(_resized(m, size) for m in maps))
        return BackboneFeatures(
            maps=tuple(maps),
            strides=strides,
            fused=fused,
            stride=stride,
            global_token=global_token,
            attention=attention,
        )

    def _global_token(self, deep: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """(B, C) from the last depth's (B, C_vit, h, w) patch map and (B, P, C_vit) prefix tokens."""
        pool = self.config.global_pool
        if pool == "token":
            return self.global_proj(prefix[:, 0])
        average = deep.mean(dim=(2, 3))
        if pool == "avg":
            return self.global_proj(average)
        return self.global_proj(torch.cat([prefix[:, 0], average], dim=-1))

    def _attach_attention_capture(self, store: dict[str, torch.Tensor]) -> list:
        """Forward hooks on each block's public `attn.qkv` Linear that compute the softmax probabilities."""
        handles = []
        for index, block in enumerate(self.blocks):
            attn = block.attn

            def hook(module, inputs, output, attn=attn, name=f"backbone.blocks.{index}"):
                B, N, _ = output.shape
                heads = attn.num_heads
                qkv = output.detach().reshape(B, N, 3, heads, -1).permute(2, 0, 3, 1, 4)
                q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
                scale = getattr(attn, "scale", 1.0 / math.sqrt(q.shape[-1]))
                store[name] = ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1)

            handles.append(attn.qkv.register_forward_hook(hook))
        return handles


def _resized(level: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """A (B, C, h, w) map at `size`: averaged down from a finer level, nearest-upsampled from a coarser one."""
    if level.shape[-2:] == size:
        return level
    if level.shape[-2] > size[0]:
        return F.adaptive_avg_pool2d(level, size)
    return F.interpolate(level, size=size, mode="nearest")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise UserError(f"cannot read backbone weights {path}: {err}; is it a complete .safetensors file?") from err
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch's weights_only refusal is a page of advice: the refused global says what
            raise UserError(
                f"cannot read backbone weights {path} as plain tensors ({torch_load_problem(err)}); give the official "
                "DINOv2 .pth or a timm .safetensors file"
            ) from None
        if not isinstance(data, dict):
            raise UserError(f"backbone weights {path} hold a {type(data).__name__}, not a state dict")
        for key in ("model", "state_dict", "teacher"):
            if key in data and isinstance(data[key], dict):
                data = data[key]
        return data
    raise UserError(f"backbone weights {path} must be a .pth (official DINOv2) or .safetensors (timm) file")


def _summarise(keys: list[str], limit: int = 2) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_backbone_weights(backbone: Backbone, path: str | Path) -> None:
    """Load pretrained ViT weights from a local file into `backbone.vit`.

    Accepts the official DINOv2 checkpoint (`dinov2_vits14_pretrain.pth`: `blocks.N.attn.qkv.weight`, a 37x37
    `pos_embed` for 518 px, `mask_token`, `ls1.gamma`, and `w12`/`w3` MLPs for ViT-g) and timm's `.safetensors`;
    keys are converted and the positional embedding resampled by timm's own `checkpoint_filter_fn`.

    Raises:
        UserError: the file is missing or unreadable, or its keys or shapes do not fit this backbone.
    """
    if backbone.config.variant in CONV_VARIANTS:
        raise UserError(
            f"backbone weights {path}: a {backbone.config.variant} trunk is trained from scratch; pretrained weights "
            "load into the DINOv2 variants (set backbone.variant=dinov2_s, _b, _l or _g)"
        )
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"backbone weights file not found: {path}; give the path of a local .pth or .safetensors")
    state = _read_state_dict(path)
    # Official checkpoints with chunked blocks (blocks.<chunk>.<index>.) -> flat timm names.
    state = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "fc_norm."))}
    try:
        state = checkpoint_filter_fn(dict(state), backbone.vit)
    except Exception as err:  # a tensor of the wrong rank fails inside timm's converter
        raise UserError(f"backbone weights {path} do not fit backbone '{backbone.config.variant}': {err}") from err
    expected = backbone.vit.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {_summarise(missing)}")
        if unexpected:
            parts.append(f"unexpected {_summarise(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatch {_summarise(mismatched, 2)}")
        raise UserError(
            f"backbone weights {path} do not fit backbone '{backbone.config.variant}': {'; '.join(parts)}; "
            "use the checkpoint of the same DINOv2 size or set backbone.variant to match it"
        )
    backbone.vit.load_state_dict(state, strict=True)
