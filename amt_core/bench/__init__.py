"""Benchmarks behind `amt-core bench NAME`: each module has `add_arguments(parser)` and `run(args) -> dict` and
prints nothing itself (the command prints the figures). Importing this package imports nothing heavy."""
