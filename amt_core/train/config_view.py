"""A torch-free, read-only view of a run's `config.json`: what a reader outside the trainer (the studio, the start
page) needs to know about a run, typed, without building the `RunConfig` (which needs the model registry and torch).

It reads what the trainer writes (`checkpointer.run_info`: the run config under "config", the device it ran on, the
stage lengths and the acceleration report) and also a bare `RunConfig.to_dict()`, of either format. Every field is
optional: a config.json from an older trainer, or a partial one, gives what it has and defaults for the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from amt_core.train.kinds import AttentionKernel, Precision

CONFIG_FILE = "config.json"

CADENCES: tuple[str, ...] = ("log_every", "diag_every", "eval_every", "eval_first", "snapshot_every", "ckpt_every")
"""The trainer's event cadences (steps), `TrainerConfig`'s field names."""

_Kind = TypeVar("_Kind", bound=StrEnum)


@dataclass(frozen=True, kw_only=True)
class RunConfigView:
    """What a run's config.json says, typed; fields it does not hold are empty (None, "", 0 or ())."""

    preset: str = ""
    model_name: str = ""
    """The registered variant the model was resolved from (`amt_cpu`)."""
    device: str = ""
    """The device the run ran on (`cuda:0`), else the configured one (`auto`, `cpu`, `cuda`)."""
    precision: Precision | None = None
    attention: AttentionKernel | None = None
    """The configured attention mode (`auto` included); `attention_backend` is the kernel it resolved to."""
    batch_size: int | None = None
    max_steps: int = 0
    """`trainer.max_steps` (0: until the last stage ends)."""
    stage_names: tuple[str, ...] = ()
    stage_lengths: tuple[int, ...] = ()
    """Steps of each stage: as the trainer resolved them, else as configured (0: a stage without a step count)."""
    cadence: dict[str, int] = field(default_factory=dict)
    """{name in CADENCES: steps} for the cadences the config holds."""
    attention_backend: str | None = None
    compiled: bool = False
    """Some modules were compiled with torch.compile."""
    checkpointing: str | None = None
    """The activation checkpointing policy, when it checkpointed some blocks."""
    fp8_layers: int | None = None
    """Linear layers converted to FP8 (None: no FP8 conversion)."""

    @property
    def planned_steps(self) -> int | None:
        """The steps the run plans in all (max_steps, else the stages' sum when each has a count), or None."""
        if self.max_steps > 0:
            return self.max_steps
        lengths = self.stage_lengths
        return sum(lengths) if lengths and all(lengths) and sum(lengths) > 0 else None

    def compute_summary(self) -> str:
        """'bf16 · attn sdpa_flash · compiled · ckpt selective · fp8 2 layers': how the run computes."""
        parts = [str(self.precision)] if self.precision else []
        if self.attention_backend:
            parts.append(f"attn {self.attention_backend}")
        if self.compiled:
            parts.append("compiled")
        if self.checkpointing is not None:
            parts.append(f"ckpt {self.checkpointing}")
        if self.fp8_layers is not None:
            parts.append(f"fp8 {self.fp8_layers} layers")
        return " · ".join(parts)

    @classmethod
    def from_dict(cls, data: Any) -> RunConfigView:
        """The view of config.json's object (the trainer's run info, or a bare run config)."""
        top = _mapping(data)
        run = _mapping(top.get("config", top))
        trainer = _mapping(run.get("trainer"))
        stages = [_mapping(s) for s in run.get("stages") or () if isinstance(s, dict)]
        lengths = top.get("stage_lengths")
        if not (isinstance(lengths, list) and all(_int(n) is not None for n in lengths)) or not lengths:
            lengths = [_int(s.get("steps")) or 0 for s in stages]
        model = run.get("model")
        model_name = run.get("model_name") or (model.get("name") if isinstance(model, dict) else None)  # format 1
        acceleration = _mapping(top.get("acceleration"))
        checkpointing = _mapping(acceleration.get("checkpointing"))
        fp8 = _mapping(acceleration.get("fp8"))
        converted = fp8.get("converted")
        return cls(
            preset=str(run.get("preset") or ""),
            model_name=str(model_name or ""),
            device=str(top.get("device") or trainer.get("device") or ""),
            precision=_member(Precision, trainer.get("precision")),
            attention=_member(AttentionKernel, trainer.get("attention")),
            batch_size=_int(run.get("batch_size")),
            max_steps=max(0, _int(trainer.get("max_steps")) or 0),
            stage_names=tuple(str(s.get("name") or "") for s in stages),
            stage_lengths=tuple(int(n) for n in lengths),
            cadence={k: int(v) for k in CADENCES if (v := _int(trainer.get(k))) is not None},
            attention_backend=str(_mapping(acceleration.get("attention")).get("backend") or "") or None,
            compiled=bool(acceleration.get("compiled")),
            checkpointing=str(checkpointing.get("policy")) if checkpointing.get("blocks") else None,
            fp8_layers=len(converted) if isinstance(converted, list) else None,
        )

    @classmethod
    def read(cls, run_dir: str | Path) -> RunConfigView | None:
        """The view of `run_dir/config.json`, or None when it is missing or not JSON."""
        try:
            return cls.from_dict(json.loads((Path(run_dir) / CONFIG_FILE).read_text()))
        except (OSError, ValueError):
            return None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    """A JSON number as an int (None for anything else, booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _member(kind: type[_Kind], value: Any) -> _Kind | None:
    """`value` as a member of `kind`, or None (absent, or a name from a newer trainer)."""
    try:
        return kind(value)
    except ValueError:
        return None
