"""`amt-core bench cli`: how long the command line takes to answer, each case in a fresh interpreter.

The cases are the ones a user types most and waits on: `--help`, `ctl` against a run, `info --brief` and an
argument error; none of them imports torch (the CLI imports a command's module only when that command is parsed).
For scale, the bench also times a bare interpreter and `import torch`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amt_core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=5, help="runs of each case (default 5); the median is reported")


def _cases(run_dir: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "amt_core"]
    return {
        "python (bare interpreter)": [sys.executable, "-c", "pass"],
        "amt-core --help": [*cli, "--help"],
        "amt-core ctl RUN status": [*cli, "ctl", str(run_dir), "status"],
        "amt-core info --brief": [*cli, "info", "--brief"],
        "amt-core train --bogus (argument error)": [*cli, "train", "--bogus"],
        "python -c 'import torch' (reference)": [sys.executable, "-c", "import torch"],
    }


def run(args: argparse.Namespace) -> dict:
    if args.repeat < 1:
        raise UserError(f"--repeat {args.repeat} must be at least 1")
    rows = []
    with tempfile.TemporaryDirectory(prefix="amt-bench-cli-") as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        (run_dir / "events.jsonl").write_text("")
        for name, argv in _cases(run_dir).items():
            times, codes = [], set()
            for _ in range(args.repeat):
                start = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, timeout=300)
                times.append(time.perf_counter() - start)
                codes.add(done.returncode)
            rows.append(
                {
                    "case": name,
                    "median_s": statistics.median(times),
                    "max_s": max(times),
                    "exit": ",".join(str(c) for c in sorted(codes)),
                }
            )
    return {"rows": rows, "repeat": args.repeat, "goal_s": 0.5}
