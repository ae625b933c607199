"""HO-3D v2 and v3 (Hampali et al., CVPR 2020) as Samples: `ho3d:PATH[:train|evaluation]`.

Layout: PATH/{train,evaluation}.txt list `SEQ/FRAME`; frames are PATH/<split>/SEQ/rgb/FRAME.{png (v2), jpg (v3)} and
PATH/<split>/SEQ/meta/FRAME.pkl. Conventions (from the dataset's own code, shreyashampali/ho3d): every 3D quantity is
in the OpenGL camera frame (y up, z backward), converted here to OpenCV by negating y and z; handJoints3D is MANO's
16 joints then the 5 tips (thumb, index, middle, ring, little), reordered by `amt_core.joints.MANO_TO_PROJECT`; MANO
is used with flat_hand_mean=True, so handPose[3:] is already relative to the flat hand. The evaluation split's
annotations have only the wrist (handJoints3D of shape (3,)) and handBoundingBox: its samples are cropped around that
box; `HO3DDataset.root_joint(i)` gives the wrist (for submissions, see
`amt_core.metrics.protocols.write_ho3d_submission`). The evaluation ground truth the authors published in November
2024 (`evaluation_xyz.json`, and `evaluation_verts.json` for the MANO mesh, in PATH, in evaluation.txt's order, OpenGL
axes and HO3D's joint order like a submission) is read when present: the samples then carry the joints (and, with a
MANO layer, the 778 vertices), and `amt-core eval` scores the split with HO3D's protocol locally.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import roma
import torch

from amt_core.data.crop import (
    OPENGL_TO_OPENCV,
    CropConfig,
    FrameLabels,
    ManoLayers,
    RealDataset,
    box_from_corners,
    box_from_points,
    catalog_ids,
    change_frame,
    crop_config_from,
    load_image,
    open_hand_num_verts,
    project_np,
    raise_if_missing,
    resolve_mano_dir,
    split_target,
)
from amt_core.data.layout import split_layout_problems
from amt_core.data.registry import DatasetSpec
from amt_core.errors import UserError
from amt_core.joints import MANO_TO_PROJECT
from amt_core.safe_pickle import BYTES_FROM_PYTHON2, NUMPY_ARRAYS, RefusedGlobal, load_file

SPLITS = {"train": "train", "evaluation": "evaluation", "eval": "evaluation", "test": "evaluation"}
EVAL_XYZ, EVAL_VERTS = "evaluation_xyz.json", "evaluation_verts.json"  # the evaluation split's ground truth (2024)


def has_evaluation_truth(root: Path) -> bool:
    """Whether the folder holds the evaluation split's published ground truth (its joints file)."""
    return (Path(root) / EVAL_XYZ).is_file()


def _read_truth(path: Path, count: int, shape: tuple[int, int]) -> np.ndarray:
    """(count, *shape) float32 from one of the evaluation ground-truth JSON files, converted to OpenCV axes;
    UserError naming the file if it is truncated or does not match evaluation.txt."""
    try:
        array = np.asarray(json.loads(path.read_text()), dtype=np.float32)
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"{path} does not read ({type(err).__name__}: {err}); download it again") from None
    if array.shape != (count, *shape):
        raise UserError(
            f"{path} holds an array of shape {array.shape}, expected ({count}, {shape[0]}, 3) for the {count} frames "
            f"of evaluation.txt; download both again"
        )
    return array @ OPENGL_TO_OPENCV.astype(np.float32)


