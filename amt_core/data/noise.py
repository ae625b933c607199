"""`noise:?size=PX&num=N&seed=S`: Samples of random content with every field valid, for throughput measurement only.

A train step costs the same whatever the pixels and labels hold: the step has no data-dependent control flow and
no host reads (`tests/test_no_host_sync.py`), and every field here is valid, so every loss term runs. This dataset
needs neither Open3D nor a renderer, which makes `amt-core bench train --set data=noise:?size=224` runnable where
only torch, timm and the small pure-Python dependencies are installed (a lent GPU machine). Nothing learns from it.
"""

from __future__ import annotations

import math

import roma
import torch
from torch.utils.data import Dataset

from amt_core.data.registry import DatasetSpec
from amt_core.errors import UserError
from amt_core.geometry import project_to_image
from amt_core.hand import HandModel
from amt_core.objects import num_classes as catalog_classes
from amt_core.schema.sample import MAX_CONTACTS, VALID_FIELDS, empty_sample


class NoiseDataset(Dataset):
    """Item `index` is a pure function of (seed, index): a random image and random labels of the right shapes.

    Args:
        size: image side in pixels.
        num: the length reported to samplers.
        num_verts: hand mesh vertices (the open hand's by default).
        num_classes: object classes to draw from.
        seed: the dataset seed.
    """

    def __init__(
        self,
        size: int = 224,
        num: int = 100_000,
        num_verts: int | None = None,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        if not 32 <= size <= 2048:
            raise UserError(f"noise dataset size must be in [32, 2048] pixels, got {size}")
        if num < 1:
            raise UserError(f"noise dataset num must be at least 1, got {num}")
        if num_verts is None:
            num_verts = HandModel().num_verts
        if num_classes is None:
            num_classes = catalog_classes()
        self.size, self.num, self.num_verts, self.num_classes, self.seed = size, num, num_verts, num_classes, seed

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        size, verts = self.size, self.num_verts
        s = empty_sample(size, size, verts)
        focal = 1.2 * size
        s["K"] = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
        s["image"] = torch.rand(3, size, size, generator=g)
        centre = torch.tensor([0.0, 0.0, 0.5]) + 0.05 * torch.randn(3, generator=g)
        s["joints3d"] = centre + 0.04 * torch.randn(21, 3, generator=g)
        s["joints2d"] = project_to_image(s["joints3d"], s["K"])
        s["hand_pose"] = 0.3 * torch.randn(45, generator=g)
        s["hand_shape"] = torch.randn(10, generator=g)
        s["hand_rot"] = math.pi * (torch.rand(3, generator=g) - 0.5)
        s["hand_trans"] = centre.clone()
        s["hand_verts"] = centre + 0.05 * torch.randn(verts, 3, generator=g)
        s["obj_class"] = torch.randint(self.num_classes, (), generator=g)
        s["obj_rot"] = roma.random_rotmat(generator=g)
        s["obj_trans"] = centre + 0.03 * torch.randn(3, generator=g)
        s["contact"] = (torch.rand(verts, generator=g) < 0.05).float()
        count = int(torch.randint(3, MAX_CONTACTS + 1, (), generator=g))
        s["contact_point_mask"][:count] = True
        s["contact_points"][:count] = s["obj_trans"] + 0.03 * torch.randn(count, 3, generator=g)
        s["contact_forces"][:count] = torch.randn(count, 3, generator=g)
        s["hand_mask"] = torch.rand(size, size, generator=g) < 0.3
        s["obj_mask"] = torch.rand(size, size, generator=g) < 0.2
        s["valid"] = {name: torch.tensor(True) for name in VALID_FIELDS}
        # the synthetic world's extras, so the loss does the same work as on `synth:` data
        s["depth"] = 0.5 + 0.1 * torch.rand(size, size, generator=g)
        s["grasp_stable"] = torch.tensor(True)
        s["wrench_residual"] = torch.zeros(2)
        normals = torch.randn(MAX_CONTACTS, 3, generator=g)
        s["contact_normals"] = (normals / normals.norm(dim=-1, keepdim=True)) * s["contact_point_mask"][:, None]
        s["gravity_dir"] = torch.tensor([0.0, 1.0, 0.0])
        return s


def open_noise(spec: DatasetSpec) -> NoiseDataset:
    """Open `noise:?size=PX&num=N&seed=S`."""
    spec.check_keys(("size", "num", "seed"))
    return NoiseDataset(
        size=spec.take("size", int, 224, "pixels"),
        num=spec.take("num", int, 100_000, "an integer"),
        seed=spec.take("seed", int, 0, "an integer"),
    )
