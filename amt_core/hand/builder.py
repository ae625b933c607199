"""Builds the open hand asset (OPENHAND_RIGHT.npz / OPENHAND_LEFT.npz) in MANO's file layout, deterministically.

Run `python -m amt_core.hand.builder --out assets/hand`. Needs scikit-image and pymeshlab (build time only).
The ten shape coefficients (shapedirs[..., k]; one unit is roughly one standard deviation of adult hands):
  0 overall size: uniform scale about the wrist, +5% per unit.
  1 palm width: the palm (and the spacing of the knuckles) wider by 5% per unit; finger lengths unchanged.
  2 palm length: wrist-to-knuckle distance +5% per unit; fingers keep their lengths and move with the knuckles.
  3 finger length: index, middle, ring and little phalanges +5% per unit.
  4 thickness: girth of every finger and thumb segment and palm thickness +6% per unit.
  5 thumb length: all three thumb segments (metacarpal included) +6% per unit.
  6 index-to-ring ratio: index +3% and ring -3% per unit.
  7 little finger length: +6% per unit.
  8 palm thickness: palm and wrist thickness (palm-normal axis) +10% per unit.
  9 fingertip girth: distal phalanges of all five digits +8% per unit in girth.
posedirs (V, 3, 135) are analytic pose correctives, not learned from scans: at each joint they undo, to first order,
the volume that linear blend skinning loses where parent and child weights blend (see pose_correctives); a full fist
keeps its rest volume within 1% (10% loss without them).
hands_components (45, 45) are orthonormal principal directions (rows, largest variance first) of poses drawn with
limits.sample_pose; hands_mean (45,) is their mean (a relaxed, half-curled hand).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import nnls
from scipy.sparse import coo_matrix, diags

from amt_core.hand.limits import MIRROR_AXIS_ANGLE, sample_pose
from amt_core.hand.skeleton import MANO_FINGER_JOINTS, TIP_ORDER, Skeleton, rest_skeleton
from amt_core.hand.surface import SurfaceConfig, build_surface
from amt_core.joints import MANO_PARENTS

NUM_BETAS = 10
NUM_JOINTS = 16


@dataclass(kw_only=True)
class BuilderConfig:
    """Settings of the asset build (defaults produce the shipped files)."""

    seed: int = 0
    """Seed of the pose samples used for the PCA; any int >= 0."""
    pca_samples: int = 20000
    """Poses sampled for hands_components/hands_mean; 1000-200000."""
    weight_smoothing: int = 8
    """Laplacian smoothing passes over the skinning weights; 0-50."""

    corrective_gain: float = 1.5
    """Strength of the pose correctives (posedirs) against skinning volume loss; 0 (none) to 3."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.corrective_gain <= 3.0:
            raise ValueError(f"BuilderConfig.corrective_gain must be in [0, 3], got {self.corrective_gain}")
        if self.seed < 0:
            raise ValueError(f"BuilderConfig.seed must be >= 0, got {self.seed}")
        if not 1000 <= self.pca_samples <= 200000:
            raise ValueError(f"BuilderConfig.pca_samples must be in [1000, 200000], got {self.pca_samples}")
        if not 0 <= self.weight_smoothing <= 50:
            raise ValueError(f"BuilderConfig.weight_smoothing must be in [0, 50], got {self.weight_smoothing}")


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _chain(skel: Skeleton, finger: str) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """MANO joints of a finger, its polyline points (4, 3) from base joint to tip, and radii at those points (4,)."""
    joints = MANO_FINGER_JOINTS[finger]
    points = np.concatenate([skel.joints[list(joints)], skel.tips[TIP_ORDER.index(finger)][None]])
    radii = np.append(skel.radii[list(joints)], skel.tip_radii[TIP_ORDER.index(finger)])
    return joints, points, radii


def _project_on_chain(verts: np.ndarray, points: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc length s (V,) of each vertex's projection on the polyline (extended before its base, so palm vertices get
    s < 0) and the distance (V,) from the vertex to the clamped polyline minus the local flesh radius."""
    best_dist = np.full(len(verts), np.inf)
    best_s = np.zeros(len(verts))
    start = 0.0
    for k in range(len(points) - 1):
        a, b = points[k], points[k + 1]
        length = float(np.linalg.norm(b - a))
        t_raw = (verts - a) @ (b - a) / length**2
        t = np.clip(t_raw, 0.0, 1.0)
        dist = np.linalg.norm(verts - (a + t[:, None] * (b - a)), axis=1) - (radii[k] + t * (radii[k + 1] - radii[k]))
        t_arc = t
        if k == 0:
            t_arc = np.minimum(t_raw, 1.0) if k < len(points) - 2 else t_raw
        elif k == len(points) - 2:
            t_arc = np.maximum(t_raw, 0.0)
        s = start + t_arc * length
        better = dist < best_dist
        best_dist = np.where(better, dist, best_dist)
        best_s = np.where(better, s, best_s)
        start += length
    return best_s, best_dist


def _vertex_adjacency(num_verts: int, faces: np.ndarray):
    """Row-normalised vertex adjacency (sparse) for Laplacian smoothing."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    adj = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_verts, num_verts)).tocsr()
    adj.data[:] = 1.0
    return diags(1.0 / np.asarray(adj.sum(axis=1)).ravel()) @ adj