def layout_problems(root: Path, split: str) -> list[str]:
    """What the folder lacks for a split, one line each: the list file, the split folder, sequences it names."""
    if not root.is_dir():
        return [f"folder {root} does not exist"]
    problems = []
    list_file = root / f"{split}.txt"
    if not list_file.is_file():
        problems.append(f"missing {list_file} (the list of frames)")
    if not (root / split).is_dir():
        problems.append(f"missing folder {root / split}")
    elif list_file.is_file():
        sequences = sorted({line.split("/")[0] for line in _read_list(list_file)})
        for seq in sequences:
            for sub in ("rgb", "meta"):
                if not (root / split / seq / sub).is_dir():
                    problems.append(f"missing folder {root / split / seq / sub}")
    return problems


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_meta(path: Path) -> dict:
    """One frame's annotation pickle (written by Python 2, hence latin1); UserError naming the file otherwise.

    The files come from the internet, so only what they hold may be unpickled: a dict of numpy arrays, numpy scalars,
    strings and numbers (`META_GLOBALS`); any other global is refused by name before it is imported.
    """
    try:
        meta = load_file(path, META_GLOBALS, encoding="latin1")
    except FileNotFoundError as err:
        raise UserError(f"annotation {path} is missing; the dataset looks incomplete") from err
    except RefusedGlobal as err:
        raise UserError(f"annotation {path}: {err}; not an HO-3D annotation, download it again") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise UserError(f"annotation {path} cannot be read ({err}); download it again") from None
    if not isinstance(meta, dict):
        raise UserError(f"annotation {path} holds a {type(meta).__name__}, not a dict; download it again")
    return meta


META_GLOBALS = NUMPY_ARRAYS | BYTES_FROM_PYTHON2
"""The only globals HO-3D's meta/*.pkl files name (Python 2 pickles of dicts of numpy arrays and scalars)."""


def _array(meta: dict, key: str) -> np.ndarray | None:
    value = meta.get(key)
    return None if value is None else np.asarray(value, dtype=np.float64)


