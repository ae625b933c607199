"""What the 3D panel shows for one snapshot sample: hand meshes, skeletons, objects, contacts and forces as
coloured triangle layers (`MeshLayer`), in the camera frame of the input image, metres.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from amt_core.joints import BONES, FINGER_COLORS, finger_of
from amt_studio.state.snapshot import SnapshotData

PRED_HAND_RGB = (0.96, 0.62, 0.36)
GT_HAND_RGB = (0.36, 0.78, 0.74)
PRED_OBJECT_RGB = (0.62, 0.66, 0.92)
GT_OBJECT_RGB = (0.55, 0.82, 0.55)
FORCE_RGB = (0.95, 0.95, 0.3)
JOINT_RADIUS_M = 0.0045
BONE_RADIUS_M = 0.0025
CONTACT_RADIUS_M = 0.004
FORCE_M_PER_N = 0.01
"""Arrow length per newton of contact force (clamped to MAX_ARROW_M)."""
MAX_ARROW_M = 0.05

# Layer names, also the toggles of the panel.
LAYERS = ("pred hand", "gt hand", "pred skeleton", "gt skeleton", "pred object", "gt object", "contacts", "forces")


@dataclass(kw_only=True)
class MeshLayer:
    name: str
    verts: np.ndarray
    """(N, 3) metres."""
    faces: np.ndarray
    """(F, 3) int32."""
    face_rgb: np.ndarray
    """(F, 3) float32 colours in [0, 1]."""


def _layer(name: str, verts: np.ndarray, faces: np.ndarray, rgb: np.ndarray | tuple) -> MeshLayer:
    faces = np.asarray(faces, dtype=np.int32).reshape(-1, 3)
    colour = np.asarray(rgb, dtype=np.float32)
    face_rgb = np.broadcast_to(colour, (len(faces), 3)).copy() if colour.ndim == 1 else colour
    return MeshLayer(name=name, verts=np.asarray(verts, dtype=np.float64), faces=faces, face_rgb=face_rgb)


def skeleton_layer(name: str, joints: np.ndarray, shade: float = 1.0) -> MeshLayer:
    """Joints as spheres and bones as cylinders, coloured by finger (the wrist is grey)."""
    from amt_studio.render import primitives  # trimesh: imported on first use, not before the window paints

    sv, sf = primitives.spheres(joints, JOINT_RADIUS_M)
    parents = np.array([b[0] for b in BONES])
    children = np.array([b[1] for b in BONES])
    cv, cf = primitives.cylinders(joints[parents], joints[children], BONE_RADIUS_M)
    finger_rgb = np.array(FINGER_COLORS, dtype=np.float32) / 255.0 * shade
    grey = np.array([0.8, 0.8, 0.8], dtype=np.float32) * shade
    joint_rgb = np.array([finger_rgb[finger_of(j)] if finger_of(j) >= 0 else grey for j in range(len(joints))])
    faces_per_sphere = len(sf) // len(joints)
    bone_rgb = finger_rgb[[finger_of(c) for c in children]]
    faces_per_bone = len(cf) // max(len(children), 1)
    face_rgb = np.concatenate([np.repeat(joint_rgb, faces_per_sphere, 0), np.repeat(bone_rgb, faces_per_bone, 0)])
    return _layer(name, np.concatenate([sv, cv]), np.concatenate([sf, cf + len(sv)]), face_rgb.astype(np.float32))


def confidence_rgb(conf: np.ndarray) -> np.ndarray:
    """(N,) confidence in [0, 1] -> (N, 3) colours from blue (0) through magenta to yellow (1)."""
    stops = np.array([[0.2, 0.35, 0.95], [0.85, 0.25, 0.65], [1.0, 0.85, 0.2]], dtype=np.float32)
    x = np.clip(np.asarray(conf, dtype=np.float32), 0.0, 1.0) * 2.0
    low = np.minimum(x.astype(int), 1)
    t = (x - low)[:, None]
    return stops[low] * (1 - t) + stops[low + 1] * t


@functools.lru_cache(maxsize=64)
def catalog_mesh(class_id: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The object catalog's mesh for a class id (verts metres in the object frame, faces), or None if unknown."""
    from amt_core.objects.catalog import catalog

    classes = catalog()
    if not 0 <= class_id < len(classes):
        return None
    mesh = classes[class_id].mesh
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int32)


