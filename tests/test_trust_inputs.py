"""Inputs validated where they enter: image modes read as the file means them (a 16-bit PNG predicts like its 8-bit
version), predict's hand section and its skipping of unreadable files, dataset specs checked when a run starts, flags
refused in the user's own names, and short lines for configs and weights that do not fit."""

from __future__ import annotations

import fractions
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from amt_core.cli import main
from amt_core.data.crop import TRANSPARENT_FILL, to_rgb
from amt_core.errors import MAX_LINE


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A micro run of one step: a checkpoint for predict and eval."""
    folder = tmp_path_factory.mktemp("inputs") / "run"
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder)]) == 0
    return folder


def _line(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < MAX_LINE and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- image modes


def _scene(height: int = 72, width: int = 96) -> np.ndarray:
    """A greyscale picture with structure (a bright disc on a gradient), uint8."""
    yy, xx = np.mgrid[0:height, 0:width]
    picture = 40 + 120 * xx / width + 90 * (((yy - 36) ** 2 + (xx - 50) ** 2) < 400)
    return picture.clip(0, 255).astype(np.uint8)


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


def test_a_16_bit_png_predicts_like_its_8_bit_version(run_dir, tmp_path, capsys):
    picture = _scene()
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(picture).save(folder / "eight.png")
    low_bits = np.random.default_rng(1).integers(0, 120, picture.shape)  # what 16 bits hold beyond 8
    Image.fromarray((picture.astype(np.uint16) * 257 + low_bits).astype(np.uint16)).save(folder / "sixteen.png")
    Image.fromarray(np.full_like(picture, 255)).save(folder / "white.png")  # what PIL alone made of the 16-bit file
    assert Image.open(folder / "sixteen.png").mode.startswith("I")
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(run_dir), str(folder), "--out", str(out)]) == 0
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


def test_predict_skips_a_file_it_cannot_read_and_predicts_the_rest(run_dir, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(_scene()).save(folder / "a_good.png")
    (folder / "b_text.png").write_text("not an image\n")
    (folder / "c_cut.png").write_bytes((folder / "a_good.png").read_bytes()[:60])  # truncated
    Image.fromarray(_scene(8, 8)).save(folder / "d_tiny.png")
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(run_dir), str(folder), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 3 and all(len(line) < MAX_LINE for line in skipped)
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in out.glob("*.json")) == ["a_good.json"]
    assert "predicted 1 of 4 images" in captured.out
    # none readable: one line (not a skip line each, then the error), exit 2, no output folder
    (folder / "a_good.png").unlink()
    assert main(["predict", "--ckpt", str(run_dir), str(folder), "--out", str(tmp_path / "none")]) == 2
    _line(capsys.readouterr().err, "none of the 3 images could be read; first, cannot read image")
    assert main(["predict", "--ckpt", str(run_dir), str(folder / "b_text.png"), "--out", str(tmp_path / "none")]) == 2
    _line(capsys.readouterr().err, "cannot read image", "b_text.png")
    assert not (tmp_path / "none").exists()


# --------------------------------------------------------------------------- a run's inputs


def test_val_data_mix_is_refused_at_start_and_nothing_is_written(tmp_path, capsys):
    folder = tmp_path / "run"
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder), "--val-data", "mix:"]) == 2
    _line(capsys.readouterr().err, "--val-data 'mix:'", "empty part")
    assert not folder.exists()
    assert main(["datasets", "check", "mix:"]) == 1  # the same parser says the same


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["train", "--preset", "micro", "--max-time", "-1"], ["--max-time must be >= 0 minutes", "got -1"]),
        (["train", "--preset", "micro", "--max-steps", "-5"], ["--max-steps must be >= 0", "got -5"]),
        (["train", "--preset", "micro", "--batch-size", "0"], ["--batch-size must be >= 1"]),
        (["ctl", ".", "status", "--timeout", "-1"], ["--timeout must be > 0 seconds, got -1"]),
        (["ctl", ".", "status", "--timeout", "0"], ["--timeout must be > 0 seconds, got 0"]),
    ],
)
def test_flags_are_refused_in_the_users_own_words(argv, fragments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*argv[:1], *argv[1:]]) == 2
    line = _line(capsys.readouterr().err, *fragments)
    assert "trainer." not in line  # not the config field the flag becomes
    assert not list(tmp_path.iterdir())


def test_help_and_the_first_line_state_the_plan_and_the_time_limit(capsys):
    from amt_core.commands.train import plan_line
    from amt_core.presets import apply_overrides, get_preset

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default 0: no time limit)" in help_text
    micro, cpu = get_preset("micro"), get_preset("cpu")
    micro_steps, cpu_steps = (sum(s.steps for s in c.stages) for c in (micro, cpu))
    assert f"micro plans {micro_steps} steps, cpu {cpu_steps}" in help_text  # kept true to the presets
    line = plan_line(apply_overrides(micro, ["trainer.max_steps=200"]), 100, "runs/x", resume=False)
    assert f"the plan is {micro_steps} steps" in line and "--max-steps 200 does not lengthen it" in line
    assert line.endswith("no time limit")
    line = plan_line(apply_overrides(micro, ["trainer.max_time_s=90"]), 100, "runs/x", resume=False)
    assert line.endswith("1.5 minutes of training")


# --------------------------------------------------------------------------- configs and weights that do not fit


def test_a_config_without_its_model_section_is_named(run_dir, tmp_path, capsys):
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    folder = tmp_path / "ckpt"
    shutil.copytree(run_dir / "checkpoints" / latest, folder)
    meta = json.loads((folder / "config.json").read_text())
    del meta["config"]["model"]
    (folder / "config.json").write_text(json.dumps(meta))
    assert main(["eval", "--ckpt", str(folder), "--max-samples", "2"]) == 2
    _line(capsys.readouterr().err, "no 'model' section")
    (folder / "config.json").write_text("[1, 2]")  # JSON, but not the object a checkpoint's config is
    assert main(["eval", "--ckpt", str(folder), "--max-samples", "2"]) == 2
    _line(capsys.readouterr().err, "holds no 'config' object")


def test_weights_of_another_model_give_a_short_line(run_dir, tmp_path, capsys):
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    folder = tmp_path / "ckpt"
    shutil.copytree(run_dir / "checkpoints" / latest, folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["model"]["backbone"].update(variant="scratch", depth=3)  # another trunk: every key differs
    (folder / "config.json").write_text(json.dumps(meta))
    assert main(["eval", "--ckpt", str(folder), "--max-samples", "2"]) == 2
    _line(capsys.readouterr().err, "does not match model", "missing keys:", "(+")


def test_a_pth_with_a_python_object_names_it_in_a_short_line(tmp_path):
    from amt_core.errors import UserError
    from amt_core.models import create_model
    from amt_core.models.backbone import load_backbone_weights

    path = tmp_path / "weights.pth"
    torch.save({"model": {"x": fractions.Fraction(1, 3)}}, path)
    backbone = create_model("baseline_micro", **{"backbone.variant": "scratch"}).backbone
    with pytest.raises(UserError) as info:
        load_backbone_weights(backbone, path)
    message = str(info.value)
    assert "fractions.Fraction" in message and "weights_only" not in message
    assert len(message) - len(str(path)) < 200  # PyTorch's own text was 464 characters before the path


def test_eval_json_into_a_missing_folder_creates_nothing(run_dir, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "x.json"
    assert main(["eval", "--ckpt", str(run_dir), "--max-samples", "2", "--json", str(target)]) == 2
    _line(capsys.readouterr().err, "--json", "does not exist")
    assert not (tmp_path / "no").exists()