def skinning_weights(verts: np.ndarray, faces: np.ndarray, skel: Skeleton, smoothing: int) -> np.ndarray:
    """Smooth LBS weights (V, 16): each finger blends along its chain with smooth ramps centred on its joints.

    A vertex belongs (softly, by distance to the flesh surface of each chain) to one finger; along that finger its
    weight moves from the parent bone to the child bone over a band about one flesh radius wide centred on each
    joint (two radii at the knuckles, more at the thumb's deep CMC), so knuckles bend without tearing; palm vertices
    (proximal to the knuckles) stay on the wrist. Laplacian passes over the mesh then remove kinks; fingers are not
    mesh neighbours, so no weight leaks between them. Fewer passes keep the phalanges more rigid but fold more skin
    at full flexion (8 passes: the middle phalanges stay 77-90% on their own bone; < 0.8% of faces flip at limits).
    """
    num_verts = len(verts)
    per_finger = []
    surface_dist = []
    for finger in TIP_ORDER:
        joints, points, radii = _chain(skel, finger)
        s, dist = _project_on_chain(verts, points, radii)
        lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
        joint_s = np.concatenate([[0.0], np.cumsum(lengths)[:2]])  # arc length of the three joints
        # Band half-widths: wide at the base (palm skin, thumb's deep CMC), about one radius at the other joints.
        half = radii[:3] * np.array([1.7 if finger == "thumb" else 1.0, 0.5, 0.5])
        centre = joint_s.copy()
        if finger != "thumb":
            centre[0] += 0.3 * radii[0]  # knuckle skin creases a little distal to the MCP centre
        ramps = [_smoothstep((s - centre[k] + half[k]) / (2.0 * half[k])) for k in range(3)]
        w = np.zeros((num_verts, NUM_JOINTS))
        w[:, 0] = 1.0 - ramps[0]
        for k in range(3):
            upper = ramps[k + 1] if k < 2 else 0.0
            w[:, joints[k]] = ramps[k] - upper
        if finger == "thumb":
            # Only flesh around the thumb metacarpal follows the CMC: fade to the wrist away from its axis.
            axis_dist = np.full(num_verts, np.inf)
            for a, b in zip(points[:-1], points[1:]):
                t = np.clip((verts - a) @ (b - a) / float((b - a) @ (b - a)), 0.0, 1.0)
                axis_dist = np.minimum(axis_dist, np.linalg.norm(verts - (a + t[:, None] * (b - a)), axis=1))
            keep = 1.0 - _smoothstep((axis_dist - 1.25 * radii[0]) / (1.1 * radii[0]))
            thumb_part = w[:, 1:] * keep[:, None]
            w = np.concatenate([(1.0 - thumb_part.sum(axis=1))[:, None], thumb_part], axis=1)
        per_finger.append(w)
        surface_dist.append(dist)
    dist = np.stack(surface_dist, axis=1)  # (V, 5)
    soft = np.exp(-(dist - dist.min(axis=1, keepdims=True)) / 0.0006)
    soft /= soft.sum(axis=1, keepdims=True)
    weights = np.einsum("vf,fvj->vj", soft, np.stack(per_finger))
    smooth = _vertex_adjacency(num_verts, faces)
    for _ in range(smoothing):
        weights = 0.5 * weights + 0.5 * (smooth @ weights)
    weights[weights < 1e-4] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


def joint_regressor(verts: np.ndarray, skel: Skeleton) -> np.ndarray:
    """J_regressor (16, V): non-negative weights summing to 1 on vertices around each joint, fitted (NNLS with a
    pull toward uniform weights) so that regressing the template gives the designed joint centres exactly."""
    regressor = np.zeros((NUM_JOINTS, len(verts)))
    for j in range(NUM_JOINTS):
        centre = skel.joints[j]
        if j == 0:
            near = np.flatnonzero(np.abs(verts[:, 1] - centre[1]) < 0.006)  # the ring of skin around the wrist
        else:
            radius = skel.radii[j] * (2.2 if j in (1, 4, 7, 10, 13) else 1.5)
            near = np.flatnonzero(np.linalg.norm(verts - centre, axis=1) < radius)
            if len(near) < 12:
                near = np.argsort(np.linalg.norm(verts - centre, axis=1))[:12]
        n = len(near)
        reg = 0.005  # pull toward uniform weights keeps the regressor spread (robust under shape changes)
        a = np.concatenate([verts[near].T, 10.0 * np.ones((1, n)), reg * np.eye(n)])
        b = np.concatenate([centre, [10.0], reg * np.full(n, 1.0 / n)])
        w, _ = nnls(a, b, maxiter=50 * n)
        regressor[j, near] = w / w.sum()
    return regressor


