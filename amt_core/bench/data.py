"""`amt-core bench data`: how many training images per second a data spec delivers through the trainer's loader.

The loader is the one the trainer builds (batch sampler over the run's plan, `num_workers` processes, pinned memory
with CUDA), timed after its first batch so worker start-up and per-worker set-up (the synthetic world's grasp bank)
stay out of the figure. Compare the result with the images/s a GPU preset needs (docs/performance.md): when the loader
is slower, the GPU waits.
"""

from __future__ import annotations

import argparse
import time

from amt_core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data spec (default: the preset's training data)")
    parser.add_argument("--preset", default="cpu", help="preset whose data and batch size to use (default: cpu)")
    parser.add_argument("--workers", help="comma-separated worker counts (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per row")


def run(args: argparse.Namespace) -> dict:
    import torch  # here, not at the top: `amt-core bench data --help` answers without torch

    from amt_core.presets import get_preset
    from amt_core.train import parts
    from amt_core.train.sampler import BatchPlan, PlanBatches, plan_loader

    if args.batches < 1:
        raise UserError("--batches must be >= 1")
    config = get_preset(args.preset)
    spec = args.data or config.data
    batch = args.batch_size or config.batch_size
    if batch < 1:
        raise UserError("--batch-size must be >= 1")
    try:
        workers = [int(w) for w in (args.workers or str(config.trainer.num_workers)).split(",")]
    except ValueError:
        raise UserError(f"--workers {args.workers!r}: give comma-separated integers, e.g. 0,2,4") from None
    if any(w < 0 for w in workers):
        raise UserError("--workers must be >= 0")
    dataset = parts.open_data(spec)
    if len(dataset) < batch:  # the plan cycles through epochs, so a small dataset only has to hold one batch
        raise UserError(f"{spec} has {len(dataset)} samples, fewer than one batch of {batch}: lower --batch-size")
    pin = torch.cuda.is_available()
    rows = []
    for count in workers:
        plan = BatchPlan(len(dataset), batch, seed=0, rank=0, world_size=1)
        loader = plan_loader(dataset, PlanBatches(plan), count, pin)
        iterator = iter(loader)
        first = next(iterator)
        nbytes = sum(v.numel() * v.element_size() for v in first.values() if isinstance(v, torch.Tensor))
        start = time.perf_counter()
        for _ in range(args.batches):
            next(iterator)
        seconds = time.perf_counter() - start
        del iterator, loader
        rows.append(
            {
                "workers": count,
                "batch": batch,
                "images_per_s": batch * args.batches / seconds,
                "batch_ms": 1000 * seconds / args.batches,
                "mb_per_batch": nbytes / 2**20,
            }
        )
    return {"rows": rows, "data": spec, "pinned": pin, "images_per_s": max(r["images_per_s"] for r in rows)}
