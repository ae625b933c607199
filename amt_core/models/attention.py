"""Multi-head attention and its kernel backends: one backend per model, for our own layers and the timm ViT's alike.

Backends: FlashAttention-3 (`fa3`, `flash_attn_interface`, Hopper), FlashAttention-2 (`fa2`, `flash_attn`), torch SDPA
with one forced kernel (`sdpa_cudnn`, `sdpa_flash`, `sdpa_efficient`; CUDA only), torch SDPA letting torch pick the
kernel (`sdpa`) and plain `math` (the reference, the only one that yields probabilities). The selection is an argument,
else $AMT_ATTN, else `auto`; an argument of `auto` counts as no preference, so $AMT_ATTN still applies.

`auto` is measured, not guessed: `set_attention_backend(model)` times forward+backward of every CUDA backend that can
run here at the shape of the model's ViT (tokens, heads, head size, dtype), keeps the fastest, and caches the result
in `cache_dir()/attention_autotune.json` by GPU, torch version and shape. On the CPU `auto` is `sdpa` without
measuring: FlashAttention and SDPA's forced kernels need CUDA, and math is the reference path, never the fast one.

The timm ViT's own `Attention` modules are reached by swapping their class to `TimmAttention`, a subclass defined here
whose forward uses the module's public submodules (`qkv`, `q_norm`, `k_norm`, `attn_drop`, `norm`, `proj`, ...) and our
kernel. A class swap keeps every parameter and state_dict key, keeps `isinstance(m, timm Attention)` true, and copies
and pickles like any module (a per-instance bound `forward` breaks pickling and is invisible on the class).

FlashAttention and SDPA's flash and cuDNN kernels only take fp16/bf16: fp32 inputs are cast to bf16 for the kernel and
back. CPU tensors (a GPU-tuned model inspected on the CPU) go through SDPA, which computes the same function.
Probabilities are computed only on demand: inside `record_attention(model)` every `Attention` layer runs the math path
and keeps its probabilities (detached) in `last_probs`; the ViT's are captured by `Backbone` from `attn.qkv`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention as VitAttention
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from amt_core.errors import UserError

BACKENDS: tuple[str, ...] = ("fa3", "fa2", "sdpa_cudnn", "sdpa_flash", "sdpa_efficient", "sdpa", "math")
"""Every kernel backend; `auto` is a selection mode on top of these."""
CUDA_BACKENDS: tuple[str, ...] = ("fa3", "fa2", "sdpa_cudnn", "sdpa_flash", "sdpa_efficient")
"""Backends that only run on CUDA tensors."""
AUTOTUNE_CANDIDATES: tuple[str, ...] = (*CUDA_BACKENDS, "sdpa")
"""What `auto` measures on CUDA (math is left out: it is the reference, materialises N x N, and is never fastest)."""
MODES: tuple[str, ...] = (*BACKENDS, "auto")
ENV_VAR = "AMT_ATTN"
CACHE_FILE = "attention_autotune.json"

_SDPA_KERNELS = {
    "sdpa_cudnn": "CUDNN_ATTENTION",
    "sdpa_flash": "FLASH_ATTENTION",
    "sdpa_efficient": "EFFICIENT_ATTENTION",
}
_HALF_ONLY = frozenset({"fa3", "fa2", "sdpa_cudnn", "sdpa_flash"})
_LOW_PRECISION = (torch.float16, torch.bfloat16)
CPU_REASON = "cpu: sdpa (auto measures CUDA kernels only; on the CPU SDPA is the fast path and math the reference)"


# ---------------------------------------------------------------------------------------------- probes of the machine
# Module-level functions so tests can stand in for a Hopper GPU or a missing package (monkeypatch them).


def cuda_capability() -> tuple[int, int] | None:
    """Compute capability of the current CUDA device, or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability()


def cuda_device_name(device: torch.device) -> str:
    """The GPU's marketing name (the autotune cache key)."""
    return torch.cuda.get_device_name(device)


def cudnn_version() -> int | None:
    """cuDNN version torch runs with (e.g. 90400 for 9.4.0), or None without cuDNN."""
    if not torch.backends.cudnn.is_available():
        return None
    return torch.backends.cudnn.version()


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install can fail inside find_spec itself
        return False


def _cudnn_version_text(version: int) -> str:
    """cuDNN 9 encodes 9.4.0 as 90400, cuDNN 8 encoded 8.9.7 as 8907."""
    if version >= 90000:
        return f"{version // 10000}.{version // 100 % 100}.{version % 100}"
    return f"{version // 1000}.{version // 100 % 10}.{version % 100}"


