"""The names of the metrics `MetricAccumulator.compute` writes (`amt-core eval --json`, the trainer's validation
events) that other modules read back: one spelling for the trainer, the eval command and the studio. Torch-free."""

from __future__ import annotations

MPJPE_MM = "mpjpe_mm"
"""Mean root-relative 3D joint error, millimetres."""
PA_MPJPE_MM = "pa_mpjpe_mm"
"""The same after Procrustes alignment."""
AUC_0_50 = "auc_0_50"
PA_AUC_0_50 = "pa_auc_0_50"
PCK_20MM = "pck_20mm"
PA_PCK_20MM = "pa_pck_20mm"
REF_MEAN_POSE_MPJPE_MM = "ref_mean_pose_mpjpe_mm"
"""The MPJPE of a constant prediction, the training data's mean root-relative pose: the line to beat."""
REF_MEAN_POSE_PA_MPJPE_MM = "ref_mean_pose_pa_mpjpe_mm"
REF_MEAN_POSE_SOURCE = "ref_mean_pose_source"
"""Where the mean pose came from: "train", or "eval_set" when no training mean was given."""
REF_WRIST_MPJPE_MM = "ref_wrist_mpjpe_mm"
"""The MPJPE with all joints on the wrist."""
SKILL_MPJPE = "skill_mpjpe"
"""1 - MPJPE / the mean pose's MPJPE (0: no better than a constant)."""
