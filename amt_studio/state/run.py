"""`RunState`: everything the studio knows about one run, built only from its events (the run directory contract).

Feeding the same events always gives the same state, so a live run and a finished run replayed from
`events.jsonl` look identical. UI state (paused, stage) changes only here, i.e. only when the trainer confirms it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from amt_core.metrics.keys import MPJPE_MM, REF_MEAN_POSE_MPJPE_MM
from amt_core.train.config_view import RunConfigView
from amt_core.train.events import (
    Anomaly,
    Checkpoint,
    CommandApplied,
    Diagnostics,
    Error,
    Event,
    Metrics,
    NotLearning,
    Rollback,
    Snapshot,
    Stage,
    State,
    Unknown,
    Validation,
    parse_event,
)
from amt_studio.state.loss_groups import GROUP_TITLES, LOSS_GROUPS, group_of
from amt_studio.state.series import SeriesGroup
from amt_studio.state.signal import Signal
from amt_studio.state.snapshot import SnapshotTimeline
from amt_studio.state.status import LIVE, RunStatus

# Prediction std (metres) below which the model is treated as collapsed to a constant (the seed's failure: 0.0003).
COLLAPSE_STD_M = 0.01
# Hysteresis of the collapse warning: it is raised after this many readings in a row below COLLAPSE_STD_M, and
# cleared after as many in a row above COLLAPSE_CLEAR_STD_M, so a std hovering at the line does not flap it.
COLLAPSE_READINGS = 3
COLLAPSE_CLEAR_STD_M = 0.012
# "Not learning" (the trainer's anomaly) is cleared after this many validations in a row beat the mean-pose reference.
LEARNING_READINGS = 2
# Steps/s for the ETA are measured over this many recent metrics events of the live branch.
PACE_WINDOW = 30
MAX_LOG_LINES = 5000
# Gradient norms above / below these (per parameter group) are flagged as exploding / vanishing.
GRAD_EXPLODE = 1e3
GRAD_VANISH = 1e-7
# Metrics fields drawn as training series (the rest are bookkeeping or the loss plots' own).
_TRAINING_SERIES = tuple(
    f.name for f in fields(Metrics) if f.name not in ("step", "time", "stage", "epoch", "loss", "terms")
)


@dataclass
class _Changes:
    """What one `ingest` call changed, for the signals it emits at its end."""

    new_metrics: set[str] = field(default_factory=set)
    new_diagnostics: set[str] = field(default_factory=set)
    metrics_seen: bool = False
    diagnostics_seen: bool = False
    status_seen: bool = False


@dataclass(kw_only=True)
class CheckpointInfo:
    """One checkpoint the trainer reported."""

    name: str
    """The name `rollback` takes (the file or folder name under checkpoints/)."""
    path: Path
    step: int
    time: float


@dataclass(kw_only=True)
class LogLine:
    time: float
    level: str
    """'info', 'warning' or 'error'."""
    text: str
    step: int | None = None


@dataclass(kw_only=True)
class Marker:
    """A point on the run's time axis (a checkpoint, a snapshot, a stage switch, an anomaly or a rollback), drawn on
    the plots' event lane."""

    step: int
    kind: str
    """'checkpoint', 'snapshot', 'stage', 'anomaly' or 'rollback'."""
    label: str
    time: float = float("nan")


