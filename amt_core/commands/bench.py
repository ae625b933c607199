"""`amt-core bench NAME`: benchmarks that print their figures (a table, or one JSON object with --json).

Each benchmark is a module with `add_arguments(parser)` and `run(args) -> dict`; the dict's figures include
`images_per_s` where that makes sense. Benchmarks whose module is not built yet are absent from the list. A
benchmark's module (torch, Qt) is imported only when that benchmark is parsed, so listing them is fast.
"""

from __future__ import annotations

import argparse
import importlib
import json

from amt_core.cli import LazyParser, module_exists

# bench name -> (module, one-line help)
BENCHES: dict[str, tuple[str, str]] = {
    "synth": ("amt_core.bench.synth", "amt-core synth images/s end to end and by phase, at 128 and 224 px"),
    "data": ("amt_core.bench.data", "images/s a data spec delivers through the trainer's loader, per worker count"),
    "model": ("amt_core.bench.model", "forward and train-step images/s and bs-1 latency per preset, AMT vs baseline"),
    "train": ("amt_core.bench.train", "train-step throughput, peak memory, TFLOP/s and MFU per precision/attention"),
    "fp8": ("amt_core.bench.fp8", "where FP8 beats bf16 on this GPU: Linear widths timed, threshold cached"),
    "studio": ("amt_studio.bench", "3D panel frames/s and event-loop stall percentiles while a run trains"),
    "cli": ("amt_core.bench.cli", "seconds the command line takes to answer (--help, ctl, info --brief, a typo)"),
}


def _fill_bench(module: str):
    def fill(bench: argparse.ArgumentParser) -> None:
        mod = importlib.import_module(module)
        bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        mod.add_arguments(bench)
        bench.set_defaults(_bench_module=mod)

    return fill


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True, parser_class=LazyParser)
    for name, (module, help_text) in BENCHES.items():
        if module_exists(module):
            sub.add_parser(name, help=help_text, description=help_text, fill=_fill_bench(module))


def run(args: argparse.Namespace) -> int:
    result = args._bench_module.run(args)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
    else:
        _print_table(args.bench, result)
    return 0


def _print_table(name: str, result: dict) -> None:
    from rich.table import Table

    rows = result.get("rows")
    if rows:
        table = Table(title=f"amt-core bench {name}")
        columns = list(dict.fromkeys(key for row in rows for key in row))  # a row may add a column (error)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_fmt(row.get(column)) for column in columns))
        _console().print(table)
    extra = {k: v for k, v in result.items() if k != "rows"}
    if extra:
        table = Table(show_header=False)
        for key, value in extra.items():
            table.add_row(key, _fmt(value))
        _console().print(table)


def _console():
    """A console as wide as the table needs when the output is a file or a pipe (rich assumes 80 columns there)."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
