"""Attention backends: each available one matches the math path; selection (argument > AMT_ATTN > auto) and each
backend's one-line problem; probabilities on demand; the backbone's captured probabilities match timm's own non-fused
attention; one backend per model reaches timm's attention modules without changing the output or the state_dict."""

from __future__ import annotations

import pytest
import torch

from amt_core.accel import attention as autotuner
from amt_core.accel import probe
from amt_core.errors import UserError
from amt_core.models import attention
from amt_core.models.attention import (
    BACKENDS,
    CUDA_BACKENDS,
    Attention,
    attention_math,
    available_backends,
    collect_attention,
    record_attention,
    select_backend,
)


def test_every_machine_has_sdpa_and_math_and_a_lone_layer_starts_on_sdpa(monkeypatch):
    monkeypatch.delenv("AMT_ATTN", raising=False)
    backends = available_backends()
    assert backends[-2:] == ["sdpa", "math"]
    # auto needs a shape to measure: a layer built on its own runs torch's SDPA until the model is tuned.
    assert select_backend() == "sdpa"
    assert select_backend("auto") == "sdpa"
    assert Attention(Attention.Config(num_heads=2), 16).backend == "sdpa"


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
    device = "cuda" if backend in CUDA_BACKENDS else "cpu"
    torch.manual_seed(0)
    config = Attention.Config(num_heads=4)
    reference = Attention(config, 32, context_dim=24 if cross else None, backend="math").to(device)
    layer = Attention(config, 32, context_dim=24 if cross else None, backend=backend).to(device)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(3, 11, 32, device=device)
    context = torch.randn(3, 7, 24, device=device) if cross else None
    tolerance = 2e-2 if device == "cuda" else 1e-5  # FlashAttention, SDPA's flash and cuDNN compute in bf16
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


# ------------------------------------------------------------------------------------------- selection and problems


def test_selection_order_is_argument_then_environment_then_auto(monkeypatch):
    monkeypatch.delenv("AMT_ATTN", raising=False)
    assert attention.requested_mode() == "auto"
    assert attention.requested_mode("math") == "math"
    monkeypatch.setenv("AMT_ATTN", "math")
    assert attention.requested_mode() == "math"
    assert attention.requested_mode("auto") == "math"  # an argument of auto is no preference
    assert attention.requested_mode("sdpa") == "sdpa"  # a named backend beats the environment
    assert Attention(Attention.Config(num_heads=2), 16, backend="sdpa").backend == "sdpa"
    monkeypatch.setenv("AMT_ATTN", " AUTO ")
    assert attention.requested_mode() == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without CUDA")
@pytest.mark.parametrize("name", CUDA_BACKENDS)
def test_every_cuda_backend_names_the_fix_on_the_cpu(monkeypatch, name):
    monkeypatch.delenv("AMT_ATTN", raising=False)
    problem = attention.backend_problem(name)
    assert problem == f"attention backend '{name}' needs a CUDA GPU (none found); use AMT_ATTN=sdpa or auto"
    assert name not in available_backends()
    with pytest.raises(UserError) as caught:
        select_backend(name)
    assert str(caught.value) == problem and "\n" not in problem
    monkeypatch.setenv("AMT_ATTN", name)
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        Attention(Attention.Config(num_heads=2), 16)
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        autotuner.set_attention_backend(
            torch.nn.Sequential(Attention(Attention.Config(num_heads=2), 16, backend="sdpa"))
        )


def _fake_gpu(monkeypatch, capability, *, flash_modules: bool, cudnn: int | None = 90400, torch_flash: bool = True):
    """Stand in for a GPU of `capability`, with or without the FlashAttention packages, on any machine."""
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name in ("flash_attn", "flash_attn_interface"):
            return object() if flash_modules else None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(probe, "cuda_capability", lambda device=None: capability)
    monkeypatch.setattr(probe, "cudnn_version", lambda: cudnn)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(torch.backends.cuda, "is_flash_attention_available", lambda: torch_flash)


def test_missing_flash_attention_packages_say_what_to_install_even_on_hopper(monkeypatch):
    _fake_gpu(monkeypatch, (9, 0), flash_modules=False)
    fa3, fa2 = attention.backend_problem("fa3"), attention.backend_problem("fa2")
    assert "needs FlashAttention-3" in fa3 and "install it" in fa3
    assert "needs flash-attn" in fa2 and "pip install flash-attn" in fa2
    assert available_backends() == ["sdpa_cudnn", "sdpa_flash", "sdpa_efficient", "sdpa", "math"]
    for name in ("fa3", "fa2"):
        with pytest.raises(UserError, match="install"):
            select_backend(name)
    _fake_gpu(monkeypatch, (9, 0), flash_modules=True)
    assert available_backends() == list(BACKENDS)
    assert select_backend("fa3") == "fa3"


def test_old_gpus_and_old_libraries_name_the_fix(monkeypatch):
    _fake_gpu(monkeypatch, (8, 0), flash_modules=True, cudnn=8907)
    assert attention.backend_problem("fa3") == (
        "FlashAttention-3 needs a Hopper GPU (compute capability 9.x, found 8.0); use AMT_ATTN=fa2"
    )
    assert attention.backend_problem("fa2") is None
    assert attention.backend_problem("sdpa_cudnn") == (
        "cuDNN attention needs cuDNN 9.0+ (found 8.9.7); use AMT_ATTN=sdpa_flash"
    )
    _fake_gpu(monkeypatch, (7, 5), flash_modules=True, torch_flash=True)
    for name in ("fa2", "sdpa_flash", "sdpa_cudnn"):
        problem = attention.backend_problem(name)
        assert "compute capability 8.0+ (found 7.5)" in problem and "use AMT_ATTN=" in problem
    assert attention.backend_problem("sdpa_efficient") is None
    _fake_gpu(monkeypatch, (9, 0), flash_modules=True, cudnn=None, torch_flash=False)
    assert "has no cuDNN attention" in attention.backend_problem("sdpa_cudnn")
    assert "no SDPA flash kernel" in attention.backend_problem("sdpa_flash")
    for name in BACKENDS:
        problem = attention.backend_problem(name)
        assert problem is None or "\n" not in problem


