"""The trainer: runs a RunConfig's stage plan, writes the run directory, answers the control channel.

`Trainer.train()` is the loop: apply commands, take a batch, `train_step`, then `after_step`: the host check (every
`check_every` steps) and the hooks, in order: metrics, diagnostics, snapshots, validation, the stage plan,
checkpoints, progress (`amt_core.train.hooks`). The parts with state each have `state_dict`: the stage plan, the
checkpointer, the validator, the batch plan, the spike detector, the RNGs; a checkpoint holds them all, so a resumed
run continues exactly as an uninterrupted one would. Commands are `amt_core.train.steering`'s table.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path

import torch
from torch import nn

from amt_core.accel.precision import check_precision
from amt_core.errors import UserError
from amt_core.metrics.reference import MeanPose
from amt_core.train import checkpoint as ckpt_io
from amt_core.train import ddp, memory, parts, steering
from amt_core.train.checkpointer import (
    Checkpointer,
    TrainingFailed,
    auto_rollback,
    checkpoint_contents,
    restore,
    rollback,
    run_info,
    training_state,
)
from amt_core.train.config import RunConfig
from amt_core.train.control import Command, ControlServer, PendingCommand
from amt_core.train.events import Anomaly, Error, EventWriter, Stage, State
from amt_core.train.feed import BatchFeed
from amt_core.train.hooks import CheckpointHook, ProgressHook, StageEndHook
from amt_core.train.metrics_window import MetricsHook, MetricsWindow
from amt_core.train.micro_batches import forward_backward, probe_micro_batch
from amt_core.train.optim import build_optimizer
from amt_core.train.parallelize import prepare_model
from amt_core.train.probes import DiagnosticsHook, SnapshotHook
from amt_core.train.progress import ProgressView
from amt_core.train.rng import seed_everything
from amt_core.train.rundir import RunDir
from amt_core.train.sampler import BatchPlan
from amt_core.train.stability import SpikeDetector, process_gradients
from amt_core.train.stages import StagePlan
from amt_core.train.step_results import StepResult, read_back
from amt_core.train.stopping import StopSignals, limit_reached
from amt_core.train.validation import Validator

__all__ = ["Trainer", "TrainingFailed", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "this preset needs a CUDA GPU and none is visible; use --preset cpu or --set trainer.device=cpu"
        )
    return torch.device(name)


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
        self.device = resolve_device(self.tc.device)
        self.precision_warning = check_precision(self.tc.precision, self.device)
        self.dist, self.device = ddp.init_distributed(self.device)
        self.is_main = self.dist.is_main
        if self.is_main and not resume and self.run.has_run():
            raise UserError(
                f"run directory {self.run.path} already holds a run; pass --resume or choose another --run-dir"
            )
        seed_everything(self.tc.seed)
        self.dataset = dataset if dataset is not None else parts.open_data(config.data)
        self._val_dataset = val_dataset
        self.module = model if model is not None else parts.build_model(config.model)
        self.loss_fn = loss if loss is not None else parts.build_loss(config.loss)
        self.module.to(self.device)
        self.loss_fn.to(self.device)
        # attention backend -> checkpointing -> compile -> FP8 -> DDP (amt_core.train.parallelize)
        self.model, self.prepared = prepare_model(self.module, self.tc, self.device, self.dist)
        self.optimizer, self.groups = build_optimizer(
            {"": self.module, "loss.": self.loss_fn}, config.optim, self.device
        )
        lengths = [s.length(len(self.dataset), config.batch_size) for s in config.stages]
        self.stages = StagePlan(config.stages, lengths, self.tc.max_time_s if self.tc.stage_by_time else None)
        self.stages.bind_loss(self.loss_fn)
        torch.manual_seed(self.tc.seed + 1000 * self.dist.rank)  # per-rank noise (dropout, sampling) after init
        try:
            self.plan = BatchPlan(
                len(self.dataset), config.batch_size, self.tc.seed, self.dist.rank, self.dist.world_size
            )
        except ValueError as err:
            raise UserError(f"{err}; change --set batch_size or the data") from None
        self.feed = BatchFeed(self.dataset, self.plan, self.tc.num_workers, self.device.type == "cuda")
        self.local_batch = self.micro_batch = config.batch_size // self.dist.world_size
        self.spike = SpikeDetector(config.stability)
        self.mean_pose = MeanPose(self.device)  # the trivial reference every validation figure stands beside
        self.checkpointer = Checkpointer(self.run, self.tc.keep_checkpoints, self.is_main, self.dist)
        self.validator = Validator(self.tc.eval_every)
        self.snapshots = SnapshotHook(self.tc.snapshot_every)
        self.hooks = [
            MetricsHook(self.tc.log_every, self.tc.tensorboard),
            DiagnosticsHook(self.tc.diag_every),
            self.snapshots,
            self.validator,
            StageEndHook(),
            CheckpointHook(self.tc.ckpt_every),
            ProgressHook(),
        ]
        self.step = 0
        # run state: saved in checkpoints, kept across rollbacks
        self.lr_scale, self.rollbacks, self.skipped, self.train_time_s = 1.0, 0, 0, 0.0
        self.consecutive_nonfinite = 0
        self.events = EventWriter(self.run.path, enabled=False)  # enabled on rank 0 once the run directory is taken
        self.control: ControlServer | None = None
        self.paused = False
        self.stop_reason: str | None = None  # finished, limit or command once the loop is to end
        self.stop_replies: list[PendingCommand] = []  # `stop` is answered once the last checkpoint is written
        self.signals = StopSignals()
        self.pending: list[StepResult] = []
        self.window = MetricsWindow()
        self.last_norms: dict[str, float] = {}
        self.last_batch: dict | None = None
        self.view: ProgressView | None = None
        self.timed_since = time.monotonic()  # training time counts from here (reset after a pause)

    # ------------------------------------------------------------------ the loop

    def train(self) -> str:
        """Run until the plan ends, a limit is reached, or a stop; returns the final state (finished, stopped)."""
        self.signals.install()
        try:
            self.start()
            while True:
                self.handle_commands()
                if self.stop_reason or limit_reached(self):
                    break
                self.train_step(self.next_batch())
                self.after_step()
            return self.finish()
        except BaseException as err:
            self._fail(err)
            raise
        finally:
            self.close()
            self.signals.restore()

    def start(self) -> None:
        """Take the run directory, load the checkpoint to resume from (or save the initial one), announce."""
        if self.is_main:
            self.run.acquire(self.resume)
            ckpt_io.clean_temporary(self.run.checkpoints)
            self.events = self.checkpointer.events = EventWriter(self.run.path)
            self.run.write_config(run_info(self))
            self.control = ControlServer(self.run.path)
            self.control.start()
        ddp.barrier(self.dist)
        target = self.checkpointer.resume_target(self.resume_from) if self.resume else None
        if target is not None:
            self.load(self.checkpointer.load(target, resuming=True), full=True)
            self.checkpointer.resumed(target.name, self.step)
            self.events.write(State(step=self.step, state="running", resumed_from=target.name))
        else:
            self.events.write(State(step=self.step, state="running"))
            self.save("initial")
        self.events.write(
            Stage(
                step=self.step,
                stage=self.stage + 1,
                name=self.stages.config.name,
                reason="resume" if target is not None else "start",
            )
        )
        if self.precision_warning:
            self.events.write(
                Anomaly(step=self.step, what="slow_precision", message=self.precision_warning, action="none")
            )
        self.timed_since, self.window = time.monotonic(), MetricsWindow()
        probe_micro_batch(self)
        if self.is_main:
            self.view = ProgressView(self.tc.progress, self.total_steps(), self.step)
        if self.precision_warning:
            self.warn(self.precision_warning)
        for hook in self.hooks:
            hook.before_train(self)

    def train_step(self, batch: dict) -> None:
        """One optimizer step on a batch (split into micro-batches when memory asks for it)."""
        indices = batch.pop("index").tolist()
        batch = parts.to_device(batch, self.device)
        self.last_batch = batch
        self.mean_pose.update(batch["joints3d"], batch["valid"]["joints3d"])
        t0 = time.monotonic()
        while True:
            try:
                total, terms, counts, errors = forward_backward(self, batch)
                break
            except RuntimeError as err:
                dynamic = self.tc.dynamic_batch and self.device.type == "cuda"
                if not (dynamic and memory.is_oom(err) and self.micro_batch > 1):
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                memory.release_memory()
                self.micro_batch //= 2
                self.events.write(
                    Anomaly(
                        step=self.step,
                        what="out_of_memory",
                        action="micro_batch_halved",
                        micro_batch=self.micro_batch,
                        batch=indices,
                    )
                )
        if self.dist.enabled:  # DDP averages the model's gradients; the loss's learnable weights are averaged here
            for param in self.loss_fn.parameters():
                if param.grad is not None:
                    torch.distributed.all_reduce(param.grad)
                    param.grad /= self.dist.world_size
        ok, norms = process_gradients(self.optimizer.param_groups, total, self.config.stability)
        if self.dist.enabled:
            ok = ddp.all_min(ok, self.dist)
            total = total.clone()
            torch.distributed.all_reduce(total)
            total /= self.dist.world_size
        self._set_learning_rates(ok)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.pending.append(
            StepResult(
                step=self.step + 1,
                indices=indices,
                ok=ok,
                loss=total,
                terms=terms,
                counts=counts,
                norms=norms,
                errors=errors,
                time_s=time.monotonic() - t0,
            )
        )

    def after_step(self) -> None:
        """Count the step and its time, run the host check when due, then the hooks (a rollback ends the round)."""
        self.step += 1
        now = time.monotonic()
        self.train_time_s += now - self.timed_since
        self.timed_since = now
        if self.step % self.config.stability.check_every == 0 or self.step % self.tc.log_every == 0:
            if not self.check():
                return  # rolled back
        branch = self.checkpointer.branch
        for hook in self.hooks:
            hook.after_step(self)
            if self.checkpointer.branch != branch:  # a hook's host check rolled back: this step is abandoned
                return

    def finish(self) -> str:
        """Save the last checkpoint and write the final state."""
        reason = "signal" if self.signals.received is not None else self.stop_reason or "limit"
        self.check()
        if self.checkpointer.last_step != self.step:
            self.save("final" if reason in ("finished", "limit") else "stop")
        state = "finished" if reason in ("finished", "limit") else "stopped"
        self.events.write(State(step=self.step, state=state, reason=reason, signal=self.signals.name()))
        for pending in self.stop_replies:
            pending.finish(True, state=state, step=self.step)
        if self.view is not None:
            why = self.signals.name() or reason
            self.view.message(f"{state} at step {self.step} ({why}); run directory {self.run.path}")
        return state

    def close(self) -> None:
        for hook in self.hooks:
            hook.close()
        if self.view is not None:
            self.view.close()
        if self.control is not None:
            self.control.close()
            self.control = None
        self.feed.restart()  # lets the loader's workers go
        self.events.close()
        if self.is_main:
            self.run.release()
        ddp.shutdown(self.dist)

    # ------------------------------------------------------------------ steps

    @property
    def stage(self) -> int:
        """The current stage, 0-based."""
        return self.stages.stage

    def total_steps(self) -> int:
        total = sum(self.stages.lengths)
        return min(total, self.tc.max_steps) if self.tc.max_steps else total

    def epoch(self) -> float:
        return self.plan.samples_seen() / len(self.dataset)

    def next_batch(self) -> dict:
        """The next batch of the plan, with its `index` field (NaN/inf labels masked and counted)."""
        batch, waited_s = self.feed.next()
        self.window.data_wait_s += waited_s
        warning = self.feed.mask_invalid(batch, self.step + 1)
        if warning is not None:
            self.events.write(warning)
            self.warn(warning.message)
        return batch

    def _set_learning_rates(self, ok: torch.Tensor) -> None:
        """Each group's rate for this step, on the device; 0 when the step is skipped (`ok` is 0, no host sync)."""
        position = self.stages.position(self.step, self.train_time_s)
        for group in self.optimizer.param_groups:
            group["lr"].fill_(self.stages.group_lr(group["group"], group["lr_scale"], position, self.lr_scale))
            group["lr"].mul_(ok)

    def current_lrs(self) -> dict[str, float]:
        """The rate of each group at the last step (for the metrics event)."""
        position = max(self.stages.position(self.step, self.train_time_s) - 1, 0)
        scales = self.config.optim.group_lr_scale
        return {g: self.stages.group_lr(g, scales.get(g, 1.0), position, self.lr_scale) for g in self.groups}

    # ------------------------------------------------------------------ host checks

    def check(self) -> bool:
        """Read the buffered step results (one host sync): record skipped steps, catch explosions, feed mining.

        Returns:
            False when an explosion (or a run of non-finite steps) caused a rollback.
        """
        if not self.pending:
            return True
        steps, self.last_norms = read_back(self.pending, self.optimizer.param_groups)
        self.pending = []
        for entry in steps:
            if not entry.ok:
                self.skipped += 1
                self.consecutive_nonfinite += 1
                self.events.write(
                    Anomaly(
                        step=entry.step,
                        what="non_finite",
                        loss=entry.loss,
                        batch=entry.indices,
                        action="skipped",
                        skipped_total=self.skipped,
                    )
                )
                if self.consecutive_nonfinite >= self.config.stability.max_consecutive_nonfinite:
                    auto_rollback(self, entry.step, "non_finite_run", entry.loss)
                    return False
                continue
            self.consecutive_nonfinite = 0
            median = self.spike.median()
            if self.spike.check(entry.loss):
                auto_rollback(self, entry.step, "explosion", entry.loss, median=median, batch=entry.indices)
                return False
            self.window.add_step(entry.loss, entry.time_s, entry.terms)
            self.plan.record_errors(entry.indices, entry.errors)
        self.window.images += len(steps) * self.config.batch_size
        if self.stages.refresh_mining(self.step, self.plan, self.tc.mining_refresh, self.tc.mining_pool):
            self.feed.restart()
        return True

    def val_dataset(self):
        if self._val_dataset is None:
            self._val_dataset = parts.open_data(self.config.val_data)
        return self._val_dataset

    def warn(self, message: str) -> None:
        """A warning for the person at the terminal (its event is written by the caller)."""
        if self.view is not None:
            self.view.message(f"warning: {message}")

    # ------------------------------------------------------------------ checkpoints and rollback

    def state_dict(self) -> dict:
        """The training state a checkpoint holds besides the weights (`checkpointer.training_state`)."""
        return training_state(self)

    def save(self, reason: str) -> str:
        """Write a checkpoint (rank 0) and its event; returns its name."""
        return self.checkpointer.save(reason, self.step, self.stage, lambda: checkpoint_contents(self))

    def load(self, checkpoint: ckpt_io.Checkpoint, full: bool) -> None:
        """Restore weights and training state; `full` (resume) also restores the plan, RNGs and run counters."""
        restore(self, checkpoint, full)

    def rollback(self, name: str, reason: str, backoff: bool) -> None:
        """Continue from checkpoint `name` on a new branch (`checkpointer.rollback`)."""
        rollback(self, name, reason, backoff)

    def set_stage(self, stage: int, reason: str) -> None:
        """Switch to stage index `stage` (0-based) now; its warm-up and cosine start over."""
        self.stages.enter(stage, self.step, self.train_time_s)
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
        return steering.apply(self, command, arg)

    def _fail(self, err: BaseException) -> None:
        if isinstance(err, UserError) or not self.events.enabled:
            return
        with contextlib.suppress(Exception):
            self.events.write(
                Error(step=self.step, message=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
            )
            self.events.write(State(step=self.step, state="failed"))
