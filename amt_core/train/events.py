"""The run's event log, `events.jsonl`: one JSON object a line, append-only; the trainer writes, the studio tails.

Each kind is one frozen dataclass below (`Metrics`, `Checkpoint`, ...), shared by the writer (`EventWriter.write`)
and the readers (`parse_event`, the studio); every line has `v` (schema version), `kind`, `step` and `time` (Unix
seconds). `EventReader` reads the file incrementally and never returns a half-written last line. Torch-free: the
studio imports it without torch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from time import time as _now
from typing import Any, ClassVar

from amt_core.train.kinds import AnomalyAction, AnomalyKind, CheckpointReason, StopReason, TrainerState, checked

SCHEMA_VERSION = 1
"""Written as `v` in every line. Files from before the typed events carry the same fields (some carry no `v`); both
read the same way, and fields a newer writer adds are ignored by an older reader."""

STATES: tuple[str, ...] = tuple(TrainerState)

EVENTS_FILE = "events.jsonl"


@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields every event has; `kind` is the class's name on the wire. Optional fields left None are not written."""

    kind: ClassVar[str] = ""
    step: int
    """Optimizer steps done when the event was written (goes back after a rollback)."""
    time: float = field(default_factory=_now)
    """Unix time, seconds."""

    def to_dict(self) -> dict[str, Any]:
        """The event as its JSON line writes it (non-finite floats as "nan"/"inf"/"-inf" strings)."""
        fields_ = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("step", "time")}
        body = _clean({k: v for k, v in fields_.items() if v is not None})
        return {"v": SCHEMA_VERSION, "kind": self.kind, "step": int(self.step), "time": self.time, **body}


@dataclass(frozen=True, kw_only=True)
class Metrics(Event):
    """Every `trainer.log_every` steps: means over the steps since the last metrics event."""

    kind: ClassVar[str] = "metrics"
    stage: int | None = None
    epoch: float | None = None
    """Samples seen / dataset size."""
    loss: float | str
    """Mean weighted total (a non-finite value arrives as the string "nan", "inf" or "-inf")."""
    terms: dict[str, float] = field(default_factory=dict)
    """{term: unweighted mean over the steps where the term had samples}."""
    lr: dict[str, float] | None = None
    images_per_s: float | None = None
    step_time_s: float | None = None
    data_wait_s: float | None = None
    data_share: float | None = None
    memory: dict[str, float] | None = None
    """{rss_mb, peak_mb} on the CPU or {allocated_mb, peak_mb} on CUDA."""
    skipped_total: int | None = None
    invalid_samples: int | None = None
    lr_scale: float | None = None
    micro_batch: int | None = None
    train_time_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class Diagnostics(Event):
    """Every `trainer.diag_every` steps, on the last training batch."""

    kind: ClassVar[str] = "diagnostics"
    grad_norm: dict[str, float] = field(default_factory=dict)
    """{parameter group: gradient norm before clipping}."""
    pred_std_mm: float | None = None
    collapsed: bool | None = None
    """The prediction std is below the collapse line (10 mm)."""
    gt_std_mm: float | None = None
    attention_entropy: dict[str, float] = field(default_factory=dict)
    """{layer: entropy / log(keys)}: 0 = one key, 1 = uniform."""
    grad_share: dict[str, float] | None = None
    """{loss term: <g_i, g> / ||g||^2}, g_i the gradient of the weighted term at the trunk's outputs (the shared
    feature extractor), g their sum: the shares sum to 1, a term that fights the others is negative. None when the
    model has no trunk (older files: absent)."""
    grad_norm_trunk: dict[str, float] | None = None
    """{loss term: ||g_i||}, the same gradients' norms."""


@dataclass(frozen=True, kw_only=True)
class Validation(Event):
    kind: ClassVar[str] = "validation"
    metrics: dict[str, Any]
    """What `amt-core eval --json` writes, on the first `trainer.eval_samples` held-out samples."""


