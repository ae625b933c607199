"""Checkpoints are atomic: a writer killed with SIGKILL at any moment leaves the last complete checkpoint loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from amt_core.errors import UserError
from amt_core.train.checkpoint_files import (
    clean_temporary,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)

WRITER = textwrap.dedent(
    """
    import sys, torch
    from amt_core.train.checkpoint_files import save_checkpoint
    folder = sys.argv[1]
    for step in range(1, 10_000):
        weights = {f"w{i}": torch.full((512, 1024), float(step)) for i in range(8)}  # 16 MiB a checkpoint
        save_checkpoint(folder, f"step_{step:08d}", weights, {"step": step}, {"step": step})
        print(step, flush=True)
    """
)


@pytest.mark.parametrize("delay_s", [0.0, 0.07, 0.2])
def test_sigkill_while_writing_leaves_a_loadable_checkpoint(tmp_path, delay_s):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"  # one complete checkpoint exists
        time.sleep(delay_s)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    latest = latest_checkpoint(tmp_path)
    assert latest is not None
    checkpoint = load_checkpoint(latest)
    step = checkpoint.state["step"]
    assert latest.name == f"step_{step:08d}" and checkpoint.config["step"] == step
    assert all(torch.equal(v, torch.full((512, 1024), float(step))) for v in checkpoint.weights.values())
    for name in list_checkpoints(tmp_path):  # every listed checkpoint is complete and loadable
        load_checkpoint(tmp_path / name)
    clean_temporary(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_latest_pointer_prune_and_corruption(tmp_path):
    for step in range(4):
        save_checkpoint(tmp_path, f"step_{step:08d}", {"w": torch.full((3,), float(step))}, {"step": step}, {})
    assert latest_checkpoint(tmp_path).name == "step_00000003"
    (tmp_path / "latest").write_text("step_00000099\n")  # a stale pointer falls back to the newest complete one
    assert latest_checkpoint(tmp_path).name == "step_00000003"
    removed = prune_checkpoints(tmp_path, keep_last=2, keep=("step_00000000",))
    assert removed == ["step_00000001"]
    assert list_checkpoints(tmp_path) == ["step_00000000", "step_00000002", "step_00000003"]
    (tmp_path / "step_00000003" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(tmp_path / "step_00000003")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
