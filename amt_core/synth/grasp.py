"""Grasp synthesis: place the open hand against an object and close each finger until it touches the surface.

A grasp picks an object, a hand shape, a grasp type (power: palm on the object, fingers wrapped across its long axis;
precision: thumb against index and middle fingertips) and an approach (a surface point and a roll). The hand slides in
along the surface normal until it nearly touches, then each finger's curl (`amt_core.hand.limits.flexion_pose`,
always inside the joint limits) rises until that finger meets the surface, found for all fingers at once from batched
hand-model calls and the object's signed-distance grid. Exact Open3D distance queries then check penetration (more
than `max_penetration` is repaired by uncurling, or by backing the hand off) and label contacts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from amt_core.hand import HandModel
from amt_core.hand.fast_skinning import FastHand
from amt_core.hand.limits import flexion_pose, sample_pose
from amt_core.hand.skeleton import MANO_FINGER_JOINTS
from amt_core.objects import catalog
from amt_core.objects.geometry_cache import GeometryCache
from amt_core.synth.forces import solve_contact_forces

# Curl levels evaluated per closing pass (coarse, then fine between the two levels around first contact).
_COARSE_LEVELS = 8
_FINE_LEVELS = 5
_FINGERS = ("thumb", "index", "middle", "ring", "little")


@dataclass(kw_only=True)
class GraspConfig:
    """How grasps are sampled and checked."""

    power_share: float = 0.6
    """Share of power grasps; the rest are precision grasps."""
    shape_std: float = 0.8
    """Standard deviation of the hand shape parameters (clipped to +-2.5)."""
    max_penetration: float = 0.002
    """Deepest allowed hand vertex inside the object, metres; deeper grasps are repaired."""
    contact_threshold: float = 0.004
    """Hand vertices closer than this to the object are in contact, metres (set by WorldConfig)."""
    touch: float = 0.0015
    """A finger stops closing when its vertices come this close to the surface, metres."""
    attempts: int = 6
    """Approaches tried before keeping the best grasp found."""
    hand_path: str | None = None
    """A MANO-layout .npz for the hand (e.g. from amt-core import-mano); None = the shipped open hand."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.power_share <= 1.0:
            raise ValueError(f"GraspConfig.power_share must be in [0, 1], got {self.power_share}")
        if not 0.0 <= self.shape_std <= 3.0:
            raise ValueError(f"GraspConfig.shape_std must be in [0, 3], got {self.shape_std}")
        if not 0.0 < self.max_penetration <= 0.01:
            raise ValueError(f"GraspConfig.max_penetration must be in (0, 0.01] metres, got {self.max_penetration}")
        if not 0.0 < self.contact_threshold <= 0.02:
            raise ValueError(f"GraspConfig.contact_threshold must be in (0, 0.02] metres, got {self.contact_threshold}")
        if not 0.0 <= self.touch < self.contact_threshold:
            raise ValueError(f"GraspConfig.touch must be in [0, contact_threshold), got {self.touch}")
        if not 1 <= self.attempts <= 50:
            raise ValueError(f"GraspConfig.attempts must be in [1, 50], got {self.attempts}")


@dataclass(kw_only=True)
class Grasp:
    """A hand posed around an object (or alone), in the object frame; MANO-layout parameters reproduce it."""

    class_id: int  # -1 for a free hand
    kind: str  # "power", "precision" or "free"
    pose: np.ndarray  # (45,)
    shape: np.ndarray  # (10,)
    rot_matrix: np.ndarray  # (3, 3) global hand rotation about the wrist
    trans: np.ndarray  # (3,) metres; verts = rot (v - wrist_rest) + wrist_rest + trans
    verts: np.ndarray  # (V, 3) metres, object frame
    joints: np.ndarray  # (21, 3) metres, object frame
    contact: np.ndarray  # (V,) bool
    contact_points: np.ndarray  # (C, 3) metres, object frame, C <= 16 (one per hand bone in contact)
    contact_normals: np.ndarray  # (C, 3) unit, pointing into the object
    penetration: float  # deepest hand vertex inside the object, metres (0 if none)
    fingers_in_contact: tuple[str, ...] = ()

    @property
    def rot(self) -> np.ndarray:
        """(3,) axis-angle of rot_matrix."""
        return Rotation.from_matrix(self.rot_matrix).as_rotvec()


