"""The trainer's checkpoints: which one to resume from, saving with retention (manual saves, stage ends, the best
validation and rollback targets are kept), and the branches a rollback or a resume from an older checkpoint starts.

A checkpoint holds the model's weights, `training_state` (the trainer's parts' state, in the layout of the checkpoint
format, so checkpoints written before the parts existed load) and `run_info` (config.json). The files themselves
(atomic writes, names, `latest`, `retain.json`, pruning) are `amt_core.train.checkpoint`'s.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import timm
import torch

from amt_core import __version__
from amt_core.accel.fp8 import load_weights, split_extra_state
from amt_core.errors import UserError
from amt_core.train import checkpoint as ckpt_io
from amt_core.train import ddp, parts
from amt_core.train.events import Anomaly, Checkpoint, EventWriter, Rollback, Stage
from amt_core.train.metrics_window import MetricsWindow
from amt_core.train.rng import rng_state, set_rng_state
from amt_core.train.rundir import RunDir

if TYPE_CHECKING:
    from amt_core.train.trainer import Trainer


class TrainingFailed(RuntimeError):
    """Training cannot go on (e.g. more explosions than max_rollbacks)."""


Contents = tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]
"""(weights, training state, run info) of a checkpoint."""


class Checkpointer:
    """Saves and finds a run's checkpoints; rank 0 writes, every rank keeps the same bookkeeping.

    Args:
        run: the run directory.
        keep_last: how many of the newest checkpoints retention keeps besides the retained ones.
        is_main: this process writes files and events (rank 0).
        dist: the distributed context (for the barrier after a save).
    """

    def __init__(self, run: RunDir, keep_last: int, is_main: bool, dist: ddp.DistInfo) -> None:
        self.run = run
        self.folder = run.checkpoints
        self.keep_last = keep_last
        self.is_main = is_main
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

    def save(self, reason: str, step: int, stage: int, contents: Callable[[], Contents]) -> str:
        """Write a checkpoint (rank 0), prune, and write its event; returns its name. `stage` is 0-based."""
        name = ckpt_io.checkpoint_name(step, self.branch)
        best = self.best_pending
        if best:
            previous_best, self.best_checkpoint, self.best_pending = self.best_checkpoint, name, False
        retain = tuple(
            r
            for r, yes in (("manual", reason == "command"), ("stage_end", reason == "stage_end"), ("best", best))
            if yes
        )
        if self.is_main:
            weights, state, info = contents()
            path = ckpt_io.save_checkpoint(self.folder, name, weights, state, info, retain=retain)
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

    def state_dict(self) -> dict[str, Any]:
        return {"best_checkpoint": self.best_checkpoint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_checkpoint = state.get("best_checkpoint")  # checkpoints from before best tracking have none


def versions() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "amt_core": __version__,
        "python": sys.version.split()[0],
    }


def run_info(trainer: Trainer) -> dict[str, Any]:
    """config.json (of the run and of each checkpoint): the resolved config and what the run ran on."""
    groups = trainer.optimizer.param_groups
    param_groups = {
        g: sum(p.numel() for pg in groups if pg["group"] == g for p in pg["params"]) for g in trainer.groups
    }
    pose = trainer.mean_pose.mean()
    return {
        "config": trainer.config.to_dict(),
        "versions": versions(),
        "device": str(trainer.device),
        "world_size": trainer.dist.world_size,
        "parameters": sum(p.numel() for p in trainer.module.parameters()),
        "param_groups": param_groups,
        "stage_lengths": trainer.stages.lengths,
        "acceleration": trainer.prepared.to_dict(),
        "reference_pose": None if pose is None else pose.tolist(),
        "command": sys.argv,
        "pid": os.getpid(),
    }


def training_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a resume restores besides the weights: each part's `state_dict`, the RNGs and the run counters."""
    run = {
        "lr_scale": trainer.lr_scale,
        "rollbacks": trainer.rollbacks,
        "skipped": trainer.skipped,
        "train_time_s": trainer.train_time_s,
        "micro_batch": trainer.micro_batch,
        **trainer.validator.state_dict(),
        **trainer.checkpointer.state_dict(),
    }
    return {
        "step": trainer.step,
        **trainer.stages.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "loss": trainer.loss_fn.state_dict(),
        "plan": trainer.plan.state_dict(),
        "spike": trainer.spike.state_dict(),
        "mean_pose": trainer.mean_pose.state_dict(),
        "rng": rng_state(),
        "run": run,
    }


