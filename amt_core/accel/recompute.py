"""Activation checkpointing as policies applied to a built model (torchtitan style: `amt_core.models` stays pure).

A policy replaces the instance `forward` of chosen transformer blocks (the backbone's timm blocks and the heads'
`amt_core.models.layers.Block`s) with one that runs the class forward under `torch.utils.checkpoint.checkpoint`
(non-reentrant), so no wrapper module is inserted and state_dict keys and parameter names stay the same.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import inspect
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.utils.checkpoint as torch_checkpoint
from timm.models import vision_transformer
from torch import nn

from amt_core.errors import UserError
from amt_core.models.layers import Block

# Set on a block whose forward a policy wrapped: the per-op policy of selective checkpointing (None: full recompute).
_OP_POLICY_ATTR = "_amt_checkpoint_op_policy"
# Set by `set_recompute_context`: () -> (forward context, recompute context) added to every checkpointed forward.
_RECOMPUTE_ATTR = "_amt_checkpoint_recompute"
# and whether this torch's checkpoint takes `respect_saved_tensors_hooks` (only recent versions do).
_HOOKS_FLAG_ATTR = "_amt_checkpoint_respect_hooks"

# (ctx, op, *args, **kwargs) -> torch.utils.checkpoint.CheckpointPolicy, as create_selective_checkpoint_contexts takes.
OpPolicy = Callable[..., torch_checkpoint.CheckpointPolicy]

SPECS = "none, full, every:N (N >= 1) or selective"

# Outputs of these aten ops are kept by `SelectiveOps`: the FLOP-heavy matmuls, convolutions and attention kernels.
_SAVED_ATEN_OPS: tuple[str, ...] = (
    "mm",
    "addmm",
    "bmm",
    "baddbmm",
    "convolution",
    "_scaled_mm",  # FP8 matmuls (torchao Float8Linear)
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
)
# Custom-op namespaces of the FlashAttention-2/3 kernels (`amt_core.models.attention`); their outputs are kept too.
_SAVED_NAMESPACES: frozenset[str] = frozenset({"flash_attn", "flash_attn_3"})


def _timm_block_types() -> tuple[type[nn.Module], ...]:
    names = ("Block", "ResPostBlock", "ParallelScalingBlock", "ParallelThingsBlock", "DiffParallelScalingBlock")
    return tuple(getattr(vision_transformer, name) for name in names if hasattr(vision_transformer, name))


def transformer_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's transformer blocks (ours and timm's ViT blocks), as (qualified name, module), in module order."""
    kinds = (Block, *_timm_block_types())
    return [(name, module) for name, module in model.named_modules() if isinstance(module, kinds)]


def is_checkpointed(module: nn.Module) -> bool:
    """Whether a policy wrapped this module's forward."""
    forward = module.__dict__.get("forward")
    return isinstance(forward, types.MethodType) and forward.__func__ is _checkpointed_forward


def checkpointed_modules(model: nn.Module) -> list[str]:
    """Qualified names of the modules whose forward a policy wrapped."""
    return [name for name, module in model.named_modules() if is_checkpointed(module)]


def remove_checkpointing(model: nn.Module) -> list[str]:
    """Undo any policy's wrapping (timm's own switch is left as it is); returns the names unwrapped."""
    names = checkpointed_modules(model)
    for name in names:
        module = model.get_submodule(name)
        del module.__dict__["forward"]
        delattr(module, _OP_POLICY_ATTR)
        delattr(module, _HOOKS_FLAG_ATTR)
        module.__dict__.pop(_RECOMPUTE_ATTR, None)
    return names


def disable_timm_checkpointing(model: nn.Module) -> list[str]:
    """Switch off timm's own `grad_checkpointing` everywhere in the model; returns the names switched off.

    timm's `forward_intermediates` wraps each block call in its own `checkpoint` when `grad_checkpointing` is on; on
    top of a policy's wrapped forward the block would be checkpointed twice, nested: redundant bookkeeping, and an
    outer plain checkpoint around `SelectiveOps` would drop the matmul outputs the policy means to keep.
    """
    names = []
    for name, module in model.named_modules():
        setter = getattr(module, "set_grad_checkpointing", None)
        if callable(setter) and getattr(module, "grad_checkpointing", False) is True:
            setter(False)
            names.append(name)
    return names


