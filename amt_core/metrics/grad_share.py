"""Each loss term's share of the gradient that reaches the model's shared trunk (its feature extractor): which terms
drive the shared features and which fight the others. The trunk's outputs are cut from it (detached leaves) and the
gradients taken there with `torch.autograd.grad`, so only the heads are back-propagated through and no parameter's
`.grad` is touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

TRUNK_ATTRIBUTES = ("backbone", "features")
"""Where the models keep their trunk: `backbone` (AMT, Baseline: returns `BackboneFeatures`), `features` (the CNN)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class GradShare:
    """Per loss term, at the trunk's outputs (every captured output tensor flattened and concatenated)."""

    share: dict[str, float]
    """<g_i, g> / ||g||^2 with g_i = d(w_i l_i)/d(trunk outputs) and g = sum_i g_i: the shares sum to 1, a term that
    fights the others is negative; all 0 when g is 0."""
    norm: dict[str, float]
    """||g_i||."""


def trunk_of(model: nn.Module) -> nn.Module | None:
    """The model's shared feature extractor (`backbone` or `features`, through a DDP wrapper), or None."""
    model = getattr(model, "module", model)
    for name in TRUNK_ATTRIBUTES:
        trunk = getattr(model, name, None)
        if isinstance(trunk, nn.Module):
            return trunk
    return None


def term_shares(terms: Mapping[str, torch.Tensor], features: Sequence[torch.Tensor]) -> GradShare:
    """Each weighted term's gradient norm and share at `features` (the graph is kept: the caller may use it again).

    Args:
        terms: {name: () weighted term w_i * l_i}, in the graph of `features`.
        features: the tensors the gradients are taken at (the trunk's outputs).

    A term that does not depend on `features` (no graph, or an unused path) gets norm 0 and share 0.
    """
    names = list(terms)
    features = [f for f in features if f.requires_grad]
    if not names or not features:
        return GradShare(share=dict.fromkeys(names, 0.0), norm=dict.fromkeys(names, 0.0))
    # g once for the sum, then each g_i against it: two gradient-sized buffers at a time, not one per term
    total = _gradient(sum(terms.values()), features)
    dots, norms = [], []
    for name in names:
        grads = _gradient(terms[name], features)
        dots.append(_dot(grads, total))
        norms.append(_dot(grads, grads).sqrt())
    total_sq = _dot(total, total)
    shares = torch.where(total_sq > 0, torch.stack(dots) / total_sq.clamp(min=torch.finfo(total_sq.dtype).tiny), 0.0)
    values = torch.stack([shares, torch.stack(norms)]).tolist()  # the one host read
    return GradShare(share=dict(zip(names, values[0])), norm=dict(zip(names, values[1])))


def trunk_grad_share(
    model: nn.Module,
    batch: Any,
    weighted_terms: Callable[[Any, Any], Mapping[str, torch.Tensor]],
    trunk: nn.Module | None = None,
) -> GradShare:
    """One forward of `model` on `batch` with the trunk's outputs replaced by detached leaves (the same values: the
    heads see what they would), then each term's share at them.

    Args:
        model: called as `model(batch)`; runs in whatever mode (train / eval) and precision it is in.
        batch: the model's input.
        weighted_terms: (output, batch) -> {name: () w_i * l_i}, the terms whose sum the optimizer minimises.
        trunk: the module whose outputs are the shared features; default `trunk_of(model)`.
    """
    trunk = trunk if trunk is not None else trunk_of(model)
    if trunk is None:
        raise ValueError(f"{type(model).__name__} has no trunk: expected one of {TRUNK_ATTRIBUTES} or pass `trunk`")
    captured: list[torch.Tensor] = []

    def cut(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        captured.clear()  # the last call counts, if the trunk runs twice
        return _as_leaves(output, captured)

    handle = trunk.register_forward_hook(cut)
    try:
        output = model(batch)
    finally:
        handle.remove()
    return term_shares(weighted_terms(output, batch), captured)


def _as_leaves(value: Any, leaves: list[torch.Tensor]) -> Any:
    """`value` with each tensor that requires grad replaced by a detached leaf copy (appended to `leaves`).

    The gradient at the trunk is the partial derivative by each output: an output computed from another (`fused`
    from `maps`) must not pass its gradient on to it, and the trunk's own backward is never needed.
    """
    if isinstance(value, torch.Tensor):
        if not value.requires_grad:
            return value
        leaf = value.detach().requires_grad_()
        leaves.append(leaf)
        return leaf
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _as_leaves(getattr(value, f.name), leaves) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, Mapping):
        return type(value)({k: _as_leaves(v, leaves) for k, v in value.items()})
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(_as_leaves(v, leaves) for v in value))
    if isinstance(value, list | tuple):
        return type(value)(_as_leaves(v, leaves) for v in value)
    return value


def _gradient(term: torch.Tensor, features: list[torch.Tensor]) -> list[torch.Tensor]:
    """d term / d features, zeros where the term does not reach a feature."""
    if not (isinstance(term, torch.Tensor) and term.requires_grad):
        return [torch.zeros_like(f) for f in features]
    grads = torch.autograd.grad(term, features, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(f) if g is None else g for g, f in zip(grads, features)]


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """<a, b> of two flattened-and-concatenated lists, in float64 (bf16 features would round the shares)."""
    return sum(torch.dot(x.flatten().double(), y.flatten().double()) for x, y in zip(a, b))
