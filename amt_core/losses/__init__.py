"""Loss terms of the Advanced Manipulation Transformer: `AMTLoss` combines them, masked by `valid` and weighted
by a `LossSchedule`; the per-sample term functions live in `terms`.
"""

from amt_core.losses.adaptive import AdaptiveConfig, AdaptiveMPJPELoss
from amt_core.losses.amt_loss import DEFAULT_WEIGHTS, GROUPS, TERM_GROUPS, AMTLoss, LossResult
from amt_core.losses.kinds import ContactLoss, PhysicsPose
from amt_core.losses.mix import MixInfo
from amt_core.losses.schedule import LossSchedule, Ramp
from amt_core.objects.tables import ObjectTables

__all__ = [
    "AMTLoss",
    "AdaptiveConfig",
    "AdaptiveMPJPELoss",
    "ContactLoss",
    "DEFAULT_WEIGHTS",
    "GROUPS",
    "LossResult",
    "LossSchedule",
    "MixInfo",
    "ObjectTables",
    "PhysicsPose",
    "Ramp",
    "TERM_GROUPS",
]