def shape_basis(verts: np.ndarray, weights: np.ndarray, skel: Skeleton) -> np.ndarray:
    """shapedirs (V, 3, 10): per-vertex offsets for one unit of each shape coefficient (see the module docstring).

    Each coefficient rescales the skeleton (palm axes, bone lengths, flesh girth); every bone then carries the flesh
    it owns (bone-local length and girth scaled, origin moved with its joint) and the skinning weights blend the
    bones' moves, so the offsets are smooth and exactly linear in the coefficient.
    """
    fingers = ("index", "middle", "ring", "little")
    specs: list[dict] = [
        dict(palm=(0.05, 0.05, 0.05), length={f: 0.05 for f in TIP_ORDER}, girth={f: 0.05 for f in TIP_ORDER}),
        dict(palm=(0.05, 0.0, 0.0)),
        dict(palm=(0.0, 0.05, 0.0)),
        dict(length={f: 0.05 for f in fingers}),
        dict(palm=(0.0, 0.0, 0.06), girth={f: 0.06 for f in TIP_ORDER}),
        dict(length={"thumb": 0.06}),
        dict(length={"index": 0.03, "ring": -0.03}),
        dict(length={"little": 0.06}),
        dict(palm=(0.0, 0.0, 0.10)),
        dict(tip_girth=0.08),
    ]
    basis = np.zeros((len(verts), 3, NUM_BETAS))
    for k, spec in enumerate(specs):
        palm = np.diag(1.0 + np.array(spec.get("palm", (0.0, 0.0, 0.0))))
        moved = np.zeros((NUM_JOINTS, len(verts), 3))
        moved[0] = (verts - skel.joints[0]) @ palm.T + skel.joints[0]
        for finger in TIP_ORDER:
            joints, points, _ = _chain(skel, finger)
            origin = palm @ (points[0] - skel.joints[0]) + skel.joints[0]
            length_scale = 1.0 + spec.get("length", {}).get(finger, 0.0)
            girth = 1.0 + spec.get("girth", {}).get(finger, 0.0)
            for i, j in enumerate(joints):
                frame = skel.frames[j]  # columns flexion, abduction, twist (bone axis)
                local = (verts - points[i]) @ frame
                scale = np.array([girth, girth, length_scale])
                if i == 2:
                    scale[:2] *= 1.0 + spec.get("tip_girth", 0.0)
                moved[j] = origin + (local * scale) @ frame.T
                origin = origin + length_scale * (points[i + 1] - points[i])
        basis[:, :, k] = np.einsum("vj,jvc->vc", weights, moved) - verts
    return basis


def pose_correctives(verts: np.ndarray, weights: np.ndarray, skel: Skeleton, gain: float) -> np.ndarray:
    """posedirs (V, 3, 135): the linear-blend-skinning volume loss at each joint, undone to first order.

    Blending a parent and a child transform with child-side weight w pulls a point toward the rotation axis: its
    component x_perp perpendicular to the axis shrinks by about w (1 - w) (1 - cos angle). The symmetric part of
    (R - I) equals -(1 - cos angle) times the projection onto that perpendicular plane, so the offset
    -gain * w (1 - w) * sym(R - I) (v - J) is linear in MANO's pose feature (R - I) and pushes the skin back out
    (both when flexing and twisting). gain > 1 compensates the higher-order loss at large angles.
    """
    posedirs = np.zeros((len(verts), 3, 9 * (NUM_JOINTS - 1)))
    eye = np.eye(3)
    for j in range(1, NUM_JOINTS):
        subtree = [j]
        for k in range(j + 1, NUM_JOINTS):
            if MANO_PARENTS[k] in subtree:
                subtree.append(k)
        child_side = weights[:, subtree].sum(axis=1)
        blend = gain * child_side * (1.0 - child_side)  # (V,)
        x = verts - skel.joints[j]  # (V, 3)
        # d offset_c / d (R - I)_ab = -blend * (delta_ca x_b + delta_cb x_a) / 2
        coeff = (
            -0.5
            * blend[:, None, None, None]
            * (eye[None, :, :, None] * x[:, None, None, :] + eye[None, :, None, :] * x[:, None, :, None])
        )  # (V, c, a, b)
        posedirs[:, :, 9 * (j - 1) : 9 * j] = coeff.reshape(len(verts), 3, 9)
    return posedirs


