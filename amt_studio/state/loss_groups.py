"""The loss terms in the groups the plots show them in: total; hand joints; mesh and MANO; object; contact and
physics; regularisers (and any term this table does not name, so a new term is shown rather than lost)."""

from __future__ import annotations

LOSS_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("total", "total", ("total",)),
    ("hand", "hand joints", ("joints3d", "root", "joints2d", "coarse", "refine_steps")),
    ("mesh", "mesh and MANO", ("hand_verts", "mano_pose", "mano_shape", "mano_rot", "mano_trans")),
    (
        "object",
        "object",
        ("obj_points", "obj_trans", "obj_rot", "obj_class", "obj_present", "obj_box", "obj_heatmap"),
    ),
    (
        "contact",
        "contact and physics",
        ("contact", "contact_points", "contact_conf", "forces", "penetration", "attraction", "equilibrium"),
    ),
    ("other", "regularisers and other", ("kl", "diversity")),
)
"""(key, title, terms), in the order the plots show them; 'other' also takes every term not named here."""
GROUP_TITLES = {key: title for key, title, _terms in LOSS_GROUPS}
_GROUP_OF = {term: key for key, _title, terms in LOSS_GROUPS for term in terms}


def group_of(term: str) -> str:
    """The group key of a loss term (its last '/'-separated part), 'other' when the table does not name it."""
    return _GROUP_OF.get(term.rsplit("/", 1)[-1], "other")
