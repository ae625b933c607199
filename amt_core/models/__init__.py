"""Models: the Advanced Manipulation Transformer, its baseline, and the registry (`create_model`, `list_models`)."""

from amt_core.models.amt import AMT, AMTConfig
from amt_core.models.attention import available_backends, record_attention, select_backend
from amt_core.models.backbone import Backbone, load_backbone_weights
from amt_core.models.baseline import Baseline, BaselineConfig
from amt_core.models.registry import (
    ModelConfig,
    apply_overrides,
    create_model,
    list_models,
    model_config,
    model_from_config,
)
from amt_core.schema.output import AMTOutput

__all__ = [
    "AMT",
    "AMTConfig",
    "AMTOutput",
    "Backbone",
    "Baseline",
    "BaselineConfig",
    "ModelConfig",
    "apply_overrides",
    "available_backends",
    "create_model",
    "list_models",
    "load_backbone_weights",
    "model_config",
    "model_from_config",
    "record_attention",
    "select_backend",
]
