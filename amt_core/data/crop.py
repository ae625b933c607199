"""Shared parts of the real-dataset readers (FreiHAND, HO3D, DexYCB): the crop around the hand with K updated,
left-right mirroring, the optional real MANO layer, the assembly of a Sample from one frame's labels, and the
`RealDataset` base with its per-frame check (used by `amt-core datasets check`).

Pixel convention (as `amt_core.geometry`): pixel centres at integer coordinates, so pixel i covers [i - 0.5, i + 0.5).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch
from PIL import Image
from torch.utils.data import Dataset

from amt_core.errors import UserError
from amt_core.geometry import project_to_image
from amt_core.hand import HandModel
from amt_core.hand.model import default_hand_path
from amt_core.schema.sample import check_sample, empty_sample

# Environment variable naming a folder with MANO_RIGHT.npz / MANO_LEFT.npz (written by `amt-core import-mano`).
MANO_ENV = "AMT_MANO_DIR"
MANO_FILES = {"right": "MANO_RIGHT.npz", "left": "MANO_LEFT.npz"}
# OpenGL camera (x right, y up, z backward) to OpenCV camera (x right, y down, z forward): negate y and z.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


@dataclass(kw_only=True)
class CropConfig:
    """How a real image becomes a model input."""

    size: int = 224
    """Side of the square output image, pixels (16..2048)."""
    margin: float = 1.5
    """Side of the square crop box as a multiple of the larger extent of the hand's 2D box (1.0..4.0)."""
    min_box_px: float = 32.0
    """Smallest crop box side in source pixels, so a hand seen edge-on still gets context (1..4096)."""

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 2048:
            raise UserError(f"crop size must be in 16..2048 pixels, got {self.size}")
        if not 1.0 <= self.margin <= 4.0:
            raise UserError(f"crop margin must be in 1.0..4.0, got {self.margin}")
        if not 1.0 <= self.min_box_px <= 4096.0:
            raise UserError(f"crop min_box_px must be in 1..4096, got {self.min_box_px}")


def box_from_points(uv: np.ndarray, config: CropConfig) -> tuple[float, float, float]:
    """The square crop box (centre u, centre v, side) in source pixels around 2D points (N, 2)."""
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    centre = (lo + hi) / 2.0
    side = max(float((hi - lo).max()) * config.margin, config.min_box_px)
    return float(centre[0]), float(centre[1]), side


def box_from_corners(x0: float, y0: float, x1: float, y1: float, config: CropConfig) -> tuple[float, float, float]:
    """The square crop box around an axis-aligned box given by its corners (source pixels)."""
    return box_from_points(np.array([[x0, y0], [x1, y1]], dtype=np.float64), config)


