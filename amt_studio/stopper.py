"""Stop a trainer the studio started, after the window is gone: `python -m amt_studio.stopper RUN_DIR PID SECONDS`.

Closing the window with "Stop run" must not freeze it while the trainer saves: the window hands the stop to this
small detached process and exits at once. It asks the trainer to stop (it saves a checkpoint first), waits up to
SECONDS for it to exit, then sends SIGTERM (the trainer saves on that too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child no one reaped yet)."""
    from amt_core.train.rundir import pid_alive

    if not pid_alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stop(run_dir: Path, pid: int, timeout_s: float) -> int:
    from amt_core.train.control import Command, ControlClient

    deadline = time.monotonic() + timeout_s
    try:
        ControlClient(run_dir, timeout_s=timeout_s).send(Command.STOP)
    except Exception:  # noqa: BLE001 (a trainer that cannot answer is terminated below)
        pass
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        return 1
    return 0


def stop_detached(run_dir: Path, pid: int, timeout_s: float = 30.0) -> subprocess.Popen:
    """Start the stopper in its own session (it outlives the window) and return at once."""
    return subprocess.Popen(
        [sys.executable, "-m", "amt_studio.stopper", str(run_dir), str(pid), str(timeout_s)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    sys.exit(stop(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
