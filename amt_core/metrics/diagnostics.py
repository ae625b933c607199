"""Training health diagnostics: the spread of predictions across a batch (the seed's collapse check) and attention
entropy. Both are cheap enough to compute on sampled batches while training.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from amt_core.metrics.hand import as_float64, root_relative

# The seed's collapse check: a prediction std across the batch below 1 cm means the model predicts a constant.
COLLAPSE_STD_M = 0.01


def prediction_std(joints: torch.Tensor | np.ndarray) -> float:
    """The seed's collapse check: mean over coordinates of the std over the batch of root-relative joints.

    Args:
        joints: (B, 21, 3) metres, B >= 2.

    Returns:
        metres; below `COLLAPSE_STD_M` (0.01) the model has collapsed to a constant prediction.
    """
    rel = root_relative(joints)  # (B, 21, 3) metres
    if rel.shape[0] < 2:
        raise ValueError("prediction_std needs a batch of at least 2 samples")
    return float(rel.std(dim=0).mean())


def is_collapsed(std_m: float) -> bool:
    """Whether a `prediction_std` value means collapse (below 0.01 m)."""
    return std_m < COLLAPSE_STD_M


def attention_entropy(probs: torch.Tensor | np.ndarray, normalized: bool = False) -> float:
    """Mean entropy (nats) of attention distributions.

    Args:
        probs: (B, H, Q, K) attention probabilities, each row over K summing to 1.
        normalized: divide by log K, so 1 is uniform attention and 0 attention on a single key.

    Returns:
        mean over B, H and Q of -sum_k p log p (0 log 0 taken as 0).
    """
    probs = as_float64(probs)
    entropy = -torch.special.xlogy(probs, probs).sum(dim=-1).mean()
    num_keys = probs.shape[-1]
    if normalized:
        return float(entropy / math.log(num_keys)) if num_keys > 1 else 0.0
    return float(entropy)
