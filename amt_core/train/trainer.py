"""The trainer: runs a RunConfig's stage plan, writes the run directory, answers the control channel.

`Trainer.train()` is the loop: apply commands, take a batch, `train_step`, then `after_step` (host checks every
`check_every` steps, metrics, diagnostics, snapshots, validation, checkpoints, stage changes). Everything with
state (model, optimizer, loss weights, stage and step, batch plan, spike history, RNGs) is saved in each checkpoint,
so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from amt_core.accel.fp8 import load_weights, split_extra_state
from amt_core.accel.precision import autocast, check_precision
from amt_core.errors import UserError
from amt_core.metrics.reference import MeanPose
from amt_core.train import checkpoint as ckpt_io
from amt_core.train import ddp, memory, parts
from amt_core.train.config import RunConfig
from amt_core.train.control import ControlServer, PendingCommand
from amt_core.train.events import EventWriter
from amt_core.train.optim import build_optimizer
from amt_core.train.parallelize import prepare_model
from amt_core.train.progress import ProgressView
from amt_core.train.rundir import RunDir
from amt_core.train.sampler import BatchPlan, PlanBatches, plan_loader
from amt_core.train.stability import SpikeDetector, process_gradients


class TrainingFailed(RuntimeError):
    """Training cannot go on (e.g. more explosions than max_rollbacks)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "this preset needs a CUDA GPU and none is visible; use --preset cpu or --set trainer.device=cpu"
        )
    return torch.device(name)


