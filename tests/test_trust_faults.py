"""Faults and bad input in training: NaN labels counted and skipped, a full disk as one line with the last checkpoint
kept, giving up as exit 3, `ctl status` while paused, idle control connections timed out, `--resume CKPT` past a
corrupt latest checkpoint."""

from __future__ import annotations

import errno
import socket
import threading
import time

import pytest
import torch
from helpers.toys import NaNLabels, ToyDataset, events_of, toy_config, toy_trainer

from amt_core.cli import main
from amt_core.errors import UserError
from amt_core.train import checkpoint_files as ckpt_io
from amt_core.train.control import ControlClient, ControlServer
from amt_core.train.trainer import TrainingFailed


def test_nan_labels_are_counted_and_skipped_with_one_warning(tmp_path):
    bad = [0, 5, 9, 17, 33, 50]
    trainer = toy_trainer(tmp_path, toy_config(steps=(8, 8, 8), max_steps=8), dataset=NaNLabels(bad))
    assert trainer.train() == "finished"
    warnings = [e for e in events_of(tmp_path, "anomaly") if e["what"] == "invalid_labels"]
    assert len(warnings) == 1 and "NaN or infinite labels" in warnings[0]["message"]
    assert not [e for e in events_of(tmp_path, "anomaly") if e["what"] == "non_finite"]  # no step was lost to them
    assert events_of(tmp_path, "metrics")[-1]["invalid_samples"] == len(bad)  # 8 batches of 8: one epoch of 64
    weights = ckpt_io.load_checkpoint(ckpt_io.latest_checkpoint(tmp_path / "checkpoints")).weights
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_eval_counts_nan_labels(tmp_path):
    from helpers.toys import ToyModel

    from amt_core.train.evaluate import evaluate

    metrics = evaluate(ToyModel(), NaNLabels([1, 2]), torch.device("cpu"), batch_size=4, max_samples=8)
    assert metrics["invalid_samples"] == 2
    assert "mpjpe_mm" in metrics and metrics["mpjpe_mm"] == metrics["mpjpe_mm"]  # present and not NaN


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


def test_giving_up_is_one_line_and_exit_3(tmp_path, monkeypatch, capsys):
    import amt_core.train.trainer as trainer_module

    class GivesUp:
        def __init__(self, *args, **kwargs) -> None:
            self.is_main = True

        def train(self):
            raise TrainingFailed("explosion at step 8 after 3 rollbacks; lower the learning rate")

    monkeypatch.setattr(trainer_module, "Trainer", GivesUp)
    code = main(["train", "--preset", "micro", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 3
    assert err.strip().count("\n") == 0 and "explosion at step 8 after 3 rollbacks" in err and "intact" in err


def test_real_trainer_gives_up_with_training_failed(tmp_path):
    """What the CLI maps to exit 3: the trainer raises TrainingFailed after max_rollbacks explosions."""
    config = toy_config(steps=(40, 3, 3), max_steps=30, ckpt_every=2, stability={"max_rollbacks": 1})
    explode = list(range(64))  # every sample explodes once the spike history exists
    trainer = toy_trainer(tmp_path, config, dataset=ToyDataset(explode_at=explode))
    trainer.spike.check = lambda loss: trainer.step >= 6  # an explosion at every check from step 6 on
    with pytest.raises(TrainingFailed, match="after 1 rollbacks"):
        trainer.train()
    assert ckpt_io.latest_checkpoint(tmp_path / "checkpoints") is not None


def test_ctl_status_while_paused_says_paused(tmp_path):
    trainer = toy_trainer(tmp_path, toy_config(steps=(400, 3, 3), max_steps=400))
    thread = threading.Thread(target=trainer.train, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 60
        while not (tmp_path / "control.json").exists() and time.time() < deadline:
            time.sleep(0.05)
        client = ControlClient(tmp_path, timeout_s=30)
        assert client.send("pause")["ok"]
        status = client.send("status")
        assert status["paused"] is True and status["state"] == "paused"
        assert client.send("resume")["ok"]
        assert client.send("status")["paused"] is False
    finally:
        ControlClient(tmp_path, timeout_s=30).send("stop")
        thread.join(timeout=60)
    assert not thread.is_alive()


def test_idle_control_connections_are_dropped(tmp_path):
    server = ControlServer(tmp_path, read_timeout_s=2.0)
    server.start()
    try:
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]
        peak, deadline = 0, time.time() + 1.8
        while time.time() < deadline:  # one handler thread each while they wait
            peak = max(peak, threading.active_count())
            time.sleep(0.02)
        assert peak > before  # handler threads wait on the idle clients...
        deadline = time.time() + 15
        while threading.active_count() > before and time.time() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= before  # ...and every one timed out and ended
        for sock in idle:
            sock.settimeout(5)
            assert b"bad request" in sock.recv(4096)
            sock.close()
        server.status = {"step": 3}
        assert ControlClient(tmp_path, timeout_s=10).send("status")["step"] == 3  # still serving
    finally:
        server.close()


def test_resume_from_a_named_checkpoint_when_the_latest_is_corrupt(tmp_path):
    first = toy_trainer(tmp_path, toy_config(max_steps=4, ckpt_every=1))
    first.train()
    folder = tmp_path / "checkpoints"
    weights = folder / "step_00000004" / ckpt_io.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])  # torn by a failing disk
    with pytest.raises(UserError, match=r"step_00000004 is corrupt.*--resume step_00000003"):
        toy_trainer(tmp_path, toy_config(max_steps=6, ckpt_every=1), resume=True).train()
    with pytest.raises(UserError, match=r"--resume step_00000099: no complete checkpoint"):
        trainer = toy_trainer(tmp_path, toy_config(max_steps=6, ckpt_every=1), resume=True)
        trainer.resume_from = "step_00000099"
        trainer.train()
    trainer = toy_trainer(tmp_path, toy_config(max_steps=6, ckpt_every=1), resume=True)
    trainer.resume_from = "step_00000003"
    assert trainer.train() == "finished"
    assert trainer.checkpointer.branch == 1  # continued on a new branch: the corrupt step 4 is not overwritten in place
    assert ckpt_io.latest_checkpoint(folder).name == "step_b0001_00000006"
    assert (folder / "step_00000004").exists()
    states = events_of(tmp_path, "state")
    assert states[-2]["resumed_from"] == "step_00000003"
