"""Every registered model: shapes, finiteness, gradients to every trainable parameter, checkpointing, the registry,
the collapse defences' switches, and batch MixUp."""

from __future__ import annotations

import pytest
import torch

from amt_core.errors import UserError
from amt_core.geometry.camera import project_to_image
from amt_core.models import AMTOutput, create_model, list_models, model_config, record_attention

EXPECTED = {f"{kind}_{size}" for kind in ("amt", "baseline") for size in ("micro", "cpu", "dinov2_s", "dinov2_b")}
EXPECTED |= {f"{kind}_dinov2_{s}" for kind in ("amt", "baseline") for s in ("l", "g")}
EXPECTED |= {"cnn_micro", "cnn_cpu"}  # the plain CNN reference of the side-by-side

# Tiny overrides so the DINOv2 variants build and run in a test (same family and width, 3 blocks, 56 px).
SMALL = {"backbone.depth": 3, "backbone.img_size": 56}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hand_layer():
    from amt_core.hand import HandModel

    return HandModel()


def _overrides(name: str) -> dict:
    return dict(SMALL) if "dinov2" in name else {}


def _build(name: str, hand_layer, **extra):
    kwargs = {**_overrides(name), **extra}
    if name.startswith("amt"):
        kwargs["hand_layer"] = hand_layer
    return create_model(name, **kwargs)


def _batch(size: int, batch: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[1.2 * size, 0.0, size / 2], [0.0, 1.2 * size, size / 2], [0.0, 0.0, 1.0]])
    return {"image": torch.rand(batch, 3, size, size, generator=g), "K": K.expand(batch, 3, 3).clone()}


def _scalar_of_everything(out: AMTOutput) -> torch.Tensor:
    total = out.joints3d.sum() * 0
    for value in vars(out).values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            total = total + value.float().mean()
    for step in out.joints3d_steps:
        total = total + step.mean()
    return total


