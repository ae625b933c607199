"""The seed's three training stages and the plan that runs them in order (or switches on command).

1 component pretraining (lr 1e-3): the pretrained backbone is frozen (its group's lr is 0) and only the direct
  supervision terms are on, so each encoder/head learns from its own target: with the shared trunk frozen, the sum of
  per-component losses gives each component exactly the gradient of its own loss, i.e. they train separately.
2 joint training (5e-4): every part and every loss term, balanced by the loss schedule.
3 fine-tuning (1e-4): a share of each batch drawn from the hardest samples seen so far, physics terms weighted higher.

`StagePlan` tracks the stage a run is in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
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
        object.__setattr__(self, "freeze", tuple(self.freeze))  # frozen: a list from JSON becomes a tuple, once

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


class StagePlan:
    """Where the run is in its stages: the current stage, when it started (step and training seconds) and when the
    hard-case pool was last rebuilt. The trainer asks it for the learning-rate factor, the loss multipliers and
    whether the stage is done; `state_dict` holds what a checkpoint must restore.

    Args:
        stages: the run's stages, in order.
        lengths: each stage's length in steps.
        time_budget_s: with `stage_by_time`, the training seconds the stages share in proportion to their lengths
            (None: stages end by steps).
    """

    def __init__(self, stages: tuple[StageConfig, ...], lengths: list[int], time_budget_s: float | None) -> None:
        self.stages = stages
        self.lengths = lengths
        self.time_budget_s = time_budget_s
        self.stage = 0
        self.start_step = 0
        self.start_time_s = 0.0
        self.mining_at = 0
        self.loss_fn: Any = None
        self.loss_has_stages = False

    @property
    def config(self) -> StageConfig:
        return self.stages[self.stage]

    @property
    def length(self) -> int:
        return self.lengths[self.stage]

    def enter(self, stage: int, step: int, train_time_s: float) -> None:
        """Start stage index `stage` (0-based) now: its warm-up and cosine start over."""
        self.stage, self.start_step, self.start_time_s = stage, step, train_time_s

    def progress(self, step: int, train_time_s: float) -> float:
        """How much of the current stage is done (1.0: it ends): by steps, or by training time."""
        if self.time_budget_s is not None:
            budget = self.time_budget_s * self.length / sum(self.lengths)
            return (train_time_s - self.start_time_s) / budget
        return (step - self.start_step) / self.length

    def position(self, step: int, train_time_s: float) -> float:
        """Where the schedule is within the stage, in steps (time progress scaled to steps with stage_by_time)."""
        if self.time_budget_s is not None:
            return min(self.progress(step, train_time_s), 1.0) * self.length
        return step - self.start_step

    def lr_factor(self, position: float) -> float:
        return self.config.lr_factor(position, self.length)

    def bind_loss(self, loss_fn: Any) -> None:
        """Use this loss: when it applies stage multipliers itself (`set_stage_multipliers`), every stage's
        `loss_scale` is checked by it now (an unknown term is an error) and the current stage's is set."""
        self.loss_fn = loss_fn
        setter = getattr(loss_fn, "set_stage_multipliers", None)
        self.loss_has_stages = callable(setter)
        for stage in (*self.stages, self.config) if self.loss_has_stages else ():
            setter(dict(stage.loss_scale))

    def apply_to_loss(self) -> None:
        """Set the current stage's multipliers in the loss (after a stage change or a load)."""
        if self.loss_has_stages:
            self.loss_fn.set_stage_multipliers(dict(self.config.loss_scale))

    def loss_total(self, result: Any) -> Any:
        """The step's loss: the loss's own total when it applies stage multipliers itself, else recomputed with them."""
        scale = self.config.loss_scale
        if self.loss_has_stages or not scale:
            return result.total
        return sum(result.weights[name] * scale.get(name, 1.0) * value for name, value in result.terms.items())

    def loss_terms(self, result: Any) -> dict[str, Any]:
        """The step's loss by term, in the graph: {term: weight x stage multiplier x value}, the pieces `loss_total`
        sums (a result without `weighted` terms: its weights times its values, which then must not be detached)."""
        scale = self.config.loss_scale
        weighted = getattr(result, "weighted", None) or {
            name: result.weights[name] * value for name, value in result.terms.items()
        }
        if self.loss_has_stages or not scale:
            return dict(weighted)
        return {name: value * scale.get(name, 1.0) for name, value in weighted.items()}

    def group_lr(self, group: str, group_scale: float, position: float, lr_scale: float) -> float:
        """A parameter group's learning rate at `position` (steps into the stage): 0 when the stage freezes it."""
        if group in self.config.freeze:
            return 0.0
        factor = self.lr_factor(position) * lr_scale
        return self.config.lr * group_scale * factor

    def total_steps(self, max_steps: int = 0) -> int:
        """The plan's steps, or `max_steps` when that comes first (0: no limit)."""
        total = sum(self.lengths)
        return min(total, max_steps) if max_steps else total

    def set_learning_rates(
        self, param_groups: list[dict], step: int, train_time_s: float, lr_scale: float, ok: Any
    ) -> None:
        """Each optimizer group's rate for this step, on the device; 0 when the step is skipped (`ok` is a 0/1
        tensor, so no host sync)."""
        position = self.position(step, train_time_s)
        for group in param_groups:
            group["lr"].fill_(self.group_lr(group["group"], group["lr_scale"], position, lr_scale))
            group["lr"].mul_(ok)

    def current_lrs(
        self, groups: list[str], scales: dict[str, float], step: int, train_time_s: float, lr_scale: float
    ) -> dict[str, float]:
        """The rate of each group at the last step (for the metrics event)."""
        position = max(self.position(step, train_time_s) - 1, 0)
        return {g: self.group_lr(g, scales.get(g, 1.0), position, lr_scale) for g in groups}

    def refresh_mining(self, step: int, plan: Any, refresh_every: int, pool_size: int, force: bool = False) -> bool:
        """Rebuild the batch plan's hard-case pool at a stage change (`force`), every `refresh_every` steps of a
        mining stage, and once when a stage without mining follows one that mined (to empty the pool). Returns
        whether the plan's batches changed (the loader must restart)."""
        share = self.config.hard_mining
        due = force or (share > 0 and step - self.mining_at >= refresh_every) or (share == 0 and plan.mining_share > 0)
        if not due:
            return False
        self.mining_at = step
        return plan.refresh_pool(share, pool_size)

    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "stage_start": self.start_step,
            "stage_time_start": self.start_time_s,
            "mining_at": self.mining_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage, self.start_step = state["stage"], state["stage_start"]
        self.start_time_s, self.mining_at = state["stage_time_start"], state["mining_at"]
        self.apply_to_loss()
