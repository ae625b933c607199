"""Inspect a checkpoint, Qt-free: load the model it holds, take samples from a dataset spec or image files, run the
model (with attention recorded) and return everything as a `SnapshotData`, the same structure the training views use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amt_core.errors import UserError
from amt_studio.state.snapshot import SnapshotData

DEFAULT_FOV_DEG = 60.0
"""Horizontal field of view assumed for image files, which carry no intrinsics."""


@dataclass(kw_only=True)
class LoadedModel:
    path: Path
    name: str
    step: int
    stage: int | None
    image_size: int
    """Square input size of the run's data (pixels)."""
    val_data: str


class Inspector:
    """Holds one checkpoint's model on the CPU; every method may run on a worker thread (one at a time)."""

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None
        self.info: LoadedModel | None = None
        self.faces: np.ndarray | None = None

    def load_checkpoint(self, path: Path | str) -> LoadedModel:
        """Build the checkpoint's model from its own config and load its weights.

        Raises:
            UserError: not a checkpoint, or weights that do not fit the model.
        """
        from amt_core.data import parse_spec
        from amt_core.train.parts import hand_faces, model_from_checkpoint

        model, config, folder = model_from_checkpoint(str(path), torch.device("cpu"))
        faces = hand_faces(model)
        self.faces = faces.cpu().numpy().astype(np.int32) if faces is not None else None
        size = int(parse_spec(config.val_data).params.get("size", 128))
        self.model = model
        self.info = LoadedModel(
            path=folder,
            name=config.model_name,
            step=_step_from_name(folder.name),
            stage=None,
            image_size=size,
            val_data=config.val_data,
        )
        return self.info

    def dataset_samples(self, spec: str, start: int, count: int) -> list[dict]:
        """`count` samples of a dataset from index `start`.

        Raises:
            UserError: the spec does not open or the indices are out of range.
        """
        from amt_core.train.parts import open_data

        dataset = open_data(spec)
        if not 0 <= start < len(dataset):
            raise UserError(
                f"sample {start} is out of range: {spec} has {len(dataset)} samples (0..{len(dataset) - 1})"
            )
        return [dataset[i] for i in range(start, min(start + count, len(dataset)))]

    def image_sample(self, path: Path | str, size: int | None = None) -> dict:
        """An image file as a sample: centre-cropped square, resized to the model's input, with an assumed K."""
        from PIL import Image, UnidentifiedImageError

        size = size or (self.info.image_size if self.info else 128)
        try:
            image = Image.open(path).convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise UserError(f"cannot open image {path}: {err}; use a PNG or JPEG file") from None
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
        focal = 0.5 * size / math.tan(math.radians(DEFAULT_FOV_DEG) / 2.0)
        K = torch.tensor([[focal, 0.0, size / 2.0], [0.0, focal, size / 2.0], [0.0, 0.0, 1.0]])
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        return {"image": pixels, "K": K}

    @torch.no_grad()
    def predict(self, samples: list[dict]) -> SnapshotData:
        """Run the model on samples (dataset samples carry ground truth, image files do not)."""
        from amt_core.models.attention import record_attention

        if self.model is None:
            raise UserError("open a checkpoint first")
        if not samples:
            raise UserError("no samples to run the model on")
        batch = {
            "image": torch.stack([s["image"] for s in samples]).float(),
            "K": torch.stack([s["K"] for s in samples]).float(),
        }
        with record_attention(self.model):
            out = self.model(batch)
        data = SnapshotData(step=self.info.step if self.info else 0)
        data.images = (batch["image"].permute(0, 2, 3, 1).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        data.K = batch["K"].double().numpy()
        data.pred_joints3d = out.joints3d.double().numpy()
        data.hand_faces = self.faces
        if out.hand_verts is not None:
            data.pred_hand_verts = out.hand_verts.double().numpy()
        if out.obj_logits is not None:
            data.pred_obj_class = out.obj_logits.argmax(-1).numpy()
        if out.obj_rot is not None:
            data.pred_obj_rot, data.pred_obj_trans = out.obj_rot.double().numpy(), out.obj_trans.double().numpy()
        if out.contact_points is not None:
            data.pred_contact_points = out.contact_points.double().numpy()
            data.pred_contact_conf = out.contact_conf.double().numpy() if out.contact_conf is not None else None
            data.pred_contact_forces = out.contact_forces.double().numpy() if out.contact_forces is not None else None
        data.attention = image_attention(out.attention, batch["image"].shape[-2:])
        # Ground truth per sample: a sample without an object (or an image file, without anything) is flagged
        # invalid rather than dropping the truth of every other sample in the batch.
        valid = {
            flag: np.array([bool(s.get("valid", {}).get(flag, False)) for s in samples])
            for flag in ("joints3d", "hand_verts", "obj")
        }
        if valid["joints3d"].any():
            data.gt_joints3d = torch.stack([s["joints3d"] for s in samples]).double().numpy()
        if valid["hand_verts"].any():
            data.gt_hand_verts = torch.stack([s["hand_verts"] for s in samples]).double().numpy()
        if valid["obj"].any():
            data.gt_obj_class = torch.stack([s["obj_class"] for s in samples]).numpy()
            data.gt_obj_rot = torch.stack([s["obj_rot"] for s in samples]).double().numpy()
            data.gt_obj_trans = torch.stack([s["obj_trans"] for s in samples]).double().numpy()
        data.valid = {flag: flags for flag, flags in valid.items() if flags.any()}
        return data


def _step_from_name(name: str) -> int:
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else 0


def image_attention(attention: dict[str, torch.Tensor], image_hw: tuple[int, int]) -> np.ndarray | None:
    """(B, h, w) attention over image patches from the deepest layer whose keys form the patch grid.

    The first query (the class token) is averaged over heads; the prefix tokens (class, registers) are dropped.
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    for name in reversed(list(attention)):
        probs = attention[name]  # (B, heads, queries, keys)
        if probs.ndim != 4:
            continue
        keys = probs.shape[-1]
        for prefix in range(0, 9):
            cells = keys - prefix
            if cells <= 0:
                break
            stride = math.sqrt(height * width / cells)
            h, w = round(height / stride), round(width / stride)
            if h * w == cells and h > 1:
                grid = probs[:, :, 0, prefix:].float().mean(1).reshape(-1, h, w)
                return grid.numpy()
    return None


def export_meshes(data: SnapshotData, index: int, folder: Path | str) -> list[Path]:
    """Write sample `index`'s hand and object meshes (predicted and true, where present) as .ply files."""
    import trimesh

    from amt_studio.render.content import snapshot_layers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for layer in snapshot_layers(data, index, {"pred hand", "gt hand", "pred object", "gt object"}):
        mesh = trimesh.Trimesh(
            layer.verts, layer.faces, face_colors=(layer.face_rgb * 255).astype(np.uint8), process=False
        )
        path = folder / f"sample{index:03d}_{layer.name.replace(' ', '_')}.ply"
        mesh.export(path)
        written.append(path)
    if not written:
        raise UserError("this sample has no meshes to export (the model predicts joints only)")
    return written
