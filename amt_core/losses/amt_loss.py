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

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn
from torch.nn import functional as F

from amt_core import config_tree
from amt_core.errors import UserError, choices
from amt_core.losses import terms as T
from amt_core.losses.adaptive import AdaptiveConfig, AdaptiveMPJPELoss
from amt_core.losses.kinds import ContactLoss, PhysicsPose
from amt_core.losses.mix import MixInfo, mix_per_sample, permute_batch
from amt_core.losses.schedule import LossSchedule
from amt_core.objects.tables import ObjectTables, symmetric_rotation_error
from amt_core.schema.output import AMTOutput
from amt_core.schema.sample import Batch

PerSample = tuple[torch.Tensor, torch.Tensor]  # ((B,) loss, (B,) bool valid)


@dataclass(frozen=True, kw_only=True)
class SampleTerm:
    """A term with a target per sample: averaged over the samples that have it, lam-mixed under MixUp."""

    name: str
    group: str
    """Carries schedule ramps and stage multipliers."""
    weight: float
    """Base weight (`AMTLoss.Config.weights` overrides it)."""
    compute: Callable[[_TermInputs], PerSample | None]
    """(B,) loss and (B,) bool valid, or None when the output lacks the prediction."""
    needs_objects: bool = False
    """Looks up object geometry (`ObjectTables`): the tables are built only when such a term is active."""


@dataclass(frozen=True, kw_only=True)
class BatchTerm:
    """A term of the batch as a whole: never masked per sample and never mixed."""

    name: str
    group: str
    weight: float
    compute: Callable[[AMTOutput, Batch, AMTLoss.Config], torch.Tensor | None]
    """() value from the output, the batch and the loss settings, or None when they do not allow it."""


# --- hand -----------------------------------------------------------------------------------------------------------


def _joints3d(x: _TermInputs) -> PerSample:
    distances = T.joint_distances(x.joints - x.joints[:, :1], x.gt_relative)
    return x.adaptive(distances), x.t.valid["joints3d"]


def _root(x: _TermInputs) -> PerSample:
    return torch.linalg.vector_norm(x.joints[:, 0] - x.t["joints3d"][:, 0], dim=-1), x.t.valid["joints3d"]


def _joints2d(x: _TermInputs) -> PerSample:
    return T.reprojection(x.out.joints2d.float(), x.t["joints2d"], x.t.image_size), x.t.valid["joints2d"]


def _coarse(x: _TermInputs) -> PerSample | None:
    if x.out.joints3d_coarse is None:
        return None
    coarse = x.out.joints3d_coarse.float()
    return T.prior_weighted_mpjpe(coarse - coarse[:, :1], x.gt_relative, x.adaptive.prior), x.t.valid["joints3d"]


def _mano_pose(x: _TermInputs) -> PerSample | None:
    if x.out.hand_pose is None:
        return None
    pose = x.out.hand_pose.float().view(-1, 15, 3)
    return T.rotation_chordal(pose, x.t["hand_pose"].view(-1, 15, 3)), x.t.valid["mano"]


def _mano_shape(x: _TermInputs) -> PerSample | None:
    if x.out.hand_shape is None:
        return None
    return (x.out.hand_shape.float() - x.t["hand_shape"]).square().mean(dim=-1), x.t.valid["mano"]


def _mano_rot(x: _TermInputs) -> PerSample | None:
    if x.out.hand_rot is None:
        return None
    return T.rotation_chordal(x.out.hand_rot.float()[:, None], x.t["hand_rot"][:, None]), x.t.valid["mano"]


def _mano_trans(x: _TermInputs) -> PerSample | None:
    if x.out.hand_trans is None:
        return None
    return torch.linalg.vector_norm(x.out.hand_trans.float() - x.t["hand_trans"], dim=-1), x.t.valid["mano"]


def _hand_verts(x: _TermInputs) -> PerSample | None:
    if x.out.hand_verts is None or x.out.hand_verts.shape[1] != x.t.batch["hand_verts"].shape[1]:
        return None
    # each mesh relative to its own wrist joint, as mpvpe_mm measures it (mano_trans places the mesh)
    verts = x.out.hand_verts.float() - x.joints[:, :1]
    loss = T.joint_distances(verts, x.t["hand_verts"] - x.t["joints3d"][:, :1]).mean(dim=-1)
    return loss, x.t.valid["hand_verts"] & x.t.valid["joints3d"]


