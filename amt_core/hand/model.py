"""The hand layer: smplx.MANO over the open hand (default) or any MANO-layout file, returning the project's 21 joints.

Pose semantics (smplx with use_pca=False, flat_hand_mean=True): pose (B, 45) is per-joint axis-angle relative to the
template, so pose = 0 is the template's flat hand; rot (B, 3) is the global axis-angle about the wrist joint (the
root) and trans (B, 3) is added to every vertex and joint after that rotation: outputs = R (x - J_wrist) + J_wrist +
trans, where J_wrist is the shaped rest wrist (the origin for the open hand at shape 0). The open hand's template
frame: fingers along +y, palm facing +z, right thumb on +x (left hand: mirrored in x); a real MANO file keeps MANO's.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.lbs import lbs
from smplx.utils import Struct
from torch import nn

from amt_core.errors import UserError
from amt_core.joints import MANO_TO_PROJECT
from amt_core.paths import ASSETS_DIR

MANO_FINGERTIP_IDS = (745, 317, 444, 556, 673)  # thumb, index, middle, ring, little on MANO's 778-vertex mesh
REQUIRED_KEYS = ("v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs", "posedirs")
OPENHAND_FILES = {"right": "OPENHAND_RIGHT.npz", "left": "OPENHAND_LEFT.npz"}


class _Parents:
    """The kinematic tree as smplx's `batch_rigid_transform` uses it: `parents[1:]` gathers joints (a tensor on the
    model's device), `parents[i]` indexes a Python list (a plain int: no device read), `parents.shape[0]` counts."""

    def __init__(self, tensor: torch.Tensor, ints: tuple[int, ...]) -> None:
        self.tensor, self.ints, self.shape = tensor, ints, tensor.shape

    def __getitem__(self, index):
        return self.ints[index] if isinstance(index, int) else self.tensor[index]


@dataclass(kw_only=True)
class HandOutput:
    """Posed hands, metres, in the frame of rot/trans."""

    verts: torch.Tensor  # (B, V, 3)
    joints: torch.Tensor  # (B, 21, 3) project joint order (amt_core.joints)


def default_hand_path(side: str = "right") -> Path:
    """The shipped open hand file for a side."""
    return ASSETS_DIR / "hand" / OPENHAND_FILES[side]


