"""`amt-core predict` (`commands/predict.py`): an image read as the file means it (a 16-bit PNG predicts like its
8-bit version), the hand section, unreadable files skipped while the rest are predicted, and degenerate images (tiny,
a decompression bomb) refused in one line that names the fix, never a raw warning."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from helpers.cli import one_error_line
from PIL import Image

from amt_core.cli import main
from amt_core.commands.predict import MIN_IMAGE_SIDE, load_image
from amt_core.errors import MAX_LINE, UserError


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


def _scene(height: int = 72, width: int = 96) -> np.ndarray:
    """A greyscale picture with structure (a bright disc on a gradient), uint8."""
    yy, xx = np.mgrid[0:height, 0:width]
    picture = 40 + 120 * xx / width + 90 * (((yy - 36) ** 2 + (xx - 50) ** 2) < 400)
    return picture.clip(0, 255).astype(np.uint8)


def test_a_16_bit_png_predicts_like_its_8_bit_version(micro_run, tmp_path, capsys):
    picture = _scene()
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(picture).save(folder / "eight.png")
    low_bits = np.random.default_rng(1).integers(0, 120, picture.shape)  # what 16 bits hold beyond 8
    Image.fromarray((picture.astype(np.uint16) * 257 + low_bits).astype(np.uint16)).save(folder / "sixteen.png")
    Image.fromarray(np.full_like(picture, 255)).save(folder / "white.png")  # what PIL alone made of the 16-bit file
    assert Image.open(folder / "sixteen.png").mode.startswith("I")
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(micro_run), str(folder), "--out", str(out)]) == 0
    joints = {name: np.asarray(json.loads((out / f"{name}.json").read_text())["joints3d_m"]) for name in
              ("eight", "sixteen", "white")}  # fmt: skip
    tolerance = 1e-3  # metres; the 16-bit file's extra bits round to at most one 8-bit level
    assert np.abs(joints["sixteen"] - joints["eight"]).max() < tolerance
    assert np.abs(joints["white"] - joints["eight"]).max() > 10 * np.abs(joints["sixteen"] - joints["eight"]).max()
    record = json.loads((out / "sixteen.json").read_text())
    hand = record["hand"]
    assert hand["threshold_mm"] == 20.0 and hand["joint_std_mm"] > 0
    assert hand["present"] == (hand["joint_std_mm"] <= hand["threshold_mm"])
    assert "joint std" in capsys.readouterr().out


def test_predict_skips_a_file_it_cannot_read_and_predicts_the_rest(micro_run, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(_scene()).save(folder / "a_good.png")
    (folder / "b_text.png").write_text("not an image\n")
    (folder / "c_cut.png").write_bytes((folder / "a_good.png").read_bytes()[:60])  # truncated
    Image.fromarray(_scene(8, 8)).save(folder / "d_tiny.png")
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(micro_run), str(folder), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 3 and all(len(line) < MAX_LINE for line in skipped)
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in out.glob("*.json")) == ["a_good.json"]
    assert "predicted 1 of 4 images" in captured.out
    # none readable: one line (not a skip line each, then the error), exit 2, no output folder
    (folder / "a_good.png").unlink()
    assert main(["predict", "--ckpt", str(micro_run), str(folder), "--out", str(tmp_path / "none")]) == 2
    one_error_line(capsys.readouterr().err, "none of the 3 images could be read; first, cannot read image")
    assert main(["predict", "--ckpt", str(micro_run), str(folder / "b_text.png"), "--out", str(tmp_path / "none")]) == 2
    one_error_line(capsys.readouterr().err, "cannot read image", "b_text.png")
    assert not (tmp_path / "none").exists()
