"""The synthetic hand-object world: one record (numpy arrays) per (seed, index), grasp + camera + render + labels.

A record is a pure function of (seed, index), so shards, resumed runs and DataLoader workers all agree. Grasps come
from a per-class bank whose entries are themselves pure functions of (seed, class, slot), memoized per process and
cached on disk for every process and run; each sample adds its own view, gravity, lighting, skin tone, background
and distractors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh
from scipy.spatial.transform import Rotation
from threadpoolctl import threadpool_limits

from amt_core.schema.sample import MAX_CONTACTS
from amt_core.synth.bank_cache import GraspBankCache
from amt_core.synth.forces import ForceConfig, solve_contact_forces
from amt_core.synth.grasp import Grasp, GraspConfig, GraspSynthesizer
from amt_core.synth.render import (
    DISTRACTOR,
    HAND,
    OBJECT,
    SKIN_TONES,
    MeshInstance,
    RenderConfig,
    Renderer,
    vertex_normals,
)

# `amt_core.geometry.camera.MIN_DEPTH`: points nearer the camera plane are clamped before dividing.
_MIN_DEPTH = 1e-4
# Offset that separates the grasp bank's random streams from the per-sample ones.
_BANK_STREAM = 0x5EED_BA4C


@dataclass(kw_only=True)
class WorldConfig:
    """What the synthetic world varies and how much."""

    size: int = 128
    """Image side in pixels (square crops around the hand)."""
    hand_only_share: float = 0.1
    """Share of samples with a hand and no object."""
    bank_size: int = 16
    """Grasps per object class and seed; each is built once (per process, or once per dataset by the writer) and
    reused under new views, lights, skin tones and backgrounds. Larger is more varied and slower to start."""
    hand_share: tuple[float, float] = (0.55, 0.85)
    """Range of the share of the crop's side that the hand (and the object near it) spans."""
    distance: tuple[float, float] = (0.3, 0.8)
    """Camera distance to the hand in metres (head-mounted ~0.3-0.5, hand-held ~0.4-0.8)."""
    grasp_side_views: float = 0.7
    """Share of views that lean toward the thumb side of the hand (the rest look from anywhere)."""
    object_margin: float = 0.12
    """The crop frames object points within this distance (metres) of the hand's centre, besides the hand."""
    max_distractors: int = 2
    """Up to this many random shapes behind the hand."""
    contact_threshold: float = 0.004
    """A hand vertex is in contact when it is closer than this to the object (metres)."""
    grasp: GraspConfig = field(default_factory=GraspConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    forces: ForceConfig = field(default_factory=ForceConfig)

    def __post_init__(self) -> None:
        if not 32 <= self.size <= 1024:
            raise ValueError(f"WorldConfig.size must be in [32, 1024] pixels, got {self.size}")
        if not 0.0 <= self.hand_only_share <= 1.0:
            raise ValueError(f"WorldConfig.hand_only_share must be in [0, 1], got {self.hand_only_share}")
        if not 1 <= self.bank_size <= 100000:
            raise ValueError(f"WorldConfig.bank_size must be in [1, 100000], got {self.bank_size}")
        low, high = self.hand_share
        if not 0.1 <= low <= high <= 1.0:
            raise ValueError(f"WorldConfig.hand_share must be 0.1 <= low <= high <= 1, got {self.hand_share}")
        low, high = self.distance
        if not 0.1 <= low <= high <= 3.0:
            raise ValueError(f"WorldConfig.distance must be 0.1 <= low <= high <= 3 metres, got {self.distance}")
        if not 0.0 <= self.grasp_side_views <= 1.0:
            raise ValueError(f"WorldConfig.grasp_side_views must be in [0, 1], got {self.grasp_side_views}")
        if not 0.0 <= self.object_margin <= 1.0:
            raise ValueError(f"WorldConfig.object_margin must be in [0, 1] metres, got {self.object_margin}")
        if not 0 <= self.max_distractors <= 8:
            raise ValueError(f"WorldConfig.max_distractors must be in [0, 8], got {self.max_distractors}")
        if not 0.0 < self.contact_threshold <= 0.02:
            raise ValueError(f"WorldConfig.contact_threshold must be in (0, 0.02] metres, got {self.contact_threshold}")
        self.grasp.contact_threshold = self.contact_threshold


# What `World.timings` adds up (CPU seconds of this process, and a count): the bank grasp a sample uses (a lookup,
# or building it on first use), the free hand, the view and scene set-up, ray casting and shading, the labels
# (projection, contact forces) and the image arrays; `amt_core.bench.synth` reports them per image.
TIMINGS = ("grasp_s", "scene_s", "render_s", "forces_s", "label_s", "samples")


def single_threaded() -> None:
    """Limit this process to one BLAS and one torch thread: a world makes many small numpy calls, where OpenBLAS's
    threads cost several times the arithmetic (a 3x slower grasp search on 2 cores, more when they are busy), and
    the processes that render (writer workers, DataLoader workers) already use every core. Call it in those
    processes only: it is process-wide."""
    threadpool_limits(1)
    torch.set_num_threads(1)


def project_points(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 2) pixels of camera-frame points (N, 3) metres: `amt_core.geometry.project_to_image` in numpy (which
    imports torch's compiler stack through roma, seconds of start-up per process)."""
    z = np.maximum(points_cam[:, 2:3], _MIN_DEPTH)
    x, y = points_cam[:, 0:1] / z, points_cam[:, 1:2] / z
    return np.concatenate([K[0, 0] * x + K[0, 1] * y + K[0, 2], K[1, 1] * y + K[1, 2]], axis=1)


def look_at(center: np.ndarray, view_dir: np.ndarray, up: np.ndarray, distance: float, roll: float):
    """World->camera (R (3, 3), t (3,)) for an OpenCV camera `distance` from `center` along `view_dir`, looking back.

    Args:
        center: (3,) point the camera looks at. view_dir: (3,) unit, from center to the camera.
        up: (3,) world up (image up where possible). roll: radians about the optical axis.
    """
    forward = -view_dir / np.linalg.norm(view_dir)
    down = -(up - forward * float(up @ forward))
    if np.linalg.norm(down) < 1e-6:  # looking straight along up: any down will do
        down = np.cross(forward, [1.0, 0.0, 0.0]) if abs(forward[0]) < 0.9 else np.cross(forward, [0.0, 1.0, 0.0])
    down /= np.linalg.norm(down)
    right = np.cross(down, forward)
    rot = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    c, s = np.cos(roll), np.sin(roll)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ rot
    position = center + view_dir * distance
    return rot, -rot @ position


def crop_intrinsics(points_cam: np.ndarray, size: int, share: float, jitter: np.ndarray) -> np.ndarray:
    """K (3, 3) of a square crop of `size` px where `points_cam` (N, 3) span `share` of the side, centred + jitter."""
    xy = points_cam[:, :2] / points_cam[:, 2:3]
    low, high = xy.min(0), xy.max(0)
    extent = float(max(high - low))
    focal = share * size / max(extent, 1e-6)
    center = (low + high) / 2
    cx, cy = (size - 1) / 2 - focal * center + jitter * size
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


def _rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * angle).as_matrix()


def _unit(rng: np.random.Generator) -> np.ndarray:
    vec = rng.normal(size=3)
    return vec / np.linalg.norm(vec)


def grasp_key(seed: int, index: int, config: WorldConfig, num_classes: int) -> tuple[int, int, int] | None:
    """The bank entry (seed, class index, slot) that sample `index` of dataset `seed` uses; None for hand-only."""
    return _draw_grasp_key(np.random.default_rng([seed, index]), seed, config, num_classes)


def _draw_grasp_key(rng: np.random.Generator, seed: int, config: WorldConfig, num_classes: int):
    # The first draws of every sample's stream, in this order (grasp_key replays them without rendering).
    if rng.random() < config.hand_only_share:
        return None
    return seed, int(rng.integers(num_classes)), int(rng.integers(config.bank_size))


class World:
    """Builds records; holds the hand model, the catalog, the grasp bank and the renderer of one process."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        self.grasps = GraspSynthesizer(self.config.grasp)
        self.hand = self.grasps.hand
        self.classes = self.grasps.classes
        self.renderer = Renderer(self.config.render)
        self._bank: dict[tuple[int, int, int], Grasp] = {}
        self._disk_bank = GraspBankCache(self.config.grasp)  # shared by processes and runs (amt_core.synth.bank_cache)
        self._points: dict[int, np.ndarray] = {}
        self._normal_cache: dict[int, np.ndarray] = {}  # class id, or id() of a bank grasp (kept alive by the bank)
        self._distractors = [
            trimesh.creation.box(extents=(1.0, 1.0, 1.0)),
            trimesh.creation.icosphere(subdivisions=2, radius=0.6),
            trimesh.creation.cylinder(radius=0.5, height=1.0, sections=24),
            trimesh.creation.capsule(height=1.0, radius=0.3, count=[12, 12]),
        ]
        self.timings = dict.fromkeys(TIMINGS, 0.0)

    @property
    def num_verts(self) -> int:
        return int(self.hand.num_verts)

    def _normals(self, owner, verts, faces) -> np.ndarray:
        """(V, 3) vertex normals in the owner's own frame, cached for object classes and bank grasps (a view only
        rotates them); a free hand's are computed each time."""
        key = owner if isinstance(owner, int) else id(owner)
        if isinstance(owner, Grasp) and owner.class_id < 0:
            return vertex_normals(np.asarray(verts, np.float64), np.asarray(faces))
        if key not in self._normal_cache:
            self._normal_cache[key] = vertex_normals(np.asarray(verts, np.float64), np.asarray(faces))
        return self._normal_cache[key]

    def _object_points(self, class_id: int) -> np.ndarray:
        """(256, 3) points spread over an object's surface, object frame (cached)."""
        if class_id not in self._points:
            self._points[class_id] = self.classes[class_id].surface_points(256, seed=0)
        return self._points[class_id]

    def bank_grasp(self, seed: int, class_index: int, slot: int) -> Grasp:
        """Grasp `slot` of class `class_index` for `seed`: built on first use, then memoized (a pure function)."""
        key = (seed, class_index, slot)
        if key not in self._bank:
            grasp = self._disk_bank.load(key)
            if grasp is None:
                rng = np.random.default_rng([_BANK_STREAM, seed, class_index, slot])
                grasp = self.grasps.grasp(class_index, rng)
                self._disk_bank.store(key, grasp)
            self._bank[key] = grasp
        return self._bank[key]

    def add_to_bank(self, key: tuple[int, int, int], grasp: Grasp) -> None:
        """Store a grasp built elsewhere (the writer builds each bank entry once and hands it to every worker)."""
        self._bank.setdefault(key, grasp)  # never replaced: cached normals are keyed by the stored object

    def record(self, seed: int, index: int) -> dict[str, np.ndarray]:
        """The record of sample `index` of dataset `seed` (numpy arrays; see `amt_core.data.synthetic`)."""
        # long: the sample's random draws in one fixed order (grasp, view, crop, skin, distractors, render): the
        # order is part of the dataset, so it reads top to bottom
        cfg = self.config
        rng = np.random.default_rng([seed, index])
        t0 = time.process_time()
        key = _draw_grasp_key(rng, seed, cfg, len(self.classes))
        if key is None:
            grasp = self.grasps.free_hand(rng)
            obj = None
            up = _unit(rng)
        else:
            grasp = self.bank_grasp(*key)
            obj = self.classes[key[1]]
            # Objects are modelled upright (+z); people hold them roughly so, tilted a little.
            up = _rotation_about(_unit(rng), rng.uniform(0, np.deg2rad(35))) @ np.array([0.0, 0.0, 1.0])
        t1 = time.process_time()

        # Camera: looks at the hand from above-ish (head-mounted and hand-held views); most views lean to the
        # thumb side of the hand, where the grasp shows, the rest come from anywhere (the back of the hand, too).
        center = grasp.joints.mean(0)
        view = _unit(rng) + up * rng.uniform(0.0, 0.8)
        if rng.random() < cfg.grasp_side_views:
            view = view + grasp.rot_matrix[:, 0] * rng.uniform(0.5, 1.2)  # template +x: the thumb side
        view /= np.linalg.norm(view)
        distance = rng.uniform(*cfg.distance)
        rot, trans = look_at(center, view, up, distance, rng.normal(0, np.deg2rad(20)))
        verts_cam = grasp.verts @ rot.T + trans  # (V, 3)
        joints_cam = grasp.joints @ rot.T + trans  # (21, 3)
        framed = verts_cam
        if obj is not None:
            # The crop frames the hand and the part of the object within reach of it.
            obj_cam = self._object_points(obj.id) @ rot.T + trans
            near = np.linalg.norm(obj_cam - joints_cam.mean(0), axis=1) < cfg.object_margin
            framed = np.concatenate([verts_cam, obj_cam[near]])
        share = rng.uniform(*cfg.hand_share)
        K = crop_intrinsics(framed, cfg.size, share, rng.uniform(-0.06, 0.06, 2))

        tone = rng.uniform(0, len(SKIN_TONES) - 1)
        low = int(tone)
        skin = SKIN_TONES[low] * (1 - (tone - low)) + SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] * (tone - low)
        skin = skin * rng.uniform(0.9, 1.1, 3)
        vertex_colors = np.clip(skin[None] * (1 + 0.04 * rng.standard_normal((len(verts_cam), 1))), 0, 1)
        meshes = [
            MeshInstance(
                verts=verts_cam,
                faces=self.hand.faces,
                kind=HAND,
                vertex_colors=vertex_colors.astype(np.float32),
                normals=(self._normals(grasp, grasp.verts, self.hand.faces) @ rot.T).astype(np.float32),
                shininess=rng.uniform(8, 30),
                specular=rng.uniform(0.03, 0.15),
            )
        ]
        if obj is not None:
            obj_verts = np.asarray(obj.mesh.vertices) @ rot.T + trans
            meshes.append(
                MeshInstance(
                    verts=obj_verts,
                    faces=np.asarray(obj.mesh.faces),
                    kind=OBJECT,
                    albedo=obj.albedo,
                    to_local=(rot, trans),
                    normals=(self._normals(obj.id, obj.mesh.vertices, obj.mesh.faces) @ rot.T).astype(np.float32),
                    shininess=rng.uniform(10, 80),
                    specular=rng.uniform(0.05, 0.5),
                )
            )
        depth_center = float(joints_cam[:, 2].mean())
        for _ in range(int(rng.integers(0, cfg.max_distractors + 1))):
            shape = self._distractors[int(rng.integers(len(self._distractors)))]
            scale = rng.uniform(0.03, 0.15, 3)
            z = depth_center + rng.uniform(0.12, 0.5)
            u, v = rng.uniform(-0.5, 1.5, 2) * cfg.size
            place = np.array([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])
            spin = _rotation_about(_unit(rng), rng.uniform(0, np.pi))
            verts = (np.asarray(shape.vertices) * scale) @ spin.T + place
            color = np.tile(rng.uniform(0.1, 0.9, 3), (len(verts), 1)).astype(np.float32)
            meshes.append(
                MeshInstance(verts=verts, faces=np.asarray(shape.faces), kind=DISTRACTOR, vertex_colors=color)
            )
        t2 = time.process_time()
        out = self.renderer.render(meshes, K, cfg.size, cfg.size, rng)
        t3 = time.process_time()

        record = self._labels(grasp, obj, rot, trans, up, verts_cam, joints_cam, K)
        record["image"] = np.round(out.rgb.transpose(2, 0, 1) * 255).astype(np.uint8)
        record["depth"] = out.depth.astype(np.float16)
        record["hand_mask"] = out.hand_mask
        record["obj_mask"] = out.obj_mask
        t4 = time.process_time()
        self.timings["grasp_s"] += t1 - t0
        self.timings["scene_s"] += t2 - t1
        self.timings["render_s"] += t3 - t2
        self.timings["label_s"] += t4 - t3
        self.timings["samples"] += 1
        return record

    def _labels(self, grasp, obj, rot, trans, up, verts_cam, joints_cam, K) -> dict[str, np.ndarray]:
        joints2d = project_points(joints_cam, K)
        hand_rot_mat = rot @ grasp.rot_matrix
        rest_wrist = grasp.joints[0] - grasp.trans  # the wrist before translation (rotation keeps it fixed)
        record: dict[str, np.ndarray] = {
            "K": K.astype(np.float32),
            "joints3d": joints_cam.astype(np.float32),
            "joints2d": joints2d.astype(np.float32),
            "hand_pose": grasp.pose.astype(np.float32),
            "hand_shape": grasp.shape.astype(np.float32),
            "hand_rot": Rotation.from_matrix(hand_rot_mat).as_rotvec().astype(np.float32),
            "hand_trans": (joints_cam[0] - rest_wrist).astype(np.float32),
            "hand_verts": verts_cam.astype(np.float32),
            "contact": grasp.contact.astype(np.uint8),
            "contact_points": np.zeros((MAX_CONTACTS, 3), np.float32),
            "contact_forces": np.zeros((MAX_CONTACTS, 3), np.float32),
            "contact_point_mask": np.zeros(MAX_CONTACTS, bool),
            "contact_normals": np.zeros((MAX_CONTACTS, 3), np.float32),
            "obj_class": np.array(-1, np.int64),
            "obj_rot": np.eye(3, dtype=np.float32),
            "obj_trans": np.zeros(3, np.float32),
            "has_obj": np.array(obj is not None),
            "grasp_stable": np.array(False),
            "wrench_residual": np.zeros(2, np.float32),
            "gravity_dir": (rot @ -up).astype(np.float32),
        }
        if obj is None:
            return record
        record["obj_class"] = np.array(obj.id, np.int64)
        record["obj_rot"] = rot.astype(np.float32)
        record["obj_trans"] = trans.astype(np.float32)
        count = min(len(grasp.contact_points), MAX_CONTACTS)
        if count:
            t0 = time.process_time()
            solution = solve_contact_forces(
                grasp.contact_points[:count],
                grasp.contact_normals[:count],
                self.grasps.geometry.center_of_mass(obj.id),
                float(obj.mass),
                -up,
                self.config.forces,
            )
            self.timings["forces_s"] += time.process_time() - t0  # inside label_s too
            record["contact_points"][:count] = grasp.contact_points[:count] @ rot.T + trans
            record["contact_forces"][:count] = solution.forces @ rot.T
            record["contact_normals"][:count] = grasp.contact_normals[:count] @ rot.T
            record["contact_point_mask"][:count] = True
            record["grasp_stable"] = np.array(solution.stable)
            record["wrench_residual"] = np.array([solution.force_residual, solution.torque_residual], np.float32)
        else:
            weight = float(obj.mass) * 9.81
            record["wrench_residual"] = np.array([weight, 0.0], np.float32)
        return record
