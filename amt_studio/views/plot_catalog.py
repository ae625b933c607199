"""What the training plots show, Qt-free: the plots in their order, the series of a run each one draws (with its
scale), the smoothing they apply, and why an empty plot is empty. The plot grid, the hover read-out and the CSV export
all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amt_core.metrics.keys import MPJPE_MM, REF_MEAN_POSE_MPJPE_MM, REF_MEAN_POSE_PA_MPJPE_MM, REF_WRIST_MPJPE_MM
from amt_studio.state.loss_groups import LOSS_GROUPS, group_of
from amt_studio.state.run import RunState
from amt_studio.state.series import Series


@dataclass(frozen=True)
class PlotSpec:
    key: str
    title: str
    log: bool = False
    """Log y by default (and under the "log y" switch)."""


LOSS_KEYS = tuple(f"loss_{key}" for key, _title, _terms in LOSS_GROUPS)
PLOT_SPECS: tuple[PlotSpec, ...] = (
    PlotSpec("loss_total", "loss: total", True),
    PlotSpec("val", "validation MPJPE (mm)"),
    PlotSpec("std", "prediction std (mm)"),
    *(PlotSpec(f"loss_{key}", f"loss: {title}", True) for key, title, _terms in LOSS_GROUPS[1:]),
    PlotSpec("grad", "gradient norm by group", True),
    PlotSpec("share", "gradient share at the trunk, by loss group"),
    PlotSpec("entropy", "attention entropy by layer (blue ▸ yellow)"),
    PlotSpec("lr", "learning rate", True),
    PlotSpec("speed", "images / s"),
    PlotSpec("memory", "memory (MB)"),
)
PLOT_KEYS = tuple(spec.key for spec in PLOT_SPECS)
FAMILIES = {"loss": LOSS_KEYS}
"""Names that stand for several plots: 'loss' is every loss group's plot."""
METRIC_PLOTS = (*LOSS_KEYS, "val", "lr", "speed", "memory")
DIAGNOSTIC_PLOTS = ("std", "entropy", "grad", "share")
REFERENCE_LABELS = {
    REF_MEAN_POSE_MPJPE_MM: "mean-pose reference",
    REF_MEAN_POSE_PA_MPJPE_MM: "mean-pose reference (PA)",
    REF_WRIST_MPJPE_MM: "wrist-only reference",
}


def smooth(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average debiased for its zero start; NaNs are skipped."""
    if weight <= 0.0 or len(y) < 2:
        return y
    from scipy.signal import lfilter

    out = np.full_like(y, np.nan)
    finite = np.isfinite(y)
    values = y[finite]
    if len(values):
        ema = lfilter([1.0 - weight], [1.0, -weight], values)
        out[finite] = ema / (1.0 - weight ** np.arange(1, len(values) + 1))
    return out


def plot_keys(key: str) -> tuple[str, ...]:
    """The plots a key names: itself, or every plot of a family ('loss')."""
    return FAMILIES.get(key, (key,))


def plot_series(state: RunState, key: str) -> dict[str, tuple[Series, float]]:
    """The series a plot (or a family of plots) shows for one run, by display name, with the scale applied."""
    if key in FAMILIES:
        return {name: item for member in FAMILIES[key] for name, item in plot_series(state, member).items()}
    if key in LOSS_KEYS:
        return {name: (s, 1.0) for name, s in state.losses.series.items() if f"loss_{group_of(name)}" == key}
    if key == "val":
        return {
            REFERENCE_LABELS.get(name, name): (s, 1.0)
            for name, s in state.validation.series.items()
            if name.endswith(MPJPE_MM)  # mpjpe_mm, pa_mpjpe_mm and the references
        }
    if key == "std":
        return {name: (s, 1000.0) for name, s in state.pred_std.series.items()}  # metres in the state, mm here
    if key == "entropy":
        names = list(state.attention_entropy.series)
        shorts = [_short(name) for name in names]
        return {
            (short if shorts.count(short) == 1 else name): (state.attention_entropy[name], 1.0)
            for name, short in zip(names, shorts)
        }
    if key == "grad":
        return {name: (s, 1.0) for name, s in state.grad_norm.series.items()}
    if key == "share":  # by loss group: sums to 1 at each step, a group fighting the others is below 0
        return {name: (s, 1.0) for name, s in state.grad_share_groups.series.items()}
    prefixes = {"lr": ("lr",), "speed": ("images_per_s",), "memory": ("memory", "memory_mb")}[key]
    return {name: (s, 1.0) for name, s in state.training.series.items() if name.split("/")[0] in prefixes}


def _minutes(seconds: float) -> str:
    return f"about {max(seconds, 1.0):.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


def _next_due(step: int, every: int, first: int = 0) -> int:
    """The first step after `step` at which a periodic event (every `every`, one early at `first`) is due."""
    candidates = [(step // every + 1) * every] if every > 0 else []
    if first > step:
        candidates.append(first)
    return min(candidates)


def empty_reason(state: RunState | None, key: str) -> str:
    """Why a plot has no point yet and when its first is due, in words for the plot's empty area."""
    if state is None:
        return "no run"
    cadence, step, pace = state.cadence, state.step, state.steps_per_s()

    def due(what: str, every_key: str, first_key: str | None = None) -> str:
        every, first = cadence.get(every_key), cadence.get(first_key, 0) if first_key else 0
        if every is None:
            return f"waiting for the first {what}"
        if every == 0 and not first:
            return f"{what} is off in this run (trainer.{every_key}=0)"
        at = _next_due(step, every, first)
        when = f" ({_minutes((at - step) / pace)} at the current pace)" if pace and state.is_live else ""
        return f"first {what} at step {at}{when}"

    has_metrics = bool(state.losses.series)
    has_diagnostics = bool(state.pred_std.series or state.grad_norm.series or state.attention_entropy.series)
    if key == "val":
        return due("validation", "eval_every", "eval_first")
    if key in LOSS_KEYS or key in ("lr", "speed", "memory"):
        if not has_metrics:
            return due("losses", "log_every")
        if key in LOSS_KEYS:
            title = next(t for k, t, _ in LOSS_GROUPS if f"loss_{k}" == key)
            return f"this run's loss has no {title} terms"
        return "this trainer does not report it"
    if not has_diagnostics:
        return due("diagnostics", "diag_every")
    if key == "entropy":
        return "no attention layers recorded: this model's trunk is convolutional (or attention recording is off)"
    if key == "share":
        return "this run's trainer records no gradient shares (older than the diagnostic)"
    return "this trainer does not report it"


def _short(layer: str) -> str:
    """A layer name short enough for the series list: its last two dotted parts (`blocks.3`, `0.cross_attn`)."""
    return ".".join(layer.split(".")[-2:])
