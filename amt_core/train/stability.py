"""Training stability: gradient centralization, adaptive gradient clipping, non-finite steps and loss explosions.

Non-finite detection never syncs the host per step: `process_gradients` turns the check into a device flag `ok`
(1.0 or 0.0); non-finite gradients are zeroed and every group's (tensor) learning rate is multiplied by `ok`, so a bad
step leaves the parameters exactly as they were (AdamW's moments decay by one step as for a zero gradient). The
flags and losses sit in device buffers that the trainer reads every `check_every` steps, where it records the skipped
batches and looks for explosions (a loss far above the running median), which it answers with a rollback to the last
good checkpoint and a learning-rate back-off.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
from timm.utils import adaptive_clip_grad


@dataclass(frozen=True, kw_only=True)
class StabilityConfig:
    grad_centralization: bool = True
    """Subtract each weight row's mean gradient (Yong et al. 2020: mean over all dims but the output dim)."""
    agc_clip: float = 0.05
    """Adaptive gradient clipping factor (Brock et al. 2021, unit-wise); 0 turns it off."""
    check_every: int = 10
    """Host sync cadence (steps) for non-finite records, explosion checks and metrics events."""
    spike_factor: float = 8.0
    """A loss above spike_factor x the running median of recent good losses is an explosion."""
    spike_window: int = 64
    """How many recent good losses the running median uses."""
    spike_min_history: int = 16
    """No explosion is called before this many good losses were seen."""
    lr_backoff: float = 0.5
    """Learning-rate multiplier applied at each rollback (it compounds)."""
    max_rollbacks: int = 5
    """A run that needs more rollbacks than this stops with an error."""
    max_consecutive_nonfinite: int = 20
    """This many non-finite steps in a row are treated like an explosion (rollback)."""

    def __post_init__(self) -> None:
        if self.agc_clip < 0:
            raise ValueError(f"StabilityConfig.agc_clip must be >= 0 (got {self.agc_clip})")
        if self.check_every < 1:
            raise ValueError(f"StabilityConfig.check_every must be >= 1 (got {self.check_every})")
        if self.spike_factor <= 1:
            raise ValueError(f"StabilityConfig.spike_factor must be > 1 (got {self.spike_factor})")
        if self.spike_window < 4 or self.spike_min_history < 1:
            raise ValueError("StabilityConfig.spike_window must be >= 4 and spike_min_history >= 1")
        if not 0 < self.lr_backoff <= 1:
            raise ValueError(f"StabilityConfig.lr_backoff must be in (0, 1] (got {self.lr_backoff})")
        if self.max_rollbacks < 0 or self.max_consecutive_nonfinite < 1:
            raise ValueError("StabilityConfig.max_rollbacks must be >= 0 and max_consecutive_nonfinite >= 1")


def centralize_gradient_(grad: torch.Tensor) -> None:
    """Gradient centralization in place for a weight of 2+ dims: each output unit's gradient gets zero mean."""
    if grad.ndim > 1:
        grad.sub_(grad.mean(dim=tuple(range(1, grad.ndim)), keepdim=True))


@torch.no_grad()
def process_gradients(
    param_groups: list[dict], loss: torch.Tensor, config: StabilityConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check, sanitize, centralize and clip the gradients of an optimizer's param groups, on the device.

    Returns:
        ok: () float, 1.0 when the loss and every gradient are finite, else 0.0 (then every gradient is zeroed).
        group_norms: (G,) gradient norm of each param group before clipping (nan/inf where non-finite).
    """
    norms = []
    grads = []
    for group in param_groups:
        group_grads = [p.grad for p in group["params"] if p.grad is not None]
        grads.extend(group_grads)
        if group_grads:
            norms.append(torch.nn.utils.get_total_norm(group_grads, error_if_nonfinite=False))
        else:
            norms.append(torch.zeros((), device=loss.device))
    group_norms = torch.stack([n.to(loss.device, torch.float32) for n in norms])
    ok = (torch.isfinite(group_norms).all() & torch.isfinite(loss.detach())).to(torch.float32)
    for grad in grads:
        grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0).mul_(ok.to(grad.dtype))
        if config.grad_centralization:
            centralize_gradient_(grad)
    if config.agc_clip > 0:
        for group in param_groups:
            adaptive_clip_grad([p for p in group["params"] if p.grad is not None], clip_factor=config.agc_clip)
    return ok, group_norms


class SpikeDetector:
    """Calls a loss an explosion when it exceeds `factor` x the median of the recent good losses."""

    def __init__(self, config: StabilityConfig) -> None:
        self.config = config
        self.history: deque[float] = deque(maxlen=config.spike_window)

    def median(self) -> float | None:
        if len(self.history) < self.config.spike_min_history:
            return None
        values = sorted(self.history)
        return values[len(values) // 2]

    def check(self, loss: float) -> bool:
        """Whether `loss` (a finite step's) is an explosion; good losses join the history."""
        median = self.median()
        if median is not None and loss > self.config.spike_factor * max(median, 1e-12):
            return True
        self.history.append(loss)
        return False

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.history = deque(state["history"], maxlen=self.config.spike_window)
