"""The hook that reports each `MetricsWindow`: the `metrics` event, the once-a-run data-bound warning,
TensorBoard scalars."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from amt_core.train import memory
from amt_core.train.events import DataBound, Metrics
from amt_core.train.hooks import NOTHING, Actions, PeriodicHook

if TYPE_CHECKING:
    from amt_core.train.view import TrainerView

DATA_BOUND_SHARE = 0.25
"""Above this share of wall time spent waiting for batches, the run is data-bound and says so (once)..."""
DATA_BOUND_MIN_S = 1.0
"""...provided the waits of one metrics window add up to this many seconds (a few milliseconds of a toy run's
loader against its sub-millisecond steps are not worth a warning)."""


class MetricsHook(PeriodicHook):
    """Every `log_every` steps: the window's means as a `metrics` event (and TensorBoard scalars), then a new window."""

    def __init__(self, log_every: int, tensorboard: bool) -> None:
        super().__init__(log_every)
        self.tensorboard = tensorboard
        self._tb = None
        self._data_bound_warned = False

    def before_train(self, trainer: TrainerView) -> None:
        if self.tensorboard and trainer.is_main:
            self._tb = open_tensorboard(trainer.run.path / "tb")

    def run(self, trainer: TrainerView) -> Actions:
        window = trainer.window
        elapsed = max(time.monotonic() - window.started, 1e-9)
        if window.steps == 0:
            return NOTHING
        images_per_s = window.images / elapsed
        loss = window.loss / window.steps
        data_share = min(1.0, window.data_wait_s / elapsed)
        data_bound = data_share > DATA_BOUND_SHARE and window.data_wait_s >= DATA_BOUND_MIN_S
        if data_bound and not self._data_bound_warned and trainer.step > self.every:
            self._data_bound_warned = True  # once a run: the figure itself is in every metrics event
            message = (
                f"the trainer waited for data {100 * data_share:.0f}% of the time; pre-render shards "
                "(amt-core synth) and train on --data synth:DIR, or raise trainer.num_workers"
            )
            trainer.events.write(DataBound(step=trainer.step, data_share=data_share, message=message))
        terms = window.term_means()
        trainer.events.write(
            Metrics(
                step=trainer.step,
                stage=trainer.stage + 1,
                epoch=trainer.epoch(),
                loss=loss,
                terms=terms,
                lr=current_lrs(trainer),
                images_per_s=images_per_s,
                step_time_s=window.step_time_s / window.steps,
                data_wait_s=window.data_wait_s / window.steps,
                data_share=data_share,
                memory=memory.memory_mb(trainer.device),
                skipped_total=trainer.state.skipped,
                invalid_samples=trainer.feed.invalid_samples,
                lr_scale=trainer.state.lr_scale,
                micro_batch=trainer.state.micro_batch,
                train_time_s=trainer.state.train_time_s,
            )
        )
        if self._tb is not None:
            self._tb.add_scalar("loss/total", loss, trainer.step)
            for name, value in terms.items():
                self._tb.add_scalar(f"loss/{name}", value, trainer.step)
            self._tb.add_scalar("images_per_s", images_per_s, trainer.step)
        window.reopen(last_loss=loss, last_images_per_s=images_per_s)
        return NOTHING

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def current_lrs(trainer: TrainerView) -> dict[str, float]:
    """The rate of each parameter group at the last step."""
    state, scales = trainer.state, trainer.config.optim.group_lr_scale
    return trainer.stages.current_lrs(trainer.groups, scales, state.step, state.train_time_s, state.lr_scale)


def open_tensorboard(folder: Path):
    """A TensorBoard `SummaryWriter` for the folder, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))
