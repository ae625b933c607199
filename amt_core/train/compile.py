"""`torch.compile` of a built model, in place: the backbone's transformer blocks one by one, and each head whole.

In-place `nn.Module.compile` (not `torch.compile(module)`, which returns a wrapper) keeps state_dict keys and
parameter names unchanged, so checkpoints, optimizer groups and the studio see the same model compiled or not.

Order of the training transforms (`amt_core/train/`): checkpointing -> compile -> FP8 -> DDP. This works because
`nn.Module.compile` is lazy: it only stores a compiled `_call_impl`, and tracing happens at the first forward call.
So the policy's wrapped block `forward` (checkpointing, applied first) is what dynamo traces, as a checkpoint region
it can fuse inside; FP8 conversion, which swaps `nn.Linear` children for float8 ones in place, runs before that first
call, so the traced graphs already contain the FP8 layers; DDP wraps last and sees the final parameters and modules,
and its gradient hooks sit on the same parameter objects the compiled graphs read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import types
from collections.abc import Callable
from typing import Any

import torch
from timm.layers import DropPath
from torch import nn

from amt_core.accel.recompute import transformer_blocks
from amt_core.errors import UserError

MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# Graphs one code object (all blocks share `Block.forward`) may need: block 0 (no DropPath), block 1 (rate still a
# constant) and the rest (rate symbolic), in training and in eval, with and without attention recording, with and
# without a checkpointing wrapper. Past the limit dynamo runs the frame eagerly; torch's default is 8.
RECOMPILE_LIMIT = 24


def _shared_graph_drop_path(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's DropPath with the same distribution, written so dynamo can keep `drop_prob` symbolic.

    timm's stochastic depth gives every block its own rate, and timm's `bernoulli_(keep_prob)` makes dynamo bake the
    rate into the graph: one compile per block, and past the recompile limit (8) the remaining blocks silently run
    eagerly. With the rate as a comparison operand it becomes a symbolic input after one recompile and every
    later block reuses the same graph.
    """
    if not self.training or self.drop_prob == 0.0:
        return x
    keep = 1.0 - self.drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # one draw per sample
    mask = (torch.rand(shape, device=x.device) < keep).to(x.dtype)  # drawn in fp32: bf16 would round `keep`
    return x * (mask / keep if self.scale_by_keep else mask)


def _share_block_graphs(blocks: list[nn.Module]) -> None:
    for block in blocks:
        for module in block.modules():
            if type(module) is DropPath and "forward" not in module.__dict__:
                module.forward = types.MethodType(_shared_graph_drop_path, module)


def run_eagerly() -> contextlib.AbstractContextManager:
    """Run compiled modules eagerly inside this context (their graphs stay cached for later calls).

    For attention recording (`record_attention`): the backbone captures maps through forward hooks whose closures a
    compiled block does not re-read, so from the second recording on its maps would silently be missing.
    """
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is not None:
        return set_stance("force_eager")
    return torch._dynamo.config.patch(disable=True)  # torch < 2.6


def compile_targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """What `compile_model` compiles: the backbone's transformer blocks, then each trainable head (direct children
    of the model other than the backbone with a parameter that requires grad; the frozen hand layer is left out)."""
    backbone = getattr(model, "backbone", None)
    targets: list[tuple[str, nn.Module]] = []
    if isinstance(backbone, nn.Module):
        targets += [(f"backbone.{name}", block) for name, block in transformer_blocks(backbone)]
    for name, child in model.named_children():
        if child is not backbone and any(p.requires_grad for p in child.parameters()):
            targets.append((name, child))
    return targets


def _check(model: nn.Module, mode: str, backend: str | Callable[..., Any]) -> None:
    if mode not in MODES:
        raise UserError(f"unknown compile mode '{mode}'; use one of {', '.join(MODES)}")
    if mode != "default" and backend != "inductor":
        raise UserError(f"compile mode '{mode}' needs the inductor backend (got {backend!r}); use compile_mode=default")
    if callable(backend):
        return
    if backend not in torch.compiler.list_backends(exclude_tags=()):
        raise UserError(f"unknown torch.compile backend '{backend}'; use inductor (or aot_eager to debug)")
    if backend != "inductor":
        return
    param = next(model.parameters(), None)
    device = param.device.type if param is not None else "cpu"
    if device == "cuda" and importlib.util.find_spec("triton") is None:
        raise UserError("torch.compile with inductor on CUDA needs triton (pip install triton); or turn compile off")
    if device == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        raise UserError("torch.compile with inductor on the CPU needs a C++ compiler (none found); install g++")


def compile_model(
    model: nn.Module,
    *,
    mode: str = "default",
    backend: str | Callable[..., Any] = "inductor",
    fullgraph: bool = False,
) -> list[str]:
    """Compile the backbone's blocks and the heads in place (lazily: tracing happens at the first forward).

    One compile per block keeps compile time low: identical blocks reuse one graph (timm's DropPath is swapped for
    an equivalent one so the per-block drop rates do not force a graph each, and dynamo's recompile limit is raised
    to `RECOMPILE_LIMIT`, process-wide, so no block silently falls back to eager). Apply after the checkpointing policy
    and before FP8 conversion and DDP (module docstring). Parameters that a forward never reaches get zero gradients
    under compile rather than None.

    Args:
        model: a built model (`create_model`), already on its device.
        mode: torch.compile mode, one of `MODES` (other than "default" only with inductor).
        backend: torch.compile backend: "inductor"; "aot_eager" traces without generating code (tests); or a
            backend callable.
        fullgraph: fail on any graph break instead of falling back to Python between graphs.

    Returns:
        The qualified names of the compiled modules.

    Raises:
        UserError: unknown mode or backend, a missing toolchain, or nothing to compile.
    """
    _check(model, mode, backend)
    targets = compile_targets(model)
    if not targets:
        raise UserError(f"compile found no backbone blocks or trainable heads in {type(model).__name__}; turn it off")
    blocks = [module for name, module in targets if name.startswith("backbone.")]
    _share_block_graphs(blocks)
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # renamed in torch 2.6
    setattr(config, limit, max(getattr(config, limit), RECOMPILE_LIMIT))
    options = {"backend": backend, "fullgraph": fullgraph}
    if mode != "default":
        options["mode"] = mode
    for _, module in targets:
        module.compile(**options)
    return [name for name, _ in targets]
