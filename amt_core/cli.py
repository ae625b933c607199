"""`amt-core`: the headless command line (train, eval, predict, synth, ctl, bench, info, import-mano, ...).

Each command lives in `amt_core.commands.<name>` with `add_arguments(parser)` and `run(args) -> int`. A command's
module is imported and its arguments added only when that command is parsed (some list presets, which imports
torch), so `amt-core --help` and `amt-core ctl ...` never import torch. One handler, in `main`, prints a `UserError`
and an error from outside that no command caught (a full or read-only disk, a damaged weights file:
`amt_core.errors.boundary_line`) as one line naming the path and the fix, and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from amt_core import __version__
from amt_core.errors import UserError, boundary_line, short

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
    "bench": ("bench", "benchmarks that print their figures (synth, data, model, train, fp8, studio, cli)"),
}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error: what is wrong and where --help is, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


class LazyParser(OneLineParser):
    """A sub-command parser whose arguments are added (by `fill`) only when that sub-command is parsed."""

    def __init__(self, *args, fill: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._fill = fill

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 (argparse's signature)
        if self._fill is not None:
            fill, self._fill = self._fill, None
            fill(self)
        return super().parse_known_args(args, namespace)


def module_exists(name: str) -> bool:
    """Whether a module file exists, found without importing its parent packages (which may import torch)."""
    top, *parts = name.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        base = Path(location).joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def _available() -> dict[str, tuple[str, str]]:
    """Commands whose module exists (an issue not yet built leaves its command absent, not faked)."""
    return {
        name: (module, help_text)
        for name, (module, help_text) in COMMANDS.items()
        if module_exists(f"amt_core.commands.{module}")
    }


def _fill_command(module: str) -> Callable[[argparse.ArgumentParser], None]:
    def fill(cmd: argparse.ArgumentParser) -> None:
        mod = importlib.import_module(f"amt_core.commands.{module}")
        mod.add_arguments(cmd)
        cmd.set_defaults(_run=mod.run)

    return fill


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="amt-core", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"amt-core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=LazyParser)
    for name, (module, help_text) in _available().items():
        sub.add_parser(name, help=help_text, description=help_text, fill=_fill_command(module))
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
        return _error_line(args.command, str(err))
    except KeyboardInterrupt:
        print(f"amt-core {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`amt-core ... | head`): not an error of ours
        # Python's own recipe: point stdout at devnull so the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        line = boundary_line(err)
        if line is None:
            raise  # an error of the program itself: its traceback is what a bug report needs
        return _error_line(args.command, line)


def _error_line(command: str, message: str) -> int:
    """Print `amt-core COMMAND: error: MESSAGE` as one line of at most `MAX_LINE` characters; the exit code (2)."""
    print(short(f"amt-core {command}: error: {message}"), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