def _rotation_from_columns(x_axis: np.ndarray, z_axis: np.ndarray) -> np.ndarray:
    """A rotation whose columns are (x, z cross x, z) after making x orthogonal to z."""
    z = z_axis / np.linalg.norm(z_axis)
    x = x_axis - z * float(x_axis @ z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


class GraspSynthesizer:
    """Makes grasps for catalog objects with the open hand (one per call, deterministic given the generator)."""

    def __init__(self, config: GraspConfig | None = None) -> None:
        self.config = config or GraspConfig()
        self.hand = HandModel(self.config.hand_path)
        self.classes = catalog()
        self.faces = np.asarray(self.hand.faces, dtype=np.int64)
        self.fast = FastHand(self.hand)
        joint_finger = np.full(16, -1)
        for f, name in enumerate(_FINGERS):
            joint_finger[list(MANO_FINGER_JOINTS[name])] = f
        self.vertex_bone = self.fast.weights.argmax(1)  # (V,) MANO joint that moves each vertex most
        self.vertex_finger = joint_finger[self.vertex_bone]  # (V,) finger 0-4, -1 for palm
        # Closing tests every second finger vertex: enough to find first touch; exact checks use all vertices.
        self._finger_sample = np.nonzero(self.vertex_finger >= 0)[0][::2]
        self._sparse = np.arange(0, len(self.vertex_finger), 3)  # sliding in tests every third vertex
        self.geometry = GeometryCache(self.classes)

    # --- the hand ----------------------------------------------------------------------------------------------
    def _rest_of(self, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = shape.tobytes()
        if getattr(self, "_rest_key", None) != key:
            self._rest = self.fast.shaped(shape)
            self._rest_key = key
        return self._rest

    def _forward(self, poses: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hand in its template frame (no global rotation or translation): verts (B, V, 3), joints (B, 21, 3)."""
        return self.fast(poses, self._rest_of(shape))

    def free_hand(self, rng: np.random.Generator) -> Grasp:
        """A hand alone in a random plausible pose, its template frame as the 'object' frame."""
        pose = sample_pose(1, rng)[0]
        shape = np.clip(rng.normal(0, self.config.shape_std, 10), -2.5, 2.5)
        verts, joints = self._forward(pose[None], shape)
        num = verts.shape[1]
        return Grasp(
            class_id=-1,
            kind="free",
            pose=pose,
            shape=shape,
            rot_matrix=np.eye(3),
            trans=np.zeros(3),
            verts=verts[0],
            joints=joints[0],
            contact=np.zeros(num, bool),
            contact_points=np.zeros((0, 3)),
            contact_normals=np.zeros((0, 3)),
            penetration=0.0,
        )

    def grasp(self, class_id: int, rng: np.random.Generator) -> Grasp:
        """A grasp of object class `class_id`; the best of up to `attempts` approaches (thumb plus most fingers)."""
        cfg = self.config
        shape = np.clip(rng.normal(0, cfg.shape_std, 10), -2.5, 2.5)
        kind = "power" if rng.random() < cfg.power_share else "precision"
        best, best_score = None, -np.inf
        needed = 3 if kind == "power" else 2
        for attempt in range(cfg.attempts):
            # Approaches whose closing already shows no thumb or too few fingers are dropped before the exact
            # checks (the costly part), except the last, so there is always a grasp to return.
            grasp = self._attempt(class_id, kind, shape, rng, needed if attempt < cfg.attempts - 1 else 0)
            if grasp is None:
                continue
            fingers = set(grasp.fingers_in_contact)
            holds = self._holds_upright(grasp)
            score = (
                len(fingers)
                + 2.0 * ("thumb" in fingers)
                + 4.0 * holds
                - 10.0 * (grasp.penetration > cfg.max_penetration)
            )
            if score > best_score:
                best, best_score = grasp, score
            if holds and "thumb" in fingers and len(fingers) >= needed and grasp.penetration <= cfg.max_penetration:
                break
        return best

    def _holds_upright(self, grasp: Grasp) -> bool:
        """Whether contact forces can hold the object against gravity along its -z (objects are held near upright)."""
        if len(grasp.contact_points) == 0:
            return False
        obj = self.classes[grasp.class_id]
        down = np.array([0.0, 0.0, -1.0])
        com = self.geometry.center_of_mass(grasp.class_id)
        return solve_contact_forces(grasp.contact_points, grasp.contact_normals, com, obj.mass, down).stable

    def _attempt(
        self, class_id: int, kind: str, shape: np.ndarray, rng: np.random.Generator, needed: int
    ) -> Grasp | None:
        """One approach; None when closing touches with fewer than `needed` fingers or without the thumb."""
        # long: one approach's steps in the order each needs the last (pre-shape, placement, sliding in, closing,
        # repair, contacts) and the random draws in a fixed order; split, they would pass a dozen locals around
        cfg = self.config
        obj = self.classes[class_id]
        extents = np.asarray(obj.mesh.extents)
        long_axis = np.eye(3)[int(np.argmax(extents))]

        # Pre-shape: fingers nearly straight, thumb opened into opposition.
        if kind == "power":
            start = np.concatenate([[rng.uniform(0.15, 0.35)], rng.uniform(0.0, 0.15, 4)])
            spread = np.concatenate([[rng.uniform(0.3, 1.0)], rng.uniform(-0.6, 0.1, 4)])
            target = np.ones(5)
        else:
            start = np.concatenate([[rng.uniform(0.2, 0.4)], rng.uniform(0.05, 0.2, 4)])
            spread = np.concatenate([[rng.uniform(0.5, 1.0)], rng.uniform(-0.3, 0.3, 4)])
            # Ring and little fingers stay out of the way: they curl to a relaxed pose unless they meet the object.
            target = np.array([1.0, 1.0, 1.0, rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9)])
        pre_pose = flexion_pose(start[None], spread[None])
        sparse, joints0 = self.fast.posed_subset_and_joints(pre_pose, self._rest_of(shape), self._sparse)
        sparse, joints0 = sparse[0], joints0[0]  # every third vertex, for sliding in; the joints
        wrist = joints0[0]

        # The contact centre on the hand: the palm (power) or between thumb and index tips (precision), template frame.
        palm = joints0[[0, 5, 9, 13, 17]].mean(0) * 0.5 + joints0[[5, 9, 13, 17]].mean(0) * 0.5
        if kind == "power":
            grip = palm + np.array([0.0, 0.0, 0.012])
        else:
            grip = (joints0[4] + joints0[8] + joints0[12]) / 3
        # Approach: a surface point, for power grasps on a side that the fingers can wrap (normal across the long axis).
        points, normals = self.geometry.surface_sample(class_id, rng, 32)
        if kind == "power":
            across = np.abs(normals @ long_axis) < 0.5
            if across.any():
                points, normals = points[across], normals[across]
        pick = int(rng.integers(len(points)))
        point, normal = points[pick], normals[pick]
        # Orientation: palm normal (+z template) against the surface normal; the palm's width (x) along the long
        # axis for power grasps, random for precision ones; a random flip puts the thumb on either side.
        across_dir = long_axis if kind == "power" else rng.normal(size=3)
        if abs(float(across_dir @ normal)) > 0.95:
            across_dir = np.cross(normal, rng.normal(size=3))
        across_dir = across_dir * (1 if rng.random() < 0.5 else -1)
        frame = _rotation_from_columns(across_dir, -normal)  # template x -> across, template z -> into the object
        roll = rng.normal(0, np.deg2rad(20 if kind == "power" else 60))
        c, s = np.cos(roll), np.sin(roll)
        rot = frame @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

        def place(offset: float) -> np.ndarray:
            """Translation putting the grip point `offset` metres out from `point` along the normal."""
            return point + normal * offset - wrist - rot @ (grip - wrist)

        def transform(verts: np.ndarray, trans: np.ndarray) -> np.ndarray:
            return (verts - wrist) @ rot.T + wrist + trans

        # Slide in along the normal until the pre-shaped hand is `gap` from the surface: sphere tracing on the
        # distance grid (a distance is a safe step), on every third vertex.
        gap = rng.uniform(0.001, 0.004) if kind == "power" else rng.uniform(0.0, 0.003)
        offset = 0.25
        for _ in range(12):
            step = float(self.geometry.grid_distance(class_id, transform(sparse, place(offset))).min()) - gap
            offset -= step
            if abs(step) < 5e-4:
                break
        trans = place(offset)

        # Close every finger from its start curl toward its target; stop each at first touch.
        curl, touched = self._close(class_id, shape, start, spread, target, rot, wrist, trans, needed)
        if needed and (not touched[0] or touched.sum() < needed):
            return None
        pose = flexion_pose(curl[None], spread[None])[0]
        verts, joints = self._forward(pose[None], shape)
        verts, joints = transform(verts[0], trans), transform(joints[0], trans)
        dist = self.geometry.exact_distance(class_id, verts)
        # Repair: uncurl fingers that go too deep, then back the whole hand off if the palm does.
        for _ in range(4):
            deep = dist < -cfg.max_penetration
            if not deep.any():
                break
            fingers = np.unique(self.vertex_finger[deep])
            if (fingers < 0).any():
                trans = trans + normal * (-float(dist.min()) - cfg.max_penetration * 0.5)
            for finger in fingers[fingers >= 0]:
                curl[finger] = max(start[finger], curl[finger] - 0.06)
            pose = flexion_pose(curl[None], spread[None])[0]
            verts, joints = self._forward(pose[None], shape)
            verts, joints = transform(verts[0], trans), transform(joints[0], trans)
            dist = self.geometry.exact_distance(class_id, verts)
        for _ in range(4):  # last resort: back the whole hand off along the normal until shallow enough
            if dist.min() >= -cfg.max_penetration:
                break
            shift = normal * (-float(dist.min()) - cfg.max_penetration * 0.5)
            trans, verts, joints = trans + shift, verts + shift, joints + shift
            dist = self.geometry.exact_distance(class_id, verts)

        contact = dist < cfg.contact_threshold
        points_c, normals_c = self._contact_points(class_id, verts, dist, contact)
        fingers_in_contact = tuple(sorted({_FINGERS[f] for f in self.vertex_finger[contact] if f >= 0}))
        # smplx convention: verts = R (v - J0) + J0 + t with J0 the rest wrist; our transform rotates about `wrist`
        # (the same J0), so t = trans.
        return Grasp(
            class_id=class_id,
            kind=kind,
            pose=pose,
            shape=shape,
            rot_matrix=rot,
            trans=trans,
            verts=verts,
            joints=joints,
            contact=contact,
            contact_points=points_c,
            contact_normals=normals_c,
            penetration=float(max(0.0, -dist.min())),
            fingers_in_contact=fingers_in_contact,
        )

    def _close(
        self, class_id, shape, start, spread, target, rot, wrist, trans, needed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-finger curl (5,) at first touch, searched on a coarse then a fine grid of curl levels, and whether
        each finger touched (5,) bool. With `needed`, a coarse pass that touches without the thumb or with fewer
        fingers ends the search: refining moves each finger only between levels the coarse pass already tried, so
        the approach fails all the same (about half of them do, and skip the fine pass)."""
        touch = self.config.touch
        low, high = start.copy(), target.copy()
        for levels in (_COARSE_LEVELS, _FINE_LEVELS):
            steps = np.linspace(0.0, 1.0, levels)
            curls = low[None] + steps[:, None] * (high - low)[None]  # (L, 5)
            poses = flexion_pose(curls, np.broadcast_to(spread, curls.shape))
            verts = self.fast.posed_subset(poses, self._rest_of(shape), self._finger_sample)  # (L, Vs, 3)
            dist = self.geometry.grid_distance(class_id, (verts - wrist) @ rot.T + wrist + trans)  # (L, Vs)
            new_low, new_high = low.copy(), high.copy()
            touched = np.zeros(5, bool)
            for f in range(5):
                own = self.vertex_finger[self._finger_sample] == f
                closest = dist[:, own].min(1)  # (L,)
                hit = np.nonzero(closest <= touch)[0]
                touched[f] = len(hit) > 0
                if len(hit) == 0:
                    new_low[f] = new_high[f] = high[f]  # never touches: close to the target
                elif hit[0] == 0:
                    new_low[f] = new_high[f] = low[f]  # touching already
                else:
                    new_low[f], new_high[f] = curls[hit[0] - 1, f], curls[hit[0], f]
            low, high = new_low, new_high
            if not touched.any() or (needed and (not touched[0] or touched.sum() < needed)):
                break  # nothing to refine, or an approach that fails anyway
        return low, touched

    def _contact_points(self, class_id: int, verts: np.ndarray, dist: np.ndarray, contact: np.ndarray):
        """One contact per hand bone in contact: the surface point nearest that bone's closest vertex, and the
        inward normal of the face it lies on (unambiguous even where a thin object is touched from both sides)."""
        if not contact.any():
            return np.zeros((0, 3)), np.zeros((0, 3))
        bones = self.vertex_bone
        chosen = []
        for bone in np.unique(bones[contact]):
            candidates = np.nonzero(contact & (bones == bone))[0]
            chosen.append(candidates[np.argmin(dist[candidates])])
        points, outward = self.geometry.closest_points(class_id, verts[chosen])
        normals = -outward
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        return points, normals
