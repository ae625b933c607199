"""Loss-side MixUp: the pairing of a batch-level MixUp and how target-based losses are mixed by it.

A mixed image is lam * image + (1 - lam) * image[index]; its loss is lam * L(pred, target) + (1 - lam) *
L(pred, target[index]), the usual MixUp rule applied to each per-sample loss term.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

_Tree = TypeVar("_Tree", bound=Mapping[str, Any])


@dataclass(kw_only=True)
class MixInfo:
    """How a batch was mixed."""

    index: torch.Tensor
    """(B,) long: sample i was mixed with sample index[i]."""
    lam: torch.Tensor
    """(B,) float in [0, 1]: the weight of sample i's own image (1 = not mixed)."""


def permute_batch(batch: _Tree, index: torch.Tensor) -> _Tree:
    """A new batch (a `schema.sample.Batch`, or any mapping of tensors) of the samples reordered by `index` (nested
    dicts such as `valid` too; non-tensor values kept); `batch` is left as it was."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            out[key] = permute_batch(value, index)
        elif isinstance(value, torch.Tensor) and value.dim() > 0:
            out[key] = value[index.to(value.device)]
        elif isinstance(value, list | tuple) and len(value) == len(index):
            out[key] = type(value)(value[int(i)] for i in index)
        else:
            out[key] = value
    return out  # type: ignore[return-value]  # the keys of `batch`, so its TypedDict


def mix_per_sample(
    own: tuple[torch.Tensor, torch.Tensor], other: tuple[torch.Tensor, torch.Tensor], lam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix per-sample (loss, valid) pairs against both targets.

    A sample counts only where every target with a non-zero share is valid (a sample whose partner lacks the field
    is skipped rather than supervised with half a target).

    Args:
        own, other: ((B,) loss, (B,) bool valid) against the batch's own targets and the partners'.
        lam: (B,) the own share.

    Returns:
        ((B,) mixed loss, (B,) bool valid).
    """
    loss_a, valid_a = own
    loss_b, valid_b = other
    lam = lam.to(loss_a)
    valid = (valid_a | (lam <= 0)) & (valid_b | (lam >= 1))
    mixed = lam * torch.where(valid_a, loss_a, 0.0) + (1 - lam) * torch.where(valid_b, loss_b, 0.0)
    return mixed, valid
