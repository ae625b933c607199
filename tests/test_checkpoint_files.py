"""The checkpoint folders on disk (`train/checkpoint_files.py`): atomic (a writer killed with SIGKILL at any moment
leaves the last complete checkpoint loadable), names that sort by branch then step, pruning that keeps what is
retained, and a full disk told apart from other write errors, in one line that keeps the last checkpoint."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from helpers.toys import toy_config, toy_trainer

from amt_core.errors import UserError
from amt_core.train import checkpoint_files as ckpt_io
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


def test_names_sort_by_branch_then_step():
    names = [ckpt_io.checkpoint_name(s, b) for b, s in [(0, 5), (0, 120), (1, 6), (1, 40), (2, 3), (12, 1)]]
    assert sorted(names) == names
    assert [ckpt_io.checkpoint_branch(n) for n in names] == [0, 0, 1, 1, 2, 12]
    assert names[2] == "step_b0001_00000006"


def test_prune_keeps_retained_latest_and_named(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    for step in range(8):
        retain = ("manual",) if step == 2 else ()
        ckpt_io.save_checkpoint(ckpt_dir, ckpt_io.checkpoint_name(step), {"w": torch.zeros(1)}, {}, {}, retain=retain)
    ckpt_io.set_retained(ckpt_dir / "step_00000004", "best")
    (ckpt_dir / "step_00000005" / ckpt_io.RETAIN_FILE).write_text("{not json")  # unreadable: keep, do not guess
    ckpt_io.point_latest(ckpt_dir, "step_00000003")
    removed = ckpt_io.prune_checkpoints(ckpt_dir, keep_last=1, keep=("step_00000000",))
    assert removed == ["step_00000001", "step_00000006"]
    assert ckpt_io.list_checkpoints(ckpt_dir) == [f"step_{s:08d}" for s in (0, 2, 3, 4, 5, 7)]
    ckpt_io.set_retained(ckpt_dir / "step_00000004", "best", keep=False)
    assert ckpt_io.prune_checkpoints(ckpt_dir, keep_last=1, keep=("step_00000000",)) == ["step_00000004"]


@pytest.mark.parametrize("how", ["enospc", "torch_enforce"])
def test_disk_full_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, how):
    trainer = toy_trainer(tmp_path, toy_config(steps=(10, 3, 3), max_steps=6, ckpt_every=2))
    real_save, real_fsync = torch.save, ckpt_io.os.fsync

    def full_disk(obj, path, *args, **kwargs):
        if trainer.step >= 4:
            if how == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt_io.torch, "save", full_disk)

    def fsync(fd):  # the disk is full from step 4 on: the 1 MiB probe cannot be flushed either
        if trainer.step >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    if how == "torch_enforce":  # torch names no errno: the probe finds the full disk
        monkeypatch.setattr(ckpt_io.os, "fsync", fsync)
    with pytest.raises(UserError, match=r"disk full at .*checkpoints; the last good checkpoint step_00000002 is"):
        trainer.train()
    folder = tmp_path / "checkpoints"
    assert ckpt_io.latest_checkpoint(folder).name == "step_00000002"
    ckpt_io.load_checkpoint(folder / "step_00000002")  # loadable
    assert not [p for p in folder.iterdir() if p.name.startswith((".tmp-", ".space-probe"))]  # nothing left behind


def test_a_write_error_that_is_not_a_full_disk_is_not_called_one(tmp_path):
    assert not ckpt_io.is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672]"), tmp_path)
    assert ckpt_io.is_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert not ckpt_io.is_disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path)
