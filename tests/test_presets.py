"""Presets and `--set` overrides (`amt_core/presets.py`): the named presets, dotted assignments merged over a
preset's own values, a round trip through the config's dict, and the errors of bad assignments and names."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from amt_core.errors import UserError
from amt_core.losses.amt_loss import DEFAULT_WEIGHTS, AMTLoss
from amt_core.presets import SMALL_LOSS, apply_overrides, get_preset, list_presets
from amt_core.train.config import config_from_dict


def test_presets_and_overrides():
    assert {"micro", "cpu", "dinov2_s", "dinov2_l", "baseline_cpu"} <= set(list_presets())
    assert get_preset("baseline_cpu").model_name == "baseline_cpu"
    assignments = [
        "stages.0.steps=7",
        "model.refine.steps=2",
        "trainer.log_every=3",
        "loss.weights.diversity=0",
        "stages.2.loss_scale.physics=3",
    ]
    config = apply_overrides(get_preset("cpu"), assignments)
    assert config.stages[0].steps == 7 and config.trainer.log_every == 3
    preset_model = get_preset("cpu").model
    assert config.model == replace(preset_model, refine=replace(preset_model.refine, steps=2))  # only that changed
    # merged over the preset's own (the loss defaults fill in every other term)
    assert config.loss == AMTLoss.Config(weights={**SMALL_LOSS["weights"], "diversity": 0})
    assert config.loss.weights == {**DEFAULT_WEIGHTS, **SMALL_LOSS["weights"], "diversity": 0}
    assert config.stages[2].loss_scale["physics"] == 3.0
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for bad, message in [
        ("trainer.log_evry=3", "no key 'log_evry'"),
        ("trainer.log_every=0", ">= 1"),
        ("stages.4.lr=1", "not an index"),
        ("batch_size=x", "expected int"),
        ("nokey", "KEY=VALUE"),
        ("stages.0.hard_mining=2", "hard_mining"),
    ]:
        with pytest.raises(UserError, match=message):
            apply_overrides(config, [bad])
    with pytest.raises(UserError, match="unknown preset"):
        get_preset("dinov3")
