"""`amt-core ctl RUN_DIR COMMAND [ARG]`: steer a running trainer through its control channel.

Commands: pause, resume, stop, save, snapshot, status, stage N (1-3), rollback CKPT (a name from checkpoints/).
Exits 0 once the trainer confirms the command took effect.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from amt_core.errors import UserError
from amt_core.train.control import Command, ControlClient


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory of a live trainer")
    # dest differs from "command": that name holds the amt-core command ("ctl"), which error lines print
    parser.add_argument("ctl_command", metavar="COMMAND", help="|".join(Command))
    parser.add_argument("arg", nargs="?", metavar="ARG", help="the stage number or the checkpoint name")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the trainer's confirmation")
    parser.add_argument("--json", action="store_true", help="print the trainer's reply as JSON")


def run(args: argparse.Namespace) -> int:
    if not args.timeout > 0:  # 0 would blame the trainer ("cannot reach"), a negative one was a traceback
        raise UserError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    reply = ControlClient(args.run_dir, timeout_s=args.timeout).send(args.ctl_command, args.arg)
    if args.json:
        print(json.dumps(reply))
    else:
        details = ", ".join(f"{k} {v}" for k, v in reply.items() if k != "ok")
        print(f"{args.ctl_command}: done" + (f" ({details})" if details else ""))
    return 0