@dataclass(frozen=True, kw_only=True)
class Snapshot(Event):
    kind: ClassVar[str] = "snapshot"
    path: str
    """Relative to the run directory."""
    samples: int | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Event):
    kind: ClassVar[str] = "checkpoint"
    name: str
    """The name `rollback` and `--resume` take."""
    path: str | None = None
    """Relative to the run directory."""
    reason: CheckpointReason | None = None
    stage: int | None = None
    removed: list[str] = field(default_factory=list)
    """Names pruned by retention as this one was written."""
    branch: int | None = None
    retain: list[str] = field(default_factory=list)
    """Why retention keeps it (manual, stage_end, best)."""

    def __post_init__(self) -> None:
        _typed(self, "reason", CheckpointReason)


@dataclass(frozen=True, kw_only=True)
class Rollback(Event):
    """The run went back to a checkpoint; `step` is the checkpoint's step."""

    kind: ClassVar[str] = "rollback"
    checkpoint: str
    from_step: int | None = None
    reason: str | None = None
    lr_scale: float | None = None
    branch: int | None = None


@dataclass(frozen=True, kw_only=True)
class Stage(Event):
    kind: ClassVar[str] = "stage"
    stage: int
    """1-based."""
    name: str = ""
    reason: str | None = None
    """start, resume, plan, command, rollback."""


@dataclass(frozen=True, kw_only=True)
class State(Event):
    kind: ClassVar[str] = "state"
    state: TrainerState
    reason: StopReason | None = None
    """At the end: why the loop ended."""
    signal: str | None = None
    """With reason signal: which one (SIGINT, SIGTERM, SIGUSR1)."""
    resumed_from: str | None = None

    def __post_init__(self) -> None:
        _typed(self, "state", TrainerState)
        _typed(self, "reason", StopReason)


@dataclass(frozen=True, kw_only=True)
class Anomaly(Event):
    """Something went wrong and was handled: the fields every anomaly has. Each kind is a subclass below with its
    own fields (`LossExplosion`, ...); this class itself stands for a kind this reader does not know (a newer
    trainer's), with `what` as the line's string."""

    kind: ClassVar[str] = "anomaly"
    what: AnomalyKind | str
    action: AnomalyAction | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        expected = ANOMALY_TYPES.get(self.what, Anomaly)
        if type(self) is not expected:
            raise ValueError(f"an anomaly {self.what!r} is a {expected.__name__}, not a {type(self).__name__}")
        _typed(self, "what", AnomalyKind, strict=type(self) is not Anomaly)
        _typed(self, "action", AnomalyAction)


@dataclass(frozen=True, kw_only=True)
class NonFiniteStep(Anomaly):
    """A step whose loss or gradients were not finite: its update was not applied."""

    what: AnomalyKind = AnomalyKind.NON_FINITE
    action: AnomalyAction | None = AnomalyAction.SKIPPED
    loss: float | str | None = None
    """"nan", "inf" or "-inf" (the strings JSON carries)."""
    batch: list[int] | None = None
    """Dataset indices of the batch."""
    skipped_total: int | None = None


@dataclass(frozen=True, kw_only=True)
class LossExplosion(Anomaly):
    """A loss far above the running median of recent good losses: rolled back to the latest checkpoint."""

    what: AnomalyKind = AnomalyKind.EXPLOSION
    action: AnomalyAction | None = AnomalyAction.ROLLBACK
    loss: float | str | None = None
    median: float | None = None
    batch: list[int] | None = None
    """Dataset indices of the batch."""
    checkpoint: str | None = None
    """The checkpoint rolled back to."""
    lr_scale: float | None = None
    """The learning-rate scale after the back-off."""


@dataclass(frozen=True, kw_only=True)
class NonFiniteRun(Anomaly):
    """`stability.max_consecutive_nonfinite` non-finite steps in a row: rolled back like an explosion."""

    what: AnomalyKind = AnomalyKind.NON_FINITE_RUN
    action: AnomalyAction | None = AnomalyAction.ROLLBACK
    loss: float | str | None = None
    checkpoint: str | None = None
    lr_scale: float | None = None


