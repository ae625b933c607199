"""Dynamic loss weights: the seed's schedule as linear ramps over training progress in epochs, times multipliers.

The seed's ramps: diversity 2 -> 1 over epochs 0-30 (high early against collapse), refinement 0 -> 1 over 0-50,
physics 0 until epoch 20, then up to 1 at epoch 50. The seed's physics formula, max(0, (epoch - 20) / 30), keeps
growing past 1; here every ramp holds its end value, so a long run does not end up physics-dominated by accident
(stage multipliers are the explicit way to weight physics higher, as the trainer's fine-tuning stage does).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class Ramp:
    """A value that moves linearly from `start_value` at `start_epoch` to `end_value` at `end_epoch`, flat outside."""

    start_epoch: float = 0.0
    """Progress (epochs, >= 0) where the ramp starts; before it the value is `start_value`."""
    end_epoch: float
    """Progress (epochs, >= start_epoch) where the ramp ends; after it the value is `end_value`."""
    start_value: float
    """Value up to `start_epoch` (>= 0)."""
    end_value: float
    """Value from `end_epoch` on (>= 0)."""

    def __post_init__(self) -> None:
        if self.start_epoch < 0:
            raise ValueError(f"Ramp.start_epoch must be >= 0, got {self.start_epoch}")
        if self.end_epoch < self.start_epoch:
            raise ValueError(f"Ramp.end_epoch must be >= start_epoch ({self.start_epoch}), got {self.end_epoch}")
        if self.start_value < 0 or self.end_value < 0:
            raise ValueError(f"Ramp values must be >= 0, got {self.start_value} and {self.end_value}")

    def __call__(self, epoch: float) -> float:
        if epoch <= self.start_epoch:
            return self.start_value
        if epoch >= self.end_epoch:
            return self.end_value
        fraction = (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch)
        return self.start_value + fraction * (self.end_value - self.start_value)


def seed_ramps() -> dict[str, Ramp]:
    """The seed's `get_loss_weight` schedule (physics clamped at 1, see the module docstring)."""
    return {
        "diversity": Ramp(start_epoch=0.0, end_epoch=30.0, start_value=2.0, end_value=1.0),
        "refinement": Ramp(start_epoch=0.0, end_epoch=50.0, start_value=0.0, end_value=1.0),
        "physics": Ramp(start_epoch=20.0, end_epoch=50.0, start_value=0.0, end_value=1.0),
    }


@dataclass(frozen=True, kw_only=True)
class LossSchedule:
    """Per-group ramps over progress in epochs, and constant multipliers (per stage, per group or per term).

    `factor(name, group, epoch)` is ramps[group](epoch) (1 without a ramp) times multipliers[group] times
    multipliers[name] (each 1 when absent). Which names are valid is checked by `AMTLoss`, which knows its terms.
    """

    ramps: dict[str, Ramp] = field(default_factory=seed_ramps)
    """Ramp by loss group name (e.g. "diversity", "refinement", "physics")."""
    multipliers: dict[str, float] = field(default_factory=dict)
    """Constant factor by group or term name (>= 0), e.g. {"physics": 2.0} for a fine-tuning stage."""

    def __post_init__(self) -> None:
        ramps = {name: ramp if isinstance(ramp, Ramp) else Ramp(**ramp) for name, ramp in dict(self.ramps).items()}
        object.__setattr__(self, "ramps", ramps)  # frozen: ramps given as dicts become Ramps here, once
        for name, value in self.multipliers.items():
            if value < 0:
                raise ValueError(f"LossSchedule.multipliers[{name!r}] must be >= 0, got {value}")

    def ramp_value(self, group: str, epoch: float) -> float:
        """The ramp of `group` at `epoch` (1 for a group without a ramp)."""
        ramp = self.ramps.get(group)
        return 1.0 if ramp is None else ramp(epoch)

    def factor(self, name: str, group: str, epoch: float, extra: dict[str, float] | None = None) -> float:
        """Schedule factor of term `name` in `group` at `epoch`; `extra` multipliers (a stage's) apply on top."""
        value = self.ramp_value(group, epoch)
        for multipliers in (self.multipliers, extra or {}):
            value *= multipliers.get(group, 1.0) * multipliers.get(name, 1.0)
        return value