def _refine_steps(x: _TermInputs) -> PerSample | None:
    if len(x.out.joints3d_steps) <= 1:
        return None
    relative = [s.float() - s.float()[:, :1] for s in x.out.joints3d_steps[:-1]]
    steps = [T.prior_weighted_mpjpe(s, x.gt_relative, x.adaptive.prior) for s in relative]
    return torch.stack(steps).mean(dim=0), x.t.valid["joints3d"]


# --- object ---------------------------------------------------------------------------------------------------------


def _obj_points(x: _TermInputs) -> PerSample | None:
    if x.out.obj_rot is None or x.out.obj_trans is None:
        return None
    index = x.t.class_index
    points, symmetric = x.objects.points[index], x.objects.symmetric[index]  # (B, P, 3), (B,)
    pred_rot, pred_trans = x.out.obj_rot.float(), x.out.obj_trans.float()
    loss = T.object_points(pred_rot, pred_trans, x.t["obj_rot"], x.t["obj_trans"], points, symmetric)
    return loss, x.t.has_object


def _obj_rot(x: _TermInputs) -> PerSample | None:
    if x.out.obj_rot is None or x.out.obj_trans is None:
        return None
    index, objects = x.t.class_index, x.objects
    kind, axis, rotations = objects.symmetry_kind[index], objects.axis[index], objects.rotations[index]
    loss = symmetric_rotation_error(x.out.obj_rot.float(), x.t["obj_rot"], kind, axis, rotations, T.geodesic)
    return loss, x.t.has_object


def _obj_trans(x: _TermInputs) -> PerSample | None:
    if x.out.obj_trans is None:
        return None
    return torch.linalg.vector_norm(x.out.obj_trans.float() - x.t["obj_trans"], dim=-1), x.t.has_object


def _obj_class(x: _TermInputs) -> PerSample | None:
    if x.out.obj_logits is None:
        return None
    obj_class = x.t.obj_class
    known = x.t.has_object & (obj_class < x.out.obj_logits.shape[1])
    loss = F.cross_entropy(x.out.obj_logits.float(), torch.where(known, obj_class, 0), reduction="none")
    return loss, known


def _obj_present(x: _TermInputs) -> PerSample | None:
    if x.out.obj_present is None:
        return None
    valid, has_object = x.t.valid, x.t.has_object
    # absence is known from an object label of class -1, or from a known segmentation without object pixels
    no_object_pixels = ~x.t.batch["obj_mask"].to(x.t.device).flatten(1).any(dim=1)
    known_absent = (valid["obj"] & (x.t.obj_class < 0)) | (~valid["obj"] & valid["masks"] & no_object_pixels)
    loss = F.binary_cross_entropy_with_logits(x.out.obj_present.float(), has_object.float(), reduction="none")
    return loss, has_object | known_absent


def _obj_box(x: _TermInputs) -> PerSample | None:
    if x.out.obj_box is None and x.out.obj_center2d is None:
        return None
    gt_box, gt_center = x.gt_box_and_center
    pred_box = None if x.out.obj_box is None else x.out.obj_box.float()
    pred_center = None if x.out.obj_center2d is None else x.out.obj_center2d.float()
    return T.detection(pred_box, pred_center, gt_box, gt_center, x.t.image_size), x.t.has_object


def _obj_heatmap(x: _TermInputs) -> PerSample | None:
    if x.out.obj_heatmap is None:
        return None
    heatmap = T.heatmap_target(x.gt_box_and_center[0], tuple(x.out.obj_heatmap.shape[-2:]), x.t.image_size)
    return T.heatmap_kl(x.out.obj_heatmap, heatmap), x.t.has_object


# --- contact --------------------------------------------------------------------------------------------------------


def _contact(x: _TermInputs) -> PerSample | None:
    if x.out.contact_prob is None or x.out.contact_prob.shape[1] != x.t.batch["contact"].shape[1]:
        return None
    cfg = x.config
    loss = T.binary_contact(
        x.out.contact_prob.float(), x.t["contact"], cfg.contact_loss, cfg.focal_gamma, cfg.focal_alpha
    )
    return loss, x.t.valid["contact"]


def _contact_points(x: _TermInputs) -> PerSample | None:
    return x.matched("contact_points", x.t.valid["contact_points"])


def _contact_conf(x: _TermInputs) -> PerSample | None:
    return x.matched("contact_conf", x.t.valid["contact_points"])


def _forces(x: _TermInputs) -> PerSample | None:
    return x.matched("forces", x.t.valid["contact_points"] & x.t.valid["forces"])


# --- physics --------------------------------------------------------------------------------------------------------


def _penetration(x: _TermInputs) -> PerSample | None:
    sdf = x.hand_sdf
    return None if sdf is None else (T.penetration(sdf)[0], x.t.has_object)


