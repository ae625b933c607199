"""`amt-core synth`: render a synthetic hand-object dataset into shards, or draw a preview contact sheet.

amt-core synth --out DIR --num N --seed S [--size PX] [--workers W] [--hand-only-share F]
amt-core synth --preview [DIR] [--num N] --out sheet.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from amt_core.errors import UserError

_LIVE = "\0live"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset folder to write (or resume); the .png with --preview")
    parser.add_argument("--num", type=int, default=None, help="samples to render (default 1000; 16 with --preview)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed: the same seed gives the same bytes")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--hand-only-share", type=float, default=0.1, help="share of samples with no object")
    parser.add_argument("--shard-size", type=int, default=64, help="samples per shard file (default 64)")
    parser.add_argument(
        "--preview",
        nargs="?",
        const=_LIVE,
        default=None,
        metavar="DIR",
        help="draw a contact sheet of the first --num samples of DIR, or of freshly rendered ones without DIR",
    )


def _check(args: argparse.Namespace) -> None:
    if args.num is not None and not 1 <= args.num <= 10_000_000:
        raise UserError(f"--num must be between 1 and 10000000, got {args.num}")
    if not 32 <= args.size <= 1024:
        raise UserError(f"--size must be between 32 and 1024 pixels, got {args.size}")
    if not 1 <= args.workers <= 256:
        raise UserError(f"--workers must be between 1 and 256, got {args.workers}")
    if not 0.0 <= args.hand_only_share <= 1.0:
        raise UserError(f"--hand-only-share must be between 0 and 1, got {args.hand_only_share}")
    if not 1 <= args.shard_size <= 100_000:
        raise UserError(f"--shard-size must be between 1 and 100000, got {args.shard_size}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")


def run(args: argparse.Namespace) -> int:
    _check(args)
    if args.preview is not None:
        return _preview(args)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from amt_core.synth.world import WorldConfig
    from amt_core.synth.writer import write_dataset

    num = args.num if args.num is not None else 1000
    out = Path(args.out)
    if out.suffix.lower() in (".png", ".jpg"):
        raise UserError(f"--out {out} looks like an image; give a folder for the dataset (or add --preview)")
    config = WorldConfig(size=args.size, hand_only_share=args.hand_only_share)
    columns = (
        TextColumn("[bold]synth"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    import time

    started = time.perf_counter()
    first_done: list[int] = []
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("samples", total=num, rate="")

        def progress(done: int, total: int, note: str) -> None:
            if not first_done:
                first_done.append(done)
            elapsed = time.perf_counter() - started
            rate = (done - first_done[0]) / elapsed if elapsed > 0 else 0.0
            bar.update(task, completed=done, rate=note or (f"{rate:.0f} img/s" if done > first_done[0] else ""))

        result = write_dataset(
            out, num, args.seed, config, workers=args.workers, shard_size=args.shard_size, progress=progress
        )
    resumed = f", {result.skipped} shards already there" if result.skipped else ""
    print(f"wrote {result.samples} samples in {result.written} shards to {out}{resumed}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--preview writes a .png; give --out SHEET.png, got {out}")
    num = args.num if args.num is not None else 16
    if num > 256:
        raise UserError(f"--preview draws at most 256 samples, got --num {num}")
    from amt_core.atomic import atomic_write
    from amt_core.data.synthetic import SynthLiveDataset, SynthShardDataset
    from amt_core.synth.preview import contact_sheet
    from amt_core.synth.world import WorldConfig

    if args.preview == _LIVE:
        dataset = SynthLiveDataset(
            seed=args.seed, num=num, world_config=WorldConfig(size=args.size, hand_only_share=args.hand_only_share)
        )
    else:
        dataset = SynthShardDataset(args.preview)
    samples = [dataset[i] for i in range(min(num, len(dataset)))]
    sheet = contact_sheet(samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as handle:
        sheet.save(handle, format="PNG", optimize=True)
    print(f"wrote a contact sheet of {len(samples)} samples to {out}")
    return 0
