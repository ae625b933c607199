"""One module per `amt-core` command: `add_arguments(parser)` and `run(args) -> int`."""
