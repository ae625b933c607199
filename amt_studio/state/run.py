"""`RunState`: everything the studio knows about one run, built only from its events (the run directory contract).

Feeding the same events always gives the same state, so a live run and a finished run replayed from
`events.jsonl` look identical. UI state (paused, stage) changes only here, i.e. only when the trainer confirms it.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amt_studio.state.series import SeriesGroup
from amt_studio.state.signal import Signal
from amt_studio.state.snapshot import SnapshotTimeline

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
# Gradient norms above / below these (per parameter group) are flagged as exploding / vanishing.
GRAD_EXPLODE = 1e3
GRAD_VANISH = 1e-7
# Metric fields that are bookkeeping, not series.
_META_KEYS = {"v", "kind", "step", "time", "stage", "epoch"}


@dataclass(kw_only=True)
class CheckpointInfo:
    """One checkpoint the trainer reported."""

    name: str
    """The name `rollback` takes (the file or folder name under checkpoints/)."""
    path: Path
    step: int
    time: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(kw_only=True)
class LogLine:
    time: float
    level: str
    """'info', 'warning' or 'error'."""
    text: str
    step: int | None = None


@dataclass(kw_only=True)
class Marker:
    """A point on the run's time axis (a checkpoint, an anomaly or a rollback), drawn on the plots' event lane."""

    step: int
    kind: str
    """'checkpoint', 'anomaly' or 'rollback'."""
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
        self.config: dict[str, Any] = {}
        self.losses = SeriesGroup("loss")
        self.training = SeriesGroup("training")  # lr, images_per_s, memory_mb and other scalar metrics
        self.pred_std = SeriesGroup("prediction std (m)")
        self.attention_entropy = SeriesGroup("attention entropy")
        self.grad_norm = SeriesGroup("gradient norm")
        self.validation = SeriesGroup("validation")
        self.snapshots = SnapshotTimeline()
        self.checkpoints: list[CheckpointInfo] = []
        self.markers: list[Marker] = []
        self.log: list[LogLine] = []
        self.grad_flags: dict[str, str] = {}
        """Parameter groups whose latest gradient norm is 'exploding' or 'vanishing'."""
        self.state = "idle"
        self.stage: int | None = None
        self.step = 0
        self.max_steps: int | None = None
        self.device = ""
        self.preset = ""
        self.images_per_s: float | None = None
        self.data_share: float | None = None  # share of wall time the trainer waited for batches
        self.compute = ""  # precision, attention kernel, compile and checkpointing, from config.json
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
        path = self.run_dir / "config.json"
        try:
            self.config = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        self.device = str(self.config.get("device") or _find_key(self.config, ("device",)) or self.device)
        run_config = self.config.get("config", self.config)
        trainer = run_config.get("trainer", {}) if isinstance(run_config.get("trainer"), dict) else {}
        lengths = self.config.get("stage_lengths") or [
            s.get("steps", 0) for s in run_config.get("stages", []) if isinstance(s, dict)
        ]
        planned = trainer.get("max_steps") or (sum(lengths) if lengths and all(lengths) else 0)
        if isinstance(planned, int | float) and planned > 0:
            self.max_steps = int(planned)
        self.preset = str(run_config.get("preset", ""))
        self.compute = _compute_summary(trainer, self.config.get("acceleration"))
        self.status_changed.emit()

    # ---- events ------------------------------------------------------------------------------------------

    def ingest(self, events: list[dict[str, Any]]) -> None:
        """Apply events in order; unknown kinds are logged, never fatal (newer trainers may add kinds)."""
        new_metrics: set[str] = set()
        new_diag: set[str] = set()
        metrics_seen = diag_seen = status_seen = False
        for event in events:
            self.events_seen += 1
            kind = event.get("kind")
            step = int(event.get("step", self.step) or 0)
            when = float(event.get("time", time.time()) or 0.0)
            self.step = step  # events come in order; after a rollback the step goes back
            self.started_time = when if self.started_time is None else self.started_time
            self.last_time = when
            if kind == "metrics":
                new_metrics |= self._on_metrics(event, step, when)
                metrics_seen = status_seen = True
            elif kind == "diagnostics":
                new_diag |= self._on_diagnostics(event, step, when)
                diag_seen = True
            elif kind == "snapshot":
                self._on_snapshot(event, step)
            elif kind == "checkpoint":
                self._on_checkpoint(event, step, when)
            elif kind == "stage":
                self.stage = int(event.get("stage", self.stage or 1))
                self._log(when, "info", f"stage {self.stage}" + _detail(event, ("name", "reason")), step)
                status_seen = True
            elif kind == "state":
                self.state = str(event.get("state", self.state))
                self._pace.clear()  # a pause is not training time
                self.device = str(event.get("device", self.device) or self.device)
                if "max_steps" in event and event["max_steps"]:
                    self.max_steps = int(event["max_steps"])
                self._log(when, "info", f"trainer {self.state}" + _detail(event, ("reason",)), step)
                status_seen = True
            elif kind == "anomaly":
                what = str(event.get("what", event.get("anomaly", "anomaly")))
                action = event.get("action")
                if event.get("message"):
                    what += f": {event['message']}"
                label = what + (f" → {action}" if action else "")
                self._add_marker(Marker(step=step, kind="anomaly", label=label, time=when))
                self._log(when, "warning", f"anomaly: {label}", step)
                if event.get("what") == "not_learning":
                    self.not_learning = str(event.get("message") or "not better than a constant yet")
                    self._learning_streak = 0
                    self.banners_changed.emit()
            elif kind == "rollback":
                target = str(event.get("checkpoint", "?"))
                label = f"rolled back to {target}" + (f" ({event['reason']})" if event.get("reason") else "")
                self._on_rollback(step, int(event.get("from_step", step) or step))
                self._add_marker(Marker(step=step, kind="rollback", label=label, time=when))
                self._log(when, "warning", label + f", from step {event.get('from_step', '?')}", step)
                status_seen = True
            elif kind == "command":
                arg = f" {event['arg']}" if event.get("arg") not in (None, "") else ""
                ok = event.get("ok", True)
                text = (
                    f"trainer applied '{event.get('command')}{arg}'"
                    if ok
                    else (f"trainer refused '{event.get('command')}{arg}': {event.get('error', '')}")
                )
                self._log(when, "info" if ok else "warning", text, step)
            elif kind == "validation":
                metrics = event.get("metrics", {}) or {}
                for name, value in _flat_numbers(metrics):
                    if self.validation.append(name, step, value, when):
                        new_metrics.add(f"val/{name}")
                self._on_validation(metrics)
                shown = ", ".join(f"{k} {v:.4g}" for k, v in _flat_numbers(metrics)[:4])
                self._log(when, "info", f"validation: {shown}", step)
                metrics_seen = True
            elif kind == "error":
                message = str(event.get("message", "trainer error"))
                trace = str(event.get("traceback", ""))
                self.error = (message, trace)
                self.state = "failed"
                self._log(when, "error", f"trainer error: {message}", step)
                self.error_raised.emit(message, trace)
                status_seen = True
            else:
                self._log(when, "info", f"event {kind!r} at step {step}", step)
        if metrics_seen:
            self.metrics_changed.emit(new_metrics)
        if diag_seen:
            self.diagnostics_changed.emit(new_diag)
        if status_seen or events:
            self.status_changed.emit()

    def _on_metrics(self, event: dict[str, Any], step: int, when: float) -> set[str]:
        new: set[str] = set()
        self._pace.append((when, step))
        losses = event.get("terms", event.get("losses"))
        total = event.get("loss")
        if _is_number(total) and self.losses.append("total", step, float(total), when):
            new.add("loss/total")
        if isinstance(losses, dict):
            for term, value in _flat_numbers(losses):
                if self.losses.append(term, step, value, when):
                    new.add(f"loss/{term}")
        for key, value in event.items():
            if key in _META_KEYS or key in ("losses", "loss", "terms"):
                continue
            if key == "memory_bytes" and _is_number(value):
                key, value = "memory_mb", float(value) / 2**20
            for name, number in _flat_numbers({key: value}):
                if self.training.append(name, step, number, when):
                    new.add(name)
        if "stage" in event and event["stage"] is not None:
            self.stage = int(event["stage"])
        ips = event.get("images_per_s")
        if _is_number(ips):
            self.images_per_s = float(ips)
        share = event.get("data_share")
        if _is_number(share):
            self.data_share = float(share)
        if self.state in ("idle", "starting"):
            self.state = "running"
        return new

    def _on_diagnostics(self, event: dict[str, Any], step: int, when: float) -> set[str]:
        new: set[str] = set()
        for key, scale, name in (("pred_std_mm", 1e-3, "pred"), ("pred_std", 1.0, "pred"),
                                 ("gt_std_mm", 1e-3, "gt"), ("gt_std", 1.0, "gt")):  # fmt: skip
            value = event.get(key)
            if _is_number(value) and self.pred_std.append(name, step, float(value) * scale, when):
                new.add(f"std/{name}")
        for name, value in _flat_numbers(event.get("attention_entropy", {}) or {}):
            if self.attention_entropy.append(name, step, value, when):
                new.add(f"entropy/{name}")
        for name, value in _flat_numbers(event.get("grad_norm", {}) or {}):
            if self.grad_norm.append(name, step, value, when):
                new.add(f"grad/{name}")
            flag = "exploding" if value > GRAD_EXPLODE or not math.isfinite(value) else None
            flag = flag or ("vanishing" if value < GRAD_VANISH else None)
            if flag and self.grad_flags.get(name) != flag:
                self._log(self.last_time or 0.0, "warning", f"gradient norm of '{name}' {flag}: {value:.3g}", step)
            if flag:
                self.grad_flags[name] = flag
            else:
                self.grad_flags.pop(name, None)
        if "pred" in self.pred_std:
            std = self.pred_std["pred"].last() or 0.0
            if not self.collapsed:
                low = bool(event.get("collapsed", std < COLLAPSE_STD_M))
                self._collapse_streak = self._collapse_streak + 1 if low else 0
            else:
                self._collapse_streak = self._collapse_streak + 1 if std > COLLAPSE_CLEAR_STD_M else 0
            if self._collapse_streak >= COLLAPSE_READINGS:
                self._collapse_streak = 0
                self.collapsed = not self.collapsed
                level = "warning" if self.collapsed else "info"
                text = "prediction std below 0.01 m: the model is collapsing" if self.collapsed else "prediction std ok"
                self._log(self.last_time or 0.0, level, text, step)
                self.collapse_changed.emit(self.collapsed)
                self.banners_changed.emit()
        return new

    def _on_validation(self, metrics: dict[str, Any]) -> None:
        """Clear "not learning" once validations in a row beat the mean-pose reference."""
        error, reference = metrics.get("mpjpe_mm"), metrics.get("ref_mean_pose_mpjpe_mm")
        if self.not_learning is None or not (_is_number(error) and _is_number(reference)):
            return
        self._learning_streak = self._learning_streak + 1 if error < reference else 0
        if self._learning_streak >= LEARNING_READINGS:
            self.not_learning = None
            self._learning_streak = 0
            self.banners_changed.emit()

    def _on_rollback(self, step: int, from_step: int) -> None:
        """The run continues from `step`: what came after it is an abandoned branch (kept, drawn faded)."""
        self.rollbacks.append((step, from_step))
        for group in (self.losses, self.training, self.pred_std, self.attention_entropy, self.grad_norm,
                      self.validation):  # fmt: skip
            group.abandon_after(step)
        if self.snapshots.drop_after(step):
            self.snapshots_reset.emit()
        self._pace.clear()
        self.rolled_back.emit(step)

    def _on_snapshot(self, event: dict[str, Any], step: int) -> None:
        rel = event.get("path", event.get("file"))
        if not rel:
            return
        path = Path(rel)
        if not path.is_absolute() and self.run_dir is not None:
            path = self.run_dir / path
        index = self.snapshots.add(step, path)
        self.snapshot_added.emit(index)

    def _on_checkpoint(self, event: dict[str, Any], step: int, when: float) -> None:
        rel = event.get("path", event.get("name", f"step_{step}"))
        path = Path(str(rel))
        if not path.is_absolute() and self.run_dir is not None:
            path = self.run_dir / path
        name = str(event.get("name") or path.name)
        metrics = {k: float(v) for k, v in (event.get("metrics") or {}).items() if _is_number(v)}
        removed = set(event.get("removed") or ()) | {name}  # the trainer prunes old checkpoints
        self.checkpoints = [c for c in self.checkpoints if c.name not in removed]
        self.checkpoints.append(CheckpointInfo(name=name, path=path, step=step, time=when, metrics=metrics))
        reason = event.get("reason")
        self._add_marker(Marker(step=step, kind="checkpoint", label=name, time=when))
        self._log(when, "info", f"checkpoint {name}" + (f" ({reason})" if reason else ""), step)
        self.checkpoints_changed.emit()

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

    def eta_seconds(self) -> float | None:
        """Seconds left at the recent pace (steps/s over the last metrics events of the live branch, paused time and
        rolled-back steps left out), when the planned number of steps is known."""
        if self.max_steps is None or len(self._pace) < 2:
            return None
        (t0, s0), (t1, s1) = self._pace[0], self._pace[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return max(0.0, (self.max_steps - self.step) * (t1 - t0) / (s1 - s0))

    @property
    def is_live(self) -> bool:
        """The trainer reports it is running or paused (a command can reach it)."""
        return self.state in ("running", "paused", "starting")


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


def _find_key(tree: Any, names: tuple[str, ...]) -> Any:
    """The first value under any of `names` in a nested dict (depth first), else None."""
    if isinstance(tree, dict):
        for name in names:
            if name in tree and not isinstance(tree[name], dict):
                return tree[name]
        for value in tree.values():
            found = _find_key(value, names)
            if found is not None:
                return found
    return None


def _detail(event: dict[str, Any], keys: tuple[str, ...]) -> str:
    parts = [str(event[k]) for k in keys if event.get(k)]
    return f" ({', '.join(parts)})" if parts else ""


def _compute_summary(trainer: dict, acceleration: Any) -> str:
    """'bf16 · attn sdpa_flash · compiled · ckpt selective': how the run computes, for the status bar."""
    parts = [str(trainer["precision"])] if trainer.get("precision") else []
    if isinstance(acceleration, dict):
        attention = acceleration.get("attention") or {}
        if isinstance(attention, dict) and attention.get("backend"):
            parts.append(f"attn {attention['backend']}")
        if acceleration.get("compiled"):
            parts.append("compiled")
        checkpointing = acceleration.get("checkpointing") or {}
        if isinstance(checkpointing, dict) and checkpointing.get("blocks"):
            parts.append(f"ckpt {checkpointing.get('policy')}")
        fp8 = acceleration.get("fp8")
        if isinstance(fp8, dict) and fp8.get("converted") is not None:
            parts.append(f"fp8 {len(fp8['converted'])} layers")
    return " · ".join(parts)
