"""`amt-core bench fp8`: where FP8 starts to pay on this GPU, measured, and cached for the trainer's threshold.

Times forward and backward of a Linear pair (tokens x d -> d, then d -> 4d) in bf16 and in FP8 for each width d;
the smallest width from which FP8 wins at every larger width becomes `trainer.fp8.min_dim`'s default on this GPU.
"""

from __future__ import annotations

import argparse

from amt_core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", help="comma-separated widths, multiples of 16 (default: 512 to 4096)")
    parser.add_argument("--tokens", type=int, default=8192, help="rows of the input: batch x tokens of a step")
    parser.add_argument("--backend", default="auto", help="auto, te or torchao")
    parser.add_argument("--recipe", default="auto", help="auto, delayed, current, mxfp8, tensorwise, rowwise")


def run(args: argparse.Namespace) -> dict:
    import torch  # here, not at the top: `amt-core bench fp8 --help` answers without torch

    from amt_core.accel import fp8, fp8_threshold
    from amt_core.accel.precision import check_precision

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    check_precision("fp8", device)
    try:
        config = fp8.Fp8Config(backend=args.backend, recipe=args.recipe)
    except ValueError as err:
        raise UserError(str(err)) from None
    sizes = fp8_threshold.DEFAULT_SIZES
    if args.sizes:
        try:
            sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
        except ValueError:
            raise UserError(f"--sizes {args.sizes!r}: give comma-separated integers, e.g. 1024,2048") from None
    result = fp8_threshold.measure_fp8_threshold(sizes, tokens=args.tokens, device=device, config=config)
    rows = [
        {
            "width": int(d),
            "bf16_ms": 1000 * result["bf16_s"][str(d)],
            "fp8_ms": 1000 * result["fp8_s"][str(d)],
            "speedup": result["speedup"][str(d)],
        }
        for d in result["sizes"]
    ]
    return {
        "rows": rows,
        "gpu": result["gpu"],
        "backend": result["backend"],
        "recipe": result["recipe"],
        "tokens": result["tokens"],
        "faster_from": result["faster_from"],
        "min_dim": result["min_dim"],
    }
