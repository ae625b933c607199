"""Contact sheets: sample images with the projected 21-joint skeleton, the object's box and the contact points.

Works on Samples from any reader (dicts of tensors, see `amt_core.schema.sample`); the object box needs the catalog.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from amt_core.geometry import project_to_image
from amt_core.joints import BONES, FINGER_COLORS, finger_of
from amt_core.objects import catalog

# Edges of a box whose corners are numbered by their (x, y, z) sign bits.
_BOX_EDGES = ((0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7))


def _object_boxes() -> dict[int, np.ndarray]:
    """(8, 3) bounding-box corners of each catalog class, object frame."""
    boxes = {}
    for obj in catalog():
        low, high = np.asarray(obj.mesh.bounds)
        corners = np.array([[(high if (i >> k) & 1 else low)[k] for k in range(3)] for i in range(8)])
        boxes[obj.id] = corners
    return boxes


def draw_sample(sample: dict, tile: int = 192, boxes: dict[int, np.ndarray] | None = None):
    """A PIL image of one sample at tile x tile pixels with its annotations drawn on."""
    image = (sample["image"].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    height, width = image.shape[:2]
    scale = tile / max(height, width)
    canvas = Image.fromarray(image).resize((round(width * scale), round(height * scale)), Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    K = sample["K"].float()
    valid = sample["valid"]

    def to_canvas(uv: np.ndarray) -> list[tuple[float, float]]:
        # pixel centres sit at integer coordinates; the resized canvas keeps pixel edges aligned.
        return [((u + 0.5) * scale - 0.5, (v + 0.5) * scale - 0.5) for u, v in uv]

    if bool(valid["obj"]) and boxes is not None and int(sample["obj_class"]) in boxes:
        corners = torch.from_numpy(boxes[int(sample["obj_class"])]).float()
        corners_cam = corners @ sample["obj_rot"].float().T + sample["obj_trans"].float()
        if (corners_cam[:, 2] > 0.01).all():
            uv = to_canvas(project_to_image(corners_cam, K).numpy())
            for a, b in _BOX_EDGES:
                draw.line([uv[a], uv[b]], fill=(255, 255, 255), width=1)
    if bool(valid["joints2d"]):
        uv = to_canvas(sample["joints2d"].numpy())
        for parent, child in BONES:
            draw.line([uv[parent], uv[child]], fill=FINGER_COLORS[finger_of(child)], width=max(1, round(scale)))
        radius = max(1.5, scale)
        for j, (u, v) in enumerate(uv):
            color = (255, 255, 255) if j == 0 else FINGER_COLORS[finger_of(j)]
            draw.ellipse([u - radius, v - radius, u + radius, v + radius], fill=color)
    if bool(valid["contact_points"]):
        points = sample["contact_points"][sample["contact_point_mask"]]
        if len(points):
            uv = to_canvas(project_to_image(points.float(), K).numpy())
            radius = max(2.0, 1.5 * scale)
            for u, v in uv:
                draw.ellipse([u - radius, v - radius, u + radius, v + radius], outline=(255, 255, 0), width=1)
    return canvas


def contact_sheet(samples: list[dict], tile: int = 192, columns: int | None = None):
    """A PIL image: the samples drawn by `draw_sample` in a grid (square-ish unless `columns` is given)."""
    if not samples:
        raise ValueError("contact_sheet needs at least one sample")
    columns = columns or math.ceil(math.sqrt(len(samples)))
    rows = math.ceil(len(samples) / columns)
    boxes = _object_boxes()
    gap = 2
    sheet = Image.new("RGB", (columns * (tile + gap) + gap, rows * (tile + gap) + gap), (24, 24, 24))
    for i, sample in enumerate(samples):
        tile_image = draw_sample(sample, tile, boxes)
        sheet.paste(tile_image, (gap + (i % columns) * (tile + gap), gap + (i // columns) * (tile + gap)))
    return sheet
