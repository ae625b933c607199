"""FreiHAND (Zimmermann et al., ICCV 2019) as Samples: `freihand:PATH[:train|eval]`.

Layout: PATH/{training,evaluation}_{xyz,K,mano[,verts]}.json and PATH/{training,evaluation}/rgb/%08d.jpg (training
also mask/%08d.jpg). The training set has N = 32560 labelled frames, each rendered in four versions (green screen,
homogenized, sample, auto) stored as images k * N + i, so the training split has 4 N = 130240 items.
Conventions (checked against the dataset's own code, lmb-freiburg/freihand): joints are already in the project's
order (wrist, thumb 1-4, index 1-4, middle, ring, little), in metres, in the OpenCV camera frame; MANO parameters are
61 numbers (48 pose with flat_hand_mean=False, 10 shape, 2 root uv, 1 scale), the root being joint 9 (middle MCP).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from amt_core.data.crop import (
    CropConfig,
    FrameLabels,
    ManoLayers,
    RealDataset,
    box_from_points,
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

VERSIONS = ("gs", "hom", "sample", "auto")  # image k * N + i is version VERSIONS[k] of frame i
SPLITS = {
    "train": "training",
    "training": "training",
    "eval": "evaluation",
    "evaluation": "evaluation",
    "test": "evaluation",
}
ROOT_JOINT = 9  # FreiHAND places the MANO hand by its middle MCP


def layout_problems(root: Path, set_name: str) -> list[str]:
    """What the folder lacks for one split, one line each (empty when complete)."""
    if not root.is_dir():
        return [f"folder {root} does not exist"]
    problems = []
    for kind in ("xyz", "K"):
        if not (root / f"{set_name}_{kind}.json").is_file():
            problems.append(f"missing {root / f'{set_name}_{kind}.json'}")
    if not (root / set_name / "rgb").is_dir():
        problems.append(f"missing folder {root / set_name / 'rgb'} (the images)")
    return problems


def _load_json(path: Path) -> list:
    try:
        with open(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); it may be truncated: download it again") from err


class FreiHANDDataset(RealDataset):
    """FreiHAND frames as Samples.

    Args:
        root: the dataset folder.
        split: "train" (4 colour versions of each frame) or "eval".
        crop: the crop around the hand.
        versions: training image versions to include (a subset of VERSIONS).
        mano_dir: folder with real MANO .npz files (None: labels only, no mesh or MANO parameters).
        verts: "file" to read {set}_verts.json (exact, but the training file is about 1.5 GB of JSON), "mano" to pose
            MANO from {set}_mano.json, "auto" (file for eval, MANO for train).
    """

    name = "freihand"

    def __init__(self, root, split="train", crop=None, versions=VERSIONS, mano_dir=None, verts="auto") -> None:
        self.root = Path(root)
        if split not in SPLITS:
            raise UserError(f"FreiHAND split '{split}' is unknown; use train or eval")
        self.set_name = SPLITS[split]
        self.split = "train" if self.set_name == "training" else "eval"
        raise_if_missing("FreiHAND", self.root, layout_problems(self.root, self.set_name))
        self.crop = crop or CropConfig()
        bad = [v for v in versions if v not in VERSIONS]
        if bad or not versions:
            raise UserError(f"FreiHAND versions {bad or 'none'} unknown; choose from {', '.join(VERSIONS)}")
        self.versions = tuple(versions) if self.set_name == "training" else ("gs",)
        self.xyz = np.asarray(_load_json(self.root / f"{self.set_name}_xyz.json"), dtype=np.float64)  # (N, 21, 3)
        self.K = np.asarray(_load_json(self.root / f"{self.set_name}_K.json"), dtype=np.float64)  # (N, 3, 3)
        if self.xyz.ndim != 3 or self.xyz.shape[1:] != (21, 3) or self.K.shape != (len(self.xyz), 3, 3):
            raise UserError(
                f"FreiHAND {self.set_name}: xyz {self.xyz.shape} and K {self.K.shape} do not match (N, 21, 3) and "
                f"(N, 3, 3); the JSON files may come from different downloads"
            )
        self.num_labels = len(self.xyz)
        self.mano_layers = ManoLayers(mano_dir) if mano_dir is not None else None
        self.num_verts = self.mano_layers.num_verts if self.mano_layers else open_hand_num_verts()
        self.mano_params = None
        mano_file = self.root / f"{self.set_name}_mano.json"
        if self.mano_layers is not None and mano_file.is_file():
            self.mano_params = np.asarray(_load_json(mano_file), dtype=np.float64).reshape(self.num_labels, 61)
        verts_file = self.root / f"{self.set_name}_verts.json"
        if verts not in ("auto", "file", "mano"):
            raise UserError(f"FreiHAND verts='{verts}' is unknown; use auto, file or mano")
        use_file = verts == "file" or (verts == "auto" and self.set_name == "evaluation")
        self.verts = None
        if self.mano_layers is not None and use_file and verts_file.is_file():
            self.verts = np.asarray(_load_json(verts_file), dtype=np.float32)  # (N, 778, 3)
        self.mask_dir = self.root / "training" / "mask"

    def __len__(self) -> int:
        return self.num_labels * len(self.versions)

    def _ids(self, index: int) -> tuple[int, int]:
        """(label index, image number) of item `index`."""
        label = index % self.num_labels
        version = self.versions[index // self.num_labels]
        return label, label + self.num_labels * VERSIONS.index(version)

    def frame_id(self, index: int) -> str:
        return f"{self.set_name}/{self._ids(index)[1]:08d}"

    def frame_files(self, index: int) -> list[Path]:
        return [self.root / self.set_name / "rgb" / f"{self._ids(index)[1]:08d}.jpg"]

    def mano_from_params(self, label: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """(pose, shape, rot, trans) in the project's MANO convention and the posed vertices (V, 3) of a label.

        FreiHAND's pose is relative to MANO's mean pose (flat_hand_mean=False): relative to the flat hand it is
        hands_mean + pose[3:]. The translation puts the model's joint 9 on the labelled joint 9, which is how
        FreiHAND placed its meshes (pose_by_root).
        """
        theta = self.mano_params[label]
        pose = self.mano_layers.tables("right")["hands_mean"] + theta[3:48]
        shape, rot = theta[48:58], theta[:3]
        _, joints = self.mano_layers.forward("right", pose, shape, rot, np.zeros(3))
        trans = self.xyz[label][ROOT_JOINT] - joints[ROOT_JOINT]
        verts, _ = self.mano_layers.forward("right", pose, shape, rot, trans)
        return (pose, shape, rot, trans), verts

    def labels(self, index: int) -> FrameLabels:
        label, _ = self._ids(index)
        image = load_image(self.frame_files(index)[0])
        joints = self.xyz[label]
        labels = FrameLabels(
            image=image, K=self.K[label], box=box_from_points(project_np(joints, self.K[label]), self.crop)
        )
        labels.joints3d = joints
        if self.mano_params is not None:
            labels.mano, labels.hand_verts = self.mano_from_params(label)
        if self.verts is not None:
            labels.hand_verts = self.verts[label]
        mask_path = self.mask_dir / f"{label:08d}.jpg"
        if self.set_name == "training" and mask_path.is_file():
            hand = np.asarray(load_image(mask_path).convert("L").resize(image.size)) > 127
            labels.hand_mask, labels.obj_mask = hand, np.zeros_like(hand)  # FreiHAND frames hold no object
        return labels


def open_freihand(spec: DatasetSpec) -> FreiHANDDataset:
    """Open `freihand:PATH[:train|eval][?size=224&margin=1.5&versions=gs,hom,sample,auto&mano=DIR|none&verts=auto]`."""
    spec.check_keys(("size", "margin", "versions", "mano", "verts"))
    root, (split,) = split_target(spec, ("split",), ("train",))
    versions = tuple(v.strip() for v in spec.params.get("versions", ",".join(VERSIONS)).split(",") if v.strip())
    return FreiHANDDataset(
        root,
        split=split,
        crop=crop_config_from(spec),
        versions=versions,
        mano_dir=resolve_mano_dir(spec.params.get("mano")),
        verts=spec.params.get("verts", "auto"),
    )


def inspect(spec: DatasetSpec) -> list[str]:
    """Layout problems of a freihand: spec without opening it (for `amt-core datasets check`)."""
    return split_layout_problems(spec, SPLITS, layout_problems, "train or eval")


__all__ = ["FreiHANDDataset", "open_freihand", "inspect", "VERSIONS"]