def backend_problem(name: str) -> str | None:
    """Why backend `name` cannot run on this machine (one line with the fix), or None when it can."""
    if name == "auto":
        return None
    if name not in BACKENDS:
        return f"unknown attention backend '{name}' (choose one of {', '.join(MODES)})"
    if name not in CUDA_BACKENDS:
        return None
    capability = cuda_capability()
    if capability is None:
        return f"attention backend '{name}' needs a CUDA GPU (none found); use AMT_ATTN=sdpa or auto"
    found = f"{capability[0]}.{capability[1]}"
    if name == "fa3":
        if not _installed("flash_attn_interface"):
            return (
                "attention backend 'fa3' needs FlashAttention-3 (flash_attn_interface, not installed); install it "
                "from flash-attention's hopper/ folder, or use AMT_ATTN=auto"
            )
        if capability[0] != 9:
            return f"FlashAttention-3 needs a Hopper GPU (compute capability 9.x, found {found}); use AMT_ATTN=fa2"
    elif name == "fa2":
        if not _installed("flash_attn"):
            return (
                "attention backend 'fa2' needs flash-attn (not installed); pip install flash-attn "
                "--no-build-isolation, or use AMT_ATTN=auto"
            )
        if capability < (8, 0):
            return f"FlashAttention-2 needs compute capability 8.0+ (found {found}); use AMT_ATTN=sdpa_efficient"
    elif name == "sdpa_flash":
        if not torch.backends.cuda.is_flash_attention_available():
            return "this torch build has no SDPA flash kernel; use AMT_ATTN=auto or install an official torch wheel"
        if capability < (8, 0):
            return f"SDPA's flash kernel needs compute capability 8.0+ (found {found}); use AMT_ATTN=sdpa_efficient"
    elif name == "sdpa_cudnn":
        version = cudnn_version()
        if not hasattr(SDPBackend, "CUDNN_ATTENTION") or version is None:
            return f"torch {torch.__version__} has no cuDNN attention; use AMT_ATTN=sdpa_flash or a torch with cuDNN 9"
        if version < 90000:
            return f"cuDNN attention needs cuDNN 9.0+ (found {_cudnn_version_text(version)}); use AMT_ATTN=sdpa_flash"
        if capability < (8, 0):
            return f"cuDNN attention needs compute capability 8.0+ (found {found}); use AMT_ATTN=sdpa_efficient"
    elif name == "sdpa_efficient" and capability < (5, 0):
        return f"SDPA's memory-efficient kernel needs compute capability 5.0+ (found {found}); use AMT_ATTN=sdpa"
    return None


def available_backends() -> list[str]:
    """Backends that can run on this machine, in the order of BACKENDS (CUDA kernels first, math last)."""
    return [name for name in BACKENDS if backend_problem(name) is None]


def _requested(forced: str | None) -> tuple[str, str]:
    """The selection mode (a backend or 'auto') and where it came from: argument > $AMT_ATTN > auto."""
    if forced is not None and forced.strip().lower() not in ("", "auto"):
        mode, source = forced.strip().lower(), "argument"
    elif os.environ.get(ENV_VAR, "").strip():
        mode, source = os.environ[ENV_VAR].strip().lower(), f"${ENV_VAR}"
    else:
        mode, source = "auto", "default"
    problem = backend_problem(mode)
    if problem is not None:
        raise UserError(problem)
    return mode, source


def requested_mode(forced: str | None = None) -> str:
    """The selection: `forced` (a backend name; 'auto' or None mean no preference), else $AMT_ATTN, else 'auto'.

    Raises:
        UserError: the selected backend is unknown or cannot run here.
    """
    return _requested(forced)[0]


def select_backend(forced: str | None = None) -> str:
    """The backend for one layer built on its own: as `requested_mode`, with `auto` meaning `sdpa`.

    `auto` needs a shape to measure, which a single layer does not know: torch's own SDPA dispatch runs until
    `set_attention_backend(model)` measures and sets one backend for the whole model.

    Raises:
        UserError: the selected backend is unknown or cannot run here.
    """
    mode = requested_mode(forced)
    return "sdpa" if mode == "auto" else mode


# -------------------------------------------------------------------------------------------------------- the kernels


def attention_math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0, scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention. q (B, H, Nq, D), k/v (B, H, Nk, D) -> (output (B, H, Nq, D), probs (B, H, Nq, Nk)).

    `scale` multiplies the queries (default 1/sqrt(D)).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q * scale) @ k.transpose(-2, -1)
    probs = scores.softmax(dim=-1)
    dropped = F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs
    return dropped @ v, probs


