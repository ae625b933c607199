"""The run config: every setting of a training run, typed to the leaves, and its JSON form (`config.json`, every
checkpoint's `config.json`). `amt_core.presets` builds these; a checkpoint's model is rebuilt from its `model`.

Format 2 (this one) stores the resolved model configuration and loss configuration. Format 1 (runs and checkpoints
written before it; no `format` key) stored `"model": {"name": ..., "overrides": {...}}`, the loss as a dict of
overrides, and the trainer's FP8 settings and older checkpointing switch flat; `config_from_dict` converts it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from amt_core import config_tree
from amt_core.errors import UserError
from amt_core.losses.amt_loss import AMTLoss
from amt_core.models.registry import SCRATCH_SIZES, ModelConfig, model_config, model_config_from_dict, model_kind
from amt_core.train.mixup import MixUpConfig
from amt_core.train.optim import OptimConfig
from amt_core.train.stability import StabilityConfig
from amt_core.train.stages import StageConfig
from amt_core.train.trainer_config import TrainerConfig

FORMAT = 2
"""The version of `RunConfig.to_dict()`'s layout (format 1 had no version key)."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    preset: str
    """The preset this config started from."""
    model_name: str
    """The registered variant `model` was resolved from (`amt_cpu`): a label for logs, reports and the studio. The
    model is built from `model`, never from this name."""
    model: ModelConfig
    """The resolved model configuration (`--set model.refine.steps=4`)."""
    data: str
    """Training data spec (`synth:live?seed=S&size=PX&num=N`, `synth:DIR`, ...)."""
    val_data: str
    """Held-out data for validation and the snapshot samples."""
    batch_size: int
    """Global batch (split over DDP processes)."""
    loss: AMTLoss.Config = field(default_factory=AMTLoss.Config)
    """The loss configuration (`--set loss.weights.diversity=0`)."""
    stages: tuple[StageConfig, ...]
    mixup: MixUpConfig = field(default_factory=MixUpConfig)
    """Batch MixUp of images (the loss weights both samples' targets)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"RunConfig.batch_size must be >= 1 (got {self.batch_size})")
        if not 1 <= len(self.stages) <= 3:
            raise ValueError(f"RunConfig.stages must hold 1 to 3 stages (got {len(self.stages)})")
        object.__setattr__(self, "stages", tuple(self.stages))  # frozen: a list from JSON becomes a tuple, once

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (format 2): every field, with the model's kind beside it so it can be rebuilt."""
        return {"format": FORMAT, **dataclasses.asdict(self), "model_kind": model_kind(self.model)}


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from `to_dict()` output (config.json, a checkpoint's config); format 1 is converted.

    Raises:
        UserError: an unknown key, a missing field, or a value the configs' checks refuse.
    """
    if not isinstance(data, dict):
        raise UserError(f"the run config is a {type(data).__name__}, not an object")
    data = dict(data)
    if "model" not in data:  # without it a default model would be built and the weights blamed for not fitting
        raise UserError("the run config has no 'model' section")
    version = data.pop("format", 1)
    if version == 1:
        data = _from_format_1(data)
    elif version != FORMAT:
        raise UserError(f"run config format {version} is newer than this amt-core reads ({FORMAT}); update amt-core")
    kind = data.pop("model_kind", None)
    if not isinstance(data.get("model"), ModelConfig):
        data["model"] = model_config_from_dict(str(kind), data.get("model") or {})
    return config_tree.build(RunConfig, data, "config")


def _from_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """A format-1 config in format 2's shape: the model resolved through the registry as format 1 always did (its
    name plus overrides over the registry's defaults of today, except the trunk of the scratch sizes: format 1 was
    written while `micro` and `cpu` ran the scratch ViT, which they keep), the loss overrides over the loss defaults,
    the trainer's `fp8_*` fields as its `fp8` section, and the older checkpointing switches as `checkpointing=full`."""
    spec = dict(data.pop("model"))
    overrides = dict(spec.get("overrides") or {})
    if spec["name"].startswith(("amt_", "baseline_")) and spec["name"].endswith(SCRATCH_SIZES):
        overrides.setdefault("backbone.variant", "scratch")
    trainer = dict(data.get("trainer") or {})
    older_switches = [trainer.pop("grad_checkpointing", False), overrides.pop("backbone.grad_checkpointing", False)]
    if any(older_switches) and trainer.get("checkpointing", "none") == "none":
        trainer["checkpointing"] = "full"
    names = [name for name in ("fp8_backend", "fp8_recipe", "fp8_min_dim") if name in trainer]
    fp8 = {name.removeprefix("fp8_"): trainer.pop(name) for name in names}
    if fp8:
        trainer["fp8"] = fp8
    return {
        **data,
        "model_name": spec["name"],
        "model": model_config(spec["name"], **overrides),
        "loss": AMTLoss.Config.from_dict(data.get("loss") or {}),
        "trainer": trainer,
    }


def with_model(config: RunConfig, name: str) -> RunConfig:
    """`config` training the registered model `name`, resolved from the registry's defaults."""
    return dataclasses.replace(config, model_name=name, model=model_config(name))
