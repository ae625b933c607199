"""Models: the Advanced Manipulation Transformer, its baseline, and the registry (`create_model`, `list_models`)."""

from amt_core.models.output import AMTOutput

__all__ = ["AMTOutput"]