@dataclass(frozen=True, kw_only=True)
class OutOfMemory(Anomaly):
    """The micro-batch did not fit: halved mid-run (`micro_batch_halved`, with the batch) or sized by the start-up
    probe (`micro_batch`); the global batch stays the same (gradients accumulate)."""

    what: AnomalyKind = AnomalyKind.OUT_OF_MEMORY
    action: AnomalyAction | None = AnomalyAction.MICRO_BATCH_HALVED
    batch: list[int] | None = None
    """Dataset indices of the batch that did not fit (mid-run only)."""
    micro_batch: int | None = None
    """The new micro-batch."""


@dataclass(frozen=True, kw_only=True)
class SlowPrecision(Anomaly):
    """The precision asked for runs slower than fp32 on this device (`message` says why)."""

    what: AnomalyKind = AnomalyKind.SLOW_PRECISION
    action: AnomalyAction | None = AnomalyAction.NONE


@dataclass(frozen=True, kw_only=True)
class DataBound(Anomaly):
    """Once a run: over 25% of a metrics window (and at least 1 s of it) went to waiting for data."""

    what: AnomalyKind = AnomalyKind.DATA_BOUND
    action: AnomalyAction | None = AnomalyAction.NONE
    data_share: float | None = None


@dataclass(frozen=True, kw_only=True)
class InvalidLabels(Anomaly):
    """Once a run: samples with NaN/inf labels, whose labels are skipped (counted on in `Metrics.invalid_samples`)."""

    what: AnomalyKind = AnomalyKind.INVALID_LABELS
    action: AnomalyAction | None = AnomalyAction.LABELS_SKIPPED
    batch: list[int] | None = None
    """Dataset indices of the batch."""
    count: int | None = None
    """Samples with invalid labels in that batch."""


@dataclass(frozen=True, kw_only=True)
class NotLearning(Anomaly):
    """After stage 1, validation is no better than the training data's mean pose (until it is again)."""

    what: AnomalyKind = AnomalyKind.NOT_LEARNING
    action: AnomalyAction | None = AnomalyAction.NONE
    mpjpe_mm: float | None = None
    ref_mean_pose_mpjpe_mm: float | None = None


ANOMALY_TYPES: dict[str, type[Anomaly]] = {
    cls.what: cls
    for cls in (
        NonFiniteStep,
        LossExplosion,
        NonFiniteRun,
        OutOfMemory,
        SlowPrecision,
        DataBound,
        InvalidLabels,
        NotLearning,
    )
}
"""The class of each anomaly kind (`what`)."""


@dataclass(frozen=True, kw_only=True)
class CommandApplied(Event):
    """A control command the trainer applied (ok) or refused (error); the other fields are its result."""

    kind: ClassVar[str] = "command"
    command: str
    arg: str | None = None
    ok: bool = True
    error: str | None = None
    state: str | None = None
    checkpoint: str | None = None
    stage: int | None = None
    snapshot: str | None = None
    rolled_back: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Error(Event):
    """The trainer crashed; a `state` event `failed` follows."""

    kind: ClassVar[str] = "error"
    message: str
    traceback: str = ""


@dataclass(frozen=True, kw_only=True)
class Unknown(Event):
    """A line of a kind this reader does not know (a newer trainer), or one missing a field its kind needs."""

    kind: ClassVar[str] = "unknown"
    name: str
    """The line's `kind`."""


_WRITTEN = (
    Metrics,
    Diagnostics,
    Validation,
    Snapshot,
    Checkpoint,
    Rollback,
    Stage,
    State,
    Anomaly,
    CommandApplied,
    Error,
)
EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in _WRITTEN}
KINDS: tuple[str, ...] = tuple(EVENT_TYPES)