def _attraction(x: _TermInputs) -> PerSample | None:
    out, cfg = x.out, x.config
    if out.contact_prob is None or out.hand_verts is None or out.contact_prob.shape != out.hand_verts.shape[:2]:
        return None
    sdf = x.hand_sdf
    if sdf is None:
        return None
    loss, any_contact = T.attraction(sdf, out.contact_prob.float(), cfg.contact_threshold, cfg.attraction_margin)
    return loss, x.t.has_object & any_contact


def _equilibrium(x: _TermInputs) -> PerSample | None:
    if x.out.contact_forces is None:
        return None
    t, has_object = x.t, x.t.has_object
    gravity = None if x.config.gravity is None else torch.tensor(x.config.gravity, device=t.device)
    if "gravity_dir" in t.batch:  # per-sample directions where the data knows them (zero rows: unknown)
        per_sample = t["gravity_dir"]
        known = torch.linalg.vector_norm(per_sample, dim=-1, keepdim=True) > 0.5
        fallback = torch.zeros_like(per_sample) if gravity is None else gravity.expand_as(per_sample)
        gravity = torch.where(known, per_sample, fallback)
    conf = None if x.out.contact_conf is None else x.out.contact_conf.float()
    loss = T.equilibrium(x.out.contact_forces.float(), conf, x.objects.mass[t.class_index], gravity)
    # where the data says a grasp cannot hold its object (synthetic `grasp_stable`), no equilibrium exists
    stable = t["grasp_stable"].bool() if "grasp_stable" in t.batch else has_object
    return loss, has_object & stable


# --- the batch as a whole -------------------------------------------------------------------------------------------


def _kl(out: AMTOutput, batch: Batch, config: AMTLoss.Config) -> torch.Tensor | None:
    return None if out.kl is None else out.kl.float().mean()


def _diversity(out: AMTOutput, batch: Batch, config: AMTLoss.Config) -> torch.Tensor | None:
    if out.joints3d.shape[0] < 2:
        return None
    joints = out.joints3d.float()
    valid = batch["valid"]["joints3d"].to(joints.device).bool()
    gt = batch["joints3d"].to(joints.device).float()
    return T.diversity(joints, gt, config.diversity_ratio, config.diversity_min_std, weights=valid)


# Every term: a new term is one row here (and its pure function in `terms`). Base weights are chosen so that typical
# early-training values land within about a factor 10 of each other: metre-valued terms are ~0.01-0.1 (weight ~10),
# cross entropies ~1 (weight ~0.5), forces ~1 N (weight ~0.05). The row order is the order of `DEFAULT_WEIGHTS`
# (and so of `config.json`).
TERMS: tuple[SampleTerm | BatchTerm, ...] = (
    SampleTerm(name="joints3d", group="hand", weight=10.0, compute=_joints3d),
    SampleTerm(name="root", group="hand", weight=5.0, compute=_root),
    SampleTerm(name="joints2d", group="hand", weight=1.0, compute=_joints2d),
    SampleTerm(name="coarse", group="hand", weight=5.0, compute=_coarse),
    SampleTerm(name="mano_pose", group="hand", weight=0.1, compute=_mano_pose),
    SampleTerm(name="mano_shape", group="hand", weight=0.01, compute=_mano_shape),
    SampleTerm(name="mano_rot", group="hand", weight=0.5, compute=_mano_rot),
    SampleTerm(name="mano_trans", group="hand", weight=10.0, compute=_mano_trans),
    SampleTerm(name="hand_verts", group="hand", weight=10.0, compute=_hand_verts),
    SampleTerm(name="refine_steps", group="refinement", weight=5.0, compute=_refine_steps),
    SampleTerm(name="obj_points", group="object", weight=10.0, compute=_obj_points, needs_objects=True),
    SampleTerm(name="obj_rot", group="object", weight=0.5, compute=_obj_rot, needs_objects=True),
    SampleTerm(name="obj_trans", group="object", weight=10.0, compute=_obj_trans),
    SampleTerm(name="obj_class", group="object", weight=0.5, compute=_obj_class),
    SampleTerm(name="obj_present", group="object", weight=0.2, compute=_obj_present),
    SampleTerm(name="obj_box", group="object", weight=1.0, compute=_obj_box, needs_objects=True),
    SampleTerm(name="obj_heatmap", group="object", weight=0.2, compute=_obj_heatmap, needs_objects=True),
    SampleTerm(name="contact", group="contact", weight=5.0, compute=_contact),
    SampleTerm(name="contact_points", group="contact", weight=10.0, compute=_contact_points),
    SampleTerm(name="contact_conf", group="contact", weight=0.2, compute=_contact_conf),
    SampleTerm(name="forces", group="contact", weight=0.05, compute=_forces),
    SampleTerm(name="penetration", group="physics", weight=10.0, compute=_penetration, needs_objects=True),
    SampleTerm(name="attraction", group="physics", weight=5.0, compute=_attraction, needs_objects=True),
    SampleTerm(name="equilibrium", group="physics", weight=0.1, compute=_equilibrium, needs_objects=True),
    BatchTerm(name="kl", group="kl", weight=1e-3, compute=_kl),
    BatchTerm(name="diversity", group="diversity", weight=10.0, compute=_diversity),
)
TERM_GROUPS: dict[str, str] = {term.name: term.group for term in TERMS}
"""Every term's group (groups carry schedule ramps and stage multipliers)."""
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(TERM_GROUPS.values()))
DEFAULT_WEIGHTS: dict[str, float] = {term.name: term.weight for term in TERMS}

