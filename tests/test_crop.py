"""Image modes (`data/crop.py`'s `to_rgb`): every PIL mode converts to the RGB the file means: 16-bit and float
greyscale, alpha over the transparent fill, CMYK and palettes."""

from __future__ import annotations

import numpy as np
from PIL import Image

from amt_core.data.crop import TRANSPARENT_FILL, to_rgb


def test_every_mode_converts_to_the_rgb_the_file_means():
    rgb = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    grey = rgb[..., 0]
    expected_grey = np.repeat(grey[..., None], 3, axis=-1)
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)  # PIL mode I;16, as a 16-bit greyscale PNG opens
    assert sixteen.mode == "I;16"
    assert np.array_equal(np.asarray(to_rgb(sixteen)), expected_grey)  # PIL's convert("RGB") gives all white
    assert np.array_equal(np.asarray(to_rgb(sixteen.convert("I"))), expected_grey)
    assert np.array_equal(np.asarray(to_rgb(Image.fromarray(grey.astype(np.float32) / 255))), expected_grey)
    assert np.array_equal(np.asarray(to_rgb(Image.fromarray(grey))), expected_grey)  # L
    opaque = Image.fromarray(np.dstack([rgb, np.full(grey.shape, 255, np.uint8)]))
    assert np.array_equal(np.asarray(to_rgb(opaque)), rgb)
    clear = Image.fromarray(np.dstack([rgb, np.zeros(grey.shape, np.uint8)]))
    assert (np.asarray(to_rgb(clear)) == TRANSPARENT_FILL).all()  # not the colours hidden under alpha 0
    assert to_rgb(Image.fromarray(rgb).convert("CMYK")).mode == "RGB"
    palette = Image.fromarray(rgb).quantize(8)
    assert np.abs(np.asarray(to_rgb(palette)).astype(int) - np.asarray(palette.convert("RGB"))).max() == 0
