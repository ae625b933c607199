"""The control channel: pause/resume/stage/save/rollback/snapshot/stop change what the events show; `ctl status`
while paused says paused; a wrong secret is refused; idle connections time out; a dead run gives a clear error;
`amt-core ctl` exits 0 once the trainer confirms."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time

import pytest
from helpers.toys import ToyDataset, events_of, toy_config, toy_trainer, wait_for

from amt_core.cli import main
from amt_core.errors import UserError
from amt_core.train.control import ControlClient, ControlServer


@pytest.fixture
def live_run(tmp_path):
    config = toy_config(steps=(10_000, 10_000, 10_000), ckpt_every=10_000)
    trainer = toy_trainer(tmp_path, config, dataset=ToyDataset(num=4096, delay_s=0.002))
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("state", trainer.train()), daemon=True)
    thread.start()
    wait_for(lambda: (tmp_path / "control.json").exists() and trainer.step >= 3)
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
    wait_for(lambda: trainer.step > paused_at + 2)

    assert client.send("stage", 3)["stage"] == 3
    stage = events_of(run_dir, "stage")[-1]
    assert stage["stage"] == 3 and stage["reason"] == "command" and stage["name"] == "finetune"

    saved = client.send("save")["checkpoint"]
    assert any(e["name"] == saved and e["reason"] == "command" for e in events_of(run_dir, "checkpoint"))
    wait_for(lambda: trainer.step > int(saved.split("_")[1]) + 2)

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