def test_registry_lists_every_variant():
    assert set(list_models()) == EXPECTED
    assert list_models("baseline_*") == sorted(n for n in EXPECTED if n.startswith("baseline"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_backward(name, hand_layer):
    torch.manual_seed(0)
    # Stochastic depth off: a dropped residual branch legitimately gets no gradient on a batch of two.
    no_drop_path = {} if name.startswith("cnn") else {"backbone.drop_path": 0.0}
    if name.startswith("amt"):
        no_drop_path |= {f"{part}.block.drop_path": 0.0 for part in ("hand", "refine", "object", "contact")}
    model = _build(name, hand_layer, **no_drop_path)
    model.train()
    size = model.config.backbone.img_size if hasattr(model.config, "backbone") else 64
    batch = _batch(size)
    out = model(batch)
    assert isinstance(out, AMTOutput)
    assert out.joints3d.shape == (2, 21, 3)
    assert torch.isfinite(out.joints3d).all()
    torch.testing.assert_close(out.joints2d, project_to_image(out.joints3d, batch["K"]))
    assert (out.joints3d[..., 2] > 0).all(), "joints must start in front of the camera"
    if name.startswith("amt"):
        V = hand_layer.num_verts
        assert out.hand_verts.shape == (2, V, 3)
        assert out.contact_prob.shape == (2, V)
        assert ((out.contact_prob >= 0) & (out.contact_prob <= 1)).all()
        assert len(out.joints3d_steps) == 3 and out.joints3d_steps[-1] is out.joints3d
        assert out.joints3d_logvar.shape == (2, 21, 3)
        assert out.hand_pose.shape == (2, 45) and out.hand_shape.shape == (2, 10)
        assert out.hand_rot.shape == (2, 3) and out.hand_trans.shape == (2, 3)
        R = out.obj_rot
        torch.testing.assert_close(R.transpose(1, 2) @ R, torch.eye(3).expand(2, 3, 3), atol=1e-5, rtol=0)
        assert torch.allclose(torch.linalg.det(R), torch.ones(2), atol=1e-5)
        from amt_core.objects import num_classes

        assert out.obj_logits.shape == (2, num_classes())
        assert out.contact_points.shape[-1] == 3 and out.contact_forces.shape == out.contact_points.shape
        for value in vars(out).values():
            if isinstance(value, torch.Tensor):
                assert torch.isfinite(value).all()
    else:
        assert out.hand_verts is None and out.obj_rot is None and out.joints3d_coarse is None

    _scalar_of_everything(out).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    zero = [n for n, p in trainable if p.grad.abs().sum() == 0]
    assert not zero, f"parameters whose gradient is exactly zero: {zero[:5]}"


@pytest.mark.parametrize("name", ["amt_micro", "baseline_micro"])
def test_gradient_checkpointing_gives_the_same_output(name, hand_layer):
    torch.manual_seed(0)
    model = _build(name, hand_layer, **{"backbone.variant": "scratch"}).eval()  # timm's checkpointing is the ViT's
    batch = _batch(64)
    with torch.no_grad():
        plain = model(batch)
    model.set_grad_checkpointing(True)
    with torch.no_grad():
        checkpointed = model(batch)
    torch.testing.assert_close(checkpointed.joints3d, plain.joints3d)
    model.train()
    torch.manual_seed(1)
    out = model(batch)
    out.joints3d.sum().backward()  # the checkpointed backward path runs
    assert all(p.grad is not None for p in model.backbone.vit.blocks[0].parameters())


def test_dinov2_sizes_and_freezing_on_meta_device():
    # Full-size backbones on the meta device: no memory, real parameter counts (DINOv2 S/B/L/g ~ 22M/86M/304M/1.1B).
    expected = {
        "dinov2_s": (21e6, 23e6),
        "dinov2_b": (85e6, 88e6),
        "dinov2_l": (300e6, 306e6),
        "dinov2_g": (1.1e9, 1.2e9),
    }
    for size, (low, high) in expected.items():
        with torch.device("meta"):
            model = create_model(f"baseline_{size}")
        vit = model.backbone.vit
        count = sum(p.numel() for p in vit.parameters())
        assert low < count < high, (size, count)
        depth = len(vit.blocks)
        assert model.backbone.frozen_blocks == 2 * depth // 3
        assert not any(p.requires_grad for p in vit.blocks[0].parameters())
        assert all(p.requires_grad for p in vit.blocks[-1].parameters())
        assert not vit.patch_embed.proj.weight.requires_grad
        assert model.param_group_of("backbone.vit.blocks.11.attn.qkv.weight") == "backbone"
        assert model.param_group_of("mlp.0.weight") == "decoders"


def test_scratch_backbone_trains_everything(hand_layer):
    model = create_model("amt_micro", hand_layer=hand_layer)
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert model.param_group_of("backbone.vit.blocks.0.attn.qkv.weight") == "encoders"
    assert model.param_group_of("refine.offset_head.weight") == "decoders"
    assert not any(p.requires_grad for p in model.hand_layer.parameters())


def test_overrides_dotted_keys_and_errors(hand_layer):
    model = create_model("amt_micro", hand_layer=hand_layer, **{"refine.steps": "4", "hand.sigma.enabled": "false"})
    assert model.config.refine.steps == 4 and model.config.hand.sigma.enabled is False
    out = model(_batch(64))
    assert len(out.joints3d_steps) == 4
    assert float(out.kl) == 0.0
    with pytest.raises(UserError, match="refine.stepz"):
        model_config("amt_micro", **{"refine.stepz": 3})
    with pytest.raises(UserError, match="steps must be >= 0"):
        model_config("amt_micro", **{"refine.steps": -1})
    with pytest.raises(UserError, match="expected int"):
        model_config("amt_micro", **{"refine.steps": "three"})
    with pytest.raises(UserError, match="unknown model 'amt_huge'"):
        create_model("amt_huge")
    assert model_config("amt_micro", **{"object.num_classes": 5}).object.num_classes == 5
    assert model_config("amt_micro", **{"backbone.feature_layers": "1,2,4"}).backbone.feature_layers == (1, 2, 4)


def test_eval_is_deterministic_and_training_noise_switches(hand_layer):
    torch.manual_seed(0)
    # the seed's defences, off in the micro defaults (docs/learning.md), switched on
    defences = {"hand.sigma.enabled": True, "noise.enabled": True, "backbone.drop_path": 0.1}
    model = create_model("amt_micro", hand_layer=hand_layer, **defences)
    batch = _batch(64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch).joints3d, model(batch).joints3d)
    model.train()
    with torch.no_grad():
        a, b = model(batch).joints3d, model(batch).joints3d
    assert (a - b).abs().max() > 1e-6, "SigmaReparam / FeatureNoise / DropPath must perturb training passes"
    quiet = {"hand.sigma.enabled": False, "noise.enabled": False, "backbone.drop_path": 0.0}
    for part in ("hand", "refine", "object", "contact"):
        quiet |= {f"{part}.block.drop_path": 0.0, f"{part}.block.dropout": 0.0}
    model = create_model("amt_micro", hand_layer=hand_layer, **quiet).train()
    with torch.no_grad():
        torch.testing.assert_close(model(batch).joints3d, model(batch).joints3d)


def test_root_depth_follows_the_focal_length(hand_layer):
    # Same image, focal length doubled: the same apparent hand must be twice as far away (depth from K, not memorised).
    model = create_model("baseline_micro").eval()
    batch = _batch(64)
    wide = dict(batch, K=batch["K"].clone())
    wide["K"][:, 0, 0] *= 2
    wide["K"][:, 1, 1] *= 2
    with torch.no_grad():
        z1 = model(batch).joints3d[:, 0, 2]
        z2 = model(wide).joints3d[:, 0, 2]
    torch.testing.assert_close(z2, 2 * z1)


@pytest.mark.parametrize("trunk", ["cnn", "hybrid", "scratch"])
def test_any_image_size_and_attention_recording(hand_layer, trunk):
    model = create_model("amt_micro", hand_layer=hand_layer, **{"backbone.variant": trunk}).eval()
    batch = {"image": torch.rand(2, 3, 72, 88), "K": _batch(64)["K"]}
    with torch.no_grad():
        plain = model(batch)
        assert plain.attention == {}
        with record_attention(model):
            recorded = model(batch)
    torch.testing.assert_close(recorded.joints3d, plain.joints3d, atol=1e-5, rtol=1e-4)
    names = set(recorded.attention)
    # the trunk's attention is recorded where it has transformer blocks (the hybrid and the ViT, not the cnn)
    assert sum(n.startswith("backbone.blocks.") for n in names) == len(model.backbone.blocks)
    assert (trunk == "cnn") == (len(model.backbone.blocks) == 0)
    assert any(n.startswith("hand_encoder.") for n in names) and any(n.startswith("contact_head.") for n in names)
    for probs in recorded.attention.values():
        assert probs.dim() == 4
        torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
    with torch.no_grad():
        assert model(batch).attention == {}


def test_batch_mixup_pairs_and_weights():
    from amt_core.train.mixup import MixUpConfig, mixup_batch

    batch = _batch(16, batch=6)
    g = torch.Generator().manual_seed(3)
    mixed, info = mixup_batch(batch, MixUpConfig(alpha=0.4, prob=1.0), g)
    assert sorted(info.index.tolist()) == list(range(6))
    assert ((info.lam >= 0.5) & (info.lam <= 1.0)).all()
    lam = info.lam.view(-1, 1, 1, 1)
    expected = lam * batch["image"] + (1 - lam) * batch["image"][info.index]
    torch.testing.assert_close(mixed["image"], expected)
    assert mixed["K"] is batch["K"]
    # Same generator state -> same draw; prob 0 or disabled -> untouched.
    again, info2 = mixup_batch(batch, MixUpConfig(alpha=0.4, prob=1.0), torch.Generator().manual_seed(3))
    torch.testing.assert_close(again["image"], mixed["image"])
    same, info3 = mixup_batch(batch, MixUpConfig(prob=0.0), g)
    assert same["image"] is batch["image"] and (info3.lam == 1).all()
    with pytest.raises(ValueError, match="alpha"):
        MixUpConfig(alpha=0.0)


def test_bench_model_reports_figures():
    import argparse

    from amt_core.bench import model as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--preset", "micro", "--batch-size", "2", "--iters", "1", "--warmup", "0"])
    result = bench.run(args)
    assert [row["model"] for row in result["rows"]] == ["amt_micro", "baseline_micro"]
    for row in result["rows"]:
        assert row["fwd_img_s"] > 0 and row["train_img_s"] > 0 and row["bs1_ms"] > 0 and row["params_M"] > 0
    amt, baseline = result["rows"]
    assert result["images_per_s"] == amt["train_img_s"]
    assert result["micro_amt_vs_baseline_train"] == pytest.approx(amt["train_img_s"] / baseline["train_img_s"])
