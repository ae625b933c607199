"""`amt-core bench synth`: images/s of the synthetic world (grasp + render + write) at 128 and 224 px.

Each size writes a throw-away dataset with the real writer. With several workers the writer first builds the grasp
bank (each entry once, a fixed cost of at most bank_size x classes grasps per dataset) and then renders; the bench
reports the all-in rate, the rendering phase's rate (what a long run approaches once the bank is built), and where
worker CPU time goes. Other processes on the machine slow every figure; run it on a quiet machine.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num", type=int, default=1024, help="images per size (default 1024)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="image sizes (default 128 224)")
    parser.add_argument("--bank-size", type=int, default=None, help="grasps per class (default: WorldConfig's)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")


def run(args: argparse.Namespace) -> dict:
    import os
    import tempfile
    import time

    from amt_core.errors import UserError
    from amt_core.synth.world import WorldConfig
    from amt_core.synth.writer import write_dataset

    if args.num < 1 or args.workers < 1:
        raise UserError(f"--num and --workers must be at least 1, got {args.num} and {args.workers}")
    rows = []
    load_before = os.getloadavg()[0]
    for size in args.sizes:
        extra = {} if args.bank_size is None else {"bank_size": args.bank_size}
        try:
            config = WorldConfig(size=size, **extra)
        except ValueError as err:
            raise UserError(str(err)) from err
        with tempfile.TemporaryDirectory(prefix="amt-bench-synth-") as tmp:
            t0 = time.perf_counter()
            result = write_dataset(tmp, args.num, args.seed, config, workers=args.workers)
            wall = time.perf_counter() - t0
        cpu = result.timings
        built = max(cpu["grasps_built"], 1.0)
        rows.append(
            {
                "size": size,
                "workers": args.workers,
                "images": args.num,
                "images_per_s": args.num / wall,
                "render_phase_per_s": args.num / max(result.render_phase_s, 1e-9),
                "grasp_phase_s": result.grasp_phase_s,
                "grasps_built": int(cpu["grasps_built"]),
                "cpu_ms_per_grasp": 1000 * cpu["grasp_s"] / built,
                "grasp_cpu_ms_per_img": 1000 * cpu["grasp_s"] / args.num,
                "render_cpu_ms_per_img": 1000 * cpu["render_s"] / args.num,
                "label_write_cpu_ms_per_img": 1000 * (cpu["label_s"] + cpu["write_s"]) / args.num,
            }
        )
    return {
        "images_per_s": rows[0]["images_per_s"],
        "rows": rows,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