class RunState:
    """A run's state; `ingest` a batch of events, views connect to the signals.

    Signals: `metrics_changed(new_names: set[str])`, `diagnostics_changed(new_names)`, `snapshot_added(index)`,
    `snapshots_reset()` (a rollback dropped abandoned snapshots), `checkpoints_changed()`, `status_changed()` (state,
    stage, step, device), `marker_added(Marker)`, `log_added(LogLine)`, `error_raised(message, traceback)`,
    `collapse_changed(bool)`, `banners_changed()` (collapse or not learning), `rolled_back(step)`.
    """

    def __init__(self, run_dir: Path | str | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.config: RunConfigView | None = None
        """The run's config.json, once `load_config` found it."""
        self.losses = SeriesGroup("loss")
        self.training = SeriesGroup("training")  # lr, images_per_s, memory_mb and other scalar metrics
        self.pred_std = SeriesGroup("prediction std (m)")
        self.attention_entropy = SeriesGroup("attention entropy")
        self.grad_norm = SeriesGroup("gradient norm")
        self.grad_share = SeriesGroup("gradient share at the trunk")  # by loss term; absent from older runs
        self.grad_share_groups = SeriesGroup("gradient share at the trunk, by loss group")  # sums of the above
        self.validation = SeriesGroup("validation")
        self.snapshots = SnapshotTimeline()
        self.checkpoints: list[CheckpointInfo] = []
        self.markers: list[Marker] = []
        self.log: deque[LogLine] = deque(maxlen=MAX_LOG_LINES)
        """The newest log lines (the log view keeps as many): a run of days does not grow the studio."""
        self.grad_flags: dict[str, str] = {}
        """Parameter groups whose latest gradient norm is 'exploding' or 'vanishing'."""
        self.state = RunStatus.IDLE
        self.stage: int | None = None
        self.step = 0
        self.max_steps: int | None = None
        self.device = ""
        self.preset = ""
        self.images_per_s: float | None = None
        self.data_share: float | None = None  # share of wall time the trainer waited for batches
        self.compute = ""  # precision, attention kernel, compile and checkpointing, from config.json
        self.cadence: dict[str, int] = {}
        """The trainer's event cadences from config.json (log_every, diag_every, eval_every, eval_first, ...): the
        plots say when their first point is due."""
        self.started_time: float | None = None
        self.last_time: float | None = None
        self.collapsed = False
        self._collapse_streak = 0
        self.not_learning: str | None = None
        """The trainer's "not learning" message while validation is no better than a constant, else None."""
        self._learning_streak = 0
        self.rollbacks: list[tuple[int, int]] = []
        """(checkpoint step, step rolled back from) of every rollback, in order."""
        self._pace: deque[tuple[float, int]] = deque(maxlen=PACE_WINDOW)  # (time, step) of recent metrics events
        self.error: tuple[str, str] | None = None
        self.events_seen = 0
        self._changes = _Changes()

        self.metrics_changed = Signal()
        self.diagnostics_changed = Signal()
        self.snapshot_added = Signal()
        self.snapshots_reset = Signal()
        self.banners_changed = Signal()
        self.rolled_back = Signal()
        self.checkpoints_changed = Signal()
        self.status_changed = Signal()
        self.marker_added = Signal()
        self.log_added = Signal()
        self.error_raised = Signal()
        self.collapse_changed = Signal()

    # ---- reading the run directory ---------------------------------------------------------------------------

    def load_config(self) -> None:
        """Read config.json (if present) for the device, the planned steps and the preset."""
        if self.run_dir is None:
            return
        config = RunConfigView.read(self.run_dir)
        if config is None:
            return
        self.config = config
        self.device = config.device or self.device
        self.max_steps = config.planned_steps or self.max_steps
        self.preset = config.preset
        self.cadence = dict(config.cadence)
        self.compute = config.compute_summary()
        self.status_changed.emit()

    # ---- events ------------------------------------------------------------------------------------------

    def ingest(self, events: Iterable[Event | dict[str, Any]]) -> None:
        """Apply events (typed, or a line's dict) in order; unknown kinds are logged, never fatal (newer trainers may
        add kinds)."""
        self._changes = _Changes()
        count = 0
        for event in events:
            count += 1
            if isinstance(event, dict):
                event = parse_event(event)
            self.events_seen += 1
            self.step = event.step  # events come in order; after a rollback the step goes back
            self.started_time = event.time if self.started_time is None else self.started_time
            self.last_time = event.time
            self._handler(event)(self, event)
        changes = self._changes
        if changes.metrics_seen:
            self.metrics_changed.emit(changes.new_metrics)
        if changes.diagnostics_seen:
            self.diagnostics_changed.emit(changes.new_diagnostics)
        if changes.status_seen or count:
            self.status_changed.emit()

    def _on_metrics(self, event: Metrics) -> None:
        step, when, new = event.step, event.time, self._changes.new_metrics
        self._changes.metrics_seen = self._changes.status_seen = True
        self._pace.append((when, step))
        if _is_number(event.loss) and self.losses.append("total", step, float(event.loss), when):
            new.add("loss/total")
        for term, value in _flat_numbers(event.terms or {}):
            if self.losses.append(term, step, value, when):
                new.add(f"loss/{term}")
        for key in _TRAINING_SERIES:
            for name, number in _flat_numbers({key: getattr(event, key)}):
                if self.training.append(name, step, number, when):
                    new.add(name)
        if event.stage is not None:
            self.stage = int(event.stage)
        if _is_number(event.images_per_s):
            self.images_per_s = float(event.images_per_s)
        if _is_number(event.data_share):
            self.data_share = float(event.data_share)
        if self.state in (RunStatus.IDLE, RunStatus.STARTING):
            self.state = RunStatus.RUNNING

    def _on_diagnostics(self, event: Diagnostics) -> None:
        step, when, new = event.step, event.time, self._changes.new_diagnostics
        self._changes.diagnostics_seen = True
        for value, name in ((event.pred_std_mm, "pred"), (event.gt_std_mm, "gt")):
            if _is_number(value) and self.pred_std.append(name, step, float(value) * 1e-3, when):
                new.add(f"std/{name}")
        for name, value in _flat_numbers(event.attention_entropy or {}):
            if self.attention_entropy.append(name, step, value, when):
                new.add(f"entropy/{name}")
        for name, value in _flat_numbers(event.grad_norm or {}):
            if self.grad_norm.append(name, step, value, when):
                new.add(f"grad/{name}")
            self._flag_gradient(name, value, step)
        by_group: dict[str, float] = {}
        for name, value in _flat_numbers(event.grad_share or {}):
            if self.grad_share.append(name, step, value, when):
                new.add(f"share/{name}")
            by_group[group_of(name)] = by_group.get(group_of(name), 0.0) + value  # shares add up: so do groups'
        for key, _title, _terms in LOSS_GROUPS:
            if key in by_group:
                self.grad_share_groups.append(GROUP_TITLES[key], step, by_group[key], when)
        if "pred" in self.pred_std:
            self._update_collapse(event)

    def _flag_gradient(self, group: str, value: float, step: int) -> None:
        flag = "exploding" if value > GRAD_EXPLODE or not math.isfinite(value) else None
        flag = flag or ("vanishing" if value < GRAD_VANISH else None)
        if flag and self.grad_flags.get(group) != flag:
            self._log(self.last_time or 0.0, "warning", f"gradient norm of '{group}' {flag}: {value:.3g}", step)
        if flag:
            self.grad_flags[group] = flag
        else:
            self.grad_flags.pop(group, None)

    def _update_collapse(self, event: Diagnostics) -> None:
        std = self.pred_std["pred"].last() or 0.0
        if not self.collapsed:
            low = event.collapsed if event.collapsed is not None else std < COLLAPSE_STD_M
            self._collapse_streak = self._collapse_streak + 1 if low else 0
        else:
            self._collapse_streak = self._collapse_streak + 1 if std > COLLAPSE_CLEAR_STD_M else 0
        if self._collapse_streak >= COLLAPSE_READINGS:
            self._collapse_streak = 0
            self.collapsed = not self.collapsed
            level = "warning" if self.collapsed else "info"
            text = "prediction std below 0.01 m: the model is collapsing" if self.collapsed else "prediction std ok"
            self._log(self.last_time or 0.0, level, text, event.step)
            self.collapse_changed.emit(self.collapsed)
            self.banners_changed.emit()

    def _on_validation(self, event: Validation) -> None:
        self._changes.metrics_seen = True
        metrics = event.metrics or {}
        for name, value in _flat_numbers(metrics):
            if self.validation.append(name, event.step, value, event.time):
                self._changes.new_metrics.add(f"val/{name}")
        self._check_learning(metrics)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in _flat_numbers(metrics)[:4])
        self._log(event.time, "info", f"validation: {shown}", event.step)

    def _check_learning(self, metrics: dict[str, Any]) -> None:
        """Clear "not learning" once validations in a row beat the mean-pose reference."""
        error, reference = metrics.get(MPJPE_MM), metrics.get(REF_MEAN_POSE_MPJPE_MM)
        if self.not_learning is None or not (_is_number(error) and _is_number(reference)):
            return
        self._learning_streak = self._learning_streak + 1 if error < reference else 0
        if self._learning_streak >= LEARNING_READINGS:
            self.not_learning = None
            self._learning_streak = 0
            self.banners_changed.emit()

    def _on_stage(self, event: Stage) -> None:
        self._changes.status_seen = True
        self.stage = int(event.stage)
        label = f"stage {self.stage}" + _detail(event.name, event.reason)
        self._add_marker(Marker(step=event.step, kind="stage", label=label, time=event.time))
        self._log(event.time, "info", label, event.step)

    def _on_state(self, event: State) -> None:
        self._changes.status_seen = True
        self.state = RunStatus(event.state)
        self._pace.clear()  # a pause is not training time
        self._log(event.time, "info", f"trainer {self.state}" + _detail(event.reason), event.step)

    def _on_anomaly(self, event: Anomaly) -> None:
        what = event.what + (f": {event.message}" if event.message else "")
        label = what + (f" → {event.action}" if event.action else "")
        self._add_marker(Marker(step=event.step, kind="anomaly", label=label, time=event.time))
        self._log(event.time, "warning", f"anomaly: {label}", event.step)
        if isinstance(event, NotLearning):
            self.not_learning = event.message or "not better than a constant yet"
            self._learning_streak = 0
            self.banners_changed.emit()

    def _on_rollback(self, event: Rollback) -> None:
        """The run continues from `step`: what came after it is an abandoned branch (kept, drawn faded)."""
        self._changes.status_seen = True
        step, from_step = event.step, event.from_step
        self.rollbacks.append((step, int(from_step or step)))
        for group in (
            self.losses,
            self.training,
            self.pred_std,
            self.attention_entropy,
            self.grad_norm,
            self.grad_share,
            self.grad_share_groups,
            self.validation,
        ):
            group.abandon_after(step)
        if self.snapshots.drop_after(step):
            self.snapshots_reset.emit()
        self._pace.clear()
        self.rolled_back.emit(step)
        label = f"rolled back to {event.checkpoint}" + (f" ({event.reason})" if event.reason else "")
        self._add_marker(Marker(step=step, kind="rollback", label=label, time=event.time))
        self._log(event.time, "warning", label + f", from step {'?' if from_step is None else from_step}", step)

    def _on_command(self, event: CommandApplied) -> None:
        arg = f" {event.arg}" if event.arg not in (None, "") else ""
        if event.ok:
            self._log(event.time, "info", f"trainer applied '{event.command}{arg}'", event.step)
        else:
            text = f"trainer refused '{event.command}{arg}': {event.error or ''}"
            self._log(event.time, "warning", text, event.step)

    def _on_error(self, event: Error) -> None:
        self._changes.status_seen = True
        self.error = (event.message, event.traceback)
        self.state = RunStatus.FAILED
        self._log(event.time, "error", f"trainer error: {event.message}", event.step)
        self.error_raised.emit(event.message, event.traceback)

    def _on_snapshot(self, event: Snapshot) -> None:
        path = Path(event.path)
        if not path.is_absolute() and self.run_dir is not None:
            path = self.run_dir / path
        index = self.snapshots.add(event.step, path)
        self.snapshot_added.emit(index)
        self._add_marker(Marker(step=event.step, kind="snapshot", label=path.name, time=event.time))

    def _on_checkpoint(self, event: Checkpoint) -> None:
        step, when, name = event.step, event.time, event.name
        path = Path(event.path or name)
        if not path.is_absolute() and self.run_dir is not None:
            path = self.run_dir / path
        removed = set(event.removed or ()) | {name}  # the trainer prunes old checkpoints
        self.checkpoints = [c for c in self.checkpoints if c.name not in removed]
        self.checkpoints.append(CheckpointInfo(name=name, path=path, step=step, time=when))
        self._add_marker(Marker(step=step, kind="checkpoint", label=name, time=when))
        self._log(when, "info", f"checkpoint {name}" + (f" ({event.reason})" if event.reason else ""), step)
        self.checkpoints_changed.emit()

    def _on_unknown(self, event: Event) -> None:
        kind = event.name if isinstance(event, Unknown) else event.kind
        self._log(event.time, "info", f"event {kind!r} at step {event.step}", event.step)

    @classmethod
    def _handler(cls, event: Event) -> Callable[[RunState, Any], None]:
        """The handler of the event's class, or of the nearest base that has one (every anomaly kind is an
        `Anomaly`)."""
        for base in type(event).__mro__:
            if base in cls._handlers:
                return cls._handlers[base]
        return cls._on_unknown

    _handlers: ClassVar[dict[type[Event], Callable[[RunState, Any], None]]] = {
        Metrics: _on_metrics,
        Diagnostics: _on_diagnostics,
        Validation: _on_validation,
        Snapshot: _on_snapshot,
        Checkpoint: _on_checkpoint,
        Rollback: _on_rollback,
        Stage: _on_stage,
        State: _on_state,
        Anomaly: _on_anomaly,
        CommandApplied: _on_command,
        Error: _on_error,
    }

    # ---- helpers -----------------------------------------------------------------------------------------

    def _add_marker(self, marker: Marker) -> None:
        self.markers.append(marker)
        self.marker_added.emit(marker)

    def _log(self, when: float, level: str, text: str, step: int | None = None) -> None:
        line = LogLine(time=when, level=level, text=text, step=step)
        self.log.append(line)
        self.log_added.emit(line)

    def add_log(self, level: str, text: str) -> None:
        """A line from the studio itself (process output, commands sent)."""
        self._log(time.time(), level, text, None)

    def steps_per_s(self) -> float | None:
        """The recent pace of the live branch (paused time and rolled-back steps left out), or None before two
        metrics events."""
        if len(self._pace) < 2:
            return None
        (t0, s0), (t1, s1) = self._pace[0], self._pace[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def eta_seconds(self) -> float | None:
        """Seconds left at the recent pace (steps/s over the last metrics events of the live branch, paused time and
        rolled-back steps left out), when the planned number of steps is known."""
        pace = self.steps_per_s()
        if self.max_steps is None or pace is None:
            return None
        return max(0.0, (self.max_steps - self.step) / pace)

    @property
    def is_live(self) -> bool:
        """The trainer reports it is running or paused (a command can reach it)."""
        return self.state in LIVE


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _flat_numbers(values: Any, prefix: str = "") -> list[tuple[str, float]]:
    """(name, value) for every number in a nested dict, names joined with '/'."""
    out: list[tuple[str, float]] = []
    if isinstance(values, dict):
        for key, value in values.items():
            out += _flat_numbers(value, f"{prefix}{key}/" if isinstance(value, dict) else f"{prefix}{key}")
    elif _is_number(values):
        out.append((prefix.rstrip("/") or "value", float(values)))
    elif values in ("nan", "inf", "-inf"):  # the trainer writes non-finite floats as strings (strict JSON)
        out.append((prefix.rstrip("/") or "value", float(values)))
    return out


def _detail(*values: Any) -> str:
    parts = [str(v) for v in values if v]
    return f" ({', '.join(parts)})" if parts else ""
