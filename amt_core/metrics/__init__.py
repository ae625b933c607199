"""Evaluation metrics: pure functions over tensors or numpy arrays (metres in, per-sample values out) and
`MetricAccumulator`, which summarises a dataset into the dict `amt-core eval --json` writes (its keys: `keys`).

The names below load their module (and torch) when first used, so `amt_core.metrics.keys` stays torch-free for the
studio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amt_core.metrics.accumulator import MetricAccumulator
    from amt_core.metrics.contact import contact_counts, contact_f1, penetration_depth, precision_recall_f1
    from amt_core.metrics.diagnostics import COLLAPSE_STD_M, attention_entropy, is_collapsed, prediction_std
    from amt_core.metrics.hand import (
        auc,
        auc_0_50,
        joint_errors,
        mpjpe,
        mpvpe,
        pa_joint_errors,
        pa_mpjpe,
        pa_mpvpe,
        pck_curve,
        pck_thresholds,
        procrustes_align,
        reprojection_errors,
    )
    from amt_core.metrics.object import (
        add,
        add_accuracy,
        add_s,
        class_correct,
        rotation_error_deg,
        translation_error,
    )

_MODULE_OF = {
    "MetricAccumulator": "accumulator",
    **dict.fromkeys(("contact_counts", "contact_f1", "penetration_depth", "precision_recall_f1"), "contact"),
    **dict.fromkeys(("COLLAPSE_STD_M", "attention_entropy", "is_collapsed", "prediction_std"), "diagnostics"),
    **dict.fromkeys(
        (
            "auc",
            "auc_0_50",
            "joint_errors",
            "mpjpe",
            "mpvpe",
            "pa_joint_errors",
            "pa_mpjpe",
            "pa_mpvpe",
            "pck_curve",
            "pck_thresholds",
            "procrustes_align",
            "reprojection_errors",
        ),
        "hand",
    ),
    **dict.fromkeys(
        ("add", "add_accuracy", "add_s", "class_correct", "rotation_error_deg", "translation_error"), "object"
    ),
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "COLLAPSE_STD_M",
    "MetricAccumulator",
    "add",
    "add_accuracy",
    "add_s",
    "attention_entropy",
    "auc",
    "auc_0_50",
    "class_correct",
    "contact_counts",
    "contact_f1",
    "is_collapsed",
    "joint_errors",
    "mpjpe",
    "mpvpe",
    "pa_joint_errors",
    "pa_mpjpe",
    "pa_mpvpe",
    "pck_curve",
    "pck_thresholds",
    "penetration_depth",
    "precision_recall_f1",
    "prediction_std",
    "procrustes_align",
    "reprojection_errors",
    "rotation_error_deg",
    "translation_error",
]