def parse_event(record: dict[str, Any]) -> Event:
    """The typed event of one line; fields it does not know are dropped, a line it cannot type is `Unknown`."""
    kind = str(record.get("kind"))
    step = record.get("step")
    step = int(step) if isinstance(step, int | float) and not isinstance(step, bool) else 0
    when = record.get("time")
    when = float(when) if isinstance(when, int | float) and not isinstance(when, bool) else _now()
    cls = EVENT_TYPES.get(kind)
    if cls is Anomaly:
        cls = ANOMALY_TYPES.get(str(record.get("what")), Anomaly)
    if cls is not None:
        known = {f.name for f in fields(cls)} - {"step", "time"}
        try:
            return cls(step=step, time=when, **{k: v for k, v in record.items() if k in known})
        except (TypeError, ValueError):  # a field its kind needs is missing, or a value outside its kind's set
            pass
    return Unknown(step=step, time=when, name=kind)


def _typed(event: Event, name: str, kind: type[StrEnum], strict: bool = True) -> None:
    """Set the field `name` of a frozen event to its enum member (it may arrive as its string, from a line or an
    older call site); None stays None, and with `strict=False` a string outside the set stays that string.

    Raises:
        ValueError: a value outside the set, naming the field and the values it takes.
    """
    value = getattr(event, name)
    if value is None or isinstance(value, kind):
        return
    try:
        object.__setattr__(event, name, checked(kind, value, f"{type(event).__name__}.{name}"))
    except ValueError:
        if strict:
            raise


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become strings ("nan", "inf", "-inf") so every line is strict JSON, and
    enum members their plain strings (what the line's reader gets back)."""
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return _clean(value.item())
    return value


class EventWriter:
    """Appends events to `run_dir/events.jsonl`; a writer with `enabled=False` (DDP ranks above 0) writes nothing."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.enabled = enabled
        self._file = open(self.path, "a", encoding="utf-8") if enabled else None  # noqa: SIM115
        if self._file is not None and _ends_mid_line(self.path):
            # A writer killed mid-line left a partial last line: end it, so the next event starts a line of its own
            # (readers skip and count the partial one) instead of being glued to it and lost with it.
            self._file.write("\n")
            self._file.flush()

    def write(self, event: Event) -> dict[str, Any]:
        """Write one event and flush it, so a reader sees it at once. Returns the line's object."""
        record = event.to_dict()
        if self._file is not None:
            self._file.write(json.dumps(record, allow_nan=False) + "\n")
            self._file.flush()
        return record

    def emit(self, kind: str, step: int, **fields_: Any) -> dict[str, Any]:
        """`write` by kind name: the fields are checked against the kind's dataclass (a typo is a TypeError)."""
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {KINDS}")
        return self.write(EVENT_TYPES[kind](step=step, **fields_))

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                pass  # a full disk: what could be written was flushed with each event; the failure is reported
            finally:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None


def _ends_mid_line(path: Path) -> bool:
    """Whether the file is non-empty and its last byte is not a newline."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


class EventReader:
    """Tails a run's events.jsonl: each `read_new()` returns the complete lines written since the last call.

    A partial last line (the trainer is in the middle of writing it) is left for the next call. A file that shrank
    (a new run in the same folder) is read again from the start. Lines that are not UTF-8 JSON objects (a torn write,
    a stray byte) are skipped and counted in `bad_lines`; reading never stops at them.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.offset = 0
        self.bad_lines = 0

    def read_new(self, max_bytes: int = 16 << 20) -> list[dict]:
        """Events appended since the last call (at most about `max_bytes` of them per call)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset = 0
        if size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(max_bytes)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) >= max_bytes:  # one line longer than a whole read is not an event: skip past it
                self.offset += len(data)
                self.bad_lines += 1
            return []
        self.offset += end + 1
        events = []
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)  # bytes: UTF-8 is checked here too (UnicodeDecodeError is a ValueError)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(event, dict):
                events.append(event)
            else:
                self.bad_lines += 1
        return events

    def read_all(self) -> list[dict]:
        """Every complete event from the start of the file (resets the position and the bad-line count)."""
        self.offset = 0
        self.bad_lines = 0
        events: list[dict] = []
        while True:
            before = self.offset
            events.extend(self.read_new())
            if self.offset == before:  # no complete line left (a chunk of only bad lines still moves on)
                return events
