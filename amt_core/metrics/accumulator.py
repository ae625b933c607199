"""`MetricAccumulator`: evaluation over a dataset, fed (AMTOutput, batch) pairs, summarised as one flat dict.

The dict is what `amt-core eval --json` writes. Keys carry their unit (`_mm`, `_deg`, `_px`) or are fractions in
[0, 1]; a metric is present only when some sample had what it needs (see `MetricAccumulator.compute`).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch

from amt_core.metrics import keys
from amt_core.metrics.contact import contact_counts, penetration_depth, precision_recall_f1
from amt_core.metrics.diagnostics import COLLAPSE_STD_M, attention_entropy
from amt_core.metrics.hand import (
    as_float64,
    auc,
    joint_errors,
    mpvpe,
    pa_joint_errors,
    pa_mpvpe,
    pck_curve,
    pck_thresholds,
    reprojection_errors,
    root_relative,
)
from amt_core.metrics.object import add, add_s, class_correct, rotation_error_deg, translation_error
from amt_core.objects.tables import ObjectTables, symmetric_rotation_error
from amt_core.schema.output import AMTOutput

MM = 1000.0  # metres -> millimetres, for reports only
# Summary keys that are the mean of one kept list: key -> (the list, the scale to report units).
_MEANS: dict[str, tuple[str, float]] = {
    "reprojection_px": ("reprojection_px", 1.0),
    "mpvpe_mm": ("mpvpe", MM),
    "pa_mpvpe_mm": ("pa_mpvpe", MM),
    "add_mm": ("add", MM),
    "add_s_mm": ("add_s", MM),
    "add_10_acc": ("add_10", 1.0),
    "rot_err_deg": ("rot_err_deg", 1.0),
    "rot_err_sym_deg": ("rot_err_sym_deg", 1.0),
    "trans_err_mm": ("trans_err", MM),
    "obj_class_acc": ("class_correct", 1.0),
    "penetration_max_mm": ("penetration_max", MM),
    "penetration_mean_mm": ("penetration_mean", MM),
}


class _Moments:
    """Running count, sum and sum of squares of (K,) vectors, for a std over a whole dataset."""

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None

    def add(self, values: torch.Tensor) -> None:
        """values: (N, K) float64."""
        if values.shape[0] == 0:
            return
        total, squares = values.sum(dim=0), values.square().sum(dim=0)
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += values.shape[0]

    def mean_std(self) -> float | None:
        """Mean over the K components of the unbiased std over samples, or None below 2 samples."""
        if self.count < 2:
            return None
        mean = self.total / self.count
        var = (self.squares - self.count * mean.square()).clamp(min=0) / (self.count - 1)
        return float(var.sqrt().mean())


class MetricAccumulator:
    """Collects per-sample metrics batch by batch; `compute()` summarises them.

    Alignment conventions: `mpjpe_mm` is root-relative at the wrist (joint 0) over all 21 joints; `pa_mpjpe_mm`
    after a similarity Procrustes alignment; `mpvpe_mm` relative to each mesh's own wrist joint (the prediction's
    `joints3d[:, 0]`, the ground truth's), so it needs ground-truth joints too; `pa_mpvpe_mm` after Procrustes.
    Object metrics use the ground-truth class's model points; penetration is measured between the predicted hand
    mesh and the object at its predicted pose (as the model would present the scene).
    """

    def __init__(
        self,
        objects: ObjectTables | None = None,
        num_model_points: int = 1000,
        reference_pose: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Args:
        objects: object tables (model points, symmetries, diameters, SDFs); None builds them from the catalog the
            first time a batch has a supervised object.
        num_model_points: model points per class when building the tables here.
        reference_pose: (21, 3) metres, the training data's mean root-relative pose, scored as a constant
            prediction on the same samples (`ref_mean_pose_*`). None: the evaluated samples' own mean pose is used
            (an oracle reference, a little lower), and `ref_mean_pose_source` says so.
        """
        self._objects = objects
        self._num_model_points = num_model_points
        self._reference = None if reference_pose is None else root_relative(as_float64(reference_pose).cpu()[None])[0]
        self.reset()

    def reset(self) -> None:
        """Forget everything seen."""
        self.num_samples = 0
        self._lists: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._pred_moments = _Moments()
        self._gt_moments = _Moments()
        self._contact = torch.zeros(3, dtype=torch.float64)  # tp, fp, fn summed over samples
        self._contact_samples = 0
        self._entropy: dict[str, list[float]] = defaultdict(list)

    def _tables(self) -> ObjectTables:
        if self._objects is None:
            self._objects = ObjectTables.from_catalog(self._num_model_points)
        return self._objects

    def _keep(self, name: str, values: torch.Tensor) -> None:
        self._lists[name].append(values.detach().to("cpu", torch.float64))

    @torch.no_grad()
    def update(self, output: AMTOutput, batch: dict) -> None:
        """Add one batch: the model's output and the collated Samples it was computed from."""
        out = output.detach()
        valid = {name: flag.to("cpu").bool() for name, flag in batch["valid"].items()}
        cpu = {name: value.to("cpu") for name, value in batch.items() if isinstance(value, torch.Tensor)}
        batch_size = out.joints3d.shape[0]
        self.num_samples += batch_size

        pred_joints = as_float64(out.joints3d).cpu()  # (B, 21, 3) metres
        self._pred_moments.add(root_relative(pred_joints).reshape(batch_size, -1))
        v = valid["joints3d"]
        if v.any():
            gt_joints = as_float64(cpu["joints3d"])
            self._gt_moments.add(root_relative(gt_joints[v]).reshape(int(v.sum()), -1))
            self._keep("joint_errors", joint_errors(pred_joints[v], gt_joints[v]))
            self._keep("pa_joint_errors", pa_joint_errors(pred_joints[v], gt_joints[v]))
            self._keep("gt_relative", root_relative(gt_joints[v]))
        v = valid["joints2d"]
        if v.any():
            self._keep("reprojection_px", reprojection_errors(out.joints2d.cpu()[v], cpu["joints2d"][v]))

        if out.hand_verts is not None and out.hand_verts.shape[1] == cpu["hand_verts"].shape[1]:
            v = valid["hand_verts"]
            if v.any():
                pred_verts, gt_verts = out.hand_verts.cpu()[v], cpu["hand_verts"][v]
                self._keep("pa_mpvpe", pa_mpvpe(pred_verts, gt_verts))
                w = valid["joints3d"][v]
                if w.any():
                    roots = (pred_joints[v][w][:, 0], cpu["joints3d"][v][w][:, 0])
                    self._keep("mpvpe", mpvpe(pred_verts[w], gt_verts[w], *roots))

        obj_class = cpu["obj_class"].long()
        has_object = valid["obj"] & (obj_class >= 0)
        if out.obj_logits is not None:
            known = has_object & (obj_class < out.obj_logits.shape[1])
            if known.any():
                self._keep("class_correct", class_correct(out.obj_logits.cpu()[known], obj_class[known]).double())
        if out.obj_rot is not None and out.obj_trans is not None and has_object.any():
            self._update_object(out, cpu, has_object, obj_class)

        if out.contact_prob is not None and out.contact_prob.shape[1] == cpu["contact"].shape[1]:
            v = valid["contact"]
            if v.any():
                counts = contact_counts(out.contact_prob.cpu()[v], cpu["contact"][v])
                self._contact += torch.stack([c.sum() for c in counts]).double()
                self._contact_samples += int(v.sum())

        for layer, probs in out.attention.items():
            self._entropy[layer].append(attention_entropy(probs, normalized=True))

    def _update_object(self, out: AMTOutput, cpu: dict, has_object: torch.Tensor, obj_class: torch.Tensor) -> None:
        tables = self._tables()
        has_object = has_object & (obj_class < tables.num_classes)
        if not has_object.any():
            return
        classes = obj_class[has_object]
        points = tables.points[classes].double()  # (N, P, 3) object frame, metres
        pred_rot, pred_trans = out.obj_rot.cpu()[has_object].double(), out.obj_trans.cpu()[has_object].double()
        gt_rot, gt_trans = cpu["obj_rot"][has_object].double(), cpu["obj_trans"][has_object].double()
        add_m = add(pred_rot, pred_trans, gt_rot, gt_trans, points)
        add_s_m = add_s(pred_rot, pred_trans, gt_rot, gt_trans, points)
        symmetric = tables.symmetric[classes]
        add_either = torch.where(symmetric, add_s_m, add_m)
        self._keep("add", add_m)
        self._keep("add_s", add_s_m)
        self._keep("add_10", (add_either < 0.1 * tables.diameter[classes].double()).double())
        self._keep("rot_err_deg", rotation_error_deg(pred_rot, gt_rot))
        sym_err = symmetric_rotation_error(
            pred_rot,
            gt_rot,
            tables.symmetry_kind[classes],
            tables.axis[classes].double(),
            tables.rotations[classes].double(),
            lambda a, b: torch.deg2rad(rotation_error_deg(a, b)),
        )
        self._keep("rot_err_sym_deg", torch.rad2deg(sym_err))
        self._keep("trans_err", translation_error(pred_trans, gt_trans))
        if out.hand_verts is not None:
            verts = out.hand_verts.cpu()[has_object].float()
            sdf = tables.signed_distance(classes, pred_rot.float(), pred_trans.float(), verts)
            max_depth, mean_depth = penetration_depth(sdf)
            self._keep("penetration_max", max_depth)
            self._keep("penetration_mean", mean_depth)

    def _cat(self, name: str) -> torch.Tensor | None:
        values = self._lists.get(name)
        return torch.cat(values) if values else None

    def compute(self) -> dict[str, float | int | bool | str]:
        """The summary: plain numbers, ready for JSON.

        Keys (present when the data had what they need):
            num_samples; num_joints3d (samples with ground-truth 3D joints);
            mpjpe_mm, pa_mpjpe_mm: mean over samples;
            auc_0_50, pa_auc_0_50: area under the PCK curve over 0-50 mm (per joint), in [0, 1];
            pck_20mm, pa_pck_20mm: fraction of joints within 20 mm;
            ref_mean_pose_mpjpe_mm, ref_mean_pose_pa_mpjpe_mm: the same errors of a constant prediction, the
                training data's mean root-relative pose (`ref_mean_pose_source` "train"; "eval_set" when no training
                mean was given and the evaluated samples' own mean stood in); ref_wrist_mpjpe_mm: all joints on the
                wrist; skill_mpjpe: 1 - mpjpe_mm / ref_mean_pose_mpjpe_mm (0 is no better than a constant);
            pred_std_mm, gt_std_mm: the seed's collapse check over the whole set (mean over root-relative
                coordinates of the std across samples); collapsed: pred_std_mm below 10 mm;
            reprojection_px: mean 2D joint error, pixels;
            mpvpe_mm, pa_mpvpe_mm: mesh vertex errors;
            num_objects; add_mm, add_s_mm; add_10_acc: fraction with ADD (ADD-S for symmetric classes) below 10% of
                the object's diameter; rot_err_deg (plain geodesic), rot_err_sym_deg (modulo the class's symmetry);
                trans_err_mm; obj_class_acc;
            contact_precision, contact_recall, contact_f1: over all vertices of all samples (threshold 0.5);
            penetration_max_mm, penetration_mean_mm: mean over samples with an object of the deepest hand vertex
                and of the mean depth of the vertices inside;
            attn_entropy_norm.<layer>: mean normalised attention entropy (1 uniform, 0 one key) per layer.
        """
        result: dict[str, float | int | bool] = {"num_samples": self.num_samples}
        result.update(self._joint_metrics())
        result.update(self._references(result.get(keys.MPJPE_MM)))
        pred_std = self._pred_moments.mean_std()
        if pred_std is not None:
            result["pred_std_mm"] = pred_std * MM
            result["collapsed"] = pred_std < COLLAPSE_STD_M
        gt_std = self._gt_moments.mean_std()
        if gt_std is not None:
            result["gt_std_mm"] = gt_std * MM
        for key, (name, scale) in _MEANS.items():
            values = self._cat(name)
            if values is not None:
                result[key] = float(values.mean()) * scale
        add_values = self._cat("add")
        if add_values is not None:
            result["num_objects"] = int(add_values.shape[0])
        if self._contact_samples:
            precision, recall, f1 = precision_recall_f1(*self._contact)
            result.update(contact_precision=float(precision), contact_recall=float(recall), contact_f1=float(f1))
        for layer, values in self._entropy.items():
            result[f"attn_entropy_norm.{layer}"] = float(np.mean(values))
        return {k: v for k, v in result.items() if not (isinstance(v, float) and math.isnan(v))}

    def _joint_metrics(self) -> dict[str, float | int]:
        """num_joints3d, and the mean error, PCK AUC and PCK at 20 mm, plain and after Procrustes alignment."""
        result: dict[str, float | int] = {}
        thresholds = pck_thresholds()
        joints = (
            ("joint_errors", keys.MPJPE_MM, keys.AUC_0_50, keys.PCK_20MM),
            ("pa_joint_errors", keys.PA_MPJPE_MM, keys.PA_AUC_0_50, keys.PA_PCK_20MM),
        )
        for name, mpjpe_key, auc_key, pck_key in joints:
            errors = self._cat(name)
            if errors is None:
                continue
            result["num_joints3d"] = int(errors.shape[0])
            result[mpjpe_key] = float(errors.mean()) * MM
            result[auc_key] = auc(pck_curve(errors, thresholds), thresholds)
            result[pck_key] = float((errors <= 0.02).double().mean())
        return result

    def _references(self, model_mpjpe_mm: float | None) -> dict[str, float | str]:
        """The trivial predictors on the same samples: the mean pose, all joints at the wrist, and the skill."""
        gt = self._cat("gt_relative")
        if gt is None:
            return {}
        source = "train" if self._reference is not None else "eval_set"
        mean_pose = self._reference if self._reference is not None else gt.mean(dim=0)
        constant = mean_pose.expand_as(gt)
        ref_mpjpe = float(joint_errors(constant, gt).mean()) * MM
        result: dict[str, float | str] = {
            keys.REF_MEAN_POSE_MPJPE_MM: ref_mpjpe,
            keys.REF_MEAN_POSE_PA_MPJPE_MM: float(pa_joint_errors(constant, gt).mean()) * MM,
            keys.REF_MEAN_POSE_SOURCE: source,
            # all 21 joints on the wrist: the root-relative error is each joint's distance from the wrist
            keys.REF_WRIST_MPJPE_MM: float(torch.linalg.vector_norm(gt, dim=-1).mean()) * MM,
        }
        if model_mpjpe_mm is not None and ref_mpjpe > 0:
            result[keys.SKILL_MPJPE] = 1.0 - model_mpjpe_mm / ref_mpjpe
        return result

    def pck(self, procrustes: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The PCK curve over 0-50 mm: (thresholds in mm, fraction of joints within each), numpy float64."""
        errors = self._cat("pa_joint_errors" if procrustes else "joint_errors")
        thresholds = pck_thresholds()
        curve = pck_curve(errors if errors is not None else torch.zeros(0), thresholds)
        return (thresholds * MM).numpy(), curve.numpy()
