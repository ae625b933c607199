"""`amt-core bench train`: train-step throughput of a preset through the real trainer (stability, loss, optimizer).

One batch of the preset's data is rendered once and trained on repeatedly, so the figure is the step itself, not
the data pipeline. Rows per precision; the GPU figures (FLOP count, MFU, attention backends) join in the GPU issue.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="run preset (default: dinov2_s with CUDA, else cpu)")
    parser.add_argument("--model", help="'baseline' for the preset's baseline twin, or a model name")
    parser.add_argument("--precision", help="comma-separated precisions to measure (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="global batch size (default: the preset's)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to run (default: the preset's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args: argparse.Namespace) -> dict:
    from amt_core.errors import UserError
    from amt_core.presets import apply_overrides, baseline_model_name, default_preset, get_preset

    if args.steps < 1 or args.warmup < 0:
        raise UserError("--steps must be >= 1 and --warmup >= 0")
    base = get_preset(args.preset or default_preset())
    assignments = list(args.overrides) + ["trainer.progress=none", "trainer.log_every=1000000",
                                          "trainer.diag_every=1000000", "trainer.snapshot_every=0",
                                          "trainer.eval_every=0", "trainer.ckpt_every=1000000",
                                          "trainer.tensorboard=false", "trainer.num_workers=0"]  # fmt: skip
    if args.model:
        name = baseline_model_name(base.model.name) if args.model == "baseline" else args.model
        assignments.append(f"model.name={name}")
    if args.batch_size:
        assignments.append(f"batch_size={args.batch_size}")
    if args.device:
        assignments.append(f"trainer.device={args.device}")
    base = apply_overrides(base, assignments)
    precisions = (args.precision or base.trainer.precision).split(",")
    rows = [_measure(apply_overrides(base, [f"trainer.precision={p.strip()}"]), args.steps, args.warmup)
            for p in precisions]  # fmt: skip
    return {"rows": rows, "images_per_s": rows[0]["images_per_s"]}


def _measure(config, steps: int, warmup: int) -> dict:
    """Train-step figures of one config on one repeated batch."""
    import torch

    from amt_core.train.memory import memory_mb
    from amt_core.train.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="amt-bench-") as run_dir:
        trainer = Trainer(config, run_dir)
        try:
            trainer.start()
            batch = trainer.next_batch()
            device = trainer.device
            for _ in range(warmup):
                trainer.train_step(dict(batch))
                trainer.step += 1
            trainer.check()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step(dict(batch))
                trainer.step += 1
            trainer.check()  # one host sync: the steps really ran
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            return {
                "preset": config.preset,
                "model": config.model.name,
                "device": str(device),
                "precision": config.trainer.precision,
                "batch": config.batch_size,
                "micro_batch": trainer.micro_batch,
                "images_per_s": config.batch_size * steps / seconds,
                "step_ms": 1000 * seconds / steps,
                "peak_mb": memory_mb(device)["peak_mb"],
                "params_m": sum(p.numel() for p in trainer.module.parameters()) / 1e6,
                "skipped_steps": trainer.skipped,
            }
        finally:
            trainer.close()