def versions() -> dict[str, str]:
    import timm

    from amt_core import __version__

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "amt_core": __version__,
        "python": sys.version.split()[0],
    }


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[0:1] + random.getstate()[2:],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, gauss = state["python_pos"]
    random.setstate((version, tuple(state["python"]), gauss))
    pos, has_gauss, cached = state["numpy_pos"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
        self.config = config
        self.resume_from = resume_from
        self.tc = config.trainer
        self.resume = resume
        self.run = RunDir(run_dir)
        self.device = resolve_device(self.tc.device)
        self.precision_warning = check_precision(self.tc.precision, self.device)
        self.dist, self.device = ddp.init_distributed(self.device)
        self.is_main = self.dist.is_main
        if self.is_main and not resume and self.run.has_run():
            raise UserError(
                f"run directory {self.run.path} already holds a run; pass --resume or choose another --run-dir"
            )

        self._seed_everything(self.tc.seed)
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
        self._check_stage_terms()
        torch.manual_seed(self.tc.seed + 1000 * self.dist.rank)  # per-rank noise (dropout, sampling) after init

        try:
            self.plan = BatchPlan(len(self.dataset), config.batch_size, self.tc.seed, self.dist.rank,
                                  self.dist.world_size)  # fmt: skip
        except ValueError as err:
            raise UserError(f"{err}; change --set batch_size or the data") from None
        self.local_batch = config.batch_size // self.dist.world_size
        self.micro_batch = self.local_batch
        self.spike = SpikeDetector(config.stability)
        self.mean_pose = MeanPose(self.device)  # the trivial reference every validation figure stands beside
        self._not_learning = False
        self.stage_lengths = [s.length(len(self.dataset), config.batch_size) for s in config.stages]

        # training state (saved in checkpoints)
        self.step = 0
        self.stage = 0
        self.stage_start = 0
        self.stage_time_start = 0.0
        self.mining_at = 0
        # run state (kept across rollbacks)
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.skipped = 0
        self.invalid_samples = 0  # samples whose NaN/inf labels were masked (counted, warned about once)
        self._invalid_warned = False
        self.branch = 0  # 0 until the first rollback; checkpoint names carry it so a new branch's sort newest
        self.best_mpjpe_mm: float | None = None  # the best validation so far and the checkpoint that holds it
        self.best_checkpoint: str | None = None
        self._best_pending = False
        self.consecutive_nonfinite = 0
        self.train_time_s = 0.0

        self.events = EventWriter(self.run.path, enabled=False)
        self.control: ControlServer | None = None
        self.paused = False
        self.stop_reason: str | None = None
        self._stop_replies: list[PendingCommand] = []
        self._signal: int | None = None
        self._pending: list[dict] = []
        self._window = self._new_window()
        self._last_norms: dict[str, float] = {}
        self._last_batch: dict | None = None
        self._loader_iter = None
        self._batches: PlanBatches | None = None
        self._vis_batch: dict | None = None
        self._view: ProgressView | None = None
        self._tb = None
        self._last_ckpt_step = -1
        self._data_bound_warned = False

    # ------------------------------------------------------------------ the loop

    def train(self) -> str:
        """Run until the plan ends, a limit is reached, or a stop; returns the final state (finished, stopped)."""
        handlers = self._install_signal_handlers()
        try:
            self.start()
            while True:
                self.handle_commands()
                if self.stop_reason or self._limit_reached():
                    break
                batch = self.next_batch()
                self.train_step(batch)
                self.after_step()
            return self.finish()
        except BaseException as err:
            self._fail(err)
            raise
        finally:
            self.close()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def start(self) -> None:
        """Take the run directory, load the checkpoint to resume from (or save the initial one), announce."""
        if self.is_main:
            self.run.acquire(self.resume)
            ckpt_io.clean_temporary(self.run.checkpoints)
            self.events = EventWriter(self.run.path)
            self.run.write_config(self.run_info())
            self.control = ControlServer(self.run.path)
            self.control.start()
            self._open_tensorboard()
        ddp.barrier(self.dist)
        latest = self._resume_target() if self.resume else None
        if latest is not None:
            self.load(self._load_for_resume(latest), full=True)
            self.branch = ckpt_io.checkpoint_branch(latest.name)
            newest = ckpt_io.latest_checkpoint(self.run.checkpoints)
            if newest is not None and newest.name != latest.name:  # an older checkpoint: continue on a new branch
                names = ckpt_io.list_checkpoints(self.run.checkpoints)
                self.branch = max(map(ckpt_io.checkpoint_branch, names)) + 1
                if self.is_main:
                    ckpt_io.set_retained(latest, "rollback_target")
                    ckpt_io.point_latest(self.run.checkpoints, latest.name)
            self.events.emit("state", self.step, state="running", resumed_from=latest.name)
        else:
            self.events.emit("state", self.step, state="running")
            self.save("initial")
        self.events.emit("stage", self.step, stage=self.stage + 1, name=self.stage_config.name,
                         reason="resume" if latest is not None else "start")  # fmt: skip
        if self.precision_warning:
            self.events.emit("anomaly", self.step, what="slow_precision", message=self.precision_warning,
                             action="none")  # fmt: skip
        self._start_time = time.monotonic()
        self._window = self._new_window()
        self._probe_micro_batch()
        if self.is_main:
            self._view = ProgressView(self.tc.progress, self.total_steps(), self.step)
            if self.precision_warning:
                self._view.message(f"warning: {self.precision_warning}")

    def _resume_target(self) -> Path | None:
        """The checkpoint to resume from: `resume_from` (a name in checkpoints/) or the latest (None: fresh start)."""
        if self.resume_from is None:
            return ckpt_io.latest_checkpoint(self.run.checkpoints)
        names = ckpt_io.list_checkpoints(self.run.checkpoints)
        name = Path(self.resume_from).name
        if name not in names:
            have = ", ".join(names[-5:]) or "none"
            raise UserError(f"--resume {self.resume_from}: no complete checkpoint of that name in "
                            f"{self.run.checkpoints} (newest: {have})")  # fmt: skip
        return self.run.checkpoints / name

    def _load_for_resume(self, path: Path) -> ckpt_io.Checkpoint:
        """Load the checkpoint to resume from; when it is corrupt, the error names the newest older one to use."""
        try:
            return ckpt_io.load_checkpoint(path)
        except UserError as err:
            older = [n for n in ckpt_io.list_checkpoints(self.run.checkpoints) if n != path.name]
            if not older:
                raise
            raise UserError(f"{err}; the newest other checkpoint is {older[-1]}: continue from it with "
                            f"--resume {older[-1]}") from None  # fmt: skip

    def train_step(self, batch: dict) -> None:
        """One optimizer step on a batch (split into micro-batches when memory asks for it)."""
        indices = batch.pop("index").tolist()
        batch = parts.to_device(batch, self.device)
        self._last_batch = batch
        self.mean_pose.update(batch["joints3d"], batch["valid"]["joints3d"])
        t0 = time.monotonic()
        while True:
            try:
                total, terms, counts, errors = self._forward_backward(batch)
                break
            except RuntimeError as err:
                dynamic = self.tc.dynamic_batch and self.device.type == "cuda"
                if not (dynamic and memory.is_oom(err) and self.micro_batch > 1):
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                memory.release_memory()
                self.micro_batch //= 2
                self.events.emit("anomaly", self.step, what="out_of_memory", action="micro_batch_halved",
                                 micro_batch=self.micro_batch, batch=indices)  # fmt: skip
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
        self._pending.append({"step": self.step + 1, "indices": indices, "ok": ok, "loss": total, "terms": terms,
                              "counts": counts,
                              "norms": norms, "errors": errors, "time": time.monotonic() - t0})  # fmt: skip

    def after_step(self) -> None:
        """Counters, host checks, events, checkpoints and the stage machine after each step."""
        self.step += 1
        now = time.monotonic()
        self.train_time_s += now - self._start_time
        self._start_time = now
        tc = self.tc
        if self.step % self.config.stability.check_every == 0 or self.step % tc.log_every == 0:
            if not self.check():
                return  # rolled back
        if self.step % tc.log_every == 0:
            self._emit_metrics()
        if self.step % tc.diag_every == 0:
            self.diagnostics()
        if tc.snapshot_every and self.step % tc.snapshot_every == 0:
            self.snapshot()
        if tc.eval_every and self.step % tc.eval_every == 0:
            self.validate()
        if self._stage_progress() >= 1.0:
            if self.check():
                # Switch first, then save: the checkpoint resumes in the new stage, as the run goes on.
                if self.stage + 1 < len(self.config.stages):
                    self.set_stage(self.stage + 1, reason="plan")
                else:
                    self.stop_reason = "finished"
                self.save("stage_end")
        elif self.step % tc.ckpt_every == 0 and self.check():
            self.save("periodic")
        if self._best_pending and self._last_ckpt_step != self.step and self.check():
            self.save("best")  # a new best validation between periodic saves: keep its weights
        if self._view is not None:
            self._view.update(self.step, f"{self.stage + 1} {self.stage_config.name}", self._window["last_loss"],
                              self._window["last_ips"])  # fmt: skip

    def finish(self) -> str:
        """Save the last checkpoint and write the final state."""
        reason = self.stop_reason or "limit"
        if self._signal is not None:
            reason = "signal"
        self.check()
        if self._last_ckpt_step != self.step:
            self.save("final" if reason in ("finished", "limit") else "stop")
        state = "finished" if reason in ("finished", "limit") else "stopped"
        self.events.emit("state", self.step, state=state, reason=reason)
        for pending in self._stop_replies:
            pending.finish(True, state=state, step=self.step)
        if self._view is not None:
            self._view.message(f"{state} at step {self.step} ({reason}); run directory {self.run.path}")
        return state

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
        if self.control is not None:
            self.control.close()
            self.control = None
        self._loader_iter = None
        if self._tb is not None:
            self._tb.close()
        self.events.close()
        if self.is_main:
            self.run.release()
        ddp.shutdown(self.dist)

    # ------------------------------------------------------------------ steps

    @property
    def stage_config(self):
        return self.config.stages[self.stage]

    def _stage_step(self) -> int:
        return self.step - self.stage_start

    def _stage_progress(self) -> float:
        """How much of the current stage is done (1.0: it ends): by steps, or by wall time with stage_by_time."""
        if self.tc.stage_by_time:
            budget = self.tc.max_time_s * self.stage_lengths[self.stage] / sum(self.stage_lengths)
            return (self.train_time_s - self.stage_time_start) / budget
        return self._stage_step() / self.stage_lengths[self.stage]

    def _stage_position(self) -> float:
        """Where the schedule is within the stage, in steps (wall-time progress scaled to steps with stage_by_time)."""
        if self.tc.stage_by_time:
            return min(self._stage_progress(), 1.0) * self.stage_lengths[self.stage]
        return self._stage_step()

    def total_steps(self) -> int:
        total = sum(self.stage_lengths)
        return min(total, self.tc.max_steps) if self.tc.max_steps else total

    def epoch(self) -> float:
        return self.plan.samples_seen() / len(self.dataset)

    def _limit_reached(self) -> bool:
        """A signal, max_steps or max_time_s; under DDP rank 0 decides (every check_every steps) for all ranks."""
        if self.tc.max_steps and self.step >= self.tc.max_steps:
            self.stop_reason = self.stop_reason or "limit"
            return True
        timed_out = bool(self.tc.max_time_s) and self.train_time_s >= self.tc.max_time_s
        decision = (self._signal is not None, timed_out)
        if self.dist.enabled:
            if self.step % self.config.stability.check_every:
                return False
            decision = ddp.broadcast_object(decision, self.dist)
        if decision[0]:
            self._signal = self._signal or signal.SIGTERM
            return True
        if decision[1]:
            self.stop_reason = self.stop_reason or "limit"
            return True
        return False

    def next_batch(self) -> dict:
        """The next batch of the plan, with its `index` field; the plan position advances as it is consumed."""
        if self._loader_iter is None:
            self._batches = PlanBatches(self.plan)
            loader = plan_loader(self.dataset, self._batches, self.tc.num_workers, self.device.type == "cuda")
            self._loader_iter = iter(loader)
            starting = True  # the first batch also waits for the workers to start: not the pipeline's pace
        else:
            starting = False
        waited = time.monotonic()
        batch = next(self._loader_iter)
        if not starting:
            self._window["data_wait"] += time.monotonic() - waited
        epoch, position = self._batches.origins.popleft()
        self.plan.consumed(epoch, position)
        invalid = parts.mask_invalid_labels(batch)
        if invalid:
            self.invalid_samples += invalid
            if not self._invalid_warned:  # once a run; the count goes on in every metrics event
                self._invalid_warned = True
                message = (f"samples with NaN or infinite labels: their labels are skipped ({invalid} in the "
                           f"batch at step {self.step + 1}; counted on as invalid_samples in metrics)")  # fmt: skip
                self.events.emit("anomaly", self.step + 1, what="invalid_labels", count=invalid,
                                 batch=batch["index"].tolist(), action="labels_skipped", message=message)  # fmt: skip
                if self._view is not None:
                    self._view.message(f"warning: {message}")
        return batch

    def _restart_loader(self) -> None:
        self._loader_iter = None

    def _forward_backward(self, batch: dict) -> tuple[torch.Tensor, dict, dict, torch.Tensor]:
        """Forward and backward over the micro-batches; returns the loss, the terms, how many samples each term saw,
        and the per-sample errors, all on the device."""
        size = batch["image"].shape[0]
        starts = list(range(0, size, self.micro_batch))
        total = torch.zeros((), device=self.device)
        terms: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        errors = []
        epoch = self.epoch()
        for i, start in enumerate(starts):
            chunk = parts.slice_batch(batch, start, min(start + self.micro_batch, size))
            share = chunk["image"].shape[0] / size
            last = i == len(starts) - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.model.no_sync()
            chunk, mix = self._mixup(chunk, i)
            with sync:
                with autocast(self.tc.precision, self.device, self.prepared.fp8):
                    with memory.offload_activations(self.tc.offload_activations, self.device):
                        output = self.model(chunk)
                    result = self.loss_fn(output, chunk, epoch, mix=mix)
                loss_value = self._stage_total(result)
                (loss_value * share).backward()
            total = total + loss_value.detach().float() * share
            for name, value in result.terms.items():
                terms[name] = terms.get(name, 0) + value.detach().float() * share
            for name, count in getattr(result, "counts", {}).items():
                counts[name] = counts.get(name, 0) + count
            errors.append(parts.per_sample_error(output, chunk))
        return total, terms, counts, torch.cat(errors)

    def _mixup(self, chunk: dict, index: int):
        """MixUp drawn from a generator seeded by (seed, step, micro-batch): reproducible without saved state."""
        if not self.config.mixup.enabled:
            return chunk, None
        from amt_core.data.mixup import mixup_batch

        generator = torch.Generator().manual_seed((self.tc.seed * 1_000_003 + self.step) * 64 + index)
        mixed, mix = mixup_batch(chunk, self.config.mixup, generator=generator)
        return mixed, (mix if mixed is not chunk else None)

    def _stage_total(self, result) -> torch.Tensor:
        """The step's loss: the loss's own total when it applies stage multipliers itself, else recomputed."""
        scale = self.stage_config.loss_scale
        if self._loss_has_stages or not scale:
            return result.total
        return sum(result.weights[name] * scale.get(name, 1.0) * value for name, value in result.terms.items())

    def _check_stage_terms(self) -> None:
        """Each stage's loss_scale names must be the loss's terms or groups (checked by the loss itself)."""
        setter = getattr(self.loss_fn, "set_stage_multipliers", None)
        self._loss_has_stages = callable(setter)
        if self._loss_has_stages:
            for stage in self.config.stages:
                setter(dict(stage.loss_scale))
            setter(dict(self.config.stages[0].loss_scale))

    def _apply_stage_to_loss(self) -> None:
        if self._loss_has_stages:
            self.loss_fn.set_stage_multipliers(dict(self.stage_config.loss_scale))

    def _set_learning_rates(self, ok: torch.Tensor) -> None:
        stage = self.stage_config
        factor = stage.lr_factor(self._stage_position(), self.stage_lengths[self.stage]) * self.lr_scale
        for group in self.optimizer.param_groups:
            frozen = group["group"] in stage.freeze
            group["lr"].fill_(0.0 if frozen else stage.lr * group["lr_scale"] * factor)
            group["lr"].mul_(ok)

    def current_lrs(self) -> dict[str, float]:
        stage = self.stage_config
        factor = stage.lr_factor(max(self._stage_position() - 1, 0), self.stage_lengths[self.stage]) * self.lr_scale
        return {g: (0.0 if g in stage.freeze else stage.lr * self.config.optim.group_lr_scale.get(g, 1.0) * factor)
                for g in self.groups}  # fmt: skip

    def _probe_micro_batch(self) -> None:
        if not (self.tc.dynamic_batch and self.device.type == "cuda"):
            return
        batch = self.next_batch()
        indices = batch.pop("index")
        batch = parts.to_device(batch, self.device)

        def attempt(size: int) -> None:
            self.micro_batch = size
            self._forward_backward(batch)
            self.optimizer.zero_grad(set_to_none=True)

        with torch.random.fork_rng(devices=[self.device]):
            self.micro_batch = memory.find_micro_batch(attempt, self.local_batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        batch["index"] = indices
        # Put the probe batch back: the plan position goes back one batch and the loader restarts there.
        self.plan.position -= 1
        self._restart_loader()
        if self.micro_batch < self.local_batch:
            self.events.emit("anomaly", self.step, what="out_of_memory", action="micro_batch",
                             micro_batch=self.micro_batch)  # fmt: skip

    # ------------------------------------------------------------------ host checks

    def _new_window(self) -> dict:
        return {"steps": 0, "loss": 0.0, "terms": {}, "term_steps": {}, "images": 0, "time": time.monotonic(),
                "step_time": 0.0, "data_wait": 0.0, "last_loss": None, "last_ips": None}  # fmt: skip

    def check(self) -> bool:
        """Read the buffered step results (one host sync): record skipped steps, catch explosions, feed mining.

        Returns:
            False when an explosion (or a run of non-finite steps) caused a rollback.
        """
        if not self._pending:
            return True
        pending, self._pending = self._pending, []
        ok = torch.stack([p["ok"] for p in pending]).cpu().tolist()
        losses = torch.stack([p["loss"].float() for p in pending]).cpu().tolist()
        norms = torch.stack([p["norms"] for p in pending]).cpu()
        terms = [_host_terms(p["terms"], p["counts"]) for p in pending]
        errors = [p["errors"].cpu().tolist() for p in pending]
        window = self._window
        for i, entry in enumerate(pending):
            if not ok[i]:
                self.skipped += 1
                self.consecutive_nonfinite += 1
                self.events.emit("anomaly", entry["step"], what="non_finite", loss=losses[i], batch=entry["indices"],
                                 action="skipped", skipped_total=self.skipped)  # fmt: skip
                if self.consecutive_nonfinite >= self.config.stability.max_consecutive_nonfinite:
                    self._auto_rollback(entry["step"], "non_finite_run", losses[i])
                    return False
                continue
            self.consecutive_nonfinite = 0
            median = self.spike.median()
            if self.spike.check(losses[i]):
                self._auto_rollback(entry["step"], "explosion", losses[i], median=median, batch=entry["indices"])
                return False
            window["steps"] += 1
            window["loss"] += losses[i]
            window["step_time"] += entry["time"]
            for name, (value, seen) in terms[i].items():
                if seen:  # a term without samples in this step is absent from it, not a zero
                    window["terms"][name] = window["terms"].get(name, 0.0) + value
                    window["term_steps"][name] = window["term_steps"].get(name, 0) + 1
            self.plan.record_errors(entry["indices"], errors[i])
        window["images"] += len(pending) * self.config.batch_size
        norms_by_group: dict[str, float] = {}
        last = norms[-1].tolist()
        for group, value in zip(self.optimizer.param_groups, last):
            norms_by_group[group["group"]] = norms_by_group.get(group["group"], 0.0) + value**2
        self._last_norms = {k: v**0.5 for k, v in norms_by_group.items()}
        self._refresh_mining()
        return True

    def _refresh_mining(self, force: bool = False) -> None:
        """Rebuild the hard-case pool at a stage change and every `mining_refresh` steps of a mining stage."""
        share = self.stage_config.hard_mining
        due = force or (share > 0 and self.step - self.mining_at >= self.tc.mining_refresh)
        if not due and not (share == 0 and self.plan.mining_share > 0):
            return
        self.mining_at = self.step
        if self.plan.refresh_pool(share, self.tc.mining_pool):
            self._restart_loader()

    def _emit_metrics(self) -> None:
        w = self._window
        elapsed = max(time.monotonic() - w["time"], 1e-9)
        if w["steps"] == 0:
            return
        ips = w["images"] / elapsed
        loss = w["loss"] / w["steps"]
        data_share = min(1.0, w["data_wait"] / elapsed)
        data_bound = data_share > DATA_BOUND_SHARE and w["data_wait"] >= DATA_BOUND_MIN_S
        if data_bound and not self._data_bound_warned and self.step > self.tc.log_every:
            self._data_bound_warned = True  # once a run: the figure itself is in every metrics event
            message = (f"the trainer waited for data {100 * data_share:.0f}% of the time; pre-render shards "
                       "(amt-core synth) and train on --data synth:DIR, or raise trainer.num_workers")  # fmt: skip
            self.events.emit("anomaly", self.step, what="data_bound", data_share=data_share, action="none",
                             message=message)  # fmt: skip
        self.events.emit(
            "metrics", self.step, stage=self.stage + 1, epoch=self.epoch(), loss=loss,
            terms={k: v / w["term_steps"][k] for k, v in w["terms"].items()}, lr=self.current_lrs(), images_per_s=ips,
            step_time_s=w["step_time"] / w["steps"], data_wait_s=w["data_wait"] / w["steps"], data_share=data_share,
            memory=memory.memory_mb(self.device), skipped_total=self.skipped, invalid_samples=self.invalid_samples,
            lr_scale=self.lr_scale, micro_batch=self.micro_batch, train_time_s=self.train_time_s,
        )  # fmt: skip
        self._tb_scalars(loss, {k: v / w["term_steps"][k] for k, v in w["terms"].items()}, ips)
        self._window = self._new_window()
        self._window["last_loss"], self._window["last_ips"] = loss, ips

    # ------------------------------------------------------------------ diagnostics, snapshots, validation

    @contextlib.contextmanager
    def _inference(self):
        """Eval mode, no grad, and the training RNG streams untouched (so diagnostics never change a run)."""
        devices = [self.device] if self.device.type == "cuda" else []
        was_training = self.module.training
        precision = autocast(self.tc.precision, self.device, self.prepared.fp8)
        with torch.random.fork_rng(devices=devices), torch.no_grad(), precision:
            self.module.eval()
            try:
                yield
            finally:
                self.module.train(was_training)

    def diagnostics(self) -> None:
        """Prediction std vs ground truth, attention entropy by layer, gradient norm by group (on the last batch)."""
        if not self.is_main or self._last_batch is None:
            return
        from amt_core.metrics.diagnostics import COLLAPSE_STD_M, attention_entropy, prediction_std

        batch = self._last_batch
        with self._inference():
            output = parts.call_model(self.module, batch, attention=True)
        fields: dict[str, Any] = {"grad_norm": self._last_norms}
        if output.joints3d.shape[0] >= 2:
            fields["pred_std_mm"] = prediction_std(output.joints3d.float()) * 1000
            fields["collapsed"] = fields["pred_std_mm"] < COLLAPSE_STD_M * 1000
            valid = batch["valid"]["joints3d"].bool()
            if int(valid.sum()) >= 2:
                fields["gt_std_mm"] = prediction_std(batch["joints3d"][valid].float()) * 1000
        fields["attention_entropy"] = {
            name: attention_entropy(probs.float(), normalized=True) for name, probs in output.attention.items()
        }
        self.events.emit("diagnostics", self.step, **fields)

    def _visualization_batch(self) -> dict:
        if self._vis_batch is None:
            from torch.utils.data import default_collate

            dataset = self.val_dataset()
            count = min(self.tc.snapshot_samples, len(dataset))
            batch = default_collate([dataset[i] for i in range(count)])
            self._vis_batch = parts.to_device(batch, self.device)
        return self._vis_batch

    def val_dataset(self):
        if self._val_dataset is None:
            self._val_dataset = parts.open_data(self.config.val_data)
        return self._val_dataset

    def snapshot(self, reason: str = "periodic") -> str | None:
        """Predictions and ground truth of the fixed visualization samples, saved as snapshots/step_N.npz."""
        if not self.is_main:
            return None
        from amt_core.train.snapshot import write_snapshot

        batch = self._visualization_batch()
        with self._inference():
            output = parts.call_model(self.module, batch)
        path = write_snapshot(self.run.snapshots, self.step, batch, output, parts.hand_faces(self.module))
        relative = str(path.relative_to(self.run.path))
        self.events.emit("snapshot", self.step, path=relative, samples=int(batch["image"].shape[0]), reason=reason)
        return relative

    def validate(self) -> dict | None:
        """Metrics on the first `eval_samples` held-out samples, as a validation event."""
        if not self.is_main:
            return None
        from amt_core.train.evaluate import evaluate

        with self._inference():
            metrics = evaluate(self.module, self.val_dataset(), self.device, batch_size=self.local_batch,
                               precision=self.tc.precision, max_samples=self.tc.eval_samples,
                               fp8=self.prepared.fp8, reference_pose=self.mean_pose.mean())  # fmt: skip
        self.events.emit("validation", self.step, metrics=metrics)
        self._check_learning(metrics)
        value = metrics.get("mpjpe_mm")
        finite = isinstance(value, float) and np.isfinite(value)
        if finite and (self.best_mpjpe_mm is None or value < self.best_mpjpe_mm):
            self.best_mpjpe_mm = value
            self._best_pending = True  # the checkpoint of this step (saved now or by after_step) is the best
        return metrics

    def _check_learning(self, metrics: dict) -> None:
        """Warn once (until it recovers) when, after the first stage, validation is no better than the mean pose."""
        model, reference = metrics.get("mpjpe_mm"), metrics.get("ref_mean_pose_mpjpe_mm")
        if model is None or reference is None or self.stage == 0:
            return
        not_learning = model >= reference
        if not_learning and not self._not_learning:
            message = (f"not better than a constant yet: validation MPJPE {model:.1f} mm, the training data's mean "
                       f"pose {reference:.1f} mm")  # fmt: skip
            self.events.emit("anomaly", self.step, what="not_learning", message=message, mpjpe_mm=model,
                             ref_mean_pose_mpjpe_mm=reference, action="none")  # fmt: skip
            if self._view is not None:
                self._view.message(f"warning: {message}")
        self._not_learning = not_learning

    # ------------------------------------------------------------------ checkpoints and rollback

    def run_info(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "versions": versions(),
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "parameters": sum(p.numel() for p in self.module.parameters()),
            "param_groups": {
                g: sum(p.numel() for pg in self.optimizer.param_groups if pg["group"] == g for p in pg["params"])
                for g in self.groups
            },  # fmt: skip
            "stage_lengths": self.stage_lengths,
            "acceleration": self.prepared.to_dict(),
            "reference_pose": None if (pose := self.mean_pose.mean()) is None else pose.tolist(),
            "command": sys.argv,
            "pid": os.getpid(),
        }

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "stage": self.stage,
            "stage_start": self.stage_start,
            "mining_at": self.mining_at,
            "stage_time_start": self.stage_time_start,
            "optimizer": self.optimizer.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "plan": self.plan.state_dict(),
            "spike": self.spike.state_dict(),
            "mean_pose": self.mean_pose.state_dict(),
            "rng": _rng_state(),
            "run": {
                "lr_scale": self.lr_scale,
                "rollbacks": self.rollbacks,
                "skipped": self.skipped,
                "train_time_s": self.train_time_s,
                "micro_batch": self.micro_batch,
                "best_mpjpe_mm": self.best_mpjpe_mm,
                "best_checkpoint": self.best_checkpoint,
            },  # fmt: skip
        }

    def save(self, reason: str) -> str:
        """Write a checkpoint (rank 0) and its event; returns its name."""
        name = ckpt_io.checkpoint_name(self.step, self.branch)
        best = self._best_pending
        if best:
            previous_best, self.best_checkpoint, self._best_pending = self.best_checkpoint, name, False
        retain = tuple(r for r, yes in (("manual", reason == "command"), ("stage_end", reason == "stage_end"),
                                        ("best", best)) if yes)  # fmt: skip
        if self.is_main:
            # TE keeps FP8 scaling metadata in `_extra_state` entries, which go with the training state
            weights, extra = split_extra_state(self.module.state_dict())
            path = ckpt_io.save_checkpoint(self.run.checkpoints, name, weights, {**self.state_dict(),
                                           "fp8_extra_state": extra}, self.run_info(), retain=retain)  # fmt: skip
            if best and previous_best and previous_best != name and (self.run.checkpoints / previous_best).is_dir():
                ckpt_io.set_retained(self.run.checkpoints / previous_best, "best", keep=False)
            keep = tuple(ckpt_io.list_checkpoints(self.run.checkpoints)[:1])
            removed = ckpt_io.prune_checkpoints(self.run.checkpoints, self.tc.keep_checkpoints, keep=keep)
            self.events.emit("checkpoint", self.step, name=name, path=str(path.relative_to(self.run.path)),
                             reason=reason, stage=self.stage + 1, removed=removed, branch=self.branch,
                             retain=list(retain))  # fmt: skip
        ddp.barrier(self.dist)
        self._last_ckpt_step = self.step
        return name

    def load(self, checkpoint: ckpt_io.Checkpoint, full: bool) -> None:
        """Restore weights and training state; `full` (resume) also restores the plan, RNGs and run counters."""
        try:
            load_weights(self.module, checkpoint.weights, checkpoint.state.get("fp8_extra_state"))
        except RuntimeError as err:
            problem = parts.state_dict_problem(err)
            raise UserError(f"checkpoint {checkpoint.path} does not fit this model ({problem})") from None
        state = checkpoint.state
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # the saved lr tensors may live on another device
            group["lr"] = torch.tensor(0.0, device=self.device)
        self.loss_fn.load_state_dict(state["loss"])
        self.step, self.stage, self.stage_start = state["step"], state["stage"], state["stage_start"]
        self.mining_at, self.stage_time_start = state["mining_at"], state["stage_time_start"]
        self.spike.load_state_dict(state["spike"])
        if "mean_pose" in state:  # checkpoints written before the reference existed have none
            self.mean_pose.load_state_dict(state["mean_pose"])
        self._apply_stage_to_loss()
        if full:
            self.plan.load_state_dict(state["plan"])
            _set_rng_state(state["rng"])
            run = state["run"]
            self.lr_scale, self.rollbacks, self.skipped = run["lr_scale"], run["rollbacks"], run["skipped"]
            self.best_mpjpe_mm, self.best_checkpoint = run.get("best_mpjpe_mm"), run.get("best_checkpoint")
            self.train_time_s = run["train_time_s"]
            self._restart_loader()
        self._pending = []
        self._last_ckpt_step = self.step

    def rollback(self, name: str, reason: str, backoff: bool) -> None:
        """Load the named checkpoint's weights and training state; the data moves on (the bad batches are not
        revisited) and, when `backoff`, the learning rate is scaled by `lr_backoff`."""
        if name not in ckpt_io.list_checkpoints(self.run.checkpoints):
            raise UserError(f"no checkpoint {name!r}; have {', '.join(ckpt_io.list_checkpoints(self.run.checkpoints))}")
        from_step, from_stage = self.step, self.stage
        self.load(ckpt_io.load_checkpoint(self.run.checkpoints / name), full=False)
        if backoff:
            self.lr_scale *= self.config.stability.lr_backoff
        # A new branch: its checkpoints sort after every existing one, the target is kept, and `latest` points at
        # it so a resume before the branch's first save continues from here, not from the abandoned branch.
        names = ckpt_io.list_checkpoints(self.run.checkpoints)
        self.branch = max([self.branch, *map(ckpt_io.checkpoint_branch, names)]) + 1
        if self.is_main:
            ckpt_io.set_retained(self.run.checkpoints / name, "rollback_target")
            ckpt_io.point_latest(self.run.checkpoints, name)
        self._best_pending = False
        self._window = self._new_window()
        self.events.emit("rollback", self.step, checkpoint=name, from_step=from_step, reason=reason,
                         lr_scale=self.lr_scale, branch=self.branch)  # fmt: skip
        if self.stage != from_stage:
            self.events.emit("stage", self.step, stage=self.stage + 1, name=self.stage_config.name, reason="rollback")

    def _auto_rollback(self, step: int, what: str, loss: float, **fields: Any) -> None:
        self.rollbacks += 1
        target = ckpt_io.latest_checkpoint(self.run.checkpoints)
        if self.rollbacks > self.config.stability.max_rollbacks or target is None:
            raise TrainingFailed(f"{what} at step {step} after {self.rollbacks - 1} rollbacks; lower the learning rate")
        self.events.emit("anomaly", step, what=what, loss=loss, action="rollback", checkpoint=target.name,
                         lr_scale=self.lr_scale * self.config.stability.lr_backoff, **fields)  # fmt: skip
        self.rollback(target.name, reason=what, backoff=True)

    def set_stage(self, stage: int, reason: str) -> None:
        """Switch to stage index `stage` (0-based) now; its warm-up and cosine start over."""
        self.stage = stage
        self.stage_start = self.step
        self.stage_time_start = self.train_time_s
        self._apply_stage_to_loss()
        self._refresh_mining(force=True)
        self.events.emit("stage", self.step, stage=stage + 1, name=self.stage_config.name, reason=reason)

    # ------------------------------------------------------------------ commands

    def handle_commands(self) -> None:
        """Apply the control channel's commands (rank 0 receives, every rank applies); blocks while paused."""
        self._publish_status()
        if self.dist.enabled and self.step % self.config.stability.check_every:
            return
        self._apply_all(self.control.pending() if self.control is not None else [])
        self._publish_status()
        while self.paused and not self.stop_reason and self._signal is None:
            waiting = self.control.wait(0.2) if self.control is not None else None
            self._apply_all([waiting] if waiting is not None else [])
            self._publish_status()  # `ctl status` while paused says paused (it said False before)

    def _publish_status(self) -> None:
        if self.control is not None:
            self.control.status = {"step": self.step, "stage": self.stage + 1, "paused": self.paused,
                                   "state": "paused" if self.paused else "running", "branch": self.branch}  # fmt: skip

    def _apply_all(self, pending: list[PendingCommand]) -> None:
        requests = ddp.broadcast_object([(p.command, p.arg) for p in pending], self.dist)
        for i, (name, arg) in enumerate(requests):
            target = pending[i] if i < len(pending) else None
            try:
                reply = self._apply(name, arg)
            except (UserError, ValueError) as err:
                self.events.emit("command", self.step, command=name, arg=arg, ok=False, error=str(err))
                if target is not None:
                    target.finish(False, error=str(err))
                continue
            self.events.emit("command", self.step, command=name, arg=arg, ok=True, **reply)
            if target is None:
                continue
            if name == "stop":
                self._stop_replies.append(target)
            else:
                target.finish(True, step=self.step, **reply)

    def _apply(self, name: str, arg: str | None) -> dict:
        if name == "pause":
            if not self.paused:
                self.paused = True
                self.events.emit("state", self.step, state="paused")
            return {"state": "paused"}
        if name == "resume":
            if self.paused:
                self.paused = False
                self._start_time = time.monotonic()
                self._window = self._new_window()
                self.events.emit("state", self.step, state="running")
            return {"state": "running"}
        if name == "stop":
            self.stop_reason = "command"
            return {}
        if name == "save":
            if not self.check():
                return {"rolled_back": True}
            return {"checkpoint": self.save("command")}
        if name == "snapshot":
            return {"snapshot": self.snapshot(reason="command")}
        if name == "stage":
            try:
                number = int(arg)
            except (TypeError, ValueError):
                raise UserError(f"stage needs a number 1-{len(self.config.stages)}, got {arg!r}") from None
            if not 1 <= number <= len(self.config.stages):
                raise UserError(f"stage {number} does not exist; stages are 1-{len(self.config.stages)}")
            self.check()
            self.set_stage(number - 1, reason="command")
            return {"stage": number}
        if name == "rollback":
            self.check()
            self.rollback(str(arg), reason="command", backoff=False)
            return {"checkpoint": str(arg)}
        raise UserError(f"unknown command {name!r}")

    # ------------------------------------------------------------------ plumbing

    def _seed_everything(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self._signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._signal = signum

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)
        return previous

    def _fail(self, err: BaseException) -> None:
        if isinstance(err, UserError) or not self.events.enabled:
            return
        with contextlib.suppress(Exception):
            self.events.emit("error", self.step, message=f"{type(err).__name__}: {err}",
                             traceback=traceback.format_exc())  # fmt: skip
            self.events.emit("state", self.step, state="failed")

    def _open_tensorboard(self) -> None:
        if not self.tc.tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self._tb = SummaryWriter(str(self.run.path / "tb"))

    def _tb_scalars(self, loss: float, terms: dict[str, float], ips: float) -> None:
        if self._tb is None:
            return
        self._tb.add_scalar("loss/total", loss, self.step)
        for name, value in terms.items():
            self._tb.add_scalar(f"loss/{name}", value, self.step)
        self._tb.add_scalar("images_per_s", ips, self.step)


DATA_BOUND_SHARE = 0.25
"""Above this share of wall time spent waiting for batches, the run is data-bound and says so (once)..."""
DATA_BOUND_MIN_S = 1.0
"""...provided the waits of one metrics window add up to this many seconds (a few milliseconds of a toy run's
loader against its sub-millisecond steps are not worth a warning)."""


def _host_terms(terms: dict[str, torch.Tensor], counts: dict[str, torch.Tensor]) -> dict[str, tuple[float, bool]]:
    """A step's device-side terms as {name: (value, had samples)}, in one transfer (a term without a count: True)."""
    if not terms:
        return {}
    names = list(terms)
    values = torch.stack(
        [terms[n].float() for n in names]
        + [torch.as_tensor(counts.get(n, 1)).to(terms[n].device).float() for n in names]
    )
    table = values.cpu().tolist()
    return {n: (table[i], table[len(names) + i] > 0) for i, n in enumerate(names)}
