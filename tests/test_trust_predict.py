"""Degenerate inputs to `amt-core predict` and to backbone weights: one line that names the fix, never a raw warning
or a page of advice."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from amt_core.commands.predict import MIN_IMAGE_SIDE, load_image
from amt_core.errors import UserError
from amt_core.models import create_model
from amt_core.models.backbone import load_backbone_weights


class NotATensor:
    """A class torch's weights_only loader does not know."""


def _png(path, width: int, height: int):
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)
    return path


def test_a_tiny_image_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match=f"1x1 pixels; give at least {MIN_IMAGE_SIDE}") as info:
        load_image(_png(tmp_path / "dot.png", 1, 1), 64, None)
    assert "\n" not in str(info.value)
    image, K, _ = load_image(_png(tmp_path / "ok.png", MIN_IMAGE_SIDE, 40), 64, None)  # the smallest allowed
    assert image.shape == (3, 64, 64) and K.shape == (3, 3)


def test_a_decompression_bomb_is_one_line_not_a_pil_warning(tmp_path, monkeypatch):
    # PIL's limit scaled down so the test needs no 100-megapixel file: 2500 pixels warn, 5000 and more are refused
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2500)
    for side in (60, 200):  # 3600 pixels: PIL's warning; 40000: PIL's DecompressionBombError
        path = _png(tmp_path / f"big{side}.png", side, side)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any warning escaping would fail here
            with pytest.raises(UserError, match="megapixels; downscale it first") as info:
                load_image(path, 64, None)
        assert "\n" not in str(info.value)


def test_a_pth_that_is_not_plain_tensors_is_one_line(tmp_path):
    path = tmp_path / "not_a_backbone.pth"
    torch.save({"model": NotATensor()}, path)  # weights_only refuses the class with a page of advice
    backbone = create_model("baseline_micro", **{"backbone.variant": "scratch"}).backbone  # a ViT takes weights
    with pytest.raises(UserError, match="as plain tensors .*official DINOv2 .pth or a timm .safetensors") as info:
        load_backbone_weights(backbone, path)
    assert "\n" not in str(info.value)
