"""Multi-head attention for the model's own layers, with one kernel backend picked once at construction.

Backends, best first: FlashAttention-3 (`flash_attn_interface`, Hopper) -> FlashAttention-2 (`flash_attn`) -> torch
SDPA -> plain math. `AMT_ATTN=fa3|fa2|sdpa|math` forces one; a forced backend that cannot run here is a UserError.
The FlashAttention kernels only take CUDA tensors in fp16/bf16: fp32 inputs are cast to bf16 for the kernel and back,
and CPU tensors (a GPU-built model inspected on the CPU) go through SDPA, which computes the same function.

Attention probabilities are computed only on demand: inside `record_attention(model)` every `Attention` layer runs
the math path and keeps its probabilities (detached) in `last_probs`, so the normal path never materialises them.
The timm backbone's probabilities are captured by `Backbone` itself (see `amt_core.models.backbone`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from amt_core.errors import UserError

BACKENDS: tuple[str, ...] = ("fa3", "fa2", "sdpa", "math")
ENV_VAR = "AMT_ATTN"


def _cuda_capability() -> tuple[int, int] | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability()


def backend_problem(name: str) -> str | None:
    """Why backend `name` cannot run on this machine, or None when it can."""
    if name not in BACKENDS:
        return f"unknown attention backend '{name}' (choose one of {', '.join(BACKENDS)})"
    if name in ("sdpa", "math"):
        return None
    capability = _cuda_capability()
    if capability is None:
        return f"attention backend '{name}' needs a CUDA GPU (none found); use AMT_ATTN=sdpa"
    if name == "fa3":
        if importlib.util.find_spec("flash_attn_interface") is None:
            return "attention backend 'fa3' needs FlashAttention-3 (flash_attn_interface); install it, or AMT_ATTN=fa2"
        if capability[0] != 9:
            found = f"{capability[0]}.{capability[1]}"
            return f"FlashAttention-3 needs a Hopper GPU (compute capability 9.x, found {found}); use AMT_ATTN=fa2"
    if name == "fa2":
        if importlib.util.find_spec("flash_attn") is None:
            return "attention backend 'fa2' needs flash-attn (pip install flash-attn); or use AMT_ATTN=sdpa"
        if capability[0] < 8:
            return f"FlashAttention-2 needs compute capability 8.0+ (found {capability[0]}.{capability[1]})"
    return None


def available_backends() -> list[str]:
    """Backends that can run on this machine, best first."""
    return [name for name in BACKENDS if backend_problem(name) is None]


def select_backend(forced: str | None = None) -> str:
    """The backend to use: `forced`, else $AMT_ATTN, else the best available.

    Raises:
        UserError: the forced backend is unknown or cannot run here.
    """
    forced = forced or os.environ.get(ENV_VAR) or None
    if forced is not None:
        forced = forced.strip().lower()
        problem = backend_problem(forced)
        if problem is not None:
            raise UserError(problem)
        return forced
    return available_backends()[0]


def attention_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0):
    """Reference attention. q (B, H, Nq, D), k/v (B, H, Nk, D) -> (output (B, H, Nq, D), probs (B, H, Nq, Nk))."""
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    probs = scores.softmax(dim=-1)
    dropped = F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs
    return dropped @ v, probs


def _flash(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
    """FlashAttention-2/3 on (B, H, N, D) tensors; the kernels take (B, N, H, D) in fp16/bf16."""
    dtype = q.dtype
    if dtype not in (torch.float16, torch.bfloat16):
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if backend == "fa3":
        import flash_attn_interface

        out = flash_attn_interface.flash_attn_func(q, k, v)
        if isinstance(out, tuple):  # some FA3 releases also return the log-sum-exp
            out = out[0]
    else:
        import flash_attn

        out = flash_attn.flash_attn_func(q, k, v, dropout_p=dropout_p)
    return out.transpose(1, 2).to(dtype)


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
        backend: force a backend; default: `select_backend()` (honours $AMT_ATTN).
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
        backend = self.backend
        if backend in ("fa3", "fa2"):
            if q.is_cuda:
                return _flash(backend, q, k, v, dropout_p)
            backend = "sdpa"
        if backend == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        return attention_math(q, k, v, dropout_p)[0]


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