def _checkpointed_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    # The class forward, looked up at call time: a bound method of `self` survives deepcopy and pickling.
    forward = type(self).forward.__get__(self)
    if not (self.training and torch.is_grad_enabled()):
        return forward(*args, **kwargs)
    # preserve_rng_state (the default) replays dropout and DropPath masks identically in the recomputation.
    op_policy = getattr(self, _OP_POLICY_ATTR)
    recompute = getattr(self, _RECOMPUTE_ATTR, None)
    if recompute is not None:  # e.g. Transformer Engine's FP8 autocast, which checkpoint does not restore itself
        context_fn = functools.partial(_contexts_with, recompute, op_policy)
        return torch_checkpoint.checkpoint(forward, *args, use_reentrant=False, context_fn=context_fn, **kwargs)
    if op_policy is None:
        return torch_checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
    # The partial is built here, not stored: torch.compile traces a checkpoint's context_fn only when it is a
    # function or a functools.partial created in the traced code.
    context_fn = functools.partial(torch_checkpoint.create_selective_checkpoint_contexts, op_policy)
    if getattr(self, _HOOKS_FLAG_ATTR):
        # With `offload_activations` on, the matmul outputs SAC keeps go to host memory as well.
        kwargs["respect_saved_tensors_hooks"] = True
    return torch_checkpoint.checkpoint(forward, *args, use_reentrant=False, context_fn=context_fn, **kwargs)


@functools.cache
def _checkpoint_takes_hooks_flag() -> bool:
    return "respect_saved_tensors_hooks" in inspect.signature(torch_checkpoint.checkpoint).parameters


def _contexts_with(recompute: Callable[[], tuple[Any, Any]], op_policy: OpPolicy | None) -> tuple[Any, Any]:
    """The (forward, recompute) contexts of `recompute` combined with selective checkpointing's, when it applies."""
    extra_forward, extra_recompute = recompute()
    if op_policy is None:
        return extra_forward, extra_recompute
    forward, again = torch_checkpoint.create_selective_checkpoint_contexts(op_policy)
    return _both(forward, extra_forward), _both(again, extra_recompute)


@contextlib.contextmanager
def _both(first: Any, second: Any) -> Iterator[None]:
    with first, second:
        yield


def set_recompute_context(model: nn.Module, context_fn: Callable[[], tuple[Any, Any]] | None) -> int:
    """Give every checkpointed block of `model` extra (forward, recompute) contexts (None removes them).

    FP8 with Transformer Engine needs this: its layers compute in FP8 only inside TE's autocast, which the backward
    pass's recomputation would otherwise run without. Returns how many blocks got it.
    """
    count = 0
    for module in model.modules():
        if is_checkpointed(module):
            setattr(module, _RECOMPUTE_ATTR, context_fn)
            count += 1
    return count


def _wrap(module: nn.Module, op_policy: OpPolicy | None) -> None:
    if "forward" in module.__dict__:
        raise RuntimeError(f"{type(module).__name__} already has an instance forward; cannot checkpoint it")
    setattr(module, _OP_POLICY_ATTR, op_policy)
    # Decided here, not in the forward: torch.compile would break the graph at the cached signature lookup.
    setattr(module, _HOOKS_FLAG_ATTR, op_policy is not None and _checkpoint_takes_hooks_flag())
    module.forward = types.MethodType(_checkpointed_forward, module)


@functools.cache
def _saved_ops() -> frozenset[torch._ops.OpOverload]:
    return frozenset(getattr(torch.ops.aten, name).default for name in _SAVED_ATEN_OPS if hasattr(torch.ops.aten, name))


def save_matmuls_policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> torch_checkpoint.CheckpointPolicy:
    """Per-op policy for `create_selective_checkpoint_contexts`: keep matmul/attention outputs, recompute the rest."""
    if op in _saved_ops() or getattr(op, "namespace", None) in _SAVED_NAMESPACES:
        return torch_checkpoint.CheckpointPolicy.MUST_SAVE
    return torch_checkpoint.CheckpointPolicy.PREFER_RECOMPUTE


