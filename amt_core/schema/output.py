"""What every model returns: `AMTOutput`, a dataclass (never a string-keyed dict).

All 3D quantities are metres in the OpenCV camera frame of the input image; B is the batch, V the hand layer's
vertex count, C the number of predicted contact slots, N the number of object classes. Fields a model does not
predict (the baseline predicts joints only) are None, and the losses skip them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass(kw_only=True)
class AMTOutput:
    joints3d: torch.Tensor
    """(B, 21, 3) final (refined) joints, metres, camera frame."""
    joints2d: torch.Tensor
    """(B, 21, 2) projection of `joints3d` by the sample's K, pixels."""
    joints3d_coarse: torch.Tensor | None = None
    """(B, 21, 3) the hand encoder's joints before pixel-aligned refinement."""
    joints3d_steps: tuple[torch.Tensor, ...] = ()
    """One (B, 21, 3) per refinement step, in order; the last equals `joints3d`."""
    joints3d_logvar: torch.Tensor | None = None
    """(B, 21, 3) log-variance from SigmaReparam: the per-joint uncertainty estimate."""
    hand_pose: torch.Tensor | None = None
    """(B, 45) MANO-layout finger pose, axis-angle per joint, radians."""
    hand_shape: torch.Tensor | None = None
    """(B, 10) shape coefficients."""
    hand_rot: torch.Tensor | None = None
    """(B, 3) global hand rotation, axis-angle, camera frame."""
    hand_trans: torch.Tensor | None = None
    """(B, 3) hand translation, metres, camera frame (hand layer convention)."""
    hand_verts: torch.Tensor | None = None
    """(B, V, 3) hand mesh from the hand layer, metres, camera frame."""
    obj_logits: torch.Tensor | None = None
    """(B, N) object class logits."""
    obj_rot: torch.Tensor | None = None
    """(B, 3, 3) object rotation, a proper rotation (from the 6D representation)."""
    obj_trans: torch.Tensor | None = None
    """(B, 3) object origin, metres, camera frame."""
    obj_center2d: torch.Tensor | None = None
    """(B, 2) detected object centre, pixels."""
    obj_box: torch.Tensor | None = None
    """(B, 4) detected object box (u0, v0, u1, v1), pixels."""
    obj_present: torch.Tensor | None = None
    """(B,) logit that an object is in the image."""
    obj_heatmap: torch.Tensor | None = None
    """(B, h, w) object-centre heatmap logits on the backbone's patch grid (cell = H / h pixels), for a focal loss."""
    contact_prob: torch.Tensor | None = None
    """(B, V) probability that each hand vertex touches the object."""
    contact_points: torch.Tensor | None = None
    """(B, C, 3) predicted contact locations, metres, camera frame."""
    contact_conf: torch.Tensor | None = None
    """(B, C) confidence of each contact slot, in [0, 1]."""
    contact_forces: torch.Tensor | None = None
    """(B, C, 3) force the hand applies at each contact, newtons, camera frame."""
    kl: torch.Tensor | None = None
    """() SigmaReparam's KL term (mean over the batch)."""
    attention: dict[str, torch.Tensor] = field(default_factory=dict)
    """Attention probabilities by layer name, (B, heads, queries, keys); filled only when asked for."""

    def detach(self) -> AMTOutput:
        """A copy with every tensor detached (for logging and snapshots)."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.detach()
            elif isinstance(value, tuple):
                value = tuple(v.detach() for v in value)
            elif isinstance(value, dict):
                value = {k: v.detach() for k, v in value.items()}
            values[f.name] = value
        return AMTOutput(**values)
