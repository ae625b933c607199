"""`RunConfigView`: config.json as the studio reads it, from what the trainer writes, a bare run config of either
format, and the partial files of older trainers."""

from __future__ import annotations

import json

from amt_core.presets import get_preset
from amt_core.train.config_view import RunConfigView
from amt_core.train.kinds import AttentionKernel, Precision


def test_view_of_the_trainers_run_info(tmp_path):
    config = get_preset("micro").to_dict()
    config["trainer"].update(precision="bf16", max_steps=0, eval_every=250, eval_first=20)
    info = {
        "config": config,
        "device": "cuda:0",
        "stage_lengths": [30, 40, 50],
        "acceleration": {
            "attention": {"backend": "sdpa_flash"},
            "compiled": [],
            "checkpointing": {"policy": "full", "blocks": 0},
            "fp8": None,
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(info))
    view = RunConfigView.read(tmp_path)
    assert view.preset == "micro" and view.model_name == config["model_name"] and view.device == "cuda:0"
    assert view.precision is Precision.BF16 and view.attention is AttentionKernel(config["trainer"]["attention"])
    assert view.batch_size == config["batch_size"] and view.stage_lengths == (30, 40, 50)
    assert view.stage_names == tuple(s["name"] for s in config["stages"]) and view.planned_steps == 120
    assert view.cadence["eval_every"] == 250 and view.cadence["eval_first"] == 20
    assert set(view.cadence) == {"log_every", "diag_every", "eval_every", "eval_first", "snapshot_every", "ckpt_every"}
    assert view.compute_summary() == "bf16 · attn sdpa_flash"  # nothing compiled, no block checkpointed, no FP8


def test_view_of_bare_and_partial_configs():
    bare = RunConfigView.from_dict(get_preset("micro").to_dict())
    assert bare.device == "cpu" and bare.preset == "micro"  # the configured device when none was resolved
    older = RunConfigView.from_dict({"model": {"name": "amt_micro", "overrides": {}}, "trainer": {"max_steps": 9}})
    assert older.model_name == "amt_micro" and older.planned_steps == 9  # format 1
    partial = RunConfigView.from_dict({"config": {"trainer": {"precision": "fp4", "log_every": True}}})
    assert partial.precision is None and partial.cadence == {} and partial.planned_steps is None
    assert RunConfigView.from_dict([1, 2]) == RunConfigView()
    unplanned = RunConfigView.from_dict({"config": {"stages": [{"name": "a", "steps": 10}, {"name": "b"}]}})
    assert unplanned.stage_lengths == (10, 0) and unplanned.planned_steps is None


def test_missing_or_torn_config_json_is_none(tmp_path):
    assert RunConfigView.read(tmp_path) is None
    (tmp_path / "config.json").write_text('{"config": ')
    assert RunConfigView.read(tmp_path) is None