class CheckpointPolicy(abc.ABC):
    """Which transformer blocks recompute their activations in the backward pass, and how.

    `apply` replaces any earlier policy's wrapping; when it wraps at least one block it also switches timm's own
    `grad_checkpointing` off so the two never stack. Apply it before compile, FP8 conversion and DDP.
    """

    spec: ClassVar[str]
    """The `make_policy` spelling of this policy."""

    def apply(self, model: nn.Module) -> list[str]:
        """Wrap the chosen blocks of `model` in place; returns their qualified names (state_dict keys unchanged)."""
        remove_checkpointing(model)
        chosen = self.select(transformer_blocks(model))
        if chosen:
            disable_timm_checkpointing(model)
        op_policy = self.op_policy()
        for _, module in chosen:
            _wrap(module, op_policy)
        return [name for name, _ in chosen]

    @abc.abstractmethod
    def select(self, blocks: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
        """The blocks to wrap, from all of the model's transformer blocks in module order."""

    def op_policy(self) -> OpPolicy | None:
        """Per-op save/recompute choice for `create_selective_checkpoint_contexts`; None: keep only block inputs."""
        return None

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for logs and the run's config: what is recomputed."""


@dataclass(frozen=True)
class NoCheckpointing(CheckpointPolicy):
    """Wrap nothing (and leave timm's switch, `model.backbone.grad_checkpointing`, as the model was built)."""

    spec: ClassVar[str] = "none"

    def select(self, blocks: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
        return []

    def describe(self) -> str:
        return "none: every activation is kept for the backward pass (fastest, most memory)"


@dataclass(frozen=True)
class FullCheckpointing(CheckpointPolicy):
    """Recompute every transformer block of the backbone and the heads."""

    spec: ClassVar[str] = "full"

    def select(self, blocks: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
        return list(blocks)

    def describe(self) -> str:
        return "full: every transformer block keeps only its inputs and is recomputed in backward (least memory)"


@dataclass(frozen=True)
class EveryNth(CheckpointPolicy):
    """Recompute every n-th transformer block (the 1st, (n+1)-th, ... in module order); n=1 is full."""

    n: int
    """Period, >= 1."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"EveryNth.n must be >= 1, got {self.n}")

    @property
    def spec(self) -> str:  # type: ignore[override]  # depends on n
        return f"every:{self.n}"

    def select(self, blocks: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
        return blocks[:: self.n]

    def describe(self) -> str:
        return f"every:{self.n}: one transformer block in {self.n} is recomputed in backward"


@dataclass(frozen=True)
class SelectiveOps(CheckpointPolicy):
    """Per-op selective checkpointing of every block: keep matmul/conv/attention outputs, recompute the element-wise
    ops (norms, activations, residual adds, dropout), which cost memory bandwidth but few FLOPs."""

    spec: ClassVar[str] = "selective"

    def select(self, blocks: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
        return list(blocks)

    def op_policy(self) -> OpPolicy | None:
        return save_matmuls_policy

    def describe(self) -> str:
        return "selective: every block keeps its matmul and attention outputs and recomputes element-wise ops"


def make_policy(spec: str) -> CheckpointPolicy:
    """Parse "none", "full", "every:N" or "selective" (case and spaces ignored).

    Raises:
        UserError: any other spelling, or N not a whole number >= 1.
    """
    text = spec.strip().lower().replace(" ", "")
    simple: dict[str, CheckpointPolicy] = {
        "none": NoCheckpointing(),
        "full": FullCheckpointing(),
        "selective": SelectiveOps(),
    }
    if text in simple:
        return simple[text]
    head, sep, count = text.partition(":")
    if head == "every" and sep:
        if not count.isdigit() or int(count) < 1:
            raise UserError(f"checkpointing '{spec}' needs a whole number N >= 1 after 'every:', e.g. every:2")
        return EveryNth(int(count))
    raise UserError(f"unknown checkpointing '{spec}'; use {SPECS}")