# ------------------------------------------------------------------------------------ one backend for the whole model


def _micro_batch(batch: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[77.0, 0.0, 32.0], [0.0, 77.0, 32.0], [0.0, 0.0, 1.0]])
    return {"image": torch.rand(batch, 3, 64, 64, generator=g), "K": K.expand(batch, 3, 3).clone()}


def _timm_attention_modules(model):
    from timm.models.vision_transformer import Attention as VitAttention

    return [m for m in model.modules() if isinstance(m, VitAttention)]


@pytest.mark.parametrize("name", ["sdpa", "math"])
def test_one_backend_reaches_timm_attention_and_keeps_the_output(monkeypatch, micro, name):
    import copy

    monkeypatch.delenv("AMT_ATTN", raising=False)
    model = copy.deepcopy(micro)
    keys = list(model.state_dict())
    assert autotuner.set_attention_backend(model, name) == name
    assert autotuner.attention_backend_of(model) == name
    assert model.attention_backend_reason == f"argument: {name}"
    timm_modules = _timm_attention_modules(model)
    assert len(timm_modules) == len(model.backbone.vit.blocks)
    assert all(type(m) is attention.TimmAttention and m.attention_backend == name for m in timm_modules)
    assert all(m.backend == name for m in model.modules() if isinstance(m, Attention))
    assert list(model.state_dict()) == keys

    calls = []
    real_attend = attention.attend

    def spy(q, k, v, backend, **kwargs):
        calls.append(backend)
        return real_attend(q, k, v, backend, **kwargs)

    monkeypatch.setattr(attention, "attend", spy)
    batch = _micro_batch()
    with torch.no_grad():
        patched = model(batch)
        patched_calls = list(calls)
        reference = micro(batch)
    ours = sum(isinstance(m, Attention) for m in model.modules())
    # Every timm block and every one of our layers ran through the one kernel entry point, with the one backend.
    assert len(patched_calls) >= len(timm_modules) + ours and set(patched_calls) == {name}
    for field in ("joints3d", "hand_verts", "obj_rot", "contact_prob"):
        expected = getattr(reference, field, None)
        if expected is not None:
            torch.testing.assert_close(getattr(patched, field), expected, atol=1e-5, rtol=1e-4)


def test_a_patched_model_loads_into_an_unpatched_one_and_copies(micro):
    import copy
    import io

    model = copy.deepcopy(micro)
    autotuner.set_attention_backend(model, "math")
    fresh = copy.deepcopy(micro)
    fresh.load_state_dict(model.state_dict(), strict=True)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    assert type(restored.backbone.vit.blocks[0].attn) is attention.TimmAttention
    assert autotuner.attention_backend_of(restored) == "math"
    # Re-tuning a patched model keeps it patched and changes the backend everywhere.
    autotuner.set_attention_backend(model, "sdpa")
    assert {m.attention_backend for m in _timm_attention_modules(model)} == {"sdpa"}


def test_record_attention_still_yields_backbone_probabilities_after_patching(micro):
    import copy

    model = copy.deepcopy(micro)
    autotuner.set_attention_backend(model, "sdpa")
    batch = _micro_batch()
    with torch.no_grad(), record_attention(model):
        patched = model(batch).attention
    with torch.no_grad(), record_attention(micro):
        reference = micro(batch).attention
    blocks = {f"backbone.blocks.{i}" for i in range(len(model.backbone.vit.blocks))}
    assert blocks <= set(patched) and set(patched) == set(reference)
    for name in blocks:
        probs = patched[name]
        assert probs.shape[-1] == probs.shape[-2] == 65  # 8x8 patches and the class token
        torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
        torch.testing.assert_close(probs, reference[name])
    assert all(not m.record_probs for m in model.modules() if isinstance(m, Attention))


def test_the_environment_decides_when_the_argument_is_auto(monkeypatch, micro):
    import copy

    model = copy.deepcopy(micro)
    monkeypatch.setenv("AMT_ATTN", "math")
    assert autotuner.set_attention_backend(model) == "math"
    assert model.attention_backend_reason == "$AMT_ATTN: math"
    assert autotuner.set_attention_backend(model, "sdpa") == "sdpa"
    monkeypatch.delenv("AMT_ATTN")
    assert autotuner.set_attention_backend(model) == "sdpa"
    assert autotuner.attention_backend_reason(model) == attention.CPU_REASON
    assert autotuner.attention_backend_of(torch.nn.Linear(2, 2)) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", [b for b in available_backends() if b in CUDA_BACKENDS])
def test_each_cuda_backend_on_the_patched_model_matches_timm(micro, name):
    import copy

    model = copy.deepcopy(micro).cuda()
    reference = copy.deepcopy(micro).cuda()
    assert autotuner.set_attention_backend(model, name) == name
    batch = {k: v.cuda() for k, v in _micro_batch().items()}
    with torch.no_grad():
        torch.testing.assert_close(model(batch).joints3d, reference(batch).joints3d, atol=2e-2, rtol=2e-2)
