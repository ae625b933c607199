"""Multi-head attention and its kernel backends: the kernel function (`attend`), our `Attention` layer, and
`TimmAttention`, the layer the backbone's timm ViT is built with, so one backend serves our layers and timm's alike.

Backends: FlashAttention-3 (`fa3`, `flash_attn_interface`, Hopper), FlashAttention-2 (`fa2`, `flash_attn`), torch SDPA
with one forced kernel (`sdpa_cudnn`, `sdpa_flash`, `sdpa_efficient`; CUDA only), torch SDPA letting torch pick the
kernel (`sdpa`) and plain `math` (the reference, the only one that yields probabilities). The selection is an argument,
else $AMT_ATTN, else `auto`; an argument of `auto` counts as no preference, so $AMT_ATTN still applies. `auto` is
measured for a whole model by `amt_core.accel.attention.set_attention_backend`; a layer built on its own runs `sdpa`.

FlashAttention and SDPA's flash and cuDNN kernels only take fp16/bf16: fp32 inputs are cast to bf16 for the kernel and
back. CPU tensors (a GPU-tuned model inspected on the CPU) go through SDPA, which computes the same function.
Probabilities are computed only on demand: inside `record_attention(model)` every `Attention` layer runs the math path
and keeps its probabilities (detached) in `last_probs`; the ViT's are captured by `Backbone` from `attn.qkv`.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention as VitAttention
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from amt_core.accel import probe
from amt_core.errors import UserError

BACKENDS: tuple[str, ...] = ("fa3", "fa2", "sdpa_cudnn", "sdpa_flash", "sdpa_efficient", "sdpa", "math")
"""Every kernel backend; `auto` is a selection mode on top of these."""
CUDA_BACKENDS: tuple[str, ...] = ("fa3", "fa2", "sdpa_cudnn", "sdpa_flash", "sdpa_efficient")
"""Backends that only run on CUDA tensors."""
AUTOTUNE_CANDIDATES: tuple[str, ...] = (*CUDA_BACKENDS, "sdpa")
"""What `auto` measures on CUDA (math is left out: it is the reference, materialises N x N, and is never fastest)."""
MODES: tuple[str, ...] = (*BACKENDS, "auto")
ENV_VAR = "AMT_ATTN"

_SDPA_KERNELS = {
    "sdpa_cudnn": "CUDNN_ATTENTION",
    "sdpa_flash": "FLASH_ATTENTION",
    "sdpa_efficient": "EFFICIENT_ATTENTION",
}
_HALF_ONLY = frozenset({"fa3", "fa2", "sdpa_cudnn", "sdpa_flash"})
_LOW_PRECISION = (torch.float16, torch.bfloat16)
CPU_REASON = "cpu: sdpa (auto measures CUDA kernels only; on the CPU SDPA is the fast path and math the reference)"


# ---------------------------------------------------------------------------------------- what can run on this machine


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
    capability = probe.cuda_capability()
    if capability is None:
        return f"attention backend '{name}' needs a CUDA GPU (none found); use AMT_ATTN=sdpa or auto"
    found = f"{capability[0]}.{capability[1]}"
    if name == "fa3":
        if not probe.installed("flash_attn_interface"):
            return (
                "attention backend 'fa3' needs FlashAttention-3 (flash_attn_interface, not installed); install it "
                "from flash-attention's hopper/ folder, or use AMT_ATTN=auto"
            )
        if capability[0] != 9:
            return f"FlashAttention-3 needs a Hopper GPU (compute capability 9.x, found {found}); use AMT_ATTN=fa2"
    elif name == "fa2":
        if not probe.installed("flash_attn"):
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
        version = probe.cudnn_version()
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


def requested(forced: str | None) -> tuple[str, str]:
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
    return requested(forced)[0]


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

    @dataclass(frozen=True, kw_only=True)
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

    The backbone hands it to timm's own extension point, `VisionTransformer(attn_layer=...)`, so every block is built
    with it: parameters, buffers and state_dict keys are those of timm, and `set_attention_backend` only sets
    `attention_backend`. Until it is set the layer is timm's own (its `fused_attn` switch decides); once set the
    backend decides. Masked or causal calls (the backbone makes none) go through torch's SDPA.
    """

    attention_backend: str | None = None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """x (B, N, C) -> (B, N, C_out), as timm's forward."""
        if self.attention_backend is None:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
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
