"""DexYCB (Chao et al., CVPR 2021) as Samples: `dexycb:PATH[:setup:split]`, setups s0-s3, splits train/val/test.

Layout: PATH/<subject>/<sequence>/meta.yml, PATH/<subject>/<sequence>/<serial>/{color_%06d.jpg, labels_%06d.npz},
PATH/calibration/intrinsics/<serial>_640x480.yml, PATH/calibration/mano_<calib>/mano.yml. Conventions (from the
DexYCB toolkit, NVlabs/dex-ycb-toolkit): joint_3d is in metres, the OpenCV camera frame and already the project's
joint order (wrist, thumb mcp..tip, index, middle, ring, little); all -1 when no hand is labelled. pose_m is
(1, 51): global axis-angle (3), 45 PCA coefficients of manopth's layer (use_pca=True, ncomps=45,
flat_hand_mean=False) and translation (3). pose_y is (num_objects, 3, 4) [R | t]; the grasped object is
ycb_ids[ycb_grasp_ind]. Left hands are mirrored to right hands (image flipped, x negated, K and MANO parameters
mirrored), because the Sample has no side field and the model predicts right hands; a mirrored object is not a
rigid motion of its model, so those frames carry no object pose.
The setups (subjects, cameras and sequence indices per split) reproduce the toolkit's rules; items are ordered as
the toolkit orders them (subject, sequence, camera, frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from amt_core.data.crop import (
    CropConfig,
    FrameLabels,
    ManoLayers,
    RealDataset,
    box_from_points,
    catalog_ids,
    crop_config_from,
    load_image,
    load_npz,
    mirror_axis_angle,
    mirror_image,
    mirror_intrinsics,
    open_hand_num_verts,
    project_np,
    raise_if_missing,
    resolve_mano_dir,
    split_target,
)
from amt_core.data.registry import DatasetSpec
from amt_core.errors import UserError

# The released archives unpack to these (the official toolkit renamed the subjects in 2021); the pre-release names
# are still read where a folder uses them.
SUBJECTS = tuple(
    f"{date}-subject-{i + 1:02d}"
    for i, date in enumerate(
        (
            "20200709",
            "20200813",
            "20200820",
            "20200903",
            "20200908",
            "20200918",
            "20200928",
            "20201002",
            "20201015",
            "20201022",
        )
    )
)
LEGACY_SUBJECTS = (
    "20200709-weiy",
    "20200813-ceppner",
    "20200820-amousavian",
    "20200903-ynarang",
    "20200908-yux",
    "20200918-ftozetoramos",
    "20200928-ahanda",
    "20201002-dieterf",
    "20201015-ychao",
    "20201022-lmanuelli",
)
SERIALS = (
    "836212060125",
    "839512060362",
    "840412060917",
    "841412060263",
    "932122060857",
    "932122060861",
    "932122061900",
    "932122062010",
)
YCB_CLASSES = {
    1: "002_master_chef_can",
    2: "003_cracker_box",
    3: "004_sugar_box",
    4: "005_tomato_soup_can",
    5: "006_mustard_bottle",
    6: "007_tuna_fish_can",
    7: "008_pudding_box",
    8: "009_gelatin_box",
    9: "010_potted_meat_can",
    10: "011_banana",
    11: "019_pitcher_base",
    12: "021_bleach_cleanser",
    13: "024_bowl",
    14: "025_mug",
    15: "035_power_drill",
    16: "036_wood_block",
    17: "037_scissors",
    18: "040_large_marker",
    19: "051_large_clamp",
    20: "052_extra_large_clamp",
    21: "061_foam_brick",
}
SEQUENCES_PER_SUBJECT = 100
SETUPS = ("s0", "s1", "s2", "s3")
SPLITS = ("train", "val", "test")
HAND_SEG = 255  # label of hand pixels in `seg`; objects carry their YCB id


@dataclass(frozen=True)
class SplitRule:
    """Which subjects, cameras and sequence indices (0..99 within a subject, sorted by name) a split holds."""

    subjects: tuple[int, ...]
    serials: tuple[int, ...]
    sequences: tuple[int, ...]


_ALL_SUBJECTS, _ALL_SERIALS, _ALL_SEQ = tuple(range(10)), tuple(range(8)), tuple(range(100))


def split_rule(setup: str, split: str) -> SplitRule:
    """The official rule of a setup (s0 seen everything, s1 unseen subjects, s2 unseen cameras, s3 unseen objects).

    s0: every 5th sequence (index % 5 == 4) is held out, val from subjects 0-1, test from subjects 2-9.
    s1: train subjects 0-5 and 9, val subject 6, test subjects 7-8. s2: train cameras 0-5, val camera 6, test
    camera 7. s3: sequences come in groups of 5 per object (index // 5 is the object); val holds objects 3 and 19,
    test objects 7, 11 and 15, train the rest.
    """
    if setup not in SETUPS or split not in SPLITS:
        raise UserError(f"DexYCB setup:split '{setup}:{split}' is unknown; use s0..s3 and train, val or test")
    held_out = tuple(i for i in _ALL_SEQ if i % 5 == 4)
    rules = {
        ("s0", "train"): SplitRule(_ALL_SUBJECTS, _ALL_SERIALS, tuple(i for i in _ALL_SEQ if i % 5 != 4)),
        ("s0", "val"): SplitRule((0, 1), _ALL_SERIALS, held_out),
        ("s0", "test"): SplitRule(tuple(range(2, 10)), _ALL_SERIALS, held_out),
        ("s1", "train"): SplitRule((0, 1, 2, 3, 4, 5, 9), _ALL_SERIALS, _ALL_SEQ),
        ("s1", "val"): SplitRule((6,), _ALL_SERIALS, _ALL_SEQ),
        ("s1", "test"): SplitRule((7, 8), _ALL_SERIALS, _ALL_SEQ),
        ("s2", "train"): SplitRule(_ALL_SUBJECTS, tuple(range(6)), _ALL_SEQ),
        ("s2", "val"): SplitRule(_ALL_SUBJECTS, (6,), _ALL_SEQ),
        ("s2", "test"): SplitRule(_ALL_SUBJECTS, (7,), _ALL_SEQ),
        ("s3", "train"): SplitRule(
            _ALL_SUBJECTS, _ALL_SERIALS, tuple(i for i in _ALL_SEQ if i // 5 not in (3, 7, 11, 15, 19))
        ),
        ("s3", "val"): SplitRule(_ALL_SUBJECTS, _ALL_SERIALS, tuple(i for i in _ALL_SEQ if i // 5 in (3, 19))),
        ("s3", "test"): SplitRule(_ALL_SUBJECTS, _ALL_SERIALS, tuple(i for i in _ALL_SEQ if i // 5 in (7, 11, 15))),
    }
    return rules[(setup, split)]


def _yaml(path: Path) -> dict:
    try:
        with open(path) as handle:
            data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # C parser when built
    except FileNotFoundError as err:
        raise UserError(f"{path} is missing; the dataset looks incomplete") from err
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML ({err}); download it again") from err
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a YAML mapping; download it again")
    return data


def subject_folder(root: Path, subject: int) -> Path | None:
    """The folder of subject `subject` (0-9) under the released name or the pre-release one, or None."""
    for name in (SUBJECTS[subject], LEGACY_SUBJECTS[subject]):
        if (root / name).is_dir():
            return root / name
    return None


def layout_problems(root: Path, rule: SplitRule) -> list[str]:
    """What the folder lacks for a split, one line each: subjects, sequences, meta files, cameras, calibration."""
    if not root.is_dir():
        return [f"folder {root} does not exist"]
    problems = []
    for serial in (SERIALS[c] for c in rule.serials):
        path = root / "calibration" / "intrinsics" / f"{serial}_640x480.yml"
        if not path.is_file():
            problems.append(f"missing {path}")
    for subject in rule.subjects:
        folder = subject_folder(root, subject)
        if folder is None:
            problems.append(
                f"missing subject folder {root / SUBJECTS[subject]} (or its pre-release name "
                f"{LEGACY_SUBJECTS[subject]}); unpack {SUBJECTS[subject]}.tar.gz there"
            )
            continue
        sequences = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if len(sequences) != SEQUENCES_PER_SUBJECT:
            problems.append(f"{folder} has {len(sequences)} sequences, expected {SEQUENCES_PER_SUBJECT}")
        for index in rule.sequences:
            if index >= len(sequences):
                continue
            seq = folder / sequences[index]
            if not (seq / "meta.yml").is_file():
                problems.append(f"missing {seq / 'meta.yml'}")
            for serial in (SERIALS[c] for c in rule.serials):
                if not (seq / serial).is_dir():
                    problems.append(f"missing camera folder {seq / serial}")
    return problems


@dataclass(frozen=True)
class _Sequence:
    folder: Path
    num_frames: int
    grasp_ycb_id: int
    grasp_index: int
    side: str
    betas: tuple[float, ...]


class DexYCBDataset(RealDataset):
    """DexYCB frames of one setup and split as Samples.

    Args:
        root: the dataset folder ($DEX_YCB_DIR of the toolkit).
        setup, split: "s0".."s3" and "train", "val" or "test".
        crop: the crop around the hand.
        mano_dir: folder with real MANO .npz files (None: joints from labels only, no mesh or MANO parameters).
        strict: refuse a dataset that lacks subjects or sequences the split needs (False: use what is there, for
            partial downloads; `amt-core datasets check` lists what is missing either way).
    """

    name = "dexycb"

    def __init__(self, root, setup="s0", split="test", crop=None, mano_dir=None, strict=True) -> None:
        self.root = Path(root)
        self.setup, self.split = setup, split
        self.rule = split_rule(setup, split)
        if strict:
            raise_if_missing("DexYCB", self.root, layout_problems(self.root, self.rule))
        elif not self.root.is_dir():
            raise UserError(f"DexYCB folder {self.root} does not exist")
        self.crop = crop or CropConfig()
        self.mano_layers = ManoLayers(mano_dir) if mano_dir is not None else None
        self.num_verts = self.mano_layers.num_verts if self.mano_layers else open_hand_num_verts()
        self.class_ids = catalog_ids()
        self.serials = [SERIALS[c] for c in self.rule.serials]
        self.intrinsics = {}
        for serial in self.serials:
            path = self.root / "calibration" / "intrinsics" / f"{serial}_640x480.yml"
            if path.is_file() or strict:
                color = _yaml(path).get("color", {})
                try:
                    self.intrinsics[serial] = np.array(
                        [[color["fx"], 0.0, color["ppx"]], [0.0, color["fy"], color["ppy"]], [0.0, 0.0, 1.0]],
                        dtype=np.float64,
                    )
                except KeyError as err:
                    raise UserError(f"{path} lacks color: {err.args[0]}; download the calibration again") from err
        self.sequences: list[_Sequence] = []
        self.index: list[tuple[int, int, int]] = []  # (sequence, camera, frame), the toolkit's order
        for subject in self.rule.subjects:
            folder = subject_folder(self.root, subject)
            if folder is None:
                continue
            names = sorted(p.name for p in folder.iterdir() if p.is_dir())
            for seq_index in self.rule.sequences:
                if seq_index >= len(names) or not (folder / names[seq_index] / "meta.yml").is_file():
                    continue
                self._add_sequence(folder / names[seq_index])
        if not self.index:
            raise UserError(f"DexYCB {setup}:{split} at {self.root} has no frames; check the folder")

    def _add_sequence(self, folder: Path) -> None:
        meta = _yaml(folder / "meta.yml")
        try:
            ycb_ids, grasp = list(meta["ycb_ids"]), int(meta["ycb_grasp_ind"])
            side, calib, num_frames = str(meta["mano_sides"][0]), str(meta["mano_calib"][0]), int(meta["num_frames"])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise UserError(f"{folder / 'meta.yml'} lacks {err}; download the sequence again") from err
        mano_yml = self.root / "calibration" / f"mano_{calib}" / "mano.yml"
        betas = tuple(float(b) for b in _yaml(mano_yml).get("betas", [0.0] * 10)) if mano_yml.is_file() else ()
        seq = len(self.sequences)
        self.sequences.append(_Sequence(folder, num_frames, int(ycb_ids[grasp]), grasp, side, betas))
        for camera, serial in enumerate(self.serials):
            if serial in self.intrinsics:
                self.index.extend((seq, camera, frame) for frame in range(num_frames))

    def __len__(self) -> int:
        return len(self.index)

    def frame_id(self, index: int) -> str:
        seq, camera, frame = self.index[index]
        folder = self.sequences[seq].folder
        return f"{folder.parent.name}/{folder.name}/{self.serials[camera]}/{frame:06d}"

    def frame_files(self, index: int) -> list[Path]:
        seq, camera, frame = self.index[index]
        folder = self.sequences[seq].folder / self.serials[camera]
        return [folder / f"color_{frame:06d}.jpg", folder / f"labels_{frame:06d}.npz"]

    def side(self, index: int) -> str:
        """'right' or 'left': the hand as recorded (samples of left hands are mirrored)."""
        return self.sequences[self.index[index][0]].side

    def labels(self, index: int) -> FrameLabels:
        seq_index, camera, _ = self.index[index]
        seq = self.sequences[seq_index]
        image_path, label_path = self.frame_files(index)
        image = load_image(image_path)
        label = load_npz(label_path, "labels")
        K = self.intrinsics[self.serials[camera]]
        width, height = image.size
        mirror = seq.side == "left"
        flip = np.diag([-1.0, 1.0, 1.0]) if mirror else np.eye(3)
        if mirror:
            image, K = mirror_image(image), mirror_intrinsics(K, width)
        labels = FrameLabels(image=image, K=K, box=(width / 2 - 0.5, height / 2 - 0.5, float(min(width, height))))
        joints = np.asarray(label["joint_3d"], dtype=np.float64).reshape(21, 3)
        if not np.all(joints == -1):
            labels.joints3d = joints @ flip
            labels.box = box_from_points(project_np(labels.joints3d, K), self.crop)
            pose_m = np.asarray(label["pose_m"], dtype=np.float64).reshape(-1)[:51]
            if self.mano_layers is not None and seq.betas and np.any(pose_m != 0):
                self._add_mano(seq, pose_m, mirror, labels)
        pose_y = np.asarray(label["pose_y"], dtype=np.float64).reshape(-1, 3, 4)
        # A mirrored object is not a rigid motion of the same model (objects are chiral), so left-hand frames keep
        # no object pose; their masks stay.
        if not mirror and seq.grasp_index < len(pose_y) and np.any(pose_y[seq.grasp_index] != 0):
            labels.obj_class = self.class_ids.get(YCB_CLASSES.get(seq.grasp_ycb_id, ""), -1)
            rt = pose_y[seq.grasp_index]
            labels.obj_pose = (rt[:, :3], rt[:, 3])
        if "seg" in label:
            seg = np.asarray(label["seg"])
            if mirror:
                seg = seg[:, ::-1]
            if seg.shape == (height, width):
                labels.hand_mask, labels.obj_mask = seg == HAND_SEG, seg == seq.grasp_ycb_id
        return labels

    def _add_mano(self, seq: _Sequence, pose_m: np.ndarray, mirror: bool, labels: FrameLabels) -> None:
        """MANO parameters and mesh from pose_m: PCA coefficients to the flat-relative axis-angle pose; a left hand
        is posed with the left model and mirrored, its parameters mirrored joint by joint (x -> -x)."""
        side = seq.side
        if not self.mano_layers.has(side):
            return
        tables = self.mano_layers.tables(side)
        betas = np.asarray(seq.betas, dtype=np.float64)[:10]
        pose = tables["hands_mean"] + pose_m[3:48] @ tables["hands_components"]
        rot, trans = pose_m[:3], pose_m[48:51]
        verts, _ = self.mano_layers.forward(side, pose, betas, rot, trans)
        if not mirror:
            labels.mano, labels.hand_verts = (pose, betas, rot, trans), verts
            return
        verts = verts * np.array([-1.0, 1.0, 1.0])
        pose, rot = mirror_axis_angle(pose.reshape(15, 3)).reshape(45), mirror_axis_angle(rot)
        wrist_target = labels.joints3d[0]
        trans = wrist_target - self.mano_layers.rest_wrist("right", betas)
        labels.mano, labels.hand_verts = (pose, betas, rot, trans), verts


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def open_dexycb(spec: DatasetSpec) -> DexYCBDataset:
    """Open `dexycb:PATH[:s0..s3[:train|val|test]][?size=224&margin=1.5&mano=DIR|none&strict=1|0]`."""
    spec.check_keys(("size", "margin", "mano", "strict"))
    root, (setup, split) = split_target(spec, ("setup", "split"), ("s0", "test"))
    strict = spec.take("strict", _flag, True, "1 or 0")
    return DexYCBDataset(
        root,
        setup=setup,
        split=split,
        crop=crop_config_from(spec),
        mano_dir=resolve_mano_dir(spec.params.get("mano")),
        strict=strict,
    )


def inspect(spec: DatasetSpec) -> list[str]:
    """Layout problems of a dexycb: spec without opening it (for `amt-core datasets check`)."""
    root, (setup, split) = split_target(spec, ("setup", "split"), ("s0", "test"))
    return layout_problems(root, split_rule(setup, split))


__all__ = [
    "DexYCBDataset",
    "open_dexycb",
    "inspect",
    "split_rule",
    "subject_folder",
    "SUBJECTS",
    "LEGACY_SUBJECTS",
    "SERIALS",
    "YCB_CLASSES",
]
