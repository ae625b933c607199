"""The trainer's checkpoints: which one to resume from, saving with retention (manual saves, stage ends, the best
validation and rollback targets are kept), restoring, rollbacks, and the branches a rollback or a resume from an
older checkpoint starts.

The checkpointer is given the model and a map of named parts that have `state_dict`/`load_state_dict` (`PARTS`:
the train state, the stage plan, the optimizer, the loss, the batch plan, the spike detector, the mean pose, the
validator); it never sees the trainer. A checkpoint holds the model's weights, the parts' state in the layout of the
checkpoint format (`training_state`; checkpoints written before the parts existed load) and the run's config.json
(from the `info` callable). The files themselves (atomic writes, names, `latest`, `retain.json`, pruning) are
`amt_core.train.checkpoint_files`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import nn

from amt_core.accel.fp8_state import load_weights, split_extra_state
from amt_core.errors import UserError
from amt_core.train import checkpoint_files as ckpt_io
from amt_core.train import ddp, parts
from amt_core.train.events import Checkpoint, EventWriter, LossExplosion, NonFiniteRun, Rollback, Stage
from amt_core.train.kinds import AnomalyKind, CheckpointReason
from amt_core.train.rng import rng_state, set_rng_state
from amt_core.train.rundir import RunDir

if TYPE_CHECKING:
    from amt_core.train.host_check import Trouble
    from amt_core.train.stability import StabilityConfig
    from amt_core.train.stages import StagePlan
    from amt_core.train.state import TrainState


class TrainingFailed(RuntimeError):
    """Training cannot go on (e.g. more explosions than max_rollbacks)."""


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any], /) -> None: ...


PARTS = ("train", "optimizer", "loss", "stages", "spike", "mean_pose", "plan", "validator")
"""The parts a checkpointer is given, in the order they are restored (the loss before the stage plan, which sets
the stage's multipliers in it)."""
ROLLBACK_PARTS = ("optimizer", "loss", "stages", "spike", "mean_pose")
"""What a rollback restores besides the weights and the step; the data, the RNGs and the run counters move on."""
MERGED = ("stages",)
"""Parts whose state sits at the checkpoint's top level (the format's layout)..."""
IN_RUN = ("train", "validator")
"""...and parts whose state sits in its "run" section, with the checkpointer's own; the step is at the top level."""


class Checkpointer:
    """Saves and finds a run's checkpoints; rank 0 writes, every rank keeps the same bookkeeping.

    Args:
        run: the run directory.
        keep_last: how many of the newest checkpoints retention keeps besides the retained ones.
        dist: the distributed context (rank 0 writes; the barrier after a save).
        module: the model whose weights are saved and loaded.
        parts: every name in `PARTS`, each an object with `state_dict`/`load_state_dict`.
        info: the run's config.json contents, written into each checkpoint.
        device: where the optimizer's learning-rate tensors live.
    """

    def __init__(
        self,
        run: RunDir,
        keep_last: int,
        dist: ddp.DistInfo,
        module: nn.Module,
        parts: Mapping[str, Stateful],
        info: Callable[[], dict[str, Any]],
        device: torch.device,
    ) -> None:
        missing = set(PARTS) - set(parts)
        if missing:
            raise ValueError(f"the checkpointer needs the parts {sorted(missing)}")
        self.module, self.parts, self.info, self.device = module, dict(parts), info, device
        self._train = cast("TrainState", parts["train"])  # a rollback counts in it and names its step
        self._stages = cast("StagePlan", parts["stages"])  # ... and names the stage it returns to
        self.run = run
        self.folder = run.checkpoints
        self.keep_last = keep_last
        self.is_main = dist.is_main
        self.dist = dist
        self.events = EventWriter(run.path, enabled=False)
        """Set by the trainer once the run directory is taken."""
        self.branch = 0
        """0 until the first rollback; names carry it so a new branch's checkpoints sort newest."""
        self.best_checkpoint: str | None = None
        """The checkpoint holding the best validation so far."""
        self.best_pending = False
        """A validation at this step was the best: the next save is retained as `best`."""
        self.last_step = -1
        """The step of the last checkpoint saved or loaded."""

    def names(self) -> list[str]:
        return ckpt_io.list_checkpoints(self.folder)

    def latest(self) -> Path | None:
        return ckpt_io.latest_checkpoint(self.folder)

    def resume_target(self, name: str | None) -> Path | None:
        """The checkpoint to resume from: `name` (in checkpoints/) or the latest (None: a fresh start)."""
        if name is None:
            return self.latest()
        names = self.names()
        if Path(name).name not in names:
            have = ", ".join(names[-5:]) or "none"
            raise UserError(f"--resume {name}: no complete checkpoint of that name in {self.folder} (newest: {have})")
        return self.folder / Path(name).name

    def load(self, path: Path, resuming: bool = False) -> ckpt_io.Checkpoint:
        """Load a checkpoint; when resuming from a corrupt one, the error names the newest other one to use."""
        try:
            return ckpt_io.load_checkpoint(path)
        except UserError as err:
            older = [n for n in self.names() if n != path.name]
            if not resuming or not older:
                raise
            raise UserError(
                f"{err}; the newest other checkpoint is {older[-1]}: continue from it with --resume {older[-1]}"
            ) from None

    def resumed(self, name: str, step: int) -> None:
        """After loading `name` to resume: continue its branch, or start a new one when a newer checkpoint exists
        (so nothing of the later one is overwritten)."""
        self.branch = ckpt_io.checkpoint_branch(name)
        newest = self.latest()
        if newest is not None and newest.name != name:
            self.branch_from(name)
        self.last_step = step

    def branch_from(self, name: str) -> None:
        """Continue from checkpoint `name` on a new branch: its checkpoints sort after every existing one, the target
        is kept, and `latest` points at it so a resume before the branch's first save continues from here."""
        self.branch = max([self.branch, *map(ckpt_io.checkpoint_branch, self.names())]) + 1
        if self.is_main:
            ckpt_io.set_retained(self.folder / name, "rollback_target")
            ckpt_io.point_latest(self.folder, name)
        self.best_pending = False

    def save(self, reason: CheckpointReason, step: int, stage: int) -> str:
        """Write a checkpoint (rank 0), prune, and write its event; returns its name. `stage` is 0-based."""
        name = ckpt_io.checkpoint_name(step, self.branch)
        best = self.best_pending
        if best:
            previous_best, self.best_checkpoint, self.best_pending = self.best_checkpoint, name, False
        retain = tuple(
            r
            for r, yes in (
                ("manual", reason == CheckpointReason.COMMAND),
                ("stage_end", reason == CheckpointReason.STAGE_END),
                ("best", best),
            )
            if yes
        )
        if self.is_main:
            # TE keeps FP8 scaling metadata in `_extra_state` entries, which go with the training state
            weights, extra = split_extra_state(self.module.state_dict())
            state = {**self.training_state(), "fp8_extra_state": extra}
            path = ckpt_io.save_checkpoint(self.folder, name, weights, state, self.info(), retain=retain)
            if best and previous_best and previous_best != name and (self.folder / previous_best).is_dir():
                ckpt_io.set_retained(self.folder / previous_best, "best", keep=False)
            keep = tuple(self.names()[:1])  # the initial checkpoint
            removed = ckpt_io.prune_checkpoints(self.folder, self.keep_last, keep=keep)
            self.events.write(
                Checkpoint(
                    step=step,
                    name=name,
                    path=str(path.relative_to(self.run.path)),
                    reason=reason,
                    stage=stage + 1,
                    removed=removed,
                    branch=self.branch,
                    retain=list(retain),
                )
            )
        ddp.barrier(self.dist)
        self.last_step = step
        return name

    def training_state(self) -> dict[str, Any]:
        """Everything a resume restores besides the weights, in the checkpoint format's layout: the step, the stage
        plan's fields, a section per part, the RNGs, and the run counters with the validator's and the
        checkpointer's bookkeeping under "run"."""
        state: dict[str, Any] = {"step": self._train.step}
        run: dict[str, Any] = {}
        for name in PARTS:
            part = self.parts[name].state_dict()
            if name in MERGED:
                state.update(part)
            elif name in IN_RUN:
                run.update({key: value for key, value in part.items() if key != "step"})
            else:
                state[name] = part
        return {**state, "rng": rng_state(), "run": {**run, **self.state_dict()}}

    def restore(self, checkpoint: ckpt_io.Checkpoint, full: bool) -> None:
        """Load the weights and the parts' state; `full` (a resume, not a rollback) also restores the batch plan,
        the RNGs, the run counters and the bookkeeping (`ROLLBACK_PARTS` otherwise)."""
        try:
            load_weights(self.module, checkpoint.weights, checkpoint.state.get("fp8_extra_state"))
        except RuntimeError as err:
            problem = parts.state_dict_problem(err)
            raise UserError(f"checkpoint {checkpoint.path} does not fit this model ({problem})") from None
        state = checkpoint.state
        for name in PARTS:
            if name == "train":
                self.parts[name].load_state_dict({"step": state["step"], **(state["run"] if full else {})})
            elif full or name in ROLLBACK_PARTS:
                self._load_part(name, state)
        if full:
            set_rng_state(state["rng"])
            self.load_state_dict(state["run"])
        self.last_step = state["step"]

    def _load_part(self, name: str, state: dict[str, Any]) -> None:
        if name in MERGED:
            self.parts[name].load_state_dict(state)
        elif name in IN_RUN:
            self.parts[name].load_state_dict(state["run"])
        elif name in state:  # checkpoints written before the mean pose existed have none
            self.parts[name].load_state_dict(state[name])
        if isinstance(self.parts[name], torch.optim.Optimizer):  # the saved lr tensors may live on another device
            for group in cast("torch.optim.Optimizer", self.parts[name]).param_groups:
                group["lr"] = torch.tensor(0.0, device=self.device)  # the trainer sets each step's rate

    def rollback(self, name: str, reason: str, lr_backoff: float | None) -> None:
        """Load the named checkpoint's weights and training state, on a new branch; the data moves on (the bad
        batches are not revisited) and, with `lr_backoff`, the learning rate is scaled by it."""
        if name not in self.names():
            raise UserError(f"no checkpoint {name!r}; have {', '.join(self.names())}")
        train, stages = self._train, self._stages
        from_step, from_stage = train.step, stages.stage
        self.restore(self.load(self.folder / name), full=False)
        if lr_backoff is not None:
            train.lr_scale *= lr_backoff
        self.branch_from(name)
        self.events.write(
            Rollback(
                step=train.step,
                checkpoint=name,
                from_step=from_step,
                reason=reason,
                lr_scale=train.lr_scale,
                branch=self.branch,
            )
        )
        if stages.stage != from_stage:
            self.events.write(
                Stage(step=train.step, stage=stages.stage + 1, name=stages.config.name, reason="rollback")
            )

    def auto_rollback(self, trouble: Trouble, stability: StabilityConfig) -> None:
        """After an explosion or a run of non-finite steps: back to the latest checkpoint with the learning rate
        backed off, or `TrainingFailed` after `stability.max_rollbacks`."""
        train = self._train
        train.rollbacks += 1
        target = self.latest()
        if train.rollbacks > stability.max_rollbacks or target is None:
            done, step = train.rollbacks - 1, trouble.step
            raise TrainingFailed(f"{trouble.what} at step {step} after {done} rollbacks; lower the learning rate")
        event = LossExplosion if trouble.what == AnomalyKind.EXPLOSION else NonFiniteRun
        lr_scale = train.lr_scale * stability.lr_backoff
        self.events.write(
            event(step=trouble.step, loss=trouble.loss, checkpoint=target.name, lr_scale=lr_scale, **trouble.fields)
        )
        self.rollback(target.name, reason=str(trouble.what), lr_backoff=stability.lr_backoff)

    def state_dict(self) -> dict[str, Any]:
        return {"best_checkpoint": self.best_checkpoint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_checkpoint = state.get("best_checkpoint")  # checkpoints from before best tracking have none