def checkpoint_contents(trainer: Trainer) -> Contents:
    # TE keeps FP8 scaling metadata in `_extra_state` entries, which go with the training state
    weights, extra = split_extra_state(trainer.module.state_dict())
    return weights, {**training_state(trainer), "fp8_extra_state": extra}, run_info(trainer)


def restore(trainer: Trainer, checkpoint: ckpt_io.Checkpoint, full: bool) -> None:
    """Load weights and training state into the trainer; `full` (a resume, not a rollback) also restores the batch
    plan, the RNGs and the run counters."""
    try:
        load_weights(trainer.module, checkpoint.weights, checkpoint.state.get("fp8_extra_state"))
    except RuntimeError as err:
        problem = parts.state_dict_problem(err)
        raise UserError(f"checkpoint {checkpoint.path} does not fit this model ({problem})") from None
    state = checkpoint.state
    trainer.optimizer.load_state_dict(state["optimizer"])
    for group in trainer.optimizer.param_groups:  # the saved lr tensors may live on another device
        group["lr"] = torch.tensor(0.0, device=trainer.device)
    trainer.loss_fn.load_state_dict(state["loss"])
    trainer.step = state["step"]
    trainer.stages.load_state_dict(state)
    trainer.stages.apply_to_loss()
    trainer.spike.load_state_dict(state["spike"])
    if "mean_pose" in state:  # checkpoints written before the reference existed have none
        trainer.mean_pose.load_state_dict(state["mean_pose"])
    if full:
        trainer.plan.load_state_dict(state["plan"])
        set_rng_state(state["rng"])
        run = state["run"]
        trainer.lr_scale, trainer.rollbacks, trainer.skipped = run["lr_scale"], run["rollbacks"], run["skipped"]
        trainer.train_time_s = run["train_time_s"]
        trainer.validator.load_state_dict(run)
        trainer.checkpointer.load_state_dict(run)
        trainer.feed.restart()
    trainer.pending = []
    trainer.checkpointer.last_step = trainer.step


def rollback(trainer: Trainer, name: str, reason: str, backoff: bool) -> None:
    """Load the named checkpoint's weights and training state into the trainer, on a new branch; the data moves on
    (the bad batches are not revisited) and, when `backoff`, the learning rate is scaled by `lr_backoff`."""
    checkpointer = trainer.checkpointer
    if name not in checkpointer.names():
        raise UserError(f"no checkpoint {name!r}; have {', '.join(checkpointer.names())}")
    from_step, from_stage = trainer.step, trainer.stage
    restore(trainer, checkpointer.load(checkpointer.folder / name), full=False)
    if backoff:
        trainer.lr_scale *= trainer.config.stability.lr_backoff
    checkpointer.branch_from(name)
    trainer.window = MetricsWindow()
    trainer.events.write(
        Rollback(
            step=trainer.step,
            checkpoint=name,
            from_step=from_step,
            reason=reason,
            lr_scale=trainer.lr_scale,
            branch=checkpointer.branch,
        )
    )
    if trainer.stage != from_stage:
        trainer.events.write(
            Stage(step=trainer.step, stage=trainer.stage + 1, name=trainer.stages.config.name, reason="rollback")
        )


def auto_rollback(trainer: Trainer, step: int, what: str, loss: float, **fields: Any) -> None:
    """After an explosion or a run of non-finite steps: back to the latest checkpoint with the learning rate backed
    off, or `TrainingFailed` after `max_rollbacks`."""
    trainer.rollbacks += 1
    target = trainer.checkpointer.latest()
    stability = trainer.config.stability
    if trainer.rollbacks > stability.max_rollbacks or target is None:
        raise TrainingFailed(f"{what} at step {step} after {trainer.rollbacks - 1} rollbacks; lower the learning rate")
    trainer.events.write(
        Anomaly(
            step=step,
            what=what,
            loss=loss,
            action="rollback",
            checkpoint=target.name,
            lr_scale=trainer.lr_scale * stability.lr_backoff,
            **fields,
        )
    )
    rollback(trainer, target.name, reason=what, backoff=True)