# The order per-sample terms are summed into `total` and reported in: the seed's, kept because a float sum depends on
# its order (and the logs list terms in it). A term not named here follows these in table order.
_SUM_ORDER = (
    "joints3d root joints2d coarse refine_steps mano_pose mano_shape mano_rot mano_trans hand_verts "
    "obj_class obj_present obj_trans obj_points obj_rot obj_box obj_heatmap "
    "contact contact_points contact_conf forces penetration attraction equilibrium"
).split()
_SAMPLE_TERMS: tuple[SampleTerm, ...] = tuple(
    sorted(
        (term for term in TERMS if isinstance(term, SampleTerm)),
        key=lambda term: _SUM_ORDER.index(term.name) if term.name in _SUM_ORDER else len(_SUM_ORDER),
    )
)
_BATCH_TERMS: tuple[BatchTerm, ...] = tuple(term for term in TERMS if isinstance(term, BatchTerm))


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

    @dataclass(frozen=True, kw_only=True)
    class Config:
        """Loss settings; `from_dict` builds one from JSON-like data, rejecting unknown keys."""

        weights: dict[str, float] = field(default_factory=dict)
        """Base weight by term name, merged over `DEFAULT_WEIGHTS`; 0 switches a term off."""
        schedule: LossSchedule = field(default_factory=LossSchedule)
        """Ramps by group over epochs and constant multipliers by group or term."""
        adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
        """Adaptive MPJPE settings (fingertip prior, floor, scale)."""
        contact_loss: ContactLoss = ContactLoss.FOCAL
        """Per-vertex contact loss: bce or focal."""
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
        physics_pose: PhysicsPose = PhysicsPose.PREDICTED
        """Object pose the physics terms use: predicted (gradients reach the object too) or target."""
        model_points: int = 512
        """Model points per object class for obj_points and obj_box, in [16, 8192]."""
        points_seed: int = 0
        """Seed of the surface sampling of model points."""

        def __post_init__(self) -> None:
            # Frozen: the normalised values (sections given as dicts, the weights over the defaults, the unit gravity
            # vector, the members of the enums) are set once here.
            if isinstance(self.schedule, dict):
                object.__setattr__(self, "schedule", LossSchedule(**self.schedule))
            if isinstance(self.adaptive, dict):
                object.__setattr__(self, "adaptive", AdaptiveConfig(**self.adaptive))
            unknown = sorted(set(self.weights) - set(TERM_GROUPS))
            if unknown:
                raise ValueError(
                    f"AMTLoss.Config.weights has unknown term {unknown[0]!r}; {choices(unknown[0], list(TERM_GROUPS))}"
                )
            for name, value in self.weights.items():
                if not value >= 0:
                    raise ValueError(f"AMTLoss.Config.weights[{name!r}] must be >= 0, got {value}")
            object.__setattr__(self, "weights", {**DEFAULT_WEIGHTS, **self.weights})
            names = set(TERM_GROUPS) | set(GROUPS)
            for what, keys in (("ramps", self.schedule.ramps), ("multipliers", self.schedule.multipliers)):
                unknown = sorted(set(keys) - names)
                if unknown:
                    raise ValueError(f"AMTLoss.Config.schedule.{what} has unknown names {unknown}; use {sorted(names)}")
            try:
                object.__setattr__(self, "contact_loss", ContactLoss(self.contact_loss))
            except ValueError:
                raise ValueError(
                    f"AMTLoss.Config.contact_loss must be 'bce' or 'focal', got {self.contact_loss!r}"
                ) from None
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
                object.__setattr__(self, "gravity", tuple((vector / vector.norm()).tolist()))
            if not 0 <= self.attraction_margin <= 0.05:
                raise ValueError(
                    f"AMTLoss.Config.attraction_margin must be in [0, 0.05] metres, got {self.attraction_margin}"
                )
            try:
                object.__setattr__(self, "physics_pose", PhysicsPose(self.physics_pose))
            except ValueError:
                raise ValueError(
                    f"AMTLoss.Config.physics_pose must be 'predicted' or 'target', got {self.physics_pose!r}"
                ) from None
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

    def forward(self, output: AMTOutput, batch: Batch, epoch: float, mix: MixInfo | None = None) -> LossResult:
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

    def _forward_fp32(self, output: AMTOutput, batch: Batch, epoch: float, mix: MixInfo | None) -> LossResult:
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
        for term in _BATCH_TERMS:
            if term.name in active and (value := term.compute(output, batch, self.config)) is not None:
                values[term.name] = value

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

    def _per_sample_terms(self, out: AMTOutput, batch: Batch, active: set[str]) -> dict[str, PerSample]:
        """Per-sample (loss, valid) of every active target-based term the output can be scored on."""
        targets = _Targets(batch, out.joints3d.device)
        objects = None  # built (from the catalog) only when a term has an object to look up
        if any(term.needs_objects and term.name in active for term in _SAMPLE_TERMS):
            # the tables are cached per device; a batch without objects masks every row out
            objects = self._objects_for(targets.device)
            targets.restrict_classes(objects.num_classes)
        inputs = _TermInputs(self, out, targets, objects)
        result: dict[str, PerSample] = {}
        for term in _SAMPLE_TERMS:
            if term.name in active and (value := term.compute(inputs)) is not None:
                result[term.name] = value
        return result


