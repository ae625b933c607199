"""FP8 layers' state in checkpoints: Transformer Engine's `_extra_state` split from the weights, and loading that
works across FP8 and non-FP8 runs of one model. Checkpoint loading needs only this, never the FP8 conversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def split_extra_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a state dict into tensors for safetensors and TE's `_extra_state` entries (FP8 scaling metadata).

    TE stores that metadata under `<layer>._extra_state`, as a uint8 tensor in recent versions and an `io.BytesIO` in
    older ones, which safetensors cannot hold; keep it beside the optimizer state (torch.save) instead.
    """
    weights, extra = {}, {}
    for key, value in state_dict.items():
        (extra if is_extra_state(key) else weights)[key] = value
    return weights, extra


def load_weights(
    module: nn.Module, weights: Mapping[str, torch.Tensor], extra: Mapping[str, Any] | None = None
) -> None:
    """`load_state_dict` that accepts checkpoints across FP8 and non-FP8 runs of the same model.

    Weights must match exactly, as with strict loading; TE's `_extra_state` is loaded where the checkpoint has it and
    the module takes it, and otherwise skipped (a bf16 checkpoint into a TE model, or the other way round).

    Raises:
        RuntimeError: a weight is missing or unexpected.
    """
    result = module.load_state_dict({**weights, **(extra or {})}, strict=False)
    missing = [k for k in result.missing_keys if not is_extra_state(k)]
    unexpected = [k for k in result.unexpected_keys if not is_extra_state(k)]
    if missing or unexpected:
        raise RuntimeError(
            f"checkpoint does not fit {type(module).__name__}: missing {missing}, unexpected {unexpected}"
        )


def is_extra_state(key: str) -> bool:
    """Whether a state-dict key is a module's `_extra_state` (TE's FP8 scaling metadata)."""
    return key == "_extra_state" or key.endswith("._extra_state")
