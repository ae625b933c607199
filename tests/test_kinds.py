"""The run's enums: the same names as the tuples the lower layers check against, strings on the wire, and the
trainer config's enum fields taking the strings of a command line and a config.json and writing them back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from amt_core import config_tree
from amt_core.accel.precision import PRECISIONS
from amt_core.errors import UserError
from amt_core.models.attention import MODES as ATTENTION_MODES
from amt_core.presets import get_preset
from amt_core.train.config import config_from_dict
from amt_core.train.kinds import AttentionKernel, Device, Precision, ProgressStyle, checked
from amt_core.train.trainer_config import TrainerConfig


def test_enums_name_what_the_lower_layers_accept():
    assert [str(p) for p in Precision] == list(PRECISIONS)
    assert sorted(AttentionKernel) == sorted(ATTENTION_MODES)


def test_trainer_config_takes_strings_and_writes_them_back():
    config = TrainerConfig(device="cpu", precision="bf16", attention="sdpa", progress="none")
    assert config.device is Device.CPU and config.precision is Precision.BF16
    assert config.attention is AttentionKernel.SDPA and config.progress is ProgressStyle.NONE
    assert config.precision == "bf16" and f"{config.device}" == "cpu"  # still the string where one is used
    with pytest.raises(ValueError, match=r"TrainerConfig.precision must be one of \('fp32', 'bf16', 'fp8'\)"):
        TrainerConfig(precision="fp16")


def test_set_and_config_json_reach_the_enum_fields():
    run = get_preset("micro")
    changed = config_tree.override(run, {"trainer.progress": "none", "trainer.precision": "bf16"}, source="--set ")
    assert changed.trainer.progress is ProgressStyle.NONE  # "none" is the member, not null
    text = json.dumps(changed.to_dict())
    assert '"progress": "none"' in text and '"precision": "bf16"' in text
    assert config_from_dict(json.loads(text)) == changed
    with pytest.raises(UserError, match="--set trainer.device: expected one of auto, cpu, cuda, got 'gpu'"):
        config_tree.override(run, {"trainer.device": "gpu"}, source="--set ")


def test_checked_names_the_field():
    assert checked(Device, "cuda", "x") is Device.CUDA
    with pytest.raises(ValueError, match=r"Thing.device must be one of \('auto', 'cpu', 'cuda'\) \(got 'tpu'\)"):
        checked(Device, "tpu", "Thing.device")


def test_the_shared_names_import_without_torch():
    code = (
        "import sys, amt_core.train.kinds, amt_core.train.config_view, amt_core.metrics.keys, amt_studio.state\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