class HO3DDataset(RealDataset):
    """HO-3D frames as Samples (v2 and v3 share the format; v3 images are jpg).

    Args:
        root: the dataset folder (holds train.txt, evaluation.txt, train/, evaluation/).
        split: "train" or "evaluation".
        crop: the crop around the hand (train: around the projected joints; evaluation: around handBoundingBox).
        mano_dir: folder with real MANO .npz files (None: joints from labels only, no mesh or MANO parameters).
    """

    name = "ho3d"

    def __init__(self, root, split="train", crop=None, mano_dir=None) -> None:
        self.root = Path(root)
        if split not in SPLITS:
            raise UserError(f"HO3D split '{split}' is unknown; use train or evaluation")
        self.split = SPLITS[split]
        raise_if_missing("HO3D", self.root, layout_problems(self.root, self.split))
        self.frames = [tuple(line.split("/")[:2]) for line in _read_list(self.root / f"{self.split}.txt")]
        if not self.frames:
            raise UserError(f"{self.root / f'{self.split}.txt'} lists no frames; download it again")
        self.crop = crop or CropConfig()
        self.mano_layers = ManoLayers(mano_dir) if mano_dir is not None else None
        self.num_verts = self.mano_layers.num_verts if self.mano_layers else open_hand_num_verts()
        self.class_ids = catalog_ids()
        self.has_truth = self.split == "evaluation" and has_evaluation_truth(self.root)
        self._truth: tuple[np.ndarray, np.ndarray | None] | None = None

    def evaluation_truth(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(joints (N, 21, 3) project order, vertices (N, 778, 3) or None), metres, OpenCV axes: the evaluation
        split's published ground truth, read on first use (the vertex file is large)."""
        if self._truth is None:
            joints = _read_truth(self.root / EVAL_XYZ, len(self.frames), (21, 3))[:, list(MANO_TO_PROJECT)]
            verts_path = self.root / EVAL_VERTS
            verts = _read_truth(verts_path, len(self.frames), (778, 3)) if verts_path.is_file() else None
            self._truth = (joints, verts)
        return self._truth

    def __len__(self) -> int:
        return len(self.frames)

    def frame_id(self, index: int) -> str:
        seq, frame = self.frames[index]
        return f"{self.split}/{seq}/{frame}"

    def _image_path(self, index: int) -> Path:
        seq, frame = self.frames[index]
        folder = self.root / self.split / seq / "rgb"
        jpg = folder / f"{frame}.jpg"
        return jpg if jpg.is_file() or not (folder / f"{frame}.png").is_file() else folder / f"{frame}.png"

    def frame_files(self, index: int) -> list[Path]:
        seq, frame = self.frames[index]
        return [self._image_path(index), self.root / self.split / seq / "meta" / f"{frame}.pkl"]

    def labels(self, index: int) -> FrameLabels:
        image_path, meta_path = self.frame_files(index)
        meta = load_meta(meta_path)
        image = load_image(image_path)
        K = _array(meta, "camMat")
        if K is None or K.shape != (3, 3):
            raise UserError(f"annotation {meta_path} has no 3x3 camMat")
        width, height = image.size
        labels = FrameLabels(image=image, K=K, box=(width / 2 - 0.5, height / 2 - 0.5, float(min(width, height))))
        joints_gl = _array(meta, "handJoints3D")
        if joints_gl is not None and joints_gl.shape == (21, 3):
            joints = (joints_gl @ OPENGL_TO_OPENCV)[list(MANO_TO_PROJECT)]  # (21, 3) OpenCV, project order
            labels.joints3d = joints
            labels.box = box_from_points(project_np(joints, K), self.crop)
            self._add_mano(meta, labels)
        elif self.split == "evaluation" and meta.get("handBoundingBox") is not None:
            labels.box = box_from_corners(*np.asarray(meta["handBoundingBox"], dtype=np.float64)[:4], self.crop)
            if self.has_truth:  # the crop stays the challenge's box: the ground truth only scores
                joints, verts = self.evaluation_truth()
                labels.joints3d = joints[index].astype(np.float64)
                if verts is not None and self.num_verts == verts.shape[1]:
                    labels.hand_verts = verts[index].astype(np.float64)
        self._add_object(meta, labels)
        contact = _array(meta, "handVertContact")
        if contact is not None and labels.joints3d is not None:
            labels.contact = contact.reshape(-1)
        return labels

    def root_joint(self, index: int) -> np.ndarray | None:
        """(3,) the labelled wrist, OpenCV frame, metres (the only hand label of the evaluation split)."""
        joints_gl = _array(load_meta(self.frame_files(index)[1]), "handJoints3D")
        if joints_gl is None:
            return None
        return (joints_gl.reshape(-1, 3) @ OPENGL_TO_OPENCV)[0]

    def _add_mano(self, meta: dict, labels: FrameLabels) -> None:
        pose48, beta, trans_gl = _array(meta, "handPose"), _array(meta, "handBeta"), _array(meta, "handTrans")
        if self.mano_layers is None or pose48 is None or beta is None or trans_gl is None:
            return
        pose48, beta, trans_gl = pose48.reshape(48), beta.reshape(-1)[:10], trans_gl.reshape(3)
        wrist = self.mano_layers.rest_wrist("right", beta)
        rot, trans = change_frame(pose48[:3], trans_gl, wrist, OPENGL_TO_OPENCV)
        labels.mano = (pose48[3:], beta, rot, trans)
        labels.hand_verts, _ = self.mano_layers.forward("right", pose48[3:], beta, rot, trans)

    def _add_object(self, meta: dict, labels: FrameLabels) -> None:
        rot, trans, name = _array(meta, "objRot"), _array(meta, "objTrans"), meta.get("objName")
        if rot is None or trans is None or name is None:
            return
        labels.obj_class = self.class_ids.get(str(name), -1)
        R_gl = roma.rotvec_to_rotmat(torch.as_tensor(rot.reshape(3))).numpy()
        labels.obj_pose = (OPENGL_TO_OPENCV @ R_gl, OPENGL_TO_OPENCV @ trans.reshape(3))


def open_ho3d(spec: DatasetSpec) -> HO3DDataset:
    """Open `ho3d:PATH[:train|evaluation][?size=224&margin=1.5&mano=DIR|none]`."""
    spec.check_keys(("size", "margin", "mano"))
    root, (split,) = split_target(spec, ("split",), ("train",))
    return HO3DDataset(
        root, split=split, crop=crop_config_from(spec), mano_dir=resolve_mano_dir(spec.params.get("mano"))
    )


def inspect(spec: DatasetSpec) -> list[str]:
    """Layout problems of an ho3d: spec without opening it (for `amt-core datasets check`)."""
    return split_layout_problems(spec, SPLITS, layout_problems, "train or evaluation")


__all__ = ["HO3DDataset", "open_ho3d", "inspect", "load_meta"]
