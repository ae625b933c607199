"""The seed's three training stages and the plan that runs them in order (or switches on command).

1 component pretraining (lr 1e-3): the pretrained backbone is frozen (its group's lr is 0) and only the direct
  supervision terms are on, so each encoder/head learns from its own target: with the shared trunk frozen, the sum of
  per-component losses gives each component exactly the gradient of its own loss, i.e. they train separately.
2 joint training (5e-4): every part and every loss term, balanced by the loss schedule.
3 fine-tuning (1e-4): a share of each batch drawn from the hardest samples seen so far, physics terms weighted higher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class StageConfig:
    name: str
    """Short name shown in events and the progress bar."""
    lr: float
    """Base learning rate of the stage (the decoders' rate; other groups scale it)."""
    steps: int = 0
    """Length in optimizer steps; 0 means use `epochs`."""
    epochs: float = 0.0
    """Length in passes over the training set (used when `steps` is 0)."""
    warmup_steps: int = 100
    """Linear warm-up at the start of the stage (capped at a tenth of its length)."""
    min_lr_ratio: float = 0.01
    """The cosine ends at lr * min_lr_ratio."""
    freeze: tuple[str, ...] = ()
    """Parameter groups whose learning rate is 0 in this stage (e.g. "backbone")."""
    loss_scale: dict[str, float] = field(default_factory=dict)
    """Multiplier per loss term on top of the loss schedule (0 turns a term off); unknown terms are errors."""
    hard_mining: float = 0.0
    """Share of each batch drawn from the hardest samples seen so far, in [0, 0.9]."""

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"StageConfig.lr must be > 0 (got {self.lr})")
        if self.steps < 0 or self.epochs < 0 or (self.steps == 0 and self.epochs == 0):
            raise ValueError(f"stage {self.name!r}: give steps > 0 or epochs > 0 (got {self.steps}, {self.epochs})")
        if self.warmup_steps < 0:
            raise ValueError(f"StageConfig.warmup_steps must be >= 0 (got {self.warmup_steps})")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"StageConfig.min_lr_ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if not 0 <= self.hard_mining <= 0.9:
            raise ValueError(f"StageConfig.hard_mining must be in [0, 0.9] (got {self.hard_mining})")
        for term, scale in self.loss_scale.items():
            if scale < 0:
                raise ValueError(f"StageConfig.loss_scale[{term!r}] must be >= 0 (got {scale})")
        self.freeze = tuple(self.freeze)

    def length(self, dataset_len: int, global_batch: int) -> int:
        """Length in steps."""
        if self.steps:
            return self.steps
        return max(1, math.ceil(self.epochs * dataset_len / global_batch))

    def lr_factor(self, step_in_stage: float, length: int) -> float:
        """Warm-up then cosine, as a factor of `lr` (held at the minimum past the stage's end)."""
        warmup = min(self.warmup_steps, length // 10)
        if step_in_stage < warmup:
            return (step_in_stage + 1) / (warmup + 1)
        progress = min(1.0, (step_in_stage - warmup) / max(1, length - warmup))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def seed_stages(
    steps: tuple[int, int, int] = (0, 0, 0),
    epochs: tuple[float, float, float] = (20, 50, 30),
    warmup_steps: int = 100,
    direct_terms_off: tuple[str, ...] = (),
    physics_terms: tuple[str, ...] = (),
) -> tuple[StageConfig, ...]:
    """The seed's plan: lengths in steps where given (non-zero) else epochs.

    Args:
        steps: length of each stage in steps (0: use epochs).
        epochs: length of each stage in epochs.
        warmup_steps: warm-up at the start of each stage.
        direct_terms_off: loss terms that are not direct supervision (off in stage 1).
        physics_terms: loss terms weighted 2x in stage 3.
    """
    epochs = tuple(0.0 if count else length for count, length in zip(steps, epochs))  # steps win where given
    return (
        StageConfig(
            name="components",
            lr=1e-3,
            steps=steps[0],
            epochs=epochs[0],
            warmup_steps=warmup_steps,
            freeze=("backbone",),
            loss_scale={term: 0.0 for term in direct_terms_off},
        ),
        StageConfig(name="joint", lr=5e-4, steps=steps[1], epochs=epochs[1], warmup_steps=warmup_steps),
        StageConfig(
            name="finetune",
            lr=1e-4,
            steps=steps[2],
            epochs=epochs[2],
            warmup_steps=warmup_steps,
            loss_scale={term: 2.0 for term in physics_terms},
            hard_mining=0.5,
        ),
    )
