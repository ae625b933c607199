"""Stopping besides the plan's end (`train/stopping.py`): SIGINT or SIGTERM to a trainer saves a checkpoint and
records `stopped`. Preemption: SIGTERM or SIGUSR1 during `amt-core train` (to the trainer alone, or to its whole process
group as a scheduler sends it, DataLoader workers included) saves a checkpoint, records `stopped` by the signal and
exits 75 with nothing on stderr; `--resume` then continues bit for bit as a run that was never stopped. A SIGTERM
during start-up exits 75 with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers.toys import events_of, wait_for

from amt_core.commands.train import PREEMPTED_EXIT
from amt_core.train.checkpoint_files import latest_checkpoint, load_checkpoint

# The micro preset (2 + 2 + 2 steps) with two loader workers, so a signal to the group reaches them too.
TRAIN = [sys.executable, "-m", "amt_core", "train", "--preset", "micro", "--set", "trainer.num_workers=2"]
TIMEOUT_S = 600  # a hung run fails the test instead of hanging it; no timing is asserted


def _start(run_dir, *extra: str) -> subprocess.Popen:
    # its own session: a signal to its process group reaches the trainer and its workers, and nothing of pytest's
    return subprocess.Popen(
        [*TRAIN, "--run-dir", str(run_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
    return proc.returncode, out, err


def _metrics(run_dir) -> dict[int, dict]:
    return {e["step"]: e for e in events_of(run_dir, "metrics")}


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(latest_checkpoint(run_dir / "checkpoints")).weights


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The same run, never stopped: its 6 steps' losses and its final weights."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    code, _, err = _finish(_start(run_dir))
    assert code == 0, err
    return run_dir


@pytest.mark.parametrize(
    ("signum", "target"),
    [(signal.SIGTERM, "group"), (signal.SIGTERM, "trainer"), (signal.SIGUSR1, "group")],
    ids=["SIGTERM-group", "SIGTERM-trainer", "SIGUSR1-group"],
)
def test_signal_saves_records_and_the_resume_is_exact(tmp_path, straight, signum, target):
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    deadline = time.monotonic() + TIMEOUT_S
    while 1 not in _metrics(run_dir):  # the first step is done: the loop runs, the workers are up
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    if target == "group":
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    code, out, err = _finish(proc)

    assert code == PREEMPTED_EXIT, err
    assert "Traceback" not in err and "worker" not in err.lower(), err
    with pytest.raises(ProcessLookupError):  # the workers were shut down with the trainer, none left behind
        os.killpg(proc.pid, 0)
    final = events_of(run_dir, "state")[-1]
    stopped_at = final["step"]
    assert final["state"] == "stopped" and final["reason"] == "signal" and final["signal"] == signum.name
    assert 1 <= stopped_at < 6, "the signal came after the plan's end: nothing was preempted"
    saved = events_of(run_dir, "checkpoint")[-1]  # "stop", or the stage end's when the signal came at one
    assert saved["step"] == stopped_at and saved["reason"] in ("stop", "stage_end", "periodic")
    assert load_checkpoint(run_dir / saved["path"]).weights.keys() == _weights(straight).keys()
    assert f"stopped: step {stopped_at}" in out

    code, _, err = _finish(_start(run_dir, "--resume"))
    assert code == 0, err
    states = [(e["state"], e.get("resumed_from")) for e in events_of(run_dir, "state")]
    assert states == [("running", None), ("stopped", None), ("running", saved["name"]), ("finished", None)]
    expected, resumed = _metrics(straight), _metrics(run_dir)
    assert sorted(resumed) == sorted(expected) == list(range(1, 7))
    for step in expected:
        assert resumed[step]["loss"] == expected[step]["loss"], step
        assert resumed[step]["terms"] == expected[step]["terms"], step
    a, b = _weights(straight), _weights(run_dir)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    initial = load_checkpoint(straight / "checkpoints" / "step_00000000").weights
    assert any(not torch.equal(initial[name], a[name]) for name in a)  # training moved the weights at all


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
        wait_for(lambda: [e for e in events_of(tmp_path, "metrics") if e["step"] >= 3])
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


def _catches(pid: int, signum: int) -> bool:
    """The process has a handler for the signal (/proc's SigCgt mask): start-up reached the command's own code."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_during_start_up_exits_75_with_one_line(tmp_path) -> None:
    argv = [sys.executable, "-m", "amt_core", "train", "--preset", "micro", "--run-dir", str(tmp_path / "run")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _catches(proc.pid, signal.SIGTERM) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGTERM)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "stopped by SIGTERM before training began" in lines[0], err
