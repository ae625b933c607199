"""The attention autotuner: one kernel backend for a whole model, measured once per GPU, torch and shape.

`set_attention_backend(model)` resolves the selection (an argument, else $AMT_ATTN, else `auto`) and applies it to the
model's `Attention` layers and its timm ViT's `TimmAttention` layers (`amt_core.models.attention`). `auto` is measured,
not guessed: forward+backward of every CUDA backend that can run here at the shape of the model's ViT (tokens, heads,
head size, dtype), the fastest kept and cached in `cache_dir()/attention_autotune.json` (`accel.measured`). On the CPU
`auto` is `sdpa` without measuring: FlashAttention and SDPA's forced kernels need CUDA, and math is the reference path.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from timm.models.vision_transformer import Attention as VitAttention
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from amt_core.accel import probe
from amt_core.accel.measured import MeasuredCache, cuda_seconds, measurement_key
from amt_core.errors import UserError
from amt_core.models.attention import (
    AUTOTUNE_CANDIDATES,
    BACKENDS,
    CPU_REASON,
    CUDA_BACKENDS,
    Attention,
    TimmAttention,
    attend,
    backend_problem,
    requested,
)

CACHE_FILE = "attention_autotune.json"


@dataclass(kw_only=True, frozen=True)
class AttentionShape:
    """The attention problem `auto` measures: q/k/v of (batch, num_heads, tokens, head_dim) in `dtype` on `device`."""

    tokens: int
    """Sequence length (patches plus prefix tokens for a ViT)."""
    head_dim: int
    """Width of one head."""
    num_heads: int
    """Heads."""
    batch: int = 8
    """Batch size of the measurement."""
    dtype: torch.dtype = torch.bfloat16
    """Dtype the kernels see (the autocast dtype when training in bf16)."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where it runs."""

    def __post_init__(self) -> None:
        for name in ("tokens", "head_dim", "num_heads", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"AttentionShape.{name} must be >= 1, got {getattr(self, name)}")
        if not self.dtype.is_floating_point:
            raise ValueError(f"AttentionShape.dtype must be a floating dtype, got {self.dtype}")
        object.__setattr__(self, "device", torch.device(self.device))


Timer = Callable[[str, AttentionShape], float]
"""Milliseconds of one forward+backward of a backend at a shape; raises when the backend cannot run it."""


def time_backend(backend: str, shape: AttentionShape, *, warmup: int = 3, iters: int = 20) -> float:
    """Milliseconds per forward+backward of `backend` on random q/k/v of `shape`, timed with CUDA events
    (`cuda_seconds`).

    q/k/v are views of one (B, N, 3, H, D) tensor, the layout a ViT's qkv projection produces.
    """
    device = shape.device
    # The events and the kernels run on the current device's stream: make it the measured device (one rank per GPU).
    with (
        torch.cuda.device(device),
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.autocast("cuda", enabled=False),
    ):
        qkv = torch.randn(
            shape.batch, shape.tokens, 3, shape.num_heads, shape.head_dim, device=device, dtype=shape.dtype
        ).requires_grad_(True)
        grad_out = torch.randn(
            shape.batch, shape.num_heads, shape.tokens, shape.head_dim, device=device, dtype=shape.dtype
        )
        scale = shape.head_dim**-0.5

        def step() -> None:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            out = attend(q, k, v, backend, scale=scale)
            torch.autograd.grad(out, qkv, grad_out)

        return 1000 * cuda_seconds(step, device, warmup=warmup, iters=iters)


@dataclass(kw_only=True)
class AutotuneResult:
    """What `auto` resolved to and why."""

    backend: str
    """The chosen backend."""
    tokens: int
    """The token count it was chosen for."""
    times_ms: dict[str, float] = field(default_factory=dict)
    """Forward+backward milliseconds per measured backend (empty on the CPU)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Backends that raised when measured, with the first line of their error."""
    source: str = "measured"
    """'measured', 'cache' (read from the cache file) or 'cpu' (not measured)."""
    cache_note: str = ""
    """Why the result could not be cached, if it could not."""

    @property
    def reason(self) -> str:
        """One line for logs and run info, e.g. 'auto: sdpa_flash fastest of [...] at 257 tokens (measured, cached)'."""
        if self.source == "cpu":
            return CPU_REASON
        if not self.times_ms:
            failures = "; ".join(f"{name}: {error}" for name, error in self.failed.items()) or "no candidates"
            return f"auto: {self.backend} (nothing could be measured at {self.tokens} tokens: {failures})"
        ranked = ", ".join(f"{name} {ms:.3g} ms" for name, ms in sorted(self.times_ms.items(), key=lambda kv: kv[1]))
        how = "from cache" if self.source == "cache" else ("measured, " + (self.cache_note or "cached"))
        return f"auto: {self.backend} fastest of [{ranked}] at {self.tokens} tokens ({how})"


