"""`noise:` data: well-formed Samples, a pure function of (seed, index), and a train step that needs no Open3D (the
GPU benchmark runs on machines where only torch, timm and small pure-Python packages can be installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from amt_core.data import open_dataset
from amt_core.errors import UserError
from amt_core.schema.sample import check_sample


def test_samples_are_well_formed_and_reproducible():
    dataset = open_dataset("noise:?size=64&num=10&seed=3")
    assert len(dataset) == 10
    first = dataset[4]
    assert check_sample(first) == []
    assert all(bool(flag) for flag in first["valid"].values())
    again = open_dataset("noise:?size=64&num=10&seed=3")[4]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["joints3d"], again["joints3d"])
    assert not torch.equal(first["image"], dataset[5]["image"])
    with pytest.raises(UserError, match="unknown option"):
        open_dataset("noise:?size=64&pixels=3")
    with pytest.raises(UserError, match="size must be in"):
        open_dataset("noise:?size=8")


def test_a_train_step_on_noise_imports_no_open3d(tmp_path):
    from amt_core.objects.tables import ObjectTables

    ObjectTables.from_catalog()  # the SDF grids come from the cache (built here, with Open3D, if missing)
    script = f"""
import sys, json, tempfile
from amt_core.presets import apply_overrides, get_preset
from amt_core.train.trainer import Trainer
config = apply_overrides(get_preset("micro"), ["data=noise:?size=64&num=64", "val_data=noise:?size=64&num=8"])
trainer = Trainer(config, {str(tmp_path / "run")!r})
trainer.start()
trainer.train_step(trainer.next_batch())
ok = trainer.check()
trainer.close()
print(json.dumps({{"ok": ok, "open3d": "open3d" in sys.modules}}))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"ok": True, "open3d": False}


def test_bench_data_measures_the_trainers_loader():
    import argparse

    from amt_core.bench import data as bench

    def run(*argv):
        parser = argparse.ArgumentParser()
        bench.add_arguments(parser)
        return bench.run(parser.parse_args(["--data", "noise:?size=32&num=40", "--batches", "2", *argv]))

    result = run("--workers", "0", "--batch-size", "8")
    (row,) = result["rows"]
    assert row["workers"] == 0 and row["batch"] == 8 and row["images_per_s"] > 0
    # one batch of 8 samples of 32 px: the image alone is 8 x 3 x 32 x 32 float32
    assert row["mb_per_batch"] > 8 * 3 * 32 * 32 * 4 / 2**20
    with pytest.raises(UserError, match="fewer than one batch of 64"):
        run("--batch-size", "64")
    with pytest.raises(UserError, match="--workers 'two'"):
        run("--workers", "two")
