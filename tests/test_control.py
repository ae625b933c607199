"""The control channel: pause/resume/stage/save/rollback/snapshot/stop change what the events show; a wrong secret
is refused; a dead run gives a clear error; `amt-core ctl` exits 0 once the trainer confirms."""

from __future__ import annotations

import json
import stat
import threading
import time

import pytest
from helpers.toys import ToyDataset, events_of, toy_config, toy_trainer

from amt_core.cli import main
from amt_core.errors import UserError
from amt_core.train.control import ControlClient


def _wait_for(predicate, timeout_s: float = 180.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.fixture
def live_run(tmp_path):
    config = toy_config(steps=(10_000, 10_000, 10_000), ckpt_every=10_000)
    trainer = toy_trainer(tmp_path, config, dataset=ToyDataset(num=4096, delay_s=0.002))
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("state", trainer.train()), daemon=True)
    thread.start()
    _wait_for(lambda: (tmp_path / "control.json").exists() and trainer.step >= 3)
    yield trainer, tmp_path, thread, result
    if thread.is_alive():
        trainer.steering.request_stop("command")
        thread.join(30)


def test_commands_take_effect_and_show_in_events(live_run):
    trainer, run_dir, thread, result = live_run
    info = run_dir / "control.json"
    assert stat.S_IMODE(info.stat().st_mode) == 0o600
    assert json.loads(info.read_text())["port"] > 0
    client = ControlClient(run_dir, timeout_s=30)

    assert client.send("pause")["state"] == "paused"
    assert events_of(run_dir, "state")[-1]["state"] == "paused"
    paused_at = trainer.step
    time.sleep(0.3)
    assert trainer.step == paused_at  # no step while paused
    assert client.send("resume")["state"] == "running"
    _wait_for(lambda: trainer.step > paused_at + 2)

    assert client.send("stage", 3)["stage"] == 3
    stage = events_of(run_dir, "stage")[-1]
    assert stage["stage"] == 3 and stage["reason"] == "command" and stage["name"] == "finetune"

    saved = client.send("save")["checkpoint"]
    assert any(e["name"] == saved and e["reason"] == "command" for e in events_of(run_dir, "checkpoint"))
    _wait_for(lambda: trainer.step > int(saved.split("_")[1]) + 2)

    reply = client.send("rollback", "step_00000000")
    assert reply["checkpoint"] == "step_00000000"
    rollback = events_of(run_dir, "rollback")[-1]
    assert rollback["step"] == 0 and rollback["from_step"] > 0 and rollback["reason"] == "command"
    assert events_of(run_dir, "stage")[-1]["stage"] == 1  # the checkpoint was taken in stage 1

    assert main(["ctl", str(run_dir), "snapshot"]) == 0
    snapshot = events_of(run_dir, "snapshot")[-1]
    assert (run_dir / snapshot["path"]).exists() and snapshot["reason"] == "command"

    with pytest.raises(UserError, match="no checkpoint"):
        client.send("rollback", "step_12345678")
    with pytest.raises(UserError, match="stage 7 does not exist"):
        client.send("stage", 7)

    assert client.send("stop")["state"] == "stopped"
    thread.join(30)
    assert result["state"] == "stopped"
    assert events_of(run_dir, "state")[-1]["state"] == "stopped"
    assert events_of(run_dir, "checkpoint")[-1]["reason"] == "stop"
    with pytest.raises(UserError, match="not running"):
        client.send("pause")
    assert main(["ctl", str(run_dir), "pause"]) == 2


def test_wrong_secret_is_refused(live_run):
    trainer, run_dir, _, _ = live_run
    client = ControlClient(run_dir, timeout_s=30)
    with pytest.raises(UserError, match="wrong secret"):
        client.send("pause", secret="0" * 64)
    assert not trainer.steering.paused
    assert all(e["state"] != "paused" for e in events_of(run_dir, "state"))
    assert client.send("status")["ok"]


SIGNAL_RUN = """
import sys
sys.path.insert(0, {tests!r})
from helpers.toys import ToyDataset, toy_config, toy_trainer
config = toy_config(steps=(100_000, 100_000, 100_000), ckpt_every=100_000)
print(toy_trainer({run_dir!r}, config, dataset=ToyDataset(num=4096, delay_s=0.002)).train(), flush=True)
"""


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, signum):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    code = SIGNAL_RUN.format(tests=str(Path(__file__).parent), run_dir=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: [e for e in events_of(tmp_path, "metrics") if e["step"] >= 3])
        os.kill(proc.pid, getattr(signal, signum))
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and out.strip() == "stopped"
    final = events_of(tmp_path, "state")[-1]
    assert final["state"] == "stopped" and final["reason"] == "signal"
    last = events_of(tmp_path, "checkpoint")[-1]
    assert last["reason"] == "stop" and last["step"] == final["step"] >= 3
    assert not (tmp_path / "lock").exists() and not (tmp_path / "control.json").exists()