def _cache_key(shape: AttentionShape) -> str:
    dtype = str(shape.dtype).removeprefix("torch.")
    sizes = (f"tokens={shape.tokens}", f"head_dim={shape.head_dim}", f"heads={shape.num_heads}", f"batch={shape.batch}")
    return measurement_key(shape.device, dtype, *sizes)


def _cached_result(entry: object, candidates: list[str], tokens: int) -> AutotuneResult | None:
    """A cache entry as a result, if it is well formed and was measured over exactly these candidates."""
    if not isinstance(entry, dict):
        return None
    backend, times, measured = entry.get("backend"), entry.get("times_ms"), entry.get("candidates")
    if not isinstance(measured, list) or sorted(map(str, measured)) != sorted(candidates):
        return None  # a kernel package was installed or removed since: measure again
    if backend not in candidates or not isinstance(times, dict) or backend not in times:
        return None
    if not all(isinstance(ms, int | float) and math.isfinite(ms) for ms in times.values()):
        return None
    failed = entry.get("failed") if isinstance(entry.get("failed"), dict) else {}
    return AutotuneResult(
        backend=backend,
        tokens=tokens,
        times_ms={str(k): float(ms) for k, ms in times.items()},
        failed={str(k): str(e) for k, e in failed.items()},
        source="cache",
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def autotune(
    tokens: int,
    head_dim: int,
    num_heads: int,
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    batch: int = 8,
    candidates: Iterable[str] | None = None,
    timer: Timer | None = None,
    cache_path: Path | str | None = None,
) -> AutotuneResult:
    """The fastest backend for this attention shape, measured once per GPU/torch/shape and then read from the cache.

    Args:
        tokens, head_dim, num_heads, dtype, device, batch: the shape (see `AttentionShape`).
        candidates: backends to measure; default: those of AUTOTUNE_CANDIDATES that can run here.
        timer: `(backend, shape) -> milliseconds`, raising when the backend cannot run; default `time_backend`.
        cache_path: the JSON cache; default `cache_dir() / CACHE_FILE`.

    On the CPU nothing is measured: the result is `sdpa` (see the module docstring). A backend whose measurement
    raises is left out (with its error in `failed`); when none can be measured the result is `sdpa`, not cached.
    """
    shape = AttentionShape(
        tokens=tokens, head_dim=head_dim, num_heads=num_heads, batch=batch, dtype=dtype, device=torch.device(device)
    )
    if shape.device.type != "cuda":
        return AutotuneResult(backend="sdpa", tokens=tokens, source="cpu")
    names = list(dict.fromkeys(candidates)) if candidates is not None else None
    if names is None:
        names = [name for name in AUTOTUNE_CANDIDATES if backend_problem(name) is None]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise ValueError(f"autotune candidates must be backends of {BACKENDS}, got {unknown}")
    timer = timer or time_backend
    key = _cache_key(shape)
    cache = MeasuredCache(CACHE_FILE, cache_path)  # unreadable or absent reads as empty: measured again
    cached = _cached_result(cache.get(key), names, tokens)
    if cached is not None:
        return cached

    times, failed = _measure(names, shape, timer)
    if not times:
        return AutotuneResult(backend="sdpa", tokens=tokens, failed=failed, source="measured")
    best = min(times, key=times.__getitem__)
    result = AutotuneResult(backend=best, tokens=tokens, times_ms=times, failed=failed, source="measured")
    try:
        cache.put(key, {"backend": best, "times_ms": times, "candidates": names, "failed": failed})
    except OSError as err:  # no writable cache directory: measure every time rather than fail
        result.cache_note = f"not cached: {_first_line(err)}"
    return result


def _measure(names: list[str], shape: AttentionShape, timer: Timer) -> tuple[dict[str, float], dict[str, str]]:
    """Milliseconds of each backend that could be timed, and the error of each that could not."""
    times: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            ms = float(timer(name, shape))
        except Exception as err:  # a kernel that cannot take this shape raises its own error types; skip it
            failed[name] = _first_line(err)
            continue
        if math.isfinite(ms) and ms > 0:
            times[name] = ms
        else:
            failed[name] = f"timer returned {ms}"
    return times, failed


# ---------------------------------------------------------------------------------------------- one backend per model


def _first_vit(model: nn.Module) -> VisionTransformer | None:
    return next((m for m in model.modules() if isinstance(m, VisionTransformer)), None)


def vit_tokens(vit: VisionTransformer) -> int:
    """Tokens a ViT's blocks see at its nominal image size: patches plus prefix (class and register) tokens."""
    rows, cols = vit.patch_embed.grid_size
    return int(rows * cols + vit.num_prefix_tokens)


def _attention_shape(
    model: nn.Module, tokens: int | None, batch: int, dtype: torch.dtype, device: torch.device
) -> AttentionShape | None:
    """The shape to tune for: the model's ViT (its first block), else our first layer with `tokens` given."""
    vit = _first_vit(model)
    if vit is not None and len(vit.blocks) and isinstance(getattr(vit.blocks[0], "attn", None), VitAttention):
        attn = vit.blocks[0].attn
        heads = attn.num_heads
        head_dim = getattr(attn, "head_dim", None) or attn.qkv.out_features // (3 * heads)
        count = tokens if tokens is not None else vit_tokens(vit)
        return AttentionShape(tokens=count, head_dim=head_dim, num_heads=heads, batch=batch, dtype=dtype, device=device)
    layer = next((m for m in model.modules() if isinstance(m, Attention)), None)
    if layer is None or tokens is None:
        return None
    return AttentionShape(
        tokens=tokens, head_dim=layer.head_dim, num_heads=layer.num_heads, batch=batch, dtype=dtype, device=device
    )


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def set_attention_backend(
    model: nn.Module,
    name: str | None = "auto",
    *,
    tokens: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    batch: int = 8,
    timer: Timer | None = None,
) -> str:
    """Resolve one backend for the whole model and apply it to our `Attention` layers and timm's ViT attention.

    Args:
        model: the model (call before DDP/compile wrapping; the backend is recorded on it).
        name: a backend of BACKENDS, or 'auto'/None (no preference: $AMT_ATTN, else measured on CUDA, sdpa on CPU).
        tokens: sequence length to tune for (default: the ViT's patches plus prefix tokens at its nominal size).
        device: where it will run (default: the device of the model's parameters).
        dtype: the dtype the kernels will see: pass torch.bfloat16 under bf16 autocast (default: the parameters').
        batch: batch size of the measurement.
        timer: the autotune timer (default `time_backend`).

    Returns:
        The backend name, also kept as `model.attention_backend`, with the reason in `model.attention_backend_reason`.

    Raises:
        UserError: the backend is unknown, cannot run on this machine, or (on CUDA) fails at the model's shape.
    """
    mode, source = requested(name)
    device = torch.device(device) if device is not None else _model_device(model)
    dtype = dtype or _model_dtype(model)
    shape = _attention_shape(model, tokens, batch, dtype, device)
    if mode == "auto":
        if device.type != "cuda":
            backend, reason = "sdpa", CPU_REASON
        elif shape is None:
            backend, reason = "sdpa", "auto: sdpa (no ViT to take the shape from; pass tokens= to measure)"
        else:
            result = autotune(shape.tokens, shape.head_dim, shape.num_heads, dtype, device, batch=batch, timer=timer)
            backend, reason = result.backend, result.reason
    else:
        backend, reason = mode, f"{source}: {mode}"
        if device.type == "cuda" and shape is not None and mode in CUDA_BACKENDS:
            _check_runs(mode, replace(shape, batch=1), timer or functools.partial(time_backend, warmup=0, iters=1))
    for module in model.modules():
        if isinstance(module, Attention):
            module.backend = backend
        elif isinstance(module, TimmAttention):  # built so through timm's `attn_layer` (models.backbone)
            module.attention_backend = backend
    model.attention_backend = backend
    model.attention_backend_reason = reason
    return backend


def _check_runs(backend: str, shape: AttentionShape, timer: Timer) -> None:
    """Raise a one-line UserError when a forced backend fails one forward+backward at the model's shape."""
    try:
        timer(backend, shape)
    except Exception as err:  # torch raises RuntimeError("No available kernel"), flash-attn its own types
        dtype = str(shape.dtype).removeprefix("torch.")
        raise UserError(
            f"attention backend '{backend}' cannot run {shape.num_heads} heads of {shape.head_dim} at "
            f"{shape.tokens} tokens in {dtype} on {probe.gpu_name(shape.device)} ({_first_line(err)}); "
            "use AMT_ATTN=auto"
        ) from err


def attention_backend_of(model: nn.Module) -> str | None:
    """The backend `set_attention_backend` chose for `model` (or the model a DDP wrapper holds), else None."""
    return _chosen(model, "attention_backend")


def attention_backend_reason(model: nn.Module) -> str | None:
    """Why `set_attention_backend` chose the backend of `model`, else None."""
    return _chosen(model, "attention_backend_reason")


def _chosen(model: nn.Module, name: str) -> str | None:
    for candidate in (model, getattr(model, "module", None)):
        value = getattr(candidate, name, None) if candidate is not None else None
        if isinstance(value, str):
            return value
    return None