class _Targets:
    """A batch's targets on the prediction's device (floats as float32), with the flags several terms share."""

    def __init__(self, batch: Batch, device: torch.device) -> None:
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


class _TermInputs:
    """What the terms read for one batch: the output, its targets, the object tables (None when no active term needs
    them) and what several terms share, computed on first use."""

    def __init__(self, loss: AMTLoss, out: AMTOutput, targets: _Targets, objects: ObjectTables | None) -> None:
        self.out, self.t, self.objects = out, targets, objects
        self.config, self.adaptive = loss.config, loss.adaptive
        self.joints = out.joints3d.float()  # (B, 21, 3) camera frame

    @cached_property
    def gt_relative(self) -> torch.Tensor:
        """(B, 21, 3) the target joints relative to the target wrist."""
        gt_joints = self.t["joints3d"]
        return gt_joints - gt_joints[:, :1]

    @cached_property
    def gt_box_and_center(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The box and centre (pixels) of the target object's projected model points (obj_box, obj_heatmap)."""
        t = self.t
        return T.box_and_center(t["obj_rot"], t["obj_trans"], self.objects.points[t.class_index], t["K"])

    @cached_property
    def matched_contacts(self) -> dict[str, PerSample]:
        """`terms.matched_contacts` of the predicted contact slots (contact_points, contact_conf, forces)."""
        out, t = self.out, self.t
        return T.matched_contacts(
            out.contact_points.float(),
            None if out.contact_conf is None else out.contact_conf.float(),
            None if out.contact_forces is None else out.contact_forces.float(),
            t["contact_points"],
            t["contact_point_mask"].bool() & t.valid["contact_points"][:, None],
            t["contact_forces"],
        )

    def matched(self, name: str, needs: torch.Tensor) -> PerSample | None:
        """A term of the Hungarian-matched contacts, valid where it is defined and `needs` (B,) holds."""
        if self.out.contact_points is None or name not in self.matched_contacts:
            return None
        loss, defined = self.matched_contacts[name]
        return loss, defined & needs

    @cached_property
    def hand_sdf(self) -> torch.Tensor | None:
        """(B, V) signed distances (metres) of the predicted hand vertices to the object posed as `physics_pose`
        says, or None without hand vertices or an object pose."""
        out, t = self.out, self.t
        if self.config.physics_pose == PhysicsPose.TARGET:
            pose = (t["obj_rot"], t["obj_trans"])
        elif out.obj_rot is not None and out.obj_trans is not None:
            pose = (out.obj_rot.float(), out.obj_trans.float())
        else:
            return None
        if out.hand_verts is None:
            return None
        return self.objects.signed_distance(t.class_index, *pose, out.hand_verts.float())