def _flash(
    backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, scale: float | None
) -> torch.Tensor:
    """FlashAttention-2/3 on fp16/bf16 (B, H, N, D) tensors; the kernels take (B, N, H, D)."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if backend == "fa3":
        import flash_attn_interface

        out = flash_attn_interface.flash_attn_func(q, k, v, softmax_scale=scale)
        if isinstance(out, tuple):  # some FA3 releases also return the log-sum-exp
            out = out[0]
    else:
        import flash_attn

        out = flash_attn.flash_attn_func(q, k, v, dropout_p=dropout_p, softmax_scale=scale)
    return out.transpose(1, 2)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    backend: str,
    *,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention output of `backend` on q (B, H, Nq, D), k/v (B, H, Nk, D) -> (B, H, Nq, D).

    The one kernel entry point of our `Attention` layers and of the patched timm modules.
    """
    if backend != "math" and not q.is_cuda:
        backend = "sdpa"  # the CUDA kernels' CPU stand-in: the same function
    if backend == "fa3" and dropout_p > 0:
        backend = "sdpa"  # FlashAttention-3 has no dropout
    if backend == "math":
        return attention_math(q, k, v, dropout_p, scale)[0]
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
    dtype = q.dtype
    if backend in _HALF_ONLY and dtype not in _LOW_PRECISION:
        # Cast in (B, N, H, D) memory order: the layout FlashAttention and cuDNN read without another copy.
        q, k, v = (t.transpose(1, 2).to(torch.bfloat16).transpose(1, 2) for t in (q, k, v))
    if backend in ("fa3", "fa2"):
        out = _flash(backend, q, k, v, dropout_p, scale)
    else:
        with sdpa_kernel(getattr(SDPBackend, _SDPA_KERNELS[backend])):
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
    return out.to(dtype)


class Attention(nn.Module):
    """Multi-head self- or cross-attention (pre-projection of queries, keys and values, output projection)."""

    @dataclass(kw_only=True)
    class Config:
        num_heads: int = 4
        """Attention heads; must divide the model width."""
        attn_drop: float = 0.0
        """Dropout on the attention probabilities, in [0, 1)."""
        proj_drop: float = 0.0
        """Dropout after the output projection, in [0, 1)."""
        qkv_bias: bool = True
        """Biases on the query/key/value projections."""

        def __post_init__(self) -> None:
            if self.num_heads < 1:
                raise ValueError(f"Attention.Config.num_heads must be >= 1, got {self.num_heads}")
            for name in ("attn_drop", "proj_drop"):
                value = getattr(self, name)
                if not 0.0 <= value < 1.0:
                    raise ValueError(f"Attention.Config.{name} must be in [0, 1), got {value}")

    def __init__(self, config: Config, dim: int, *, context_dim: int | None = None, backend: str | None = None):
        """Args:
        config: heads and dropouts.
        dim: width of the queries (and of the output).
        context_dim: width of the keys/values' source for cross-attention (default `dim`).
        backend: force a backend; default: `select_backend()` ($AMT_ATTN, else sdpa until `set_attention_backend`).
        """
        super().__init__()
        if dim % config.num_heads:
            raise ValueError(f"Attention.Config.num_heads ({config.num_heads}) must divide the width {dim}")
        self.config = config
        self.num_heads = config.num_heads
        self.head_dim = dim // config.num_heads
        context_dim = context_dim or dim
        self.q = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.kv = nn.Linear(context_dim, 2 * dim, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(config.proj_drop)
        self.backend = select_backend(backend)
        self.record_probs = False
        self.last_probs: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_dim={self.head_dim}, backend={self.backend}"

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, Nq, dim), context (B, Nk, context_dim) or None for self-attention -> (B, Nq, dim)."""
        B, Nq, _ = x.shape
        context = x if context is None else context
        Nk = context.shape[1]
        q = self.q(x).reshape(B, Nq, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, Nq, D)
        k, v = self.kv(context).reshape(B, Nk, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        dropout_p = self.config.attn_drop if self.training else 0.0
        if self.record_probs:
            out, probs = attention_math(q, k, v, dropout_p)
            self.last_probs = probs.detach()
        else:
            out = self.attend(q, k, v, dropout_p)
        out = out.transpose(1, 2).reshape(B, Nq, -1)
        return self.proj_drop(self.proj(out))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
        """The chosen backend on (B, H, N, D) tensors."""
        return attend(q, k, v, self.backend, dropout_p=dropout_p)


class TimmAttention(VitAttention):
    """timm's ViT `Attention` computing its kernel with `attend` and the model's backend.

    Never built directly: `set_attention_backend` swaps a timm module's class to this one, so parameters, buffers
    and state_dict keys stay those of timm. Masked or causal calls (the backbone makes none) go through torch's SDPA.
    Once patched, timm's `fused_attn` switch no longer applies: the backend decides.
    """

    attention_backend: str = "sdpa"

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """x (B, N, C) -> (B, N, C_out), as timm's forward."""
        B, N, _ = x.shape
        gate_layer = getattr(self, "gate", None)  # timm >= 1.0.2x: optional output gate
        gate = gate_layer(x).sigmoid() if gate_layer is not None else None
        head_dim = getattr(self, "head_dim", None) or self.qkv.out_features // (3 * self.num_heads)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        dropout_p = self.attn_drop.p if self.training else 0.0
        if attn_mask is not None or is_causal:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=self.scale
            )
        else:
            out = attend(q, k, v, self.attention_backend, dropout_p=dropout_p, scale=self.scale)
        out = out.transpose(1, 2).reshape(B, N, self.num_heads * head_dim)
        norm = getattr(self, "norm", None)  # timm's scale_norm (Identity unless enabled); absent in older timm
        if norm is not None:
            out = norm(out)
        if gate is not None:
            out = out * gate
        return self.proj_drop(self.proj(out))


