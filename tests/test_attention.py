"""Attention backends: each available one matches the math path; forcing by AMT_ATTN; probabilities on demand;
the backbone's captured probabilities match timm's own non-fused attention."""

from __future__ import annotations

import pytest
import torch

from amt_core.errors import UserError
from amt_core.models.attention import (
    Attention,
    attention_math,
    available_backends,
    collect_attention,
    record_attention,
    select_backend,
)


def test_cpu_has_sdpa_and_math_and_picks_the_best(monkeypatch):
    monkeypatch.delenv("AMT_ATTN", raising=False)
    backends = available_backends()
    assert backends[-2:] == ["sdpa", "math"]
    assert select_backend() == backends[0]


def test_environment_variable_forces_a_backend(monkeypatch):
    monkeypatch.setenv("AMT_ATTN", "math")
    assert select_backend() == "math"
    assert Attention(Attention.Config(num_heads=2), 16).backend == "math"
    monkeypatch.setenv("AMT_ATTN", "nonsense")
    with pytest.raises(UserError, match="unknown attention backend 'nonsense'"):
        select_backend()
    if not torch.cuda.is_available():
        for name in ("fa2", "fa3"):
            monkeypatch.setenv("AMT_ATTN", name)
            with pytest.raises(UserError, match="needs a CUDA GPU"):
                Attention(Attention.Config(num_heads=2), 16)


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("cross", [False, True])
def test_each_available_backend_matches_math(backend, cross):
    device = "cuda" if backend in ("fa2", "fa3") else "cpu"
    torch.manual_seed(0)
    config = Attention.Config(num_heads=4)
    reference = Attention(config, 32, context_dim=24 if cross else None, backend="math").to(device)
    layer = Attention(config, 32, context_dim=24 if cross else None, backend=backend).to(device)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(3, 11, 32, device=device)
    context = torch.randn(3, 7, 24, device=device) if cross else None
    tolerance = 2e-2 if device == "cuda" else 1e-5  # FlashAttention computes in bf16
    torch.testing.assert_close(layer(x, context), reference(x, context), atol=tolerance, rtol=tolerance)


def test_math_reference_is_softmax_attention():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    out, probs = attention_math(q, k, v)
    manual = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
    torch.testing.assert_close(probs, manual)
    torch.testing.assert_close(out, manual @ v)
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_probabilities_only_on_demand():
    torch.manual_seed(0)
    model = torch.nn.Sequential(Attention(Attention.Config(num_heads=2), 16))
    x = torch.randn(2, 5, 16)
    fast = model(x)
    assert model[0].last_probs is None
    with record_attention(model):
        recorded = model(x)
        probs = collect_attention(model)
    torch.testing.assert_close(recorded, fast, atol=1e-5, rtol=1e-5)
    assert set(probs) == {"0"}
    assert probs["0"].shape == (2, 2, 5, 5)
    torch.testing.assert_close(probs["0"].sum(-1), torch.ones(2, 2, 5))
    assert not model[0].record_probs and model[0].last_probs is None


def test_backbone_probabilities_match_timm_non_fused_attention():
    from amt_core.models.backbone import Backbone

    torch.manual_seed(0)
    backbone = Backbone(Backbone.Config(img_size=32, embed_dim=32, depth=2, num_heads=2, patch_size=8, out_dim=16))
    backbone.eval()
    image = torch.rand(1, 3, 32, 32)
    # timm's own probabilities: its non-fused path passes them through the public attn_drop module.
    reference = {}
    handles = []
    for index, block in enumerate(backbone.vit.blocks):
        block.attn.fused_attn = False
        handles.append(
            block.attn.attn_drop.register_forward_hook(lambda m, i, o, index=index: reference.__setitem__(index, o))
        )
    with torch.no_grad():
        backbone(image)
    for handle in handles:
        handle.remove()
    for block in backbone.vit.blocks:
        block.attn.fused_attn = True
    with torch.no_grad(), record_attention(backbone):
        captured = backbone(image).attention
    assert set(captured) == {"backbone.blocks.0", "backbone.blocks.1"}
    for index in range(2):
        torch.testing.assert_close(captured[f"backbone.blocks.{index}"], reference[index], atol=1e-6, rtol=1e-5)
