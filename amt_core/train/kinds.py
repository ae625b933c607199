"""The fixed sets of values a run is described by (its states, why it stopped or saved, what went wrong, how it
computes), as `StrEnum`s shared by the trainer, its events and the studio. Torch-free: the studio imports it.

A member equals its string (`TrainerState.PAUSED == "paused"`) and JSON writes it as that string, so events.jsonl
and config.json hold plain strings as before; strings only on the wire, a type everywhere else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

_Kind = TypeVar("_Kind", bound=StrEnum)


class TrainerState(StrEnum):
    """What a `state` event says the trainer is doing."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    """Ended early: by a command or a signal (`StopReason`)."""
    FINISHED = "finished"
    """Ended at the plan's end or a limit (max_steps, max_time_s)."""
    FAILED = "failed"
    """Crashed (an `error` event comes before it) or gave up (more rollbacks than allowed)."""


class StopReason(StrEnum):
    """Why the training loop ended: the `reason` of the last `state` event."""

    FINISHED = "finished"
    """The last stage's last step."""
    LIMIT = "limit"
    """max_steps or max_time_s."""
    COMMAND = "command"
    """A `stop` control command."""
    SIGNAL = "signal"
    """SIGINT, SIGTERM or SIGUSR1 (the event's `signal` names which)."""


class CheckpointReason(StrEnum):
    """Why a checkpoint was written: a `checkpoint` event's `reason`."""

    INITIAL = "initial"
    PERIODIC = "periodic"
    """Every `trainer.ckpt_every` steps."""
    STAGE_END = "stage_end"
    COMMAND = "command"
    """A `save` control command (retained as manual)."""
    STOP = "stop"
    """The run was stopped (command or signal)."""
    FINAL = "final"
    """The run finished (plan end or limit)."""
    BEST = "best"
    """A new best validation MPJPE between periodic checkpoints."""


class AnomalyKind(StrEnum):
    """What went wrong: an `anomaly` event's `what` (one event class each in `amt_core.train.events`)."""

    NON_FINITE = "non_finite"
    """A step with a NaN/inf loss or gradient, skipped."""
    EXPLOSION = "explosion"
    """A loss far above the running median: rolled back."""
    NON_FINITE_RUN = "non_finite_run"
    """Too many non-finite steps in a row: rolled back."""
    OUT_OF_MEMORY = "out_of_memory"
    """The micro-batch did not fit: made smaller."""
    SLOW_PRECISION = "slow_precision"
    """The precision asked for runs slower than fp32 on this device."""
    DATA_BOUND = "data_bound"
    """The trainer waits for data much of the time."""
    INVALID_LABELS = "invalid_labels"
    """Samples with NaN/inf labels: those labels are skipped."""
    NOT_LEARNING = "not_learning"
    """Validation is no better than the training data's mean pose."""


class AnomalyAction(StrEnum):
    """What the trainer did about an anomaly: an `anomaly` event's `action`."""

    SKIPPED = "skipped"
    """The step's update was not applied."""
    ROLLBACK = "rollback"
    """Back to the latest checkpoint, the learning rate backed off."""
    MICRO_BATCH_HALVED = "micro_batch_halved"
    """An out-of-memory error mid-run: the micro-batch halved and the step redone."""
    MICRO_BATCH = "micro_batch"
    """The start-up probe: the largest micro-batch that fits, accumulating to the same global batch."""
    LABELS_SKIPPED = "labels_skipped"
    NONE = "none"
    """Only a warning."""


class Device(StrEnum):
    """`trainer.device`."""

    AUTO = "auto"
    """cuda when available, else cpu."""
    CPU = "cpu"
    CUDA = "cuda"


class Precision(StrEnum):
    """`trainer.precision` (the same names as `amt_core.accel.precision.PRECISIONS`)."""

    FP32 = "fp32"
    BF16 = "bf16"
    """Autocast; parameters and optimizer state stay fp32."""
    FP8 = "fp8"
    """bf16 plus FP8 matmuls in the large layers (CUDA compute capability 8.9+)."""


class AttentionKernel(StrEnum):
    """`trainer.attention`: a kernel backend, or `auto` (the same names as `amt_core.models.attention.MODES`)."""

    FA3 = "fa3"
    FA2 = "fa2"
    SDPA_CUDNN = "sdpa_cudnn"
    SDPA_FLASH = "sdpa_flash"
    SDPA_EFFICIENT = "sdpa_efficient"
    SDPA = "sdpa"
    MATH = "math"
    AUTO = "auto"
    """The fastest measured on this GPU for the backbone's token count (cached); sdpa on the CPU."""


class ProgressStyle(StrEnum):
    """`trainer.progress`."""

    AUTO = "auto"
    """A rich bar on a terminal, log lines otherwise."""
    RICH = "rich"
    LOG = "log"
    NONE = "none"


def checked(kind: type[_Kind], value: object, name: str) -> _Kind:
    """`value` (a member, or its string from a command line, a config.json or an events line) as a member of `kind`.

    Raises:
        ValueError: a value outside the set, naming the field (`name`, e.g. "TrainerConfig.device") and its values.
    """
    try:
        return kind(value)
    except ValueError:
        allowed = tuple(member.value for member in kind)
        raise ValueError(f"{name} must be one of {allowed} (got {value!r})") from None
