"""The trainer: runs a RunConfig's stage plan, writes the run directory, answers the control channel.

`Trainer.train()` is the loop: commands (`steering`), a batch, `train_step`, then `after_step`: the host check (every
`check_every` steps) and the hooks in order (metrics, diagnostics, snapshots, validation, stage plan, checkpoints,
progress), which read the trainer (`view.TrainerView`) and return what they want done. The trainer's own state is one
`TrainState`; it and the other parts with state are handed to the `Checkpointer` by name, so a resumed run continues
exactly as an uninterrupted one would. Calls run one way: the trainer calls its parts; no part imports the trainer.
"""

from __future__ import annotations

import contextlib
import functools
import traceback
from pathlib import Path

import torch
from torch import nn

from amt_core.accel.precision import check_precision
from amt_core.errors import UserError
from amt_core.metrics.reference import MeanPose
from amt_core.schema.sample import Batch
from amt_core.train import checkpoint_files as ckpt_io
from amt_core.train import ddp, hooks, parts, steering
from amt_core.train.checkpointer import Checkpointer, TrainingFailed
from amt_core.train.config import RunConfig
from amt_core.train.control import Command
from amt_core.train.events import Error, EventWriter, SlowPrecision, Stage, State
from amt_core.train.feed import BatchFeed
from amt_core.train.hooks import Actions, CheckpointHook, MarkBest, ProgressHook, Save, SetStage, StageEndHook, Stop
from amt_core.train.host_check import HostCheck, Trouble
from amt_core.train.kinds import CheckpointReason, TrainerState
from amt_core.train.metrics_hook import MetricsHook
from amt_core.train.metrics_window import MetricsWindow
from amt_core.train.micro_batches import MicroBatches
from amt_core.train.optim import build_optimizer
from amt_core.train.parallelize import prepare_model
from amt_core.train.probes import DiagnosticsHook, SnapshotHook
from amt_core.train.progress import ProgressView
from amt_core.train.rng import seed_everything
from amt_core.train.run_info import run_info
from amt_core.train.rundir import RunDir
from amt_core.train.sampler import BatchPlan
from amt_core.train.stability import SpikeDetector
from amt_core.train.stages import StagePlan
from amt_core.train.state import TrainState
from amt_core.train.step_results import StepResult
from amt_core.train.validation import Validator

__all__ = ["Trainer", "TrainingFailed"]


