"""Weighted mixtures of dataset specs and the `amt-core datasets` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.cli import one_error_line
from PIL import Image
from torch.utils.data import Dataset

from amt_core.cli import main
from amt_core.commands.datasets import register_real_schemes
from amt_core.data import open_dataset
from amt_core.data.mix import MixedDataset, split_mix
from amt_core.errors import UserError


@pytest.fixture(autouse=True)
def _no_mano_from_the_environment(monkeypatch):
    """Specs without mano= read $AMT_MANO_DIR; the tests decide for themselves."""
    monkeypatch.delenv("AMT_MANO_DIR", raising=False)


class Constant(Dataset):
    """Items {'source': k, 'index': i, 'x': zeros(shape)}."""

    def __init__(self, source: int, length: int, shape=(2,)) -> None:
        self.source, self.length, self.shape = source, length, shape

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return {"source": torch.tensor(self.source), "index": torch.tensor(index), "x": torch.zeros(self.shape)}


def test_split_mix_syntax():
    assert split_mix("freihand:/d/fh*0.5+synth:live?seed=1&extras=0*0.25") == [
        ("freihand:/d/fh", 0.5),
        ("synth:live?seed=1&extras=0", 0.25),
    ]
    assert split_mix("ho3d:/d/ho:train+dexycb:/d/dex:s0:train*2") == [
        ("ho3d:/d/ho:train", 1.0),
        ("dexycb:/d/dex:s0:train", 2.0),
    ]
    with pytest.raises(UserError, match="not a number"):
        split_mix("freihand:/d*abc")
    with pytest.raises(UserError, match="positive"):
        split_mix("freihand:/d*0")
    with pytest.raises(UserError, match="empty part"):
        split_mix("freihand:/d*1+")


def test_shares_follow_the_weights():
    mix = MixedDataset([(Constant(0, 10), 3.0), (Constant(1, 2), 1.0)])
    assert len(mix) == 12 and mix.counts == [9, 3]
    sources = [int(mix[i]["source"]) for i in range(len(mix))]
    assert sources.count(0) == 9 and sources.count(1) == 3
    # the large part is spread over its items, the small one repeats
    assert len({int(mix[i]["index"]) for i in range(9)}) == 9
    assert [int(mix[i]["index"]) for i in range(9, 12)] == [0, 1, 0]
    with pytest.raises(IndexError):
        mix[12]
    batch = torch.utils.data.default_collate([mix[i] for i in range(len(mix))])
    assert batch["x"].shape == (12, 2)


def test_parts_that_would_not_batch_are_refused():
    with pytest.raises(UserError, match="different samples"):
        MixedDataset([(Constant(0, 3), 1.0), (Constant(1, 3, shape=(3,)), 1.0)], names=["a", "b"])


@pytest.fixture(scope="module")
def freihand_root(tmp_path_factory):
    """A two-frame FreiHAND with plausible labels (the hand about 0.5 m away)."""
    root = tmp_path_factory.mktemp("fh")
    for set_name in ("training", "evaluation"):
        (root / set_name / "rgb").mkdir(parents=True)
        rng = np.random.default_rng(0)
        xyz = (rng.normal(0, 0.03, (2, 21, 3)) + [0, 0, 0.5]).tolist()
        K = [[[400.0, 0, 111.5], [0, 400.0, 111.5], [0, 0, 1]]] * 2
        (root / f"{set_name}_xyz.json").write_text(json.dumps(xyz))
        (root / f"{set_name}_K.json").write_text(json.dumps(K))
        for i in range(8 if set_name == "training" else 2):
            Image.new("RGB", (224, 224), (40, 80, 120)).save(root / set_name / "rgb" / f"{i:08d}.jpg")
    return root


def test_mix_spec_opens_through_the_registry(freihand_root):
    register_real_schemes()
    mix = open_dataset(f"mix:freihand:{freihand_root}?size=32*0.75+freihand:{freihand_root}:eval?size=32*0.25")
    assert isinstance(mix, MixedDataset) and len(mix) == 10 and mix.counts == [8, 2]  # 4 versions x 2 + 2
    assert mix[9]["image"].shape == (3, 32, 32)
    with pytest.raises(UserError, match="size="):
        open_dataset(f"mix:freihand:{freihand_root}?size=32+freihand:{freihand_root}?size=48")


def test_datasets_check_command(freihand_root, tmp_path, capsys):
    assert main(["datasets", "check", f"freihand:{freihand_root}?size=32", "--samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "8 samples; checked 4 at random" in out and out.strip().endswith("ok")
    # a half-downloaded copy: one line per missing file, exit code 1, no traceback
    assert main(["datasets", "check", f"freihand:{tmp_path}"]) == 1
    out = capsys.readouterr().out
    assert f"problem: missing {tmp_path / 'training_xyz.json'}" in out
    assert f"problem: missing folder {tmp_path / 'training' / 'rgb'} (the images)" in out
    assert "Traceback" not in out
    assert main(["datasets", "list"]) == 0
    assert "dexycb" in capsys.readouterr().out


def test_val_data_mix_is_refused_at_start_and_nothing_is_written(tmp_path, capsys):
    folder = tmp_path / "run"
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder), "--val-data", "mix:"]) == 2
    one_error_line(capsys.readouterr().err, "--val-data 'mix:'", "empty part")
    assert not folder.exists()
    assert main(["datasets", "check", "mix:"]) == 1  # the same parser says the same