def object_mesh_for(snapshot: SnapshotData, class_id: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The snapshot's own mesh for a class where it carries one, else the catalog's."""
    if class_id < 0:
        return None
    if class_id in snapshot.obj_meshes:
        return snapshot.obj_meshes[class_id]
    return catalog_mesh(int(class_id))


def snapshot_layers(snapshot: SnapshotData, index: int, visible: set[str] | None = None) -> list[MeshLayer]:
    """The layers of sample `index` of a snapshot; `visible` (default all of LAYERS) picks which are built."""
    from amt_studio.render import primitives

    visible = set(LAYERS) if visible is None else visible
    layers: list[MeshLayer] = []
    faces = snapshot.hand_faces
    for side, rgb in (("pred", PRED_HAND_RGB), ("gt", GT_HAND_RGB)):
        verts = getattr(snapshot, f"{side}_hand_verts")
        has_verts = side == "pred" or snapshot.has("hand_verts", index)
        if f"{side} hand" in visible and verts is not None and faces is not None and has_verts:
            layers.append(_layer(f"{side} hand", verts[index], faces, rgb))
        joints = getattr(snapshot, f"{side}_joints3d")
        if f"{side} skeleton" in visible and joints is not None and (side == "pred" or snapshot.has("joints3d", index)):
            layers.append(skeleton_layer(f"{side} skeleton", joints[index], 1.0 if side == "pred" else 0.7))
    for side, rgb in (("pred", PRED_OBJECT_RGB), ("gt", GT_OBJECT_RGB)):
        cls, rot, trans = (getattr(snapshot, f"{side}_obj_{k}") for k in ("class", "rot", "trans"))
        if cls is None and side == "pred":
            cls = snapshot.gt_obj_class  # a model without a classifier head is drawn with the true class
        if f"{side} object" not in visible or cls is None or rot is None or trans is None:
            continue
        if not snapshot.has("obj", index):  # no object in this sample (the prediction is drawn only with one)
            continue
        mesh = object_mesh_for(snapshot, int(cls[index]))
        if mesh is not None:
            verts = mesh[0] @ np.asarray(rot[index], dtype=np.float64).T + trans[index]
            layers.append(_layer(f"{side} object", verts, mesh[1], rgb))
    points, conf = snapshot.pred_contact_points, snapshot.pred_contact_conf
    if "contacts" in visible and points is not None:
        c = conf[index] if conf is not None else np.ones(len(points[index]))
        shown = c > 0.05
        if shown.any():
            sv, sf = primitives.spheres(points[index][shown], CONTACT_RADIUS_M)
            per = len(sf) // int(shown.sum())
            layers.append(_layer("contacts", sv, sf, np.repeat(confidence_rgb(c[shown]), per, 0)))
    forces = snapshot.pred_contact_forces
    if "forces" in visible and points is not None and forces is not None:
        c = conf[index] if conf is not None else np.ones(len(points[index]))
        vec = forces[index] * FORCE_M_PER_N
        length = np.linalg.norm(vec, axis=1, keepdims=True)
        vec = np.where(length > MAX_ARROW_M, vec / np.maximum(length, 1e-9) * MAX_ARROW_M, vec)
        shown = c > 0.5
        av, af = primitives.arrows(points[index][shown], vec[shown], BONE_RADIUS_M * 0.8)
        if len(af):
            layers.append(_layer("forces", av, af, FORCE_RGB))
    return layers
