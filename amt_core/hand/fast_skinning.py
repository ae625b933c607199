"""The hand layer's linear blend skinning in numpy (`FastHand`), for the grasp search's many small batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.transform import Rotation

from amt_core.joints import MANO_TO_PROJECT

if TYPE_CHECKING:
    from amt_core.hand.model import HandModel


class FastHand:
    """Linear blend skinning of a `HandModel` in numpy for one fixed shape, for the many small batches of grasping.

    smplx's `lbs` spends about 7 ms per call on Python and tensor overhead at these batch sizes; this does the same
    arithmetic (shape blend, joint regression, pose blend shapes, kinematic chain, skinning) in about a tenth of that.
    Tests check it against `HandModel` (same vertices and joints).
    """

    def __init__(self, hand: HandModel) -> None:
        mano = hand.mano
        self.v_template = mano.v_template.detach().cpu().numpy().astype(np.float64)  # (V, 3)
        self.shapedirs = mano.shapedirs.detach().cpu().numpy().astype(np.float64)  # (V, 3, S)
        self.posedirs = mano.posedirs.detach().cpu().numpy().astype(np.float64)  # (135, V * 3)
        self.has_posedirs = bool(np.abs(self.posedirs).max() > 0)
        self.j_regressor = mano.J_regressor.detach().cpu().numpy().astype(np.float64)  # (16, V)
        self.weights = mano.lbs_weights.detach().cpu().numpy().astype(np.float64)  # (V, 16)
        self.parents = mano.parents.detach().cpu().numpy().astype(np.int64)  # (16,)
        self.tips = np.asarray(hand.fingertip_ids, dtype=np.int64)
        self.project = np.asarray(MANO_TO_PROJECT, dtype=np.int64)
        # (vertex ids, with joints) -> (the vertices posed, their posedirs columns, their weights)
        self._subsets: dict[tuple[bytes, bool], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        depth = np.zeros(len(self.parents), np.int64)
        for j in range(1, len(self.parents)):
            depth[j] = depth[self.parents[j]] + 1  # parents come before their children
        self._levels = [np.nonzero(depth == d)[0] for d in range(1, int(depth.max()) + 1)]

    def shaped(self, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rest vertices (V, 3) and joints (16, 3) for shape coefficients (S,)."""
        verts = self.v_template + self.shapedirs[..., : len(shape)] @ shape
        return verts, self.j_regressor @ verts

    def __call__(self, poses: np.ndarray, rest: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Posed verts (B, V, 3) and 21 joints (B, 21, 3) with no global rotation or translation."""
        verts, joints = rest
        rots, world, posed_joints = self._chain(poses, joints)
        posed = self._skin(rots, world, verts, self.posedirs, self.weights)
        all_joints = np.concatenate([posed_joints, posed[:, self.tips]], axis=1)[:, self.project]
        return posed, all_joints

    def posed_subset(self, poses: np.ndarray, rest: tuple[np.ndarray, np.ndarray], ids: np.ndarray) -> np.ndarray:
        """Posed verts (B, len(ids), 3) of the vertices `ids` only: the same arithmetic as `__call__` on fewer
        vertices (the grasp search tests a sample of finger vertices, a third of the hand)."""
        return self.posed_subset_and_joints(poses, rest, ids, joints=False)[0]

    def posed_subset_and_joints(
        self, poses: np.ndarray, rest: tuple[np.ndarray, np.ndarray], ids: np.ndarray, joints: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """`posed_subset` and the 21 joints (B, 21, 3) as `__call__` gives them (None with joints=False)."""
        key = (ids.tobytes(), joints)
        if key not in self._subsets:
            every = np.concatenate([ids, self.tips]) if joints else ids
            columns = (3 * every[:, None] + np.arange(3)[None]).reshape(-1)
            self._subsets[key] = (every, np.ascontiguousarray(self.posedirs[:, columns]), self.weights[every])
        every, posedirs, weights = self._subsets[key]
        rest_verts, rest_joints = rest
        rots, world, posed_joints = self._chain(poses, rest_joints)
        posed = self._skin(rots, world, rest_verts[every], posedirs, weights)
        if not joints:
            return posed, None
        all_joints = np.concatenate([posed_joints, posed[:, len(ids) :]], axis=1)[:, self.project]
        return posed[:, : len(ids)], all_joints

    def _chain(self, poses: np.ndarray, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Joint rotations (B, 16, 3, 3), rest-relative skinning transforms (B, 16, 4, 4), posed joints (B, 16, 3)."""
        batch = len(poses)
        rotvecs = np.concatenate([np.zeros((batch, 1, 3)), np.asarray(poses, np.float64).reshape(batch, 15, 3)], 1)
        rots = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix().reshape(batch, 16, 3, 3)
        local = np.zeros((batch, 16, 4, 4))
        local[:, :, :3, :3] = rots
        local[:, 0, :3, 3] = joints[0]
        local[:, 1:, :3, 3] = joints[1:] - joints[self.parents[1:]]
        local[:, :, 3, 3] = 1.0
        world = local.copy()
        for level in self._levels:  # joints of one depth in the tree at once: their parents are done
            world[:, level] = world[:, self.parents[level]] @ local[:, level]
        posed_joints = world[:, :, :3, 3].copy()  # (B, 16, 3)
        # Skinning transforms relative to the rest pose: x -> R x + (t - R J).
        world[:, :, :3, 3] -= np.einsum("bjrc,jc->bjr", world[:, :, :3, :3], joints)
        return rots, world, posed_joints

    def _skin(self, rots, world, verts, posedirs, weights) -> np.ndarray:
        """Pose blend shapes, then linear blend skinning (one matmul) of rest verts (N, 3) -> (B, N, 3)."""
        batch = len(rots)
        if self.has_posedirs:
            feature = (rots[:, 1:] - np.eye(3)).reshape(batch, 135)
            verts = verts + (feature @ posedirs).reshape(batch, -1, 3)
        else:
            verts = np.broadcast_to(verts, (batch, *verts.shape))
        stacked = world[:, :, :3, :].transpose(1, 0, 2, 3).reshape(16, batch * 12)
        blend = (weights @ stacked).reshape(-1, batch, 3, 4).transpose(1, 0, 2, 3)  # (B, N, 3, 4)
        # x' = R x + t per vertex, written out: numpy's stacked 3x3 matmul is slow at this size.
        return (
            blend[..., 0] * verts[..., 0:1]
            + blend[..., 1] * verts[..., 1:2]
            + blend[..., 2] * verts[..., 2:3]
            + blend[..., 3]
        )  # (B, N, 3)