# ----------------------------------------------------------------------------------------------------------- autotune


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
    """Milliseconds per forward+backward of `backend` on random q/k/v of `shape`, timed with CUDA events.

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

        for _ in range(warmup):
            step()
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            step()
        end.record()
        end.synchronize()
    return start.elapsed_time(end) / iters


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


def autotune_cache_path() -> Path:
    """The autotune cache file: `cache_dir()/attention_autotune.json`."""
    from amt_core.paths import cache_dir

    return cache_dir() / CACHE_FILE


def _cache_key(shape: AttentionShape) -> str:
    gpu = cuda_device_name(shape.device)
    dtype = str(shape.dtype).removeprefix("torch.")
    return (
        f"{gpu}|torch {torch.__version__}|{dtype}|tokens={shape.tokens}|head_dim={shape.head_dim}"
        f"|heads={shape.num_heads}|batch={shape.batch}"
    )


def _read_cache(path: Path | None) -> dict:
    """The cache's entries; an absent, unreadable or corrupt file reads as empty (it is rewritten on the next write)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
        return {}
    return data if isinstance(data, dict) else {}


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


def _write_cache(path: Path, entries: dict) -> None:
    """Write atomically, so ranks tuning at once never leave a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as handle:
        json.dump(entries, handle, indent=1, sort_keys=True)
        temporary = Path(handle.name)
    try:
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


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
        cache_path: the JSON cache; default `autotune_cache_path()`.

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
    path: Path | None
    try:
        path = Path(cache_path) if cache_path is not None else autotune_cache_path()
    except OSError:  # no writable home: measure every time rather than fail
        path = None
    entries = _read_cache(path)
    cached = _cached_result(entries.get(key), names, tokens)
    if cached is not None:
        return cached

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
    if not times:
        return AutotuneResult(backend="sdpa", tokens=tokens, failed=failed, source="measured")
    best = min(times, key=times.__getitem__)
    result = AutotuneResult(backend=best, tokens=tokens, times_ms=times, failed=failed, source="measured")
    if path is None:
        result.cache_note = "not cached: no cache directory"
        return result
    entries[key] = {"backend": best, "times_ms": times, "candidates": names, "failed": failed}
    try:
        _write_cache(path, entries)
    except OSError as err:
        result.cache_note = f"not cached: {_first_line(err)}"
    return result


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
    mode, source = _requested(name)
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
        elif type(module) is VitAttention or isinstance(module, TimmAttention):
            # Only timm's exact class: a subclass of it may have a forward of its own that this one would replace.
            module.__class__ = TimmAttention
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
            f"{shape.tokens} tokens in {dtype} on {cuda_device_name(shape.device)} ({_first_line(err)}); "
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


# ----------------------------------------------------------------------------------------------------- probabilities


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[None]:
    """Within this block, every attention layer of `model` computes and keeps its probabilities.

    Models gather them into `AMTOutput.attention` (by layer name); outside the block the fast path runs.
    """
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    recorders = [m for m in model.modules() if hasattr(m, "record_attention") and not isinstance(m, Attention)]
    for layer in layers:
        layer.record_probs = True
    for module in recorders:
        module.record_attention = True
    try:
        yield
    finally:
        for layer in layers:
            layer.record_probs = False
            layer.last_probs = None
        for module in recorders:
            module.record_attention = False


def collect_attention(model: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Probabilities kept by `model`'s attention layers during the last forward, by module name; clears them."""
    found = {}
    for name, module in model.named_modules(prefix=prefix):
        if isinstance(module, Attention) and module.last_probs is not None:
            found[name] = module.last_probs
            module.last_probs = None
    return found
