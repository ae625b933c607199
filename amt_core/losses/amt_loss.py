"""`AMTLoss`: every loss term of the seed in one module, masked by the batch's `valid` flags and weighted by schedule.

Terms (group in brackets; all distances metres, angles radians, forces newtons):
  [hand] joints3d (adaptive MPJPE of the root-relative joints), root (the wrist's camera-frame position), joints2d
  (reprojection / longer image side), coarse (the hand encoder's joints, root-relative), mano_pose / mano_rot
  (chordal rotation distance), mano_shape (MSE), mano_trans, hand_verts (relative to each hand's own wrist);
  [refinement] refine_steps (every refinement step but the last, which is `joints3d`; root-relative);
  [object] obj_points (ADD, or ADD-S for symmetric classes, on catalog model points), obj_rot (geodesic, modulo the
  class's symmetry), obj_trans, obj_class (cross entropy), obj_present (BCE on the logit; absence is known from
  class -1 with a valid object label, or from a valid segmentation without object pixels), obj_box (detected box and
  centre against the box of the projected ground-truth model points), obj_heatmap (KL of the centre heatmap's
  softmax to a Gaussian around the true box centre);
  [contact] contact (per-vertex BCE or focal), contact_points (Hungarian-matched distances), contact_conf (BCE of
  slot confidences against being matched), forces (on matched contacts);
  [physics] penetration (hand vertices inside the object's SDF), attraction (vertices predicted in contact pulled to
  the surface), equilibrium (forces plus gravity sum to zero; gravity from the batch's `gravity_dir` where given,
  else from the config, else magnitudes only; skipped where the batch's `grasp_stable` is False);
  [kl] kl (SigmaReparam's KL from the model); [diversity] diversity (batch spread hinge).

A term needs its prediction (None fields of `AMTOutput`, e.g. the baseline's, skip it) and, per sample, its target
(`batch["valid"]`): each term is averaged over the samples that have it and left out when none does, so a missing
field is never faked and never yields NaN. Object terms use the ground-truth class to look up geometry; physics uses
the predicted object pose by default (gradients reach hand and object). A term's weight is its base weight times
the schedule (`LossSchedule`: the seed's ramps, then multipliers); a term whose weight is 0 at this epoch is not
computed and not reported. With MixUp (`MixInfo`) every target-based term is the lam-mix of the term against both
targets; kl and diversity are batch properties and are not mixed.

Why the pose terms are root-relative: a camera-frame distance per joint mixes the pose with the root, and the root
(depth from apparent size) is the larger and slower error early on; every joint's gradient then points along the
root error and the pose barely learns (measured: the micro model memorised 32 images to 49.5 mm with a camera-frame
joints3d, 20.2 mm root-relative; docs/learning.md). The root has its own term, so each gets its own gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from amt_core import config_tree
from amt_core.errors import UserError, choices
from amt_core.losses import terms as T
from amt_core.losses.adaptive import AdaptiveConfig, AdaptiveMPJPELoss
from amt_core.losses.mix import MixInfo, mix_per_sample, permute_batch
from amt_core.losses.schedule import LossSchedule
from amt_core.objects.tables import ObjectTables, symmetric_rotation_error
from amt_core.schema.output import AMTOutput

# Every term and its group (groups carry schedule ramps and stage multipliers).
TERM_GROUPS: dict[str, str] = {
    "joints3d": "hand",
    "root": "hand",
    "joints2d": "hand",
    "coarse": "hand",
    "mano_pose": "hand",
    "mano_shape": "hand",
    "mano_rot": "hand",
    "mano_trans": "hand",
    "hand_verts": "hand",
    "refine_steps": "refinement",
    "obj_points": "object",
    "obj_rot": "object",
    "obj_trans": "object",
    "obj_class": "object",
    "obj_present": "object",
    "obj_box": "object",
    "obj_heatmap": "object",
    "contact": "contact",
    "contact_points": "contact",
    "contact_conf": "contact",
    "forces": "contact",
    "penetration": "physics",
    "attraction": "physics",
    "equilibrium": "physics",
    "kl": "kl",
    "diversity": "diversity",
}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(TERM_GROUPS.values()))

# Base weights chosen so that typical early-training values land within about a factor 10 of each other:
# metre-valued terms are ~0.01-0.1 (weight ~10), cross entropies ~1 (weight ~0.5), forces ~1 N (weight ~0.05).
DEFAULT_WEIGHTS: dict[str, float] = {
    "joints3d": 10.0,
    "root": 5.0,
    "joints2d": 1.0,
    "coarse": 5.0,
    "mano_pose": 0.1,
    "mano_shape": 0.01,
    "mano_rot": 0.5,
    "mano_trans": 10.0,
    "hand_verts": 10.0,
    "refine_steps": 5.0,
    "obj_points": 10.0,
    "obj_rot": 0.5,
    "obj_trans": 10.0,
    "obj_class": 0.5,
    "obj_present": 0.2,
    "obj_box": 1.0,
    "obj_heatmap": 0.2,
    "contact": 5.0,
    "contact_points": 10.0,
    "contact_conf": 0.2,
    "forces": 0.05,
    "penetration": 10.0,
    "attraction": 5.0,
    "equilibrium": 0.1,
    "kl": 1e-3,
    "diversity": 10.0,
}

PerSample = tuple[torch.Tensor, torch.Tensor]  # ((B,) loss, (B,) bool valid)


@dataclass(kw_only=True)
class LossResult:
    """What `AMTLoss.forward` returns."""

    total: torch.Tensor
    """() the weighted sum, part of the autograd graph (zero, still differentiable, when no term applies)."""
    terms: dict[str, torch.Tensor]
    """Unweighted value of each active term the output can be scored on, detached, () each: the mean over the
    samples that have its target, 0 when none has (then `counts` says 0)."""
    weights: dict[str, float]
    """The weight each reported term got (base weight x schedule x multipliers)."""
    counts: dict[str, torch.Tensor] = field(default_factory=dict)
    """() how many samples each term averaged over, on the device (read it at a host check, not every step)."""
    weighted: dict[str, torch.Tensor] = field(default_factory=dict)
    """() weight x value of each term, part of the autograd graph: the pieces `total` sums (the gradient share
    diagnostic takes each one's gradient)."""


class AMTLoss(nn.Module):
    """All loss terms of the AMT; its parameters are the adaptive joint weights (give them to the optimizer)."""

    @dataclass(kw_only=True)
    class Config:
        """Loss settings; `from_dict` builds one from JSON-like data, rejecting unknown keys."""

        weights: dict[str, float] = field(default_factory=dict)
        """Base weight by term name, merged over `DEFAULT_WEIGHTS`; 0 switches a term off."""
        schedule: LossSchedule = field(default_factory=LossSchedule)
        """Ramps by group over epochs and constant multipliers by group or term."""
        adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
        """Adaptive MPJPE settings (fingertip prior, floor, scale)."""
        contact_loss: str = "focal"
        """Per-vertex contact loss: "bce" or "focal"."""
        focal_gamma: float = 2.0
        """Focal loss focusing parameter, >= 0 (0 is alpha-weighted BCE)."""
        focal_alpha: float = 0.25
        """Focal loss weight of positive (contact) vertices, in (0, 1)."""
        contact_threshold: float = 0.5
        """Probability from which a vertex counts as predicted in contact (attraction), in (0, 1)."""
        diversity_ratio: float = 0.5
        """Diversity target as a fraction of the ground truth's batch std, in [0, 2]."""
        diversity_min_std: float = 0.01
        """Diversity target (metres, > 0) when the batch has no ground-truth joints: the seed's collapse line."""
        gravity: tuple[float, float, float] | None = None
        """Gravity direction in the camera frame (normalised here), e.g. (0, 1, 0) for an upright OpenCV camera, or
        None when unknown: equilibrium then only compares the magnitude of the net hand force with the weight. A
        batch field `gravity_dir` ((B, 3), synthetic data) takes precedence where it is non-zero."""
        attraction_margin: float = 0.004
        """Metres, in [0, 0.05]: vertices predicted in contact are pulled to within this distance of the surface
        (the synthetic data labels vertices within 4 mm as contacts)."""
        physics_pose: str = "predicted"
        """Object pose the physics terms use: "predicted" (gradients reach the object too) or "target"."""
        model_points: int = 512
        """Model points per object class for obj_points and obj_box, in [16, 8192]."""
        points_seed: int = 0
        """Seed of the surface sampling of model points."""

        def __post_init__(self) -> None:
            if isinstance(self.schedule, dict):
                self.schedule = LossSchedule(**self.schedule)
            if isinstance(self.adaptive, dict):
                self.adaptive = AdaptiveConfig(**self.adaptive)
            unknown = sorted(set(self.weights) - set(TERM_GROUPS))
            if unknown:
                raise ValueError(
                    f"AMTLoss.Config.weights has unknown term {unknown[0]!r}; {choices(unknown[0], list(TERM_GROUPS))}"
                )
            for name, value in self.weights.items():
                if not value >= 0:
                    raise ValueError(f"AMTLoss.Config.weights[{name!r}] must be >= 0, got {value}")
            self.weights = {**DEFAULT_WEIGHTS, **self.weights}
            names = set(TERM_GROUPS) | set(GROUPS)
            for what, keys in (("ramps", self.schedule.ramps), ("multipliers", self.schedule.multipliers)):
                unknown = sorted(set(keys) - names)
                if unknown:
                    raise ValueError(f"AMTLoss.Config.schedule.{what} has unknown names {unknown}; use {sorted(names)}")
            if self.contact_loss not in ("bce", "focal"):
                raise ValueError(f"AMTLoss.Config.contact_loss must be 'bce' or 'focal', got {self.contact_loss!r}")
            if not self.focal_gamma >= 0:
                raise ValueError(f"AMTLoss.Config.focal_gamma must be >= 0, got {self.focal_gamma}")
            if not 0 < self.focal_alpha < 1:
                raise ValueError(f"AMTLoss.Config.focal_alpha must be in (0, 1), got {self.focal_alpha}")
            if not 0 < self.contact_threshold < 1:
                raise ValueError(f"AMTLoss.Config.contact_threshold must be in (0, 1), got {self.contact_threshold}")
            if not 0 <= self.diversity_ratio <= 2:
                raise ValueError(f"AMTLoss.Config.diversity_ratio must be in [0, 2], got {self.diversity_ratio}")
            if not self.diversity_min_std > 0:
                raise ValueError(f"AMTLoss.Config.diversity_min_std must be > 0 metres, got {self.diversity_min_std}")
            if self.gravity is not None:
                vector = torch.tensor([float(v) for v in self.gravity])
                if vector.shape != (3,) or not float(vector.norm()) > 0:
                    raise ValueError(
                        f"AMTLoss.Config.gravity must be 3 numbers, not all 0, or None; got {self.gravity}"
                    )
                self.gravity = tuple((vector / vector.norm()).tolist())
            if not 0 <= self.attraction_margin <= 0.05:
                raise ValueError(
                    f"AMTLoss.Config.attraction_margin must be in [0, 0.05] metres, got {self.attraction_margin}"
                )
            if self.physics_pose not in ("predicted", "target"):
                raise ValueError(
                    f"AMTLoss.Config.physics_pose must be 'predicted' or 'target', got {self.physics_pose!r}"
                )
            if not 16 <= self.model_points <= 8192:
                raise ValueError(f"AMTLoss.Config.model_points must be in [16, 8192], got {self.model_points}")

        @classmethod
        def from_dict(cls, data: dict) -> AMTLoss.Config:
            """The defaults with JSON-like data merged in (nested dicts for schedule, its ramps, and adaptive).

            Weights and ramps merge over the defaults: `{"schedule": {"ramps": {"physics": {"end_epoch": 40}}}}`
            changes one field of one ramp and keeps the others. Values convert by `config_tree`'s one rule.

            Raises:
                UserError: an unknown key (naming it and the valid ones) or an invalid value.
            """
            return config_tree.override(cls(), data, nested=True, source="loss.")

    def __init__(self, config: AMTLoss.Config | dict | None = None, objects: ObjectTables | None = None) -> None:
        """Args:
        config: a Config, a dict for `Config.from_dict`, or None for the defaults.
        objects: object tables (points, symmetries, masses, SDFs); None builds them from the catalog the first
            time an object or physics term has a sample to supervise.
        """
        super().__init__()
        if isinstance(config, dict):
            config = AMTLoss.Config.from_dict(config)
        self.config = config or AMTLoss.Config()
        self.adaptive = AdaptiveMPJPELoss(self.config.adaptive)
        self._objects = objects
        self._objects_on: dict[torch.device, ObjectTables] = {}
        self._stage_multipliers: dict[str, float] = {}

    # --- weights -------------------------------------------------------------------------------------------

    def set_stage_multipliers(self, multipliers: dict[str, float]) -> None:
        """Multipliers by group or term for the current training stage (e.g. {"physics": 2.0}), on top of config."""
        names = set(TERM_GROUPS) | set(GROUPS)
        unknown = sorted(set(multipliers) - names)
        if unknown:
            raise UserError(f"unknown loss groups or terms {unknown}: use {sorted(names)}")
        for name, value in multipliers.items():
            if not value >= 0:
                raise UserError(f"loss multiplier for {name!r} must be >= 0, got {value}")
        self._stage_multipliers = dict(multipliers)

    def term_weights(self, epoch: float) -> dict[str, float]:
        """The weight of every term at `epoch` (progress in epochs, float): base x schedule x multipliers."""
        schedule = self.config.schedule
        return {
            name: self.config.weights[name] * schedule.factor(name, group, epoch, self._stage_multipliers)
            for name, group in TERM_GROUPS.items()
        }

    def joint_weights(self) -> torch.Tensor:
        """(21,) effective adaptive joint weights (prior x learned), detached, for logging."""
        return self.adaptive.joint_weights()

    # --- forward -------------------------------------------------------------------------------------------

    def forward(self, output: AMTOutput, batch: dict, epoch: float, mix: MixInfo | None = None) -> LossResult:
        """Weighted total and per-term values.

        Args:
            output: the model's prediction for the batch.
            batch: collated Samples (every field present, `batch["valid"][name]` (B,) bool), on output's device.
            epoch: training progress in epochs (float) for the schedule.
            mix: the batch's MixUp pairing, if its images were mixed.

        Runs in float32 with autocast switched off, also when called inside the trainer's bf16 autocast region:
        point distances of metre-scale coordinates and rotation products lose millimetres and degrees in bf16.
        """
        with torch.autocast(device_type=output.joints3d.device.type, enabled=False):
            return self._forward_fp32(output, batch, epoch, mix)

    def _forward_fp32(self, output: AMTOutput, batch: dict, epoch: float, mix: MixInfo | None) -> LossResult:
        weights = self.term_weights(epoch)
        active = {name for name, weight in weights.items() if weight > 0}
        per_sample = self._per_sample_terms(output, batch, active)
        if mix is not None:  # no host test of lam < 1: an identity pairing mixes to the same terms
            other = self._per_sample_terms(output, permute_batch(batch, mix.index), active)
            per_sample = {name: mix_per_sample(value, other[name], mix.lam) for name, value in per_sample.items()}
        # Masked means without host syncs: which terms have samples is known only on the device, so every term is
        # kept, and one without samples contributes 0 (and no gradient) through the clamped count.
        values: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        for name, (loss, valid) in per_sample.items():
            counts[name] = valid.sum()
            values[name] = torch.where(valid, loss, 0.0).sum() / counts[name].clamp(min=1)
        values.update(self._batch_terms(output, batch, active))

        total = output.joints3d.float().sum() * 0.0  # keeps `total` in the graph when no term applies
        weighted = {name: weights[name] * value for name, value in values.items()}
        for value in weighted.values():
            total = total + value
        batch_size = torch.tensor(output.joints3d.shape[0], device=output.joints3d.device)
        return LossResult(
            total=total,
            terms={name: value.detach() for name, value in values.items()},
            weights={name: weights[name] for name in values},
            counts={name: counts.get(name, batch_size) for name in values},
            weighted=weighted,
        )

    def _objects_for(self, device: torch.device) -> ObjectTables:
        if device not in self._objects_on:
            if self._objects is None:
                self._objects = ObjectTables.from_catalog(self.config.model_points, self.config.points_seed)
            self._objects_on[device] = self._objects.to(device)
        return self._objects_on[device]

    def _per_sample_terms(self, out: AMTOutput, batch: dict, active: set[str]) -> dict[str, PerSample]:
        """Per-sample (loss, valid) of every active target-based term the output can be scored on."""
        targets = _Targets(batch, out.joints3d.device)
        result: dict[str, PerSample] = {}
        self._hand_terms(out, targets, active, result)
        geometry = {"obj_points", "obj_rot", "obj_box", "obj_heatmap", "penetration", "attraction", "equilibrium"}
        objects = None  # built (from the catalog) only when a term has an object to look up
        if active & geometry:  # the tables are cached per device; a batch without objects masks every row out
            objects = self._objects_for(targets.device)
            targets.restrict_classes(objects.num_classes)
        self._object_terms(out, targets, active, objects, result)
        self._contact_terms(out, targets, active, result)
        if objects is not None:
            self._physics_terms(out, targets, active, objects, result)
        return result

    def _hand_terms(self, out: AMTOutput, t: _Targets, active: set[str], result: dict[str, PerSample]) -> None:
        valid = t.valid
        gt_joints = t["joints3d"]
        gt_relative = gt_joints - gt_joints[:, :1]
        joints = out.joints3d.float()
        if "joints3d" in active:
            distances = T.joint_distances(joints - joints[:, :1], gt_relative)
            result["joints3d"] = (self.adaptive(distances), valid["joints3d"])
        if "root" in active:
            result["root"] = (torch.linalg.vector_norm(joints[:, 0] - gt_joints[:, 0], dim=-1), valid["joints3d"])
        if "joints2d" in active:
            loss = T.reprojection(out.joints2d.float(), t["joints2d"], t.image_size)
            result["joints2d"] = (loss, valid["joints2d"])
        prior = self.adaptive.prior
        if "coarse" in active and out.joints3d_coarse is not None:
            coarse = out.joints3d_coarse.float()
            loss = T.prior_weighted_mpjpe(coarse - coarse[:, :1], gt_relative, prior)
            result["coarse"] = (loss, valid["joints3d"])
        if "refine_steps" in active and len(out.joints3d_steps) > 1:
            relative = [s.float() - s.float()[:, :1] for s in out.joints3d_steps[:-1]]
            steps = [T.prior_weighted_mpjpe(s, gt_relative, prior) for s in relative]
            result["refine_steps"] = (torch.stack(steps).mean(dim=0), valid["joints3d"])
        if "mano_pose" in active and out.hand_pose is not None:
            pose = out.hand_pose.float().view(-1, 15, 3)
            result["mano_pose"] = (T.rotation_chordal(pose, t["hand_pose"].view(-1, 15, 3)), valid["mano"])
        if "mano_shape" in active and out.hand_shape is not None:
            loss = (out.hand_shape.float() - t["hand_shape"]).square().mean(dim=-1)
            result["mano_shape"] = (loss, valid["mano"])
        if "mano_rot" in active and out.hand_rot is not None:
            loss = T.rotation_chordal(out.hand_rot.float()[:, None], t["hand_rot"][:, None])
            result["mano_rot"] = (loss, valid["mano"])
        if "mano_trans" in active and out.hand_trans is not None:
            loss = torch.linalg.vector_norm(out.hand_trans.float() - t["hand_trans"], dim=-1)
            result["mano_trans"] = (loss, valid["mano"])
        same_mesh = out.hand_verts is not None and out.hand_verts.shape[1] == t.batch["hand_verts"].shape[1]
        if "hand_verts" in active and same_mesh:
            # each mesh relative to its own wrist joint, as mpvpe_mm measures it (mano_trans places the mesh)
            verts = out.hand_verts.float() - joints[:, :1]
            loss = T.joint_distances(verts, t["hand_verts"] - gt_joints[:, :1]).mean(dim=-1)
            result["hand_verts"] = (loss, valid["hand_verts"] & valid["joints3d"])

    def _object_terms(
        self,
        out: AMTOutput,
        t: _Targets,
        active: set[str],
        objects: ObjectTables | None,
        result: dict[str, PerSample],
    ) -> None:
        valid, obj_class, has_object = t.valid, t.obj_class, t.has_object
        if "obj_class" in active and out.obj_logits is not None:
            known = has_object & (obj_class < out.obj_logits.shape[1])
            loss = F.cross_entropy(out.obj_logits.float(), torch.where(known, obj_class, 0), reduction="none")
            result["obj_class"] = (loss, known)
        if "obj_present" in active and out.obj_present is not None:
            # absence is known from an object label of class -1, or from a known segmentation without object pixels
            no_object_pixels = ~t.batch["obj_mask"].to(t.device).flatten(1).any(dim=1)
            known_absent = (valid["obj"] & (obj_class < 0)) | (~valid["obj"] & valid["masks"] & no_object_pixels)
            loss = F.binary_cross_entropy_with_logits(out.obj_present.float(), has_object.float(), reduction="none")
            result["obj_present"] = (loss, has_object | known_absent)
        if "obj_trans" in active and out.obj_trans is not None:
            result["obj_trans"] = (torch.linalg.vector_norm(out.obj_trans.float() - t["obj_trans"], dim=-1), has_object)
        if objects is None:
            return
        gt_rot, gt_trans, index = t["obj_rot"], t["obj_trans"], t.class_index
        if out.obj_rot is not None and out.obj_trans is not None:
            pred_rot, pred_trans = out.obj_rot.float(), out.obj_trans.float()
            if "obj_points" in active:
                points, symmetric = objects.points[index], objects.symmetric[index]  # (B, P, 3), (B,)
                loss = T.object_points(pred_rot, pred_trans, gt_rot, gt_trans, points, symmetric)
                result["obj_points"] = (loss, has_object)
            if "obj_rot" in active:
                kind, axis, rotations = objects.symmetry_kind[index], objects.axis[index], objects.rotations[index]
                loss = symmetric_rotation_error(pred_rot, gt_rot, kind, axis, rotations, T.geodesic)
                result["obj_rot"] = (loss, has_object)
        wants_box = "obj_box" in active and (out.obj_box is not None or out.obj_center2d is not None)
        wants_heatmap = "obj_heatmap" in active and out.obj_heatmap is not None
        if wants_box or wants_heatmap:
            gt_box, gt_center = T.box_and_center(gt_rot, gt_trans, objects.points[index], t["K"])
            if wants_box:
                pred_box = None if out.obj_box is None else out.obj_box.float()
                pred_center = None if out.obj_center2d is None else out.obj_center2d.float()
                loss = T.detection(pred_box, pred_center, gt_box, gt_center, t.image_size)
                result["obj_box"] = (loss, has_object)
            if wants_heatmap:
                heatmap = T.heatmap_target(gt_box, tuple(out.obj_heatmap.shape[-2:]), t.image_size)
                result["obj_heatmap"] = (T.heatmap_kl(out.obj_heatmap, heatmap), has_object)

    def _contact_terms(self, out: AMTOutput, t: _Targets, active: set[str], result: dict[str, PerSample]) -> None:
        valid, cfg = t.valid, self.config
        same_mesh = out.contact_prob is not None and out.contact_prob.shape[1] == t.batch["contact"].shape[1]
        if "contact" in active and same_mesh:
            prob = out.contact_prob.float()
            loss = T.binary_contact(prob, t["contact"], cfg.contact_loss, cfg.focal_gamma, cfg.focal_alpha)
            result["contact"] = (loss, valid["contact"])
        if not (active & {"contact_points", "contact_conf", "forces"}) or out.contact_points is None:
            return
        matched = T.matched_contacts(
            out.contact_points.float(),
            None if out.contact_conf is None else out.contact_conf.float(),
            None if out.contact_forces is None else out.contact_forces.float(),
            t["contact_points"],
            t["contact_point_mask"].bool() & valid["contact_points"][:, None],
            t["contact_forces"],
        )
        has_points = valid["contact_points"]
        needs = {"contact_points": has_points, "contact_conf": has_points, "forces": has_points & valid["forces"]}
        for name, (loss, defined) in matched.items():
            if name in active:
                result[name] = (loss, defined & needs[name])

    def _physics_terms(
        self, out: AMTOutput, t: _Targets, active: set[str], objects: ObjectTables, result: dict[str, PerSample]
    ) -> None:
        cfg, has_object, index = self.config, t.has_object, t.class_index
        if cfg.physics_pose == "target":
            pose = (t["obj_rot"], t["obj_trans"])
        elif out.obj_rot is not None and out.obj_trans is not None:
            pose = (out.obj_rot.float(), out.obj_trans.float())
        else:
            pose = None
        if pose is not None and out.hand_verts is not None and active & {"penetration", "attraction"}:
            sdf = objects.signed_distance(index, *pose, out.hand_verts.float())  # (B, V) metres
            if "penetration" in active:
                result["penetration"] = (T.penetration(sdf)[0], has_object)
            same_mesh = out.contact_prob is not None and out.contact_prob.shape == out.hand_verts.shape[:2]
            if "attraction" in active and same_mesh:
                prob = out.contact_prob.float()
                loss, any_contact = T.attraction(sdf, prob, cfg.contact_threshold, cfg.attraction_margin)
                result["attraction"] = (loss, has_object & any_contact)
        if "equilibrium" in active and out.contact_forces is not None:
            gravity = None if cfg.gravity is None else torch.tensor(cfg.gravity, device=t.device)
            if "gravity_dir" in t.batch:  # per-sample directions where the data knows them (zero rows: unknown)
                per_sample = t["gravity_dir"]
                known = torch.linalg.vector_norm(per_sample, dim=-1, keepdim=True) > 0.5
                fallback = torch.zeros_like(per_sample) if gravity is None else gravity.expand_as(per_sample)
                gravity = torch.where(known, per_sample, fallback)
            conf = None if out.contact_conf is None else out.contact_conf.float()
            loss = T.equilibrium(out.contact_forces.float(), conf, objects.mass[index], gravity)
            # where the data says a grasp cannot hold its object (synthetic `grasp_stable`), no equilibrium exists
            stable = t["grasp_stable"].bool() if "grasp_stable" in t.batch else has_object
            result["equilibrium"] = (loss, has_object & stable)

    def _batch_terms(self, out: AMTOutput, batch: dict, active: set[str]) -> dict[str, torch.Tensor]:
        """Terms of the batch as a whole: kl and diversity."""
        values: dict[str, torch.Tensor] = {}
        if "kl" in active and out.kl is not None:
            values["kl"] = out.kl.float().mean()
        if "diversity" in active and out.joints3d.shape[0] >= 2:
            joints = out.joints3d.float()
            valid = batch["valid"]["joints3d"].to(joints.device).bool()
            gt = batch["joints3d"].to(joints.device).float()
            cfg = self.config
            values["diversity"] = T.diversity(joints, gt, cfg.diversity_ratio, cfg.diversity_min_std, weights=valid)
        return values


class _Targets:
    """A batch's targets on the prediction's device (floats as float32), with the flags several terms share."""

    def __init__(self, batch: dict, device: torch.device) -> None:
        self.batch = batch
        self.device = device
        self.valid = {name: flag.to(device).bool() for name, flag in batch["valid"].items()}
        self.image_size: tuple[int, int] = tuple(batch["image"].shape[-2:])
        self.obj_class = batch["obj_class"].to(device).long()  # (B,) -1 for none
        self.has_object = self.valid["obj"] & (self.obj_class >= 0)  # (B,) a labelled object of a known class
        self._cache: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            value = self.batch[name].to(self.device)
            self._cache[name] = value.float() if value.is_floating_point() else value
        return self._cache[name]

    def restrict_classes(self, num_classes: int) -> None:
        """Drop objects whose class the object tables do not have."""
        self.has_object = self.has_object & (self.obj_class < num_classes)

    @property
    def class_index(self) -> torch.Tensor:
        """(B,) the class id where there is an object, else 0 (a safe index for table lookups, masked out later)."""
        return torch.where(self.has_object, self.obj_class, 0)