def crop_matrix(box: tuple[float, float, float], size: int) -> np.ndarray:
    """(3, 3) affine map from source pixels to output pixels for a crop box resized to size x size.

    The box [cu - side/2, cu + side/2] (pixel-centre coordinates) maps onto the output's outer edges
    [-0.5, size - 0.5]: out = s * (src - u0) - 0.5 with s = size / side and u0 = cu - side/2 (likewise for v).
    """
    cu, cv, side = box
    scale = size / side
    u0, v0 = cu - side / 2.0, cv - side / 2.0
    return np.array(
        [[scale, 0.0, -scale * u0 - 0.5], [0.0, scale, -scale * v0 - 0.5], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )


def crop_image(image: Image.Image, box: tuple[float, float, float], size: int, resample: int) -> Image.Image:
    """The crop box of `image` resized to (size, size); outside the image is black (or False for masks).

    Large reductions first shrink by an integer factor with box averaging (Image.reduce), so the result does not
    alias; the bilinear affine resampling then reduces by less than 2x.
    """
    cu, cv, side = box
    factor = int(side / size) if resample != Image.NEAREST else 1
    if factor >= 2:
        image = image.reduce(factor)
        # reduce averages factor x factor blocks: source edge coordinate e maps to e / factor.
        cu, cv, side = (cu + 0.5) / factor - 0.5, (cv + 0.5) / factor - 0.5, side / factor
    step = side / size
    # PIL samples output pixel x at input centre coordinate step * (x + 0.5) + c - 0.5; the inverse of
    # crop_matrix is src = (x + 0.5) * step + cu - side / 2, hence c = cu - side / 2 + 0.5.
    u0, v0 = cu + 0.5 - side / 2.0, cv + 0.5 - side / 2.0
    return image.transform((size, size), Image.AFFINE, (step, 0.0, u0, 0.0, step, v0), resample=resample)


def mirror_image(image: Image.Image) -> Image.Image:
    """Left-right flip."""
    return image.transpose(Image.FLIP_LEFT_RIGHT)


def mirror_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """K of the left-right flipped image when points are mirrored by x -> -x: u' = width - 1 - u."""
    out = np.array(K, dtype=np.float64, copy=True)
    out[0, 1] = -out[0, 1]
    out[0, 2] = width - 1 - out[0, 2]
    return out


def mirror_axis_angle(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle rotations (..., 3) conjugated by the mirror x -> -x: (a, b, c) -> (a, -b, -c)."""
    out = np.array(rotvec, dtype=np.float64, copy=True)
    out[..., 1:] = -out[..., 1:]
    return out


def project_np(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) pixels, numpy float64 (no depth clamp: for checks on labels)."""
    uvw = points @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


# --- the optional real MANO layer -----------------------------------------------------------------------------


def resolve_mano_dir(option: str | None) -> Path | None:
    """The folder holding MANO_RIGHT.npz / MANO_LEFT.npz: the spec option `mano=DIR`, else $AMT_MANO_DIR, else None.

    `mano=none` turns it off even when the environment variable is set.
    """
    value = option if option is not None else os.environ.get(MANO_ENV)
    if not value or value.lower() == "none":
        return None
    path = Path(value).expanduser()
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise UserError(
            f"MANO folder {path} does not exist; pass mano=DIR with MANO_RIGHT.npz from amt-core import-mano"
        )
    if not (path / MANO_FILES["right"]).is_file():
        raise UserError(
            f"{path} has no MANO_RIGHT.npz; write it with `amt-core import-mano MANO_RIGHT.pkl --out {path}`"
        )
    return path


class ManoLayers:
    """Real MANO hands (right, and left where the folder has it) through `amt_core.hand.HandModel`, built lazily
    once per process, plus the PCA tables (hands_components, hands_mean) that dataset conventions need."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._models: dict[str, object] = {}
        self._tables: dict[str, dict[str, np.ndarray]] = {}
        self._pid = os.getpid()

    def has(self, side: str) -> bool:
        return (self.folder / MANO_FILES[side]).is_file()

    def model(self, side: str):
        """The HandModel of a side (UserError if the folder lacks that side's file)."""
        if self._pid != os.getpid():  # a DataLoader worker: rebuild rather than share torch modules across forks
            self._models, self._pid = {}, os.getpid()
        if side not in self._models:
            if not self.has(side):
                raise UserError(f"{self.folder} has no {MANO_FILES[side]}; import it with amt-core import-mano")
            self._models[side] = HandModel(self.folder / MANO_FILES[side], side=side).eval()
        return self._models[side]

    def tables(self, side: str) -> dict[str, np.ndarray]:
        """hands_components (45, 45) and hands_mean (45,) of a side, float64."""
        if side not in self._tables:
            data = load_npz(self.folder / MANO_FILES[side], "MANO file", "re-import it with amt-core import-mano")
            if "hands_components" not in data or "hands_mean" not in data:
                raise UserError(
                    f"{self.folder / MANO_FILES[side]} lacks hands_components/hands_mean; re-import it with "
                    f"amt-core import-mano"
                )
            self._tables[side] = {
                "hands_components": np.asarray(data["hands_components"], dtype=np.float64),
                "hands_mean": np.asarray(data["hands_mean"], dtype=np.float64).reshape(45),
            }
        return self._tables[side]

    @property
    def num_verts(self) -> int:
        right = load_npz(self.folder / MANO_FILES["right"], "MANO file", "re-import it with amt-core import-mano")
        return int(right["v_template"].shape[0])

    @torch.no_grad()
    def forward(
        self, side: str, pose: np.ndarray, shape: np.ndarray, rot: np.ndarray, trans: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posed hand: pose (45,) relative to the flat hand, shape (10,), rot (3,), trans (3,) -> verts (V, 3),
        joints (21, 3) in the project order, metres, float64."""
        model = self.model(side)

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(1, -1)

        out = model(t(pose), t(shape)[:, : model.num_betas], t(rot), t(trans))
        return out.verts[0].double().numpy(), out.joints[0].double().numpy()

    def rest_wrist(self, side: str, shape: np.ndarray) -> np.ndarray:
        """(3,) the shaped rest wrist joint J0, about which MANO's global rotation turns."""
        zeros = np.zeros(3)
        _, joints = self.forward(side, np.zeros(45), shape, zeros, zeros)
        return joints[0]


def open_hand_num_verts() -> int:
    """Vertex count of the shipped open hand (what the model predicts when no real MANO is configured)."""
    with np.load(default_hand_path("right"), allow_pickle=False) as data:
        return int(data["v_template"].shape[0])


def change_frame(rot: np.ndarray, trans: np.ndarray, wrist: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MANO global (rot, trans) after applying the linear map R (3, 3, a rotation) to the posed hand.

    MANO outputs R0 (x - J0) + J0 + t; after R this is (R R0)(x - J0) + J0 + t' with t' = R (J0 + t) - J0.
    """
    R0 = roma.rotvec_to_rotmat(torch.as_tensor(rot, dtype=torch.float64)).numpy()
    new_rot = roma.rotmat_to_rotvec(torch.as_tensor(R @ R0)).numpy()
    return new_rot, R @ (wrist + trans) - wrist


# --- assembling a Sample --------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class FrameLabels:
    """One frame's labels, already in the project's conventions: OpenCV camera frame, metres, 21-joint order,
    right hand. Fields left None are what the dataset lacks for this frame."""

    image: Image.Image
    K: np.ndarray  # (3, 3) of `image`
    box: tuple[float, float, float]  # crop box (centre u, centre v, side), source pixels
    joints3d: np.ndarray | None = None  # (21, 3)
    mano: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # pose (45,), shape (10,), rot, trans
    hand_verts: np.ndarray | None = None  # (V, 3)
    obj_class: int = -1
    obj_pose: tuple[np.ndarray, np.ndarray] | None = None  # rot (3, 3), trans (3,)
    contact: np.ndarray | None = None  # (V,)
    hand_mask: np.ndarray | None = None  # (H, W) bool, source pixels
    obj_mask: np.ndarray | None = None  # (H, W) bool


def build_sample(labels: FrameLabels, config: CropConfig, num_verts: int) -> dict:
    """The Sample of one frame: the crop around the hand resized to config.size, K updated, valid flags set.

    joints2d is the projection of joints3d by the new K (so the two always agree). The object pose is kept only
    for catalog classes (obj_class >= 0); see docs/evaluation.md.
    """
    size = config.size
    sample = empty_sample(size, size, num_verts)
    image = labels.image.convert("RGB")
    cropped = np.asarray(crop_image(image, labels.box, size, Image.BILINEAR), dtype=np.float32) / 255.0
    sample["image"] = torch.from_numpy(np.ascontiguousarray(cropped.transpose(2, 0, 1)))
    K = crop_matrix(labels.box, size) @ np.asarray(labels.K, dtype=np.float64)
    sample["K"] = torch.from_numpy(K.astype(np.float32))
    valid = sample["valid"]
    if labels.joints3d is not None:
        joints = torch.from_numpy(np.asarray(labels.joints3d, dtype=np.float32))
        sample["joints3d"] = joints
        sample["joints2d"] = project_to_image(joints, sample["K"])
        valid["joints3d"] = valid["joints2d"] = torch.tensor(True)
    if labels.mano is not None:
        for name, value in zip(("hand_pose", "hand_shape", "hand_rot", "hand_trans"), labels.mano):
            sample[name] = torch.from_numpy(np.asarray(value, dtype=np.float32).reshape(sample[name].shape))
        valid["mano"] = torch.tensor(True)
    if labels.hand_verts is not None and labels.hand_verts.shape == (num_verts, 3):
        sample["hand_verts"] = torch.from_numpy(np.asarray(labels.hand_verts, dtype=np.float32))
        valid["hand_verts"] = torch.tensor(True)
    if labels.obj_pose is not None and labels.obj_class >= 0:
        sample["obj_class"] = torch.tensor(labels.obj_class, dtype=torch.int64)
        sample["obj_rot"] = torch.from_numpy(np.asarray(labels.obj_pose[0], dtype=np.float32))
        sample["obj_trans"] = torch.from_numpy(np.asarray(labels.obj_pose[1], dtype=np.float32))
        valid["obj"] = torch.tensor(True)
    if labels.contact is not None and labels.contact.shape == (num_verts,):
        sample["contact"] = torch.from_numpy(np.asarray(labels.contact, dtype=np.float32))
        valid["contact"] = torch.tensor(True)
    if labels.hand_mask is not None and labels.obj_mask is not None:
        for name, mask in (("hand_mask", labels.hand_mask), ("obj_mask", labels.obj_mask)):
            pil = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
            sample[name] = torch.from_numpy(np.asarray(crop_image(pil, labels.box, size, Image.NEAREST)) > 127)
        valid["masks"] = torch.tensor(True)
    return sample


def load_npz(path: Path, what: str, fix: str = "download it again") -> dict[str, np.ndarray]:
    """Every array of a .npz, read now; UserError naming the file if it is missing, truncated or corrupt.

    A truncated archive fails in several ways (no zip directory, a member cut short, a bad deflate stream), each from
    a different library; all of them are one line here.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError as err:
        raise UserError(
            f"{what} {path} is missing; the dataset looks incomplete (run amt-core datasets check)"
        ) from err
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise UserError(f"{what} {path} is truncated or corrupt ({type(err).__name__}: {err}); {fix}") from None


TRANSPARENT_FILL = (128, 128, 128)
"""What transparent pixels become in `to_rgb`: mid-grey, the colour that least resembles skin or a dark background."""


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image of any mode PIL opens, its values scaled as the file meant them.

    PIL's own `convert("RGB")` clips 16- and 32-bit greyscale to 255 (a 16-bit PNG turns white) and drops alpha as
    it is (transparent pixels keep whatever colour they hide). Here 16-bit greyscale (`I;16*`) is scaled by 1/257,
    32-bit integers (`I`) the same when a value exceeds 255 (else they are taken as 8-bit), floats (`F`) from [0, 1]
    when none exceeds 1 (else as 0-255), and alpha (RGBA, LA, a palette with transparency) is composited over
    `TRANSPARENT_FILL`; palette, 1-bit, CMYK and YCbCr images are converted by PIL.
    """
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif mode == "F":
            scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        else:
            scale = 255.0 / 65535.0 if values.size and values.max() > 255 else 1.0
        grey = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1), "RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*TRANSPARENT_FILL, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: Path) -> Image.Image:
    """An RGB image (any mode, converted by `to_rgb`); UserError naming the file if it is missing or unreadable."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except FileNotFoundError as err:
        raise UserError(f"image {path} is missing; the dataset looks incomplete (run amt-core datasets check)") from err
    except OSError as err:
        raise UserError(f"image {path} cannot be read ({err}); re-download it") from err


def catalog_ids() -> dict[str, int]:
    """Catalog class id by YCB name ("025_mug" -> id); a YCB object absent from the catalog is absent here."""
    from amt_core.objects.catalog import catalog  # trimesh and scipy: only the readers with objects load them

    return {obj.ycb_name: obj.id for obj in catalog()}


# --- what every real-dataset reader shares ----------------------------------------------------------------------


def split_target(spec, names: tuple[str, ...], defaults: tuple[str, ...]) -> tuple[Path, list[str]]:
    """Split a spec target `PATH[:a[:b]]` into the folder and its trailing parts (lower case), defaults filled in.

    Args:
        spec: the DatasetSpec.
        names: what the parts mean, for the error message ("split", or "setup", "split").
        defaults: the value of each part when absent.
    """
    parts = spec.target.split(":")
    path, rest = parts[0], [p.strip().lower() for p in parts[1:]]
    if len(rest) > len(names):
        raise UserError(f"dataset spec '{spec.text}': expected {spec.scheme}:PATH[:{':'.join(names)}]")
    if not path:
        raise UserError(f"dataset spec '{spec.text}' names no folder; write {spec.scheme}:PATH")
    return Path(path).expanduser(), rest + list(defaults[len(rest) :])


def crop_config_from(spec) -> CropConfig:
    """CropConfig from the spec options size= and margin=."""
    size = spec.take("size", int, 224, "pixels, e.g. 224")
    margin = spec.take("margin", float, 1.5, "a number in 1.0..4.0")
    try:
        return CropConfig(size=size, margin=margin)
    except UserError as err:
        raise UserError(f"dataset spec '{spec.text}': {err}") from err


def raise_if_missing(name: str, root: Path, problems: list[str]) -> None:
    """UserError summarising what a dataset folder lacks (the full list comes from `amt-core datasets check`)."""
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(
            f"{name} at {root} is incomplete: {'; '.join(problems[:3])}{more}; "
            f"run `amt-core datasets check` on the same spec for the full list"
        )


class RealDataset(Dataset):
    """Base of the FreiHAND, HO3D and DexYCB readers: item i is `build_sample(self.labels(i))`.

    Subclasses set `name`, `split`, `root`, `crop`, `num_verts` and implement `__len__`, `labels(i)`,
    `frame_files(i)` and `frame_id(i)` (a stable text id, e.g. "training/00000123").
    """

    name = "real"
    split = ""

    def labels(self, index: int) -> FrameLabels:
        raise NotImplementedError

    def frame_files(self, index: int) -> list[Path]:
        raise NotImplementedError

    def frame_id(self, index: int) -> str:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return build_sample(self.labels(index), self.crop, self.num_verts)

    def check_frame(self, index: int) -> list[str]:
        """Problems with one frame, one line each: missing files, unreadable labels, bad shapes, joints behind the
        camera or outside the image."""
        where = f"{self.name} {self.frame_id(index)}"
        missing = [str(path) for path in self.frame_files(index) if not path.is_file()]
        if missing:
            return [f"{where}: missing {path}" for path in missing]
        try:
            labels = self.labels(index)
            sample = build_sample(labels, self.crop, self.num_verts)
        except UserError as err:
            return [f"{where}: {err}"]
        except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            return [f"{where}: unreadable labels ({type(err).__name__}: {err})"]
        problems = [f"{where}: {line}" for line in check_sample(sample, self.num_verts)]
        if labels.joints3d is not None:
            joints = np.asarray(labels.joints3d, dtype=np.float64)
            if joints.shape != (21, 3):
                problems.append(f"{where}: joints3d has shape {joints.shape}, expected (21, 3)")
            elif (joints[:, 2] <= 0).any():
                problems.append(f"{where}: {int((joints[:, 2] <= 0).sum())} joints behind the camera (z <= 0)")
            else:
                uv = project_np(joints, labels.K)
                width, height = labels.image.size
                slack = 0.25 * max(width, height)  # fingers may leave the frame a little; far outside means bad K/axes
                outside = (uv[:, 0] < -slack) | (uv[:, 0] > width + slack) | (uv[:, 1] < -slack)
                outside |= uv[:, 1] > height + slack
                if outside.any():
                    problems.append(
                        f"{where}: {int(outside.sum())} joints project outside the {width}x{height} image "
                        f"(e.g. at u={uv[outside][0, 0]:.0f}, v={uv[outside][0, 1]:.0f}); wrong K or axes?"
                    )
        return problems


__all__ = [
    "CropConfig",
    "RealDataset",
    "crop_config_from",
    "raise_if_missing",
    "split_target",
    "FrameLabels",
    "ManoLayers",
    "OPENGL_TO_OPENCV",
    "box_from_corners",
    "box_from_points",
    "build_sample",
    "catalog_ids",
    "change_frame",
    "crop_image",
    "crop_matrix",
    "load_image",
    "to_rgb",
    "mirror_axis_angle",
    "mirror_image",
    "mirror_intrinsics",
    "open_hand_num_verts",
    "project_np",
    "resolve_mano_dir",
]
