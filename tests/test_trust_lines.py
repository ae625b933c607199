"""One line for the inputs the last fault campaign still answered with a usage block, a line cut at 300 characters
or a silent default: argparse errors, unknown keys, schemes and terms (named with the closest match and a count, not
the whole list), an empty --preset, a SIGTERM during start-up (exit 75, the preempted code, like one in training)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

MAX_LINE = 300


def amt(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amt_core", *argv], capture_output=True, text=True, timeout=300, **kwargs
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) < MAX_LINE, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ("train", "--max-steps", "abc"),
        ("train", "--device", "tpu"),
        ("synth", "--num", "abc"),
        ("eval",),
        ("eval", "--ckpt", "x", "--batch-size", "abc"),
    ],
)
def test_usage_errors_are_one_line_that_points_to_help(argv) -> None:
    result = amt(*argv)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"amt-core {argv[0]}: error: ") and line.endswith(f"see amt-core {argv[0]} --help")


def test_unknown_names_are_one_short_line_with_the_closest_match(tmp_path) -> None:
    result = amt("train", "--preset", "micro", "--run-dir", str(tmp_path / "a"), "--set", "trainer.seeed=1")
    line = one_line(result)
    assert result.returncode == 2 and "did you mean 'seed'?" in line and "more)" in line
    result = amt("train", "--preset", "micro", "--run-dir", str(tmp_path / "b"), "--set", "loss.weights.joint3d=1")
    line = one_line(result)
    assert result.returncode == 2 and "'joints3d'" in line
    result = amt("train", "--preset", "micro", "--run-dir", str(tmp_path / "c"), "--data", "nosuch:/x")
    line = one_line(result)
    assert result.returncode == 2 and "known: synth, freihand" in line and "datasets list" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_an_empty_preset_is_refused_not_replaced_by_the_default(tmp_path) -> None:
    result = amt("train", "--preset", "", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "--preset is empty" in one_line(result)
    assert not (tmp_path / "run").exists()


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
