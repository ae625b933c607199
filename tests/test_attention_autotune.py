"""`auto` attention: measured on CUDA with an injectable timer, the fastest kept, cached by GPU/torch/shape, a corrupt
or unwritable cache survived, the CPU resolved to sdpa without measuring, and `set_attention_backend` sizing the
measurement from the model's ViT. A stand-in GPU (monkeypatched probes) lets the CUDA logic run on the CPU."""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest
import torch

from amt_core.accel import attention as autotuner
from amt_core.accel import probe
from amt_core.accel.attention import AttentionShape, autotune, set_attention_backend
from amt_core.errors import UserError
from amt_core.models import attention
from amt_core.models.attention import Attention

CANDIDATES = ["sdpa_cudnn", "sdpa_flash", "sdpa_efficient", "sdpa"]
TIMES = {"sdpa_cudnn": 0.31, "sdpa_flash": 0.25, "sdpa_efficient": 0.42, "sdpa": 0.27, "fa2": 0.22, "fa3": 0.2}


class FakeTimer:
    """Milliseconds from a table; records what it was asked; raises for the backends in `broken`."""

    def __init__(self, times: dict[str, float] | None = None, broken: tuple[str, ...] = ()):
        self.times = dict(TIMES if times is None else times)
        self.broken = broken
        self.calls: list[tuple[str, AttentionShape]] = []

    def __call__(self, backend: str, shape: AttentionShape) -> float:
        self.calls.append((backend, shape))
        if backend in self.broken:
            raise RuntimeError("No available kernel. Aborting execution.\n(the kernels' warnings)")
        return self.times[backend]

    @property
    def backends(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """A stand-in Hopper GPU named 'Fake H200' without FlashAttention packages; the cache in a temporary folder."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name in ("flash_attn", "flash_attn_interface"):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(probe, "cuda_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(probe, "gpu_name", lambda device: "Fake H200")
    monkeypatch.setattr(probe, "cudnn_version", lambda: 90400)
    monkeypatch.setattr(torch.backends.cuda, "is_flash_attention_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setenv("AMT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AMT_ATTN", raising=False)
    return tmp_path / "cache" / autotuner.CACHE_FILE


def _tune(timer, path, tokens=257, dtype=torch.bfloat16, candidates=CANDIDATES, **kwargs):
    return autotune(tokens, 64, 16, dtype, "cuda", candidates=candidates, timer=timer, cache_path=path, **kwargs)


def test_cpu_resolves_to_sdpa_without_measuring(tmp_path):
    timer = FakeTimer()
    path = tmp_path / "tune.json"
    result = autotune(257, 64, 16, torch.float32, "cpu", timer=timer, cache_path=path)
    assert result.backend == "sdpa" and result.source == "cpu"
    assert result.reason == attention.CPU_REASON and "math the reference" in result.reason
    assert autotune(1370, 64, 16, torch.float32, torch.device("cpu"), timer=timer, cache_path=path).backend == "sdpa"
    assert timer.calls == [] and not path.exists()


def test_the_fastest_wins_and_is_cached_under_gpu_torch_and_shape(fake_gpu, tmp_path):
    timer = FakeTimer()
    path = tmp_path / "tune.json"
    result = _tune(timer, path, batch=4)
    assert result.backend == "sdpa_flash"
    assert timer.backends == CANDIDATES
    shape = timer.calls[0][1]
    assert (shape.tokens, shape.head_dim, shape.num_heads, shape.batch) == (257, 64, 16, 4)
    assert shape.dtype == torch.bfloat16 and shape.device.type == "cuda"
    assert result.reason == (
        "auto: sdpa_flash fastest of [sdpa_flash 0.25 ms, sdpa 0.27 ms, sdpa_cudnn 0.31 ms, sdpa_efficient 0.42 ms] "
        "at 257 tokens (measured, cached)"
    )
    entries = json.loads(path.read_text())
    (key,) = entries
    for part in ("Fake H200", f"torch {torch.__version__}", "bfloat16", "tokens=257", "head_dim=64", "heads=16"):
        assert part in key.split("|")
    assert entries[key]["backend"] == "sdpa_flash"
    assert entries[key]["times_ms"] == {name: TIMES[name] for name in CANDIDATES}
    assert sorted(entries[key]["candidates"]) == sorted(CANDIDATES)


def test_the_cache_is_read_back_and_keyed_by_shape_dtype_gpu_and_candidates(fake_gpu, tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    _tune(FakeTimer(), path)
    again = FakeTimer(times={**TIMES, "sdpa": 0.01})  # would win if it were measured
    result = _tune(again, path)
    assert again.calls == [] and result.source == "cache" and result.backend == "sdpa_flash"
    assert result.reason.endswith("at 257 tokens (from cache)")

    # Another token count, dtype, GPU or candidate set is another measurement, kept beside the first.
    assert _tune(again, path, tokens=1370).backend == "sdpa"
    assert _tune(again, path, dtype=torch.float16).backend == "sdpa"
    monkeypatch.setattr(probe, "gpu_name", lambda device: "Fake H100")
    assert _tune(again, path).backend == "sdpa"
    assert _tune(again, path, candidates=["fa2", *CANDIDATES]).backend == "sdpa"
    assert len(again.calls) == 4 * len(CANDIDATES) + 1
    entries = json.loads(path.read_text())
    keys = list(entries)
    assert len(keys) == 4  # the new candidate set replaced the measurement under the same key
    assert "fa2" in entries[next(k for k in keys if k.startswith("Fake H100|"))]["candidates"]
    assert any("tokens=1370" in k for k in keys) and any("float16" in k.split("|") for k in keys)
    assert any(k.startswith("Fake H100|") for k in keys)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda entries: b"\x00\xff not json at all",
        lambda entries: b"[1, 2, 3]",
        lambda entries: b'{"truncated": ',
        lambda entries: json.dumps({k: "not an entry" for k in entries}).encode(),
        lambda entries: json.dumps({k: {**e, "backend": "warp_drive"} for k, e in entries.items()}).encode(),
        lambda entries: json.dumps({k: {**e, "times_ms": {"sdpa_flash": "fast"}} for k, e in entries.items()}).encode(),
        lambda entries: json.dumps({k: {"backend": "sdpa_flash"} for k in entries}).encode(),
    ],
    ids=["binary", "list", "truncated", "entry-string", "unknown-backend", "bad-times", "no-candidates"],
)
def test_a_corrupt_cache_is_measured_again_and_rewritten(fake_gpu, tmp_path, corrupt):
    path = tmp_path / "tune.json"
    _tune(FakeTimer(), path)
    path.write_bytes(corrupt(json.loads(path.read_text())))
    timer = FakeTimer(times={**TIMES, "sdpa_efficient": 0.05})
    result = _tune(timer, path)
    assert timer.backends == CANDIDATES and result.source == "measured" and result.backend == "sdpa_efficient"
    (entry,) = json.loads(path.read_text()).values()
    assert entry["backend"] == "sdpa_efficient"


def test_an_unreadable_and_unwritable_cache_is_survived(fake_gpu, tmp_path):
    blocked = tmp_path / "is-a-folder"
    blocked.mkdir()
    timer = FakeTimer()
    result = _tune(timer, blocked)
    assert result.backend == "sdpa_flash" and timer.backends == CANDIDATES
    assert "(measured, not cached: " in result.reason


def test_candidates_that_fail_are_left_out_and_nothing_measured_means_sdpa(fake_gpu, tmp_path):
    path = tmp_path / "tune.json"
    result = _tune(FakeTimer(broken=("sdpa_flash", "sdpa_cudnn")), path)
    assert result.backend == "sdpa"
    assert result.failed == {name: "RuntimeError: No available kernel. Aborting execution." for name in CANDIDATES[:2]}
    assert set(result.times_ms) == {"sdpa_efficient", "sdpa"}

    nothing = tmp_path / "nothing.json"
    result = _tune(FakeTimer(broken=tuple(CANDIDATES)), nothing)
    assert result.backend == "sdpa" and not nothing.exists()
    assert result.reason.startswith("auto: sdpa (nothing could be measured at 257 tokens: sdpa_cudnn: RuntimeError")
    result = _tune(FakeTimer(times={**TIMES, "sdpa": float("nan")}), tmp_path / "nan.json")
    assert result.failed == {"sdpa": "timer returned nan"} and result.backend == "sdpa_flash"


def test_default_candidates_are_the_cuda_backends_that_can_run_never_math(fake_gpu, tmp_path):
    timer = FakeTimer()
    backend = autotune(257, 64, 16, torch.bfloat16, "cuda", timer=timer, cache_path=tmp_path / "t.json").backend
    assert timer.backends == CANDIDATES  # no flash-attn packages on the stand-in GPU
    assert backend == "sdpa_flash"
    with pytest.raises(ValueError, match="autotune candidates"):
        _tune(timer, tmp_path / "t.json", candidates=["warp_drive"])
    with pytest.raises(ValueError, match="AttentionShape.tokens"):
        _tune(timer, tmp_path / "t.json", tokens=0)


# ------------------------------------------------------------------------------------------- set_attention_backend


def test_auto_measures_at_the_backbones_token_count_and_applies_everywhere(fake_gpu, micro):
    model = copy.deepcopy(micro)
    keys = list(model.state_dict())
    timer = FakeTimer()
    assert set_attention_backend(model, "auto", device="cuda", timer=timer) == "sdpa_flash"
    shape = timer.calls[0][1]
    vit = model.backbone.vit
    assert shape.tokens == 8 * 8 + 1 == vit.patch_embed.grid_size[0] * vit.patch_embed.grid_size[1] + 1
    assert (shape.head_dim, shape.num_heads, shape.dtype) == (32, 2, torch.float32)
    assert model.attention_backend == "sdpa_flash"
    assert model.attention_backend_reason.startswith("auto: sdpa_flash fastest of [sdpa_flash 0.25 ms")
    assert model.attention_backend_reason.endswith("at 65 tokens (measured, cached)")
    assert fake_gpu.is_file()  # the default cache: cache_dir() / attention_autotune.json
    backends = {m.backend for m in model.modules() if isinstance(m, Attention)}
    backends |= {m.attention_backend for m in model.modules() if isinstance(m, attention.TimmAttention)}
    assert backends == {"sdpa_flash"} and list(model.state_dict()) == keys

    # A CUDA-tuned model inspected on the CPU runs SDPA in its place and gives the same output.
    g = torch.Generator().manual_seed(1)
    K = torch.tensor([[77.0, 0.0, 32.0], [0.0, 77.0, 32.0], [0.0, 0.0, 1.0]]).expand(1, 3, 3).clone()
    batch = {"image": torch.rand(1, 3, 64, 64, generator=g), "K": K}
    with torch.no_grad():
        torch.testing.assert_close(model(batch).joints3d, micro(batch).joints3d, atol=1e-5, rtol=1e-4)

    # The training dtype and another token count are measured as asked; the earlier result comes from the cache.
    timer = FakeTimer(times={**TIMES, "sdpa_cudnn": 0.1})
    assert set_attention_backend(model, device="cuda", dtype=torch.bfloat16, tokens=1370, timer=timer) == "sdpa_cudnn"
    assert {(s.tokens, s.dtype) for _, s in timer.calls} == {(1370, torch.bfloat16)}
    assert set_attention_backend(model, device="cuda", timer=timer) == "sdpa_flash"
    assert model.attention_backend_reason.endswith("(from cache)")


def test_a_forced_backend_that_fails_at_the_models_shape_is_one_line(fake_gpu, micro):
    model = copy.deepcopy(micro)
    timer = FakeTimer(broken=("sdpa_cudnn",))
    with pytest.raises(UserError) as caught:
        set_attention_backend(model, "sdpa_cudnn", device="cuda", timer=timer)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("attention backend 'sdpa_cudnn' cannot run 2 heads of 32 at 65 tokens in float32")
    assert "on Fake H200 (RuntimeError: No available kernel. Aborting execution.); use AMT_ATTN=auto" in message
    assert timer.calls[0][1].batch == 1
    assert autotuner.attention_backend_of(model) is None  # nothing was applied
    assert set_attention_backend(model, "sdpa_efficient", device="cuda", timer=timer) == "sdpa_efficient"
    assert model.attention_backend_reason == "argument: sdpa_efficient"
    with pytest.raises(UserError, match="needs flash-attn"):
        set_attention_backend(model, "fa2", device="cuda", timer=timer)


def test_a_model_without_a_vit_measures_only_when_told_the_tokens(fake_gpu):
    model = torch.nn.Sequential(Attention(Attention.Config(num_heads=4), 64), Attention(Attention.Config(), 64))
    timer = FakeTimer()
    assert set_attention_backend(model, device="cuda", timer=timer) == "sdpa"
    assert timer.calls == [] and "no ViT" in model.attention_backend_reason
    assert set_attention_backend(model, device="cuda", tokens=100, timer=timer) == "sdpa_flash"
    assert {(s.tokens, s.head_dim, s.num_heads) for _, s in timer.calls} == {(100, 16, 4)}
    assert [layer.backend for layer in model] == ["sdpa_flash", "sdpa_flash"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_measurement_on_cuda(tmp_path):
    path = tmp_path / "tune.json"
    result = autotune(257, 64, 16, torch.bfloat16, "cuda", batch=2, cache_path=path)
    assert result.source == "measured" and result.backend in result.times_ms
    assert all(ms > 0 for ms in result.times_ms.values())
    assert "sdpa" in result.times_ms  # torch's own dispatch always runs
    assert autotune(257, 64, 16, torch.bfloat16, "cuda", batch=2, cache_path=path).source == "cache"
