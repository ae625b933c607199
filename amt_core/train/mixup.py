"""Batch-level MixUp for the mode-collapse defences: mix images across a batch, return the pairing and lambda.

One lambda per batch (timm's batch mode) from Beta(alpha, alpha), folded to lambda >= 0.5 so each mixed image stays
dominated by its own sample: hand pose targets cannot be averaged meaningfully the way class labels can, so the
losses use the pairing to weight the two samples' terms (lambda * loss(pred, target) + (1 - lambda) *
loss(pred, target[perm])), and the dominant sample keeps its geometry. Only the image is mixed; every other field
of the batch is returned unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from amt_core.losses.mix import MixInfo
from amt_core.schema.sample import Batch

if TYPE_CHECKING:  # imported where used: amt_core.losses pulls in every loss term
    from amt_core.losses.mix import MixInfo


@dataclass(frozen=True, kw_only=True)
class MixUpConfig:
    enabled: bool = True
    """Apply MixUp at all (the trainer skips it when False)."""
    alpha: float = 0.4
    """Beta(alpha, alpha) concentration, > 0; small values give lambda near 1 (mild mixing)."""
    prob: float = 0.5
    """Probability that a batch is mixed, in [0, 1]."""

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"MixUpConfig.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"MixUpConfig.prob must be in [0, 1], got {self.prob}")


def mixup_batch(batch: Batch, config: MixUpConfig, generator: torch.Generator | None = None) -> tuple[Batch, MixInfo]:
    """Mix a collated batch's images.

    Args:
        batch: collated Samples; `image` is (B, 3, H, W).
        config: alpha, probability, switch.
        generator: CPU generator for reproducible draws (the trainer's, so resume is exact).

    Returns:
        (a shallow copy of the batch with the mixed image, `amt_core.losses.mix.MixInfo` with `index` (B,) and
        per-sample `lam` (B,)). When the batch is not mixed, index is the identity and lam is 1.
    """
    image = batch["image"]
    B = image.shape[0]
    identity = MixInfo(index=torch.arange(B), lam=torch.ones(B))
    if not config.enabled or B < 2 or torch.rand((), generator=generator).item() >= config.prob:
        return batch, identity
    from scipy.stats import beta  # scipy.stats takes about 0.3 s to import; only a mixed batch needs it

    # Inverse-CDF draw, so the one torch generator drives everything (torch.distributions takes no generator).
    uniform = float(torch.rand((), generator=generator, dtype=torch.float64))
    lam = float(beta.ppf(uniform, config.alpha, config.alpha))
    lam = max(lam, 1.0 - lam)
    index = torch.randperm(B, generator=generator)
    mixed = batch.copy()  # the caller's batch keeps its image
    mixed["image"] = lam * image + (1.0 - lam) * image[index.to(image.device)]
    # A sample paired with itself is not mixed: its weight is 1.
    lam_per_sample = torch.where(index == torch.arange(B), 1.0, lam).to(torch.float32)
    return mixed, MixInfo(index=index, lam=lam_per_sample)
