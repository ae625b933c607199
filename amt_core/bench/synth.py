"""`amt-core bench synth`: images/s of `amt-core synth` end to end, and where the time goes, per image size.

Each row writes a throw-away dataset with the real writer, first with an empty grasp-bank cache (`cold`: a first run,
or one after the grasp code changed: every bank grasp is built) and then reading the bank it filled (`warm`: every
later run). Phases: `import_s` (a fresh Python importing the writer, as the command does), `startup_s` (the World, the
worker processes), `grasp_phase_s` (bank grasps built or read, spread over the workers), `render_phase_s` (rendering
and writing shards); CPU ms per image summed over workers: grasp (bank grasps, amortized per image), scene (view,
meshes), render (ray casting, shading), forces (the contact-force solve), labels (the rest of the labels and the
arrays), write (shards). Other processes slow every figure: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amt_core import paths
from amt_core.errors import UserError

MODES = ("cold", "warm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num", type=int, default=1024, help="images per row (default 1024)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="image sizes (default 128 224)")
    parser.add_argument("--cache", choices=(*MODES, "both"), default="both", help="grasp-bank cache (default both)")
    parser.add_argument("--bank-size", type=int, default=None, help="grasps per class (default: WorldConfig's)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")


def _import_seconds() -> float:
    """Wall seconds a fresh interpreter takes to import the writer (what `amt-core synth` pays before any work)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import amt_core.synth.writer"], check=True)
    return time.perf_counter() - t0


def _row(size: int, mode: str, args: argparse.Namespace, import_s: float) -> dict:
    # the world and the writer load torch, Open3D and the catalog: `amt-core bench synth --help` answers without them
    from amt_core.synth.world import WorldConfig
    from amt_core.synth.writer import write_dataset

    extra = {} if args.bank_size is None else {"bank_size": args.bank_size}
    try:
        config = WorldConfig(size=size, **extra)
    except ValueError as err:
        raise UserError(str(err)) from err
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = write_dataset(args.out, args.num, args.seed, config, workers=args.workers)
    wall = time.perf_counter() - t0
    cpu, num = result.timings, args.num
    built = max(cpu["grasps_built"], 1.0)
    bank_s = cpu["bank_s"] + (cpu["grasp_s"] if args.workers <= 1 else 0.0)  # one process builds them as it goes

    def per_image(seconds: float) -> float:
        return round(1000 * seconds / num, 2)

    return {
        "size": size,
        "cache": mode,
        "workers": args.workers,
        "images": num,
        "images_per_s": num / (import_s + wall),
        "import_s": import_s,
        "startup_s": result.startup_s,
        "grasp_phase_s": result.grasp_phase_s,
        "render_phase_s": result.render_phase_s,
        "render_phase_per_s": num / max(result.render_phase_s, 1e-9),
        "grasps": int(cpu["grasps_built"]),
        "ms_per_grasp": 1000 * bank_s / built,
        "cpu_ms/img grasp": per_image(cpu["bank_s"] + cpu["grasp_s"]),
        "scene": per_image(cpu["scene_s"]),
        "render": per_image(cpu["render_s"]),
        "forces": per_image(cpu["forces_s"]),
        "labels": per_image(cpu["label_s"] - cpu["forces_s"]),
        "write": per_image(cpu["write_s"]),
        "load": load,
    }


def run(args: argparse.Namespace) -> dict:
    if args.num < 1 or args.workers < 1:
        raise UserError(f"--num and --workers must be at least 1, got {args.num} and {args.workers}")
    modes = MODES if args.cache == "both" else (args.cache,)
    import_s = _import_seconds()
    rows = []
    saved = os.environ.get("AMT_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="amt-bench-synth-") as tmp:
        # An empty grasp-bank cache of the bench's own; the SDF grids stay the user's (building them is not
        # part of a run: they are built once per machine).
        cache = Path(tmp) / "cache"
        cache.mkdir()
        shared_sdf = paths.cache_dir() / "sdf"
        shared_sdf.mkdir(exist_ok=True)
        (cache / "sdf").symlink_to(shared_sdf, target_is_directory=True)
        os.environ["AMT_CACHE_DIR"] = str(cache)
        try:
            for size in args.sizes:
                shutil.rmtree(cache / "grasp_bank", ignore_errors=True)
                for mode in MODES:  # a warm row reads the bank its cold row filled, so cold always runs first
                    args.out = Path(tmp) / f"data-{size}-{mode}"
                    row = _row(size, mode, args, import_s)
                    shutil.rmtree(args.out)
                    if mode in modes:
                        rows.append(row)
                    if args.cache == "cold":
                        break
        finally:
            if saved is None:
                os.environ.pop("AMT_CACHE_DIR", None)
            else:
                os.environ["AMT_CACHE_DIR"] = saved
    return {
        "images_per_s": rows[0]["images_per_s"],
        "rows": rows,
        "cpu_count": os.cpu_count(),
        "load_average_after": os.getloadavg()[0],
    }
