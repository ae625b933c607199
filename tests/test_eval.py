"""`amt-core eval` and the evaluation it runs (`train/evaluate.py`): NaN labels counted, never averaged in; a
checkpoint whose config or weights do not fit the model, and a `--json` into a missing folder, refused in one short
line."""

from __future__ import annotations

import json
import shutil

import torch
from helpers.cli import one_error_line
from helpers.toys import NaNLabels

from amt_core.cli import main


def test_eval_counts_nan_labels(tmp_path):
    from helpers.toys import ToyModel

    from amt_core.train.evaluate import evaluate

    metrics = evaluate(ToyModel(), NaNLabels([1, 2]), torch.device("cpu"), batch_size=4, max_samples=8)
    assert metrics["invalid_samples"] == 2
    assert "mpjpe_mm" in metrics and metrics["mpjpe_mm"] == metrics["mpjpe_mm"]  # present and not NaN


def test_a_config_without_its_model_section_is_named(micro_run, tmp_path, capsys):
    latest = (micro_run / "checkpoints" / "latest").read_text().strip()
    folder = tmp_path / "ckpt"
    shutil.copytree(micro_run / "checkpoints" / latest, folder)
    meta = json.loads((folder / "config.json").read_text())
    del meta["config"]["model"]
    (folder / "config.json").write_text(json.dumps(meta))
    assert main(["eval", "--ckpt", str(folder), "--max-samples", "2"]) == 2
    one_error_line(capsys.readouterr().err, "no 'model' section")
    (folder / "config.json").write_text("[1, 2]")  # JSON, but not the object a checkpoint's config is
    assert main(["eval", "--ckpt", str(folder), "--max-samples", "2"]) == 2
    one_error_line(capsys.readouterr().err, "holds no 'config' object")


def test_weights_of_another_model_give_a_short_line(micro_run, tmp_path, capsys):
    latest = (micro_run / "checkpoints" / "latest").read_text().strip()
    folder = tmp_path / "ckpt"
    shutil.copytree(micro_run / "checkpoints" / latest, folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["model"]["backbone"].update(variant="scratch", depth=3)  # another trunk: every key differs
    (folder / "config.json").write_text(json.dumps(meta))
    assert main(["eval", "--ckpt", str(folder), "--max-samples", "2"]) == 2
    one_error_line(capsys.readouterr().err, "does not match model", "missing keys:", "(+")


def test_eval_json_into_a_missing_folder_creates_nothing(micro_run, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "x.json"
    assert main(["eval", "--ckpt", str(micro_run), "--max-samples", "2", "--json", str(target)]) == 2
    one_error_line(capsys.readouterr().err, "--json", "does not exist")
    assert not (tmp_path / "no").exists()
