"""The backbone: multi-scale features, any input size, freezing, checkpointing, and weight loading from the
official DINOv2 .pth and timm .safetensors layouts (files the tests write) with their errors."""

from __future__ import annotations

import fractions

import pytest
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from amt_core.errors import UserError
from amt_core.models import create_model
from amt_core.models.backbone import Backbone, load_backbone_weights


def _dinov2_small(seed: int = 0, **extra) -> Backbone:
    torch.manual_seed(seed)
    return Backbone(Backbone.Config(variant="dinov2_s", depth=2, img_size=56, out_dim=16, **extra))


def _official_state(backbone: Backbone, seed: int = 1) -> dict[str, torch.Tensor]:
    """The layout of `dinov2_vits14_pretrain.pth`: timm names for blocks, a 37x37 (518 px) pos_embed, mask_token."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) for k, v in backbone.vit.state_dict().items()}
    dim = backbone.vit.embed_dim
    state["pos_embed"] = torch.randn(1, 1 + 37 * 37, dim, generator=g)
    state["mask_token"] = torch.zeros(1, dim)
    return state


def test_features_are_multi_scale_for_any_size():
    backbone = Backbone(Backbone.Config(img_size=64, embed_dim=32, depth=4, num_heads=2, patch_size=8, out_dim=16))
    for height, width in ((64, 64), (72, 100), (50, 33)):
        features = backbone(torch.rand(2, 3, height, width))
        h, w = -(-height // 8), -(-width // 8)  # padded up to the patch
        assert [tuple(m.shape) for m in features.maps] == [(2, 16, 2 * h, 2 * w), (2, 16, h, w), (2, 16, h, w)]
        assert features.fused.shape == (2, 16, h, w) and features.global_token.shape == (2, 16)
        assert features.strides == (4.0, 8.0, 8.0)
    assert backbone.feature_indices == [1, 2, 3]  # depths 2, 3, 4 of 4 (6/9/12 of 12 scaled)


def test_default_feature_depths_follow_the_seed():
    backbone = Backbone(Backbone.Config(img_size=32, embed_dim=32, depth=12, num_heads=2, patch_size=16, out_dim=8))
    assert backbone.feature_indices == [5, 8, 11]


def test_freezing_policy_and_override():
    default = _dinov2_small()  # 2 blocks: 2/3 of them rounds down to 1
    assert default.frozen_blocks == 1
    assert not any(p.requires_grad for p in default.vit.blocks[0].parameters())
    assert all(p.requires_grad for p in default.vit.blocks[1].parameters())
    assert not default.vit.pos_embed.requires_grad
    unfrozen = _dinov2_small(freeze_blocks=0)
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_grad_checkpointing_same_output():
    backbone = Backbone(Backbone.Config(img_size=32, embed_dim=32, depth=3, num_heads=2, patch_size=8, out_dim=8))
    backbone.eval()
    image = torch.rand(2, 3, 32, 32)
    plain = backbone(image).fused
    backbone.set_grad_checkpointing(True)
    torch.testing.assert_close(backbone(image).fused, plain)


def test_loads_official_dinov2_pth(tmp_path):
    backbone = _dinov2_small(seed=0)
    state = _official_state(backbone)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    load_backbone_weights(backbone, path)
    loaded = backbone.vit.state_dict()
    torch.testing.assert_close(loaded["blocks.1.attn.qkv.weight"], state["blocks.1.attn.qkv.weight"])
    torch.testing.assert_close(loaded["blocks.0.ls1.gamma"], state["blocks.0.ls1.gamma"])
    # 37x37 grid for 518 px resampled to this model's 4x4 grid (56 px / 14).
    expected = resample_abs_pos_embed(state["pos_embed"], new_size=(4, 4), num_prefix_tokens=1)
    torch.testing.assert_close(loaded["pos_embed"], expected)
    assert loaded["pos_embed"].shape == (1, 17, backbone.vit.embed_dim)


def test_loads_timm_safetensors_and_through_the_factory(tmp_path):
    source = _dinov2_small(seed=0)
    path = tmp_path / "vit_small_patch14_dinov2.safetensors"
    save_file({k: v.contiguous() for k, v in source.vit.state_dict().items()}, str(path))
    target = _dinov2_small(seed=5)
    assert not torch.equal(target.vit.blocks[0].attn.qkv.weight, source.vit.blocks[0].attn.qkv.weight)
    load_backbone_weights(target, path)
    for key, value in source.vit.state_dict().items():
        torch.testing.assert_close(target.vit.state_dict()[key], value)
    model = create_model(
        "baseline_dinov2_s", **{"backbone.depth": 2, "backbone.img_size": 56, "backbone.weights": str(path)}
    )
    torch.testing.assert_close(model.backbone.vit.blocks[1].mlp.fc2.weight, source.vit.blocks[1].mlp.fc2.weight)


def test_weight_errors_are_one_line_user_errors(tmp_path):
    backbone = _dinov2_small()
    with pytest.raises(UserError, match="not found"):
        load_backbone_weights(backbone, tmp_path / "absent.pth")
    wrong_suffix = tmp_path / "weights.npz"
    wrong_suffix.write_bytes(b"x")
    with pytest.raises(UserError, match=r"\.pth .* or \.safetensors"):
        load_backbone_weights(backbone, wrong_suffix)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        load_backbone_weights(backbone, corrupt)

    state = _official_state(backbone)
    partial = {k: v for k, v in state.items() if not k.startswith("blocks.1.")}
    partial["extra.weight"] = torch.zeros(3)
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(UserError, match=r"missing blocks\.1\..*unexpected extra\.weight") as err:
        load_backbone_weights(backbone, tmp_path / "partial.pth")
    assert "\n" not in str(err.value)

    bigger = Backbone(Backbone.Config(variant="dinov2_b", depth=2, img_size=56, out_dim=16))
    torch.save(_official_state(bigger), tmp_path / "dinov2_vitb14_pretrain.pth")
    before = backbone.vit.blocks[0].attn.qkv.weight.clone()
    with pytest.raises(UserError, match="shape mismatch"):
        load_backbone_weights(backbone, tmp_path / "dinov2_vitb14_pretrain.pth")
    torch.testing.assert_close(backbone.vit.blocks[0].attn.qkv.weight, before)  # a failed load changes nothing


@pytest.mark.parametrize("variant", ["cnn", "hybrid"])
def test_conv_trunks_give_the_heads_three_levels_for_any_size(variant):
    backbone = Backbone(
        Backbone.Config(
            variant=variant, img_size=64, embed_dim=32, depth=2, num_heads=2, patch_size=8, out_dim=16, conv_width=8
        )
    )
    deep_stride = 16.0 if variant == "cnn" else 8.0  # the cnn's deepest level is one block further down
    for height, width in ((64, 64), (72, 100), (50, 33)):
        features = backbone(torch.rand(2, 3, height, width))
        h, w = -(-height // 8), -(-width // 8)  # stride-2 convolutions with padding round up
        assert tuple(features.maps[0].shape) == (2, 16, -(-height // 4), -(-width // 4))
        assert tuple(features.maps[1].shape) == (2, 16, h, w)
        assert features.fused.shape == (2, 16, h, w) and features.global_token.shape == (2, 16)
        assert features.strides == (4.0, 8.0, deep_stride) and features.stride == 8.0
    # trained from scratch: every parameter trains and counts as an encoder, pretrained weights are refused in one line
    assert all(p.requires_grad for p in backbone.parameters()) and backbone.config.from_scratch
    with pytest.raises(UserError, match="trained from scratch"):
        load_backbone_weights(backbone, "weights.pth")


def test_hybrid_trunk_attention_is_recorded():
    backbone = Backbone(
        Backbone.Config(
            variant="hybrid", img_size=32, embed_dim=16, depth=2, num_heads=2, patch_size=8, out_dim=8, conv_width=8
        )
    )
    backbone.record_attention = True
    features = backbone(torch.rand(2, 3, 32, 32))
    assert sorted(features.attention) == ["backbone.blocks.0", "backbone.blocks.1"]
    probs = features.attention["backbone.blocks.0"]
    assert probs.shape == (2, 2, 17, 17)  # a class token and 4x4 tokens
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 17))


def test_conv_trunk_config_errors_name_the_field():
    with pytest.raises(ValueError, match="power of 2"):
        Backbone.Config(variant="hybrid", patch_size=12)
    with pytest.raises(ValueError, match="conv_width"):
        Backbone.Config(variant="cnn", conv_width=4)
    with pytest.raises(ValueError, match="depth"):
        Backbone.Config(variant="scratch", depth=0)
    assert len(Backbone(Backbone.Config(variant="hybrid", img_size=32, depth=0, patch_size=8, out_dim=8)).blocks) == 0


class NotATensor:
    """A class torch's weights_only loader does not know."""


def test_a_pth_that_is_not_plain_tensors_is_one_line(tmp_path):
    path = tmp_path / "not_a_backbone.pth"
    torch.save({"model": NotATensor()}, path)  # weights_only refuses the class with a page of advice
    backbone = create_model("baseline_micro", **{"backbone.variant": "scratch"}).backbone  # a ViT takes weights
    with pytest.raises(UserError, match="as plain tensors .*official DINOv2 .pth or a timm .safetensors") as info:
        load_backbone_weights(backbone, path)
    assert "\n" not in str(info.value)


def test_a_pth_with_a_python_object_names_it_in_a_short_line(tmp_path):
    from amt_core.errors import UserError
    from amt_core.models import create_model
    from amt_core.models.backbone import load_backbone_weights

    path = tmp_path / "weights.pth"
    torch.save({"model": {"x": fractions.Fraction(1, 3)}}, path)
    backbone = create_model("baseline_micro", **{"backbone.variant": "scratch"}).backbone
    with pytest.raises(UserError) as info:
        load_backbone_weights(backbone, path)
    message = str(info.value)
    assert "fractions.Fraction" in message and "weights_only" not in message
    assert len(message) - len(str(path)) < 200  # PyTorch's own text was 464 characters before the path
