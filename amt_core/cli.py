"""`amt-core`: the headless command line (train, eval, predict, synth, ctl, bench, info, import-mano, ...).

Each command lives in `amt_core.commands.<name>` with `add_arguments(parser)` and `run(args) -> int`. Command
modules import heavy packages (torch, open3d) inside `run`, so `amt-core --help` stays fast. A `UserError` is
printed as one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from amt_core import __version__
from amt_core.errors import UserError

# command name -> (module under amt_core.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("info", "print versions, the device and which optional accelerators are importable"),
    "import-mano": ("import_mano", "convert a licensed MANO .pkl (chumpy inside) to a plain .npz"),
    "synth": ("synth", "render a synthetic hand-object dataset, or a preview contact sheet"),
    "train": ("train", "train a model; writes a run directory the studio can watch"),
    "eval": ("eval", "evaluate a checkpoint on a dataset"),
    "predict": ("predict", "run a checkpoint on images; write joints, meshes and overlays"),
    "ctl": ("ctl", "steer a running trainer: pause, resume, stop, save, stage N, rollback CKPT, snapshot"),
    "datasets": ("datasets", "check a dataset spec: counts, files, shapes"),
    "bench": ("bench", "benchmarks that print their figures (synth, model, train, studio)"),
}


def _available() -> dict[str, tuple[str, str]]:
    """Commands whose module exists (an issue not yet built leaves its command absent, not faked)."""
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(f"amt_core.commands.{module}") is not None:
            found[name] = (module, help_text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amt-core", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"amt-core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available().items():
        mod = importlib.import_module(f"amt_core.commands.{module}")
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(cmd)
        cmd.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"amt-core {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"amt-core {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