def fingertip_vertices(verts: np.ndarray, weights: np.ndarray, skel: Skeleton) -> np.ndarray:
    """Ids (5,) of the most distal vertex of each finger (thumb..little), along its last bone."""
    ids = []
    for finger in TIP_ORDER:
        last = MANO_FINGER_JOINTS[finger][2]
        direction = skel.tips[TIP_ORDER.index(finger)] - skel.joints[last]
        direction /= np.linalg.norm(direction)
        owned = np.flatnonzero(weights[:, last] > 0.5)
        ids.append(owned[np.argmax((verts[owned] - skel.joints[last]) @ direction)])
    return np.array(ids, dtype=np.int64)


def pose_pca(config: BuilderConfig) -> tuple[np.ndarray, np.ndarray]:
    """hands_components (45, 45) rows by decreasing variance, and hands_mean (45,), right hand."""
    poses = sample_pose(config.pca_samples, np.random.default_rng(config.seed))
    mean = poses.mean(axis=0)
    _, _, vt = np.linalg.svd(poses - mean, full_matrices=False)
    # Fix each component's sign (largest-magnitude entry positive) so rebuilds are identical.
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    return vt * signs[:, None], mean


def build_right(config: BuilderConfig | None = None, surface: SurfaceConfig | None = None) -> dict[str, np.ndarray]:
    """All arrays of OPENHAND_RIGHT.npz (MANO keys plus fingertip_ids)."""
    config = config or BuilderConfig()
    skel = rest_skeleton()
    verts, faces = build_surface(skel, surface)
    weights = skinning_weights(verts, faces, skel, config.weight_smoothing)
    components, mean = pose_pca(config)
    kintree = np.array([MANO_PARENTS, range(NUM_JOINTS)], dtype=np.int64)
    return {
        "v_template": verts.astype(np.float32),
        "f": faces.astype(np.int64),
        "J_regressor": joint_regressor(verts, skel).astype(np.float32),
        "weights": weights.astype(np.float32),
        "kintree_table": kintree,
        "shapedirs": shape_basis(verts, weights, skel).astype(np.float32),
        "posedirs": pose_correctives(verts, weights, skel, config.corrective_gain).astype(np.float32),
        "hands_components": components.astype(np.float32),
        "hands_mean": mean.astype(np.float32),
        "fingertip_ids": fingertip_vertices(verts, weights, skel),
    }


def mirror_to_left(right: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The left hand as the mirror image (x -> -x) of the right: faces re-wound so normals still point outward,
    shapedirs' x component negated (a mirrored shape space, unlike MANO_LEFT.pkl whose x column was left unflipped),
    pose PCA and mean mirrored per joint as axis-angle (x, -y, -z), posedirs mirrored to match."""
    left = dict(right)
    flip = np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    left["v_template"] = right["v_template"] * flip
    left["f"] = right["f"][:, [0, 2, 1]].copy()
    left["shapedirs"] = right["shapedirs"] * flip[None, :, None]
    # Pose feature (R - I) entry (a, b) changes sign with s_a * s_b under the mirror; the offset's axis c with s_c.
    entry = np.einsum("a,b->ab", flip, flip).reshape(9)
    sign = flip[:, None] * np.tile(entry, NUM_JOINTS - 1)[None, :]
    left["posedirs"] = right["posedirs"] * sign[None]
    mirror = np.tile(MIRROR_AXIS_ANGLE, 15).astype(np.float32)
    left["hands_components"] = right["hands_components"] * mirror[None, :]
    left["hands_mean"] = right["hands_mean"] * mirror
    return left


def write_assets(out: Path, config: BuilderConfig | None = None) -> tuple[Path, Path]:
    """Build both hands and write OPENHAND_RIGHT.npz and OPENHAND_LEFT.npz (float32, compressed) under out."""
    out.mkdir(parents=True, exist_ok=True)
    right = build_right(config)
    paths = (out / "OPENHAND_RIGHT.npz", out / "OPENHAND_LEFT.npz")
    for path, arrays in zip(paths, (right, mirror_to_left(right))):
        np.savez_compressed(path, **arrays)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: python -m amt_core.hand.builder --out DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for OPENHAND_RIGHT.npz and OPENHAND_LEFT.npz")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pose PCA samples")
    args = parser.parse_args(argv)
    for path in write_assets(args.out, BuilderConfig(seed=args.seed)):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
