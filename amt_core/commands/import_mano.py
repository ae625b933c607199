"""`amt-core import-mano`: convert a licensed MANO pickle (chumpy inside) to a plain .npz, no chumpy needed.

amt-core import-mano MANO_RIGHT.pkl --out models/MANO_RIGHT.npz [--side right|left] [--force]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="MANO_RIGHT.pkl or MANO_LEFT.pkl from the MANO download")
    parser.add_argument(
        "--out", type=Path, required=True, help="the .npz to write (its name must keep RIGHT/LEFT), or a folder"
    )
    parser.add_argument(
        "--side", choices=("right", "left"), default=None, help="which hand (default: read from the input's name)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from amt_core.hand.mano_import import import_mano

    result = import_mano(args.path, args.out, side=args.side, force=args.force)
    side = result.side or "unknown side (smplx will treat it as a left hand unless its name contains RIGHT)"
    print(f"wrote {result.path} ({side})")
    width = max(len(k) for k in result.shapes)
    for key, shape in result.shapes.items():
        print(f"  {key:<{width}}  {str(shape):<16} {result.dtypes[key]}")
    return 0