class Trainer:
    """Trains one run. Tests may pass their own `model`, `loss`, `dataset` and `val_dataset`.

    Args:
        config: the resolved run configuration.
        run_dir: the run directory (created; must not hold another run unless `resume`).
        resume: continue from the run directory's latest checkpoint (a fresh start when it has none).
        resume_from: with `resume`, the checkpoint (a name in the run's checkpoints/) to continue from instead of the
            latest; a checkpoint older than the latest starts a new branch, so nothing of the later one is overwritten.
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        resume: bool = False,
        model: nn.Module | None = None,
        loss: nn.Module | None = None,
        dataset=None,
        val_dataset=None,
        resume_from: str | None = None,
    ) -> None:
        self.config, self.tc, self.resume, self.resume_from = config, config.trainer, resume, resume_from
        self.run = RunDir(run_dir)
        self.device = parts.resolve_device(self.tc.device)
        self.precision_warning = check_precision(self.tc.precision, self.device)
        self.dist, self.device = ddp.init_distributed(self.device)
        self.is_main = self.dist.is_main
        if self.is_main and not resume:
            self.run.refuse_existing_run()
        seed_everything(self.tc.seed)
        self.dataset = dataset if dataset is not None else parts.open_data(config.data)
        self._val_dataset = val_dataset
        self.module = model if model is not None else parts.build_model(config.model)
        self.loss_fn = loss if loss is not None else parts.build_loss(config.loss)
        self._build_parts()
        self.events = EventWriter(self.run.path, enabled=False)  # enabled on rank 0 once the run directory is taken
        self.steering = steering.Steering()  # paused, the stop asked for, the signals, the control channel
        self.pending: list[StepResult] = []
        self.last_norms: dict[str, float] = {}
        self.last_batch: Batch | None = None
        self.view: ProgressView | None = None

    def _build_parts(self) -> None:
        """The model prepared for training, the optimizer, the plans, the checkpointer that is given them, the hooks."""
        config, tc = self.config, self.tc
        self.module.to(self.device)
        self.loss_fn.to(self.device)
        # attention backend -> checkpointing -> compile -> FP8 -> DDP (amt_core.train.parallelize)
        self.model, self.prepared = prepare_model(self.module, tc, self.device, self.dist)
        self.optimizer, self.groups = build_optimizer(
            {"": self.module, "loss.": self.loss_fn}, config.optim, self.device
        )
        lengths = [s.length(len(self.dataset), config.batch_size) for s in config.stages]
        self.stages = StagePlan(config.stages, lengths, tc.max_time_s if tc.stage_by_time else None)
        self.stages.bind_loss(self.loss_fn)
        torch.manual_seed(tc.seed + 1000 * self.dist.rank)  # per-rank noise (dropout, sampling) after init
        try:
            self.plan = BatchPlan(len(self.dataset), config.batch_size, tc.seed, self.dist.rank, self.dist.world_size)
        except ValueError as err:
            raise UserError(f"{err}; change --set batch_size or the data") from None
        self.feed = BatchFeed(self.dataset, self.plan, tc.num_workers, self.device.type == "cuda")
        self.local_batch = config.batch_size // self.dist.world_size
        self.state = TrainState(micro_batch=self.local_batch)
        self.micro_batches = MicroBatches(self.state, self.local_batch, tc.dynamic_batch and self.device.type == "cuda")
        self.spike = SpikeDetector(config.stability)
        self.window = MetricsWindow()
        self.host_check = HostCheck(self.state, self.spike, self.window, self.plan, config.stability, config.batch_size)
        self.mean_pose = MeanPose(self.device)  # the trivial reference every validation figure stands beside
        self.validator = Validator(tc.eval_every)
        named = {"train": self.state, "optimizer": self.optimizer, "loss": self.loss_fn, "stages": self.stages}
        named |= {"spike": self.spike, "mean_pose": self.mean_pose, "plan": self.plan, "validator": self.validator}
        info = functools.partial(run_info, self)
        self.checkpointer = Checkpointer(
            self.run, tc.keep_checkpoints, self.dist, self.module, named, info, self.device
        )
        self.snapshots = SnapshotHook(tc.snapshot_every)
        self.hooks = [
            MetricsHook(tc.log_every, tc.tensorboard),
            DiagnosticsHook(tc.diag_every),
            self.snapshots,
            self.validator,
            StageEndHook(),
            CheckpointHook(tc.ckpt_every),
            ProgressHook(),
        ]

    # ------------------------------------------------------------------ the loop

    def train(self) -> str:
        """Run until the plan ends, a limit is reached, or a stop; returns the final state (finished, stopped)."""
        self.steering.signals.install()
        try:
            self.start()
            while True:
                self.handle_commands()
                if self.steering.should_stop(self):
                    break
                self.train_step(self.next_batch())
                self.after_step()
            return self.finish()
        except BaseException as err:
            self._fail(err)
            raise
        finally:
            self.close()
            self.steering.signals.restore()

    def start(self) -> None:
        """Take the run directory, load the checkpoint to resume from (or save the initial one), announce."""
        if self.is_main:
            self.run.acquire(self.resume)
            ckpt_io.clean_temporary(self.run.checkpoints)
            self.events = self.checkpointer.events = EventWriter(self.run.path)
            self.run.write_config(run_info(self))
            self.steering.open(self.run.path)
        ddp.barrier(self.dist)
        target = self.checkpointer.resume_target(self.resume_from) if self.resume else None
        if target is not None:
            self.checkpointer.restore(self.checkpointer.load(target, resuming=True), full=True)
            self.feed.restart()
            self.checkpointer.resumed(target.name, self.step)
            self.events.write(State(step=self.step, state=TrainerState.RUNNING, resumed_from=target.name))
        else:
            self.events.write(State(step=self.step, state=TrainerState.RUNNING))
            self.save(CheckpointReason.INITIAL)
        reason = "resume" if target is not None else "start"
        self.events.write(Stage(step=self.step, stage=self.stage + 1, name=self.stages.config.name, reason=reason))
        self.state.restart_timer()
        self.window.reopen()
        if self.micro_batches.dynamic:  # the largest micro-batch that fits, tried on the first batch, put back
            self.micro_batches.probe(self, self.next_batch())
            self.plan.position -= 1
            self.feed.restart()
        if self.is_main:
            self.view = ProgressView(self.tc.progress, self.stages.total_steps(self.tc.max_steps), self.step)
        if warning := self.precision_warning:
            self.events.write(SlowPrecision(step=self.step, message=warning))
            self.warn(warning)
        for hook in self.hooks:
            hook.before_train(self)

    def train_step(self, batch: Batch) -> None:
        """One optimizer step on a batch (split into micro-batches when memory asks for it)."""
        indices = batch["index"].tolist()
        batch = parts.to_device({k: v for k, v in batch.items() if k != "index"}, self.device)
        self.last_batch = batch
        self.mean_pose.update(batch["joints3d"], batch["valid"]["joints3d"])
        self.pending.append(self.micro_batches.step(self, batch, indices))

    def after_step(self) -> None:
        """Count the step and its time, run the host check when due, then the hooks and what they ask for (a
        rollback ends the round)."""
        self.state.count_step()
        if self.step % self.config.stability.check_every == 0 or self.step % self.tc.log_every == 0:
            if not self.check():
                return  # rolled back
        for hook in self.hooks:
            actions = hook.after_step(self)
            if actions and not self._carry_out(actions):
                return  # the host check before them rolled back: this step is abandoned

    def _carry_out(self, actions: Actions) -> bool:
        """Do what a hook asked for, after a host check when it saves or changes the plan; False on a rollback."""
        if hooks.needs_check(actions) and not self.check():
            return False
        for action in actions:
            if isinstance(action, MarkBest):
                self.checkpointer.best_pending = True
            elif isinstance(action, SetStage):
                self.set_stage(action.stage, action.reason)
            elif isinstance(action, Stop):
                self.steering.request_stop(action.reason)
            elif isinstance(action, Save) and not (action.once and self.checkpointer.last_step == self.step):
                self.save(action.reason)
        return True

    def finish(self) -> str:
        """Save the last checkpoint and write the final state."""
        state, reason = self.steering.outcome()
        self.check()
        if self.checkpointer.last_step != self.step:
            self.save(CheckpointReason.FINAL if state == TrainerState.FINISHED else CheckpointReason.STOP)
        signal = self.steering.signals.name()
        self.events.write(State(step=self.step, state=state, reason=reason, signal=signal))
        self.steering.answer_stop(state, self.step)
        if self.view is not None:
            why = signal or reason
            self.view.message(f"{state} at step {self.step} ({why}); run directory {self.run.path}")
        return state

    def close(self) -> None:
        for hook in self.hooks:
            hook.close()
        if self.view is not None:
            self.view.close()
        self.steering.close()
        self.feed.restart()  # lets the loader's workers go
        self.events.close()
        if self.is_main:
            self.run.release()
        ddp.shutdown(self.dist)

    # ------------------------------------------------------------------ what the parts read

    @property
    def step(self) -> int:
        """Steps done."""
        return self.state.step

    @property
    def stage(self) -> int:
        """The current stage, 0-based."""
        return self.stages.stage

    def epoch(self) -> float:
        return self.plan.samples_seen() / len(self.dataset)

    def next_batch(self) -> Batch:
        """The next batch of the plan, with its `index` field (NaN/inf labels masked and counted)."""
        batch, waited_s = self.feed.next()
        self.window.data_wait_s += waited_s
        warning = self.feed.mask_invalid(batch, self.step + 1)
        if warning is not None:
            self.events.write(warning)
            self.warn(warning.message)
        return batch

    def val_dataset(self):
        if self._val_dataset is None:
            self._val_dataset = parts.open_data(self.config.val_data)
        return self._val_dataset

    def warn(self, message: str) -> None:
        """A warning for the person at the terminal (its event is written by the caller)."""
        if self.view is not None:
            self.view.message(f"warning: {message}")

    # ------------------------------------------------------------------ host checks, checkpoints, rollback, stages

    def check(self) -> bool:
        """Read the buffered step results back (one host sync, `HostCheck`) and refresh hard-case mining when due;
        False when an explosion (or a run of non-finite steps) caused a rollback."""
        if not self.pending:
            return True
        pending, self.pending = self.pending, []
        self.last_norms, trouble = self.host_check(pending, self.optimizer.param_groups, self.events)
        if trouble is not None:
            self._auto_rollback(trouble)
            return False
        if self.stages.refresh_mining(self.step, self.plan, self.tc.mining_refresh, self.tc.mining_pool):
            self.feed.restart()
        return True

    def save(self, reason: CheckpointReason) -> str:
        """Write a checkpoint (rank 0) and its event; returns its name."""
        return self.checkpointer.save(reason, self.step, self.stage)

    def rollback(self, name: str, reason: str, backoff: bool) -> None:
        """Continue from checkpoint `name` on a new branch (`Checkpointer.rollback`)."""
        self.checkpointer.rollback(name, reason, self.config.stability.lr_backoff if backoff else None)
        self.pending = []
        self.window.reopen()

    def _auto_rollback(self, trouble: Trouble) -> None:
        self.checkpointer.auto_rollback(trouble, self.config.stability)
        self.pending = []
        self.window.reopen()

    def set_stage(self, stage: int, reason: str) -> None:
        """Switch to stage index `stage` (0-based) now; its warm-up and cosine start over."""
        self.stages.enter(stage, self.step, self.state.train_time_s)
        self.stages.apply_to_loss()
        if self.stages.refresh_mining(self.step, self.plan, self.tc.mining_refresh, self.tc.mining_pool, force=True):
            self.feed.restart()
        self.events.write(Stage(step=self.step, stage=stage + 1, name=self.stages.config.name, reason=reason))

    # ------------------------------------------------------------------ commands and failure

    def handle_commands(self) -> None:
        """Apply the control channel's commands (rank 0 receives, every rank applies); blocks while paused."""
        steering.handle_commands(self)

    def apply_command(self, command: Command | str, arg: str | None = None) -> dict:
        """Apply one command now (as if it came over the control channel, without its event); returns the reply."""
        return steering.apply(self, command, arg).fields()

    def _fail(self, err: BaseException) -> None:
        if isinstance(err, UserError) or not self.events.enabled:
            return
        with contextlib.suppress(Exception):
            self.events.write(
                Error(step=self.step, message=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
            )
            self.events.write(State(step=self.step, state=TrainerState.FAILED))