def _fix_hint(path: Path) -> str:
    if path.name in OPENHAND_FILES.values():
        return "rebuild it with `python -m amt_core.hand.builder --out assets/hand`"
    return "pass a MANO-layout .npz (e.g. from `amt-core import-mano`) or omit the path to use the open hand"


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a MANO-layout .npz, checked; UserError naming the file and the fix otherwise."""
    if not path.is_file():
        raise UserError(f"hand model file not found: {path}; {_fix_hint(path)}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"hand model file {path} is not a readable .npz ({exc}); {_fix_hint(path)}") from exc
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise UserError(f"hand model file {path} lacks {', '.join(missing)}; {_fix_hint(path)}")
    num_verts = arrays["v_template"].shape[0]
    shapes_ok = (
        arrays["v_template"].shape == (num_verts, 3)
        and arrays["f"].ndim == 2
        and arrays["f"].shape[1] == 3
        and arrays["J_regressor"].shape == (16, num_verts)
        and arrays["weights"].shape == (num_verts, 16)
        and arrays["shapedirs"].shape[:2] == (num_verts, 3)
        and arrays["posedirs"].shape == (num_verts, 3, 135)
        and arrays["kintree_table"].shape == (2, 16)
        and int(arrays["f"].max()) < num_verts
    )
    if not shapes_ok:
        raise UserError(f"hand model file {path} has arrays of the wrong shapes for MANO's layout; {_fix_hint(path)}")
    return arrays


class HandModel(nn.Module):
    """smplx.MANO (use_pca=False, flat_hand_mean=True) returning HandOutput with the project's 21 joints.

    Joints: MANO's 16 regressed joints plus the 5 fingertip vertices, reordered by amt_core.joints.MANO_TO_PROJECT.
    """

    def __init__(self, path: str | Path | None = None, side: str = "right") -> None:
        """Load the open hand of `side` (path None) or any MANO-layout .npz.

        Args:
            path: a MANO-layout .npz (v_template, f, J_regressor, weights, kintree_table, shapedirs, posedirs, and
                optionally hands_components, hands_mean, fingertip_ids); None = the shipped open hand.
            side: "right" or "left"; with a path, it must match the file's hand.
        """
        super().__init__()
        if side not in OPENHAND_FILES:
            raise UserError(f"hand side must be 'right' or 'left', got {side!r}")
        self.path = Path(path) if path is not None else default_hand_path(side)
        upper = self.path.name.upper()
        named = "right" if "RIGHT" in upper and "LEFT" not in upper else "left" if "LEFT" in upper else None
        if named is not None and named != side:
            raise UserError(f"hand model file {self.path} is a {named} hand; pass side={named!r}")
        self._side = side
        arrays = _load_arrays(self.path)
        num_verts = arrays["v_template"].shape[0]
        if "fingertip_ids" in arrays:
            tips = np.asarray(arrays["fingertip_ids"], dtype=np.int64)
        elif num_verts == 778:
            tips = np.array(MANO_FINGERTIP_IDS, dtype=np.int64)
        else:
            raise UserError(f"hand model file {self.path} has {num_verts} vertices and no fingertip_ids; add them")
        if tips.shape != (5,) or tips.min() < 0 or tips.max() >= num_verts:
            raise UserError(f"hand model file {self.path} has invalid fingertip_ids {tips.tolist()}; rebuild it")
        self.mano = self._make_mano(arrays, side == "right")
        self._parent_ints = tuple(int(p) for p in self.mano.parents.tolist())  # read once, on the CPU
        self._fingertip_ids = tips
        self._faces = np.asarray(arrays["f"], dtype=np.int64)
        self.register_buffer("faces_tensor", torch.as_tensor(self._faces), persistent=False)
        self.register_buffer("fingertip_index", torch.as_tensor(tips), persistent=False)
        self.register_buffer("project_index", torch.as_tensor(MANO_TO_PROJECT, dtype=torch.long), persistent=False)

    @staticmethod
    def _make_mano(arrays: dict[str, np.ndarray], is_right: bool) -> nn.Module:
        """smplx.MANO built from the checked arrays (its data_struct route: smplx reads nothing from disk here)."""
        arrays = dict(arrays)
        arrays.setdefault("hands_components", np.eye(45, dtype=np.float32))
        arrays.setdefault("hands_mean", np.zeros(45, dtype=np.float32))
        # smplx prints a note about having only 10 shape coefficients; keep the console quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            return smplx.MANO(
                "",
                data_struct=Struct(**arrays),
                is_rhand=is_right,
                use_pca=False,
                flat_hand_mean=True,
                num_betas=arrays["shapedirs"].shape[-1],
                create_global_orient=False,
                create_hand_pose=False,
                create_betas=False,
                create_transl=False,
            )

    @property
    def side(self) -> str:
        """'right' or 'left'."""
        return self._side

    @property
    def num_verts(self) -> int:
        """Vertex count V."""
        return int(self.mano.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        """Shape coefficients the model takes."""
        return int(self.mano.num_betas)

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 triangle indices (the torch copy is the buffer faces_tensor)."""
        return self._faces

    @property
    def fingertip_ids(self) -> np.ndarray:
        """(5,) vertex ids of the fingertips, thumb, index, middle, ring, little."""
        return self._fingertip_ids

    def forward(
        self,
        pose: torch.Tensor,
        shape: torch.Tensor | None = None,
        rot: torch.Tensor | None = None,
        trans: torch.Tensor | None = None,
    ) -> HandOutput:
        """Pose the hand.

        Args:
            pose: (B, 45) axis-angle per joint, MANO joints 1-15, relative to the flat template.
            shape: (B, num_betas) shape coefficients, or None (zeros).
            rot: (B, 3) global axis-angle about the wrist joint, or None (identity).
            trans: (B, 3) metres added after the rotation, or None (zeros).

        Returns:
            HandOutput with verts (B, V, 3) and joints (B, 21, 3), metres.
        """
        batch = pose.shape[0]
        zeros = pose.new_zeros
        mano = self.mano
        # smplx.MANO.forward's own steps (use_pca off, no joint mapper), with the kinematic tree handed to lbs as
        # _Parents: smplx indexes a Python list with each parent, and a device tensor's element there would sync the
        # host with the GPU 15 times a forward.
        full_pose = torch.cat([rot if rot is not None else zeros(batch, 3), pose], dim=1) + mano.pose_mean
        betas = shape if shape is not None else zeros(batch, self.num_betas)
        parents = _Parents(mano.parents, self._parent_ints)
        verts, mano_joints = lbs(
            betas,
            full_pose,
            mano.v_template,
            mano.shapedirs,
            mano.posedirs,
            mano.J_regressor,
            parents,
            mano.lbs_weights,
            pose2rot=True,
        )
        if trans is not None:
            verts = verts + trans[:, None]
            mano_joints = mano_joints + trans[:, None]
        joints = torch.cat([mano_joints[:, :16], verts[:, self.fingertip_index]], dim=1)  # (B, 21, 3) MANO + tips
        return HandOutput(verts=verts, joints=joints[:, self.project_index])

    def __repr__(self) -> str:
        return f"HandModel(side={self.side!r}, source={str(self.path)!r}, num_verts={self.num_verts})"
