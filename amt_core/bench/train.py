"""`amt-core bench train`: train-step speed of a preset through the real trainer, one row per combination asked.

Each row trains on one batch of the preset's data, rendered once and repeated, so the figure is the step itself:
images/s, step time, peak memory, achieved TFLOP/s and model-FLOPs utilization (FLOPs counted by
`amt_core.train.flops`, against the GPU's bf16 peak). `--pipeline` instead feeds fresh batches through the real
data loader and reports how much of each step the device was busy. `--max-batch` finds the largest batch that fits
(CUDA). A combination that cannot run here (fp8 on the CPU, fa3 without FlashAttention-3) is a row with its reason.
torch, the presets and the trainer are imported in the functions that use them, so `amt-core bench train --help` and
its argument errors answer without loading torch.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

from amt_core.errors import UserError

QUIET = [
    "trainer.progress=none",
    "trainer.log_every=1000000",
    "trainer.diag_every=1000000",
    "trainer.snapshot_every=0",
    "trainer.eval_every=0",
    "trainer.ckpt_every=1000000",
    "trainer.tensorboard=false",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="run preset (default: dinov2_s with CUDA, else cpu)")
    parser.add_argument("--model", help="'baseline' for the preset's baseline twin, or a model name")
    parser.add_argument("--precision", help="comma-separated precisions: fp32,bf16,fp8 (default: the preset's)")
    parser.add_argument("--attn", help="comma-separated attention backends, e.g. sdpa,fa3 (default: the preset's)")
    parser.add_argument(
        "--compile",
        nargs="?",
        const="on",
        choices=("off", "on", "both"),
        help="torch.compile the backbone and heads: on, off or both (default: the preset's)",
    )
    parser.add_argument("--checkpointing", help="comma-separated policies: none,full,every:2,selective")
    parser.add_argument("--batch-size", type=int, help="global batch size (default: the preset's)")
    parser.add_argument("--max-batch", action="store_true", help="also find the largest batch that fits (CUDA)")
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="feed fresh batches through the data loader and report the device's busy share",
    )
    parser.add_argument("--peak-tflops", type=float, help="the device's bf16 peak for MFU (default: from its name)")
    parser.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (no TFLOP/s, no MFU)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to run (default: the preset's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def _choices(text: str | None, default) -> list:
    if text is None:
        return [default]
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UserError(f"empty list {text!r}; give comma-separated values")
    return items


def run(args: argparse.Namespace) -> dict:
    from amt_core.presets import apply_overrides, baseline_twin, default_preset, get_preset

    if args.steps < 1 or args.warmup < 0:
        raise UserError("--steps must be >= 1 and --warmup >= 0")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        raise UserError("--peak-tflops must be > 0 (the device's bf16 dense peak in TFLOP/s)")
    base = get_preset(args.preset or default_preset())
    assignments = list(args.overrides) + QUIET + ([] if args.pipeline else ["trainer.num_workers=0"])
    if args.model == "baseline":
        base = baseline_twin(base)
    elif args.model:
        assignments.append(f"model={args.model}")
    if args.batch_size:
        assignments.append(f"batch_size={args.batch_size}")
    if args.device:
        assignments.append(f"trainer.device={args.device}")
    base = apply_overrides(base, assignments)
    tc = base.trainer
    compiles = {"on": [True], "off": [False], "both": [False, True], None: [tc.compile]}[args.compile]
    grid = itertools.product(
        _choices(args.precision, tc.precision),
        _choices(args.attn, tc.attention),
        compiles,
        _choices(args.checkpointing, tc.checkpointing),
    )
    from amt_core.train import parts

    flops_cache: dict = {}
    dataset = parts.open_data(base.data)  # one dataset for every row: its synthetic grasps are built once
    rows = []
    for precision, attention, compiled, checkpointing in grid:
        settings = [
            f"trainer.precision={precision}",
            f"trainer.attention={attention}",
            f"trainer.compile={str(compiled).lower()}",
            f"trainer.checkpointing={checkpointing}",
        ]
        config = apply_overrides(base, settings)
        rows.append(_row(config, args, flops_cache, dataset))
    _speedups_over_bf16(rows)
    # figures shared by every row go beside the table
    common = {"preset": base.preset, "model": base.model_name}
    for key in ("device", "params_m", "gflop_per_image", "peak_tflops"):
        values = {row.pop(key) for row in rows if key in row}
        if len(values) == 1:
            common[key] = values.pop()
    measured = [row for row in rows if row.get("images_per_s")]
    if not measured:  # nothing could run: the first reason is the answer, and the exit is an error
        more = f" (and {len(rows) - 1} more combinations could not run)" if len(rows) > 1 else ""
        raise UserError(rows[0]["error"] + more)
    return {"rows": rows, **common, "images_per_s": max((row["images_per_s"] for row in measured), default=0.0)}


def _speedups_over_bf16(rows: list[dict]) -> None:
    """Each measured fp8 or fp32 row's images/s over the bf16 row with the same other settings (`vs_bf16`), as it is,
    below 1 too."""

    def settings(row):
        return row["attn"], row["compile"], row["ckpt"]

    bf16 = {settings(r): r["images_per_s"] for r in rows if r["precision"] == "bf16" and r.get("images_per_s")}
    for row in rows:
        reference = bf16.get(settings(row))
        if row["precision"] != "bf16" and reference and row.get("images_per_s"):
            row["vs_bf16"] = row["images_per_s"] / reference


def _row(config, args: argparse.Namespace, flops_cache: dict, dataset) -> dict:
    tc = config.trainer
    row = {"precision": tc.precision, "attn": tc.attention, "compile": tc.compile, "ckpt": tc.checkpointing}
    try:
        row.update(_measure(config, args, flops_cache, dataset))
    except UserError as err:
        row["error"] = str(err)
    return row


def _measure(config, args: argparse.Namespace, flops_cache: dict, dataset) -> dict:
    """Train-step figures of one configuration."""
    import torch

    from amt_core.train.memory import memory_mb
    from amt_core.train.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="amt-bench-") as run_dir:
        trainer = Trainer(config, run_dir, dataset=dataset)
        try:
            trainer.start()
            device = trainer.device
            batch = trainer.next_batch()
            result = {"device": str(device), "attn": trainer.prepared.attention}
            if not args.no_flops:
                key = repr(config.model)
                if key not in flops_cache:
                    flops_cache[key] = _count_flops(config, device, batch)
                step_flops = flops_cache[key]
            for _ in range(args.warmup):
                trainer.train_step(dict(batch))
                trainer.state.count_step()
            trainer.check()
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            if args.pipeline:
                timing = _time_pipeline(trainer, args.steps)
            else:
                timing = _time_repeated(trainer, batch, args.steps)
            seconds = timing.pop("seconds")
            images = config.batch_size * args.steps
            result.update(
                batch=config.batch_size,
                micro_batch=trainer.state.micro_batch,
                images_per_s=images / seconds,
                step_ms=1000 * seconds / args.steps,
                params_m=sum(p.numel() for p in trainer.module.parameters()) / 1e6,
                fp8=_fp8_cell(trainer.prepared.fp8),
                **timing,
            )
            result["act_mb_per_image"] = _saved_activations_per_image(trainer, batch)
            # CUDA: the allocator's peak since the timed steps began; CPU: the process's high-water mark of resident
            # memory, which only grows, so in a table of several rows only the first row's figure is its own
            result["peak_mb" if device.type == "cuda" else "rss_peak_mb"] = memory_mb(device)["peak_mb"]
            if not args.no_flops:
                result.update(_flop_figures(step_flops, config.batch_size, args.steps / seconds, args, device))
            if args.max_batch:
                result["max_batch"] = _largest_batch(trainer, batch) if device.type == "cuda" else "cuda only"
            return result
        finally:
            trainer.close()


def _flop_figures(step_flops, batch: int, steps_per_s: float, args: argparse.Namespace, device) -> dict:
    """FLOPs per image, achieved TFLOP/s and the model FLOP utilisation against the device's bf16 peak."""
    from amt_core.train import flops as flop_count

    achieved = step_flops.total(batch) * steps_per_s
    peak = args.peak_tflops or flop_count.bf16_peak_tflops(device)
    utilization = flop_count.mfu(achieved, peak)
    per_image = step_flops.forward_per_image + step_flops.backward_per_image
    return {
        "gflop_per_image": per_image / 1e9,
        "tflops": achieved / 1e12,
        "peak_tflops": peak or "unknown",
        "mfu": utilization if utilization is not None else "n/a",
    }


def _fp8_cell(report) -> str:
    """Converted Linear layers and their share of the Linear FLOPs, e.g. '48/98 (71%)'."""
    if report is None:
        return "-"
    total = len(report.converted) + len(report.skipped)
    return f"{len(report.converted)}/{total} ({100 * report.flop_fraction:.0f}%)"


def _count_flops(config, device, batch: dict):
    """FLOPs of the step on a fresh eager fp32 copy of the model (compiled or FP8 layers are not counted by op)."""
    from amt_core.train import parts
    from amt_core.train.flops import count_step_flops
    from amt_core.train.memory import release_memory

    model = parts.build_model(config.model).to(device).train()
    loss = parts.build_loss(config.loss).to(device)
    batch = parts.to_device({k: v for k, v in batch.items() if k != "index"}, device)
    try:
        return count_step_flops(model, loss, batch)
    finally:
        del model, loss
        release_memory()


def _saved_activations_per_image(trainer, batch: dict) -> float:
    """MiB autograd keeps per image between a micro-batch's forward and backward, as the trainer runs it (policy,
    precision), on the eager path: compiled graphs may keep less, and offloaded tensors sit in host memory."""
    from amt_core.accel.precision import autocast
    from amt_core.train import parts
    from amt_core.train.compile import run_eagerly
    from amt_core.train.memory import saved_activations

    size = min(trainer.state.micro_batch, batch["image"].shape[0])
    chunk = parts.to_device(
        parts.slice_batch({k: v for k, v in batch.items() if k != "index"}, 0, size), trainer.device
    )
    precision = autocast(trainer.tc.precision, trainer.device, trainer.prepared.fp8)
    with run_eagerly(), precision, saved_activations(trainer.module) as saved:
        output = trainer.module(chunk)
    del output  # frees the graph and what it saved
    return saved["bytes"] / 2**20 / size


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_repeated(trainer, batch: dict, steps: int) -> dict:
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(dict(batch))
        trainer.state.count_step()
    trainer.check()  # one host sync: the steps really ran
    _sync(trainer.device)
    return {"seconds": time.perf_counter() - start}


def _time_pipeline(trainer, steps: int) -> dict:
    """Fresh batches from the loader; the device's busy share is its step time over the wall time.

    On CUDA the step time is measured by events around each step's kernels (the host may be waiting for data
    meanwhile); on the CPU the host is the device, so busy = 1 - (time blocked on the loader) / wall time.
    """
    import torch

    cuda = trainer.device.type == "cuda"
    events = []
    waited = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = trainer.next_batch()
        waited += time.perf_counter() - t0
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        trainer.train_step(batch)
        if cuda:
            end.record()
            events.append((begin, end))
        trainer.state.count_step()
    trainer.check()
    _sync(trainer.device)
    seconds = time.perf_counter() - start
    if cuda:
        busy = sum(begin.elapsed_time(end) for begin, end in events) / 1000 / seconds
    else:
        busy = 1.0 - waited / seconds
    return {"seconds": seconds, "data_wait_ms": 1000 * waited / steps, "device_busy": busy}


def _largest_batch(trainer, batch: dict, limit: int = 8192) -> int:
    """The largest batch (a multiple of 8 past 8) that trains without running out of memory, without accumulation.

    Doubles from the current micro-batch until a step fails with OOM, then bisects; the trainer's micro-batch is
    restored afterwards.
    """
    import torch

    from amt_core.train.memory import is_oom, release_memory

    saved = trainer.state.micro_batch

    def fits(size: int) -> bool:
        repeats = -(-size // batch["image"].shape[0])
        big = {k: _repeat(v, repeats, size) for k, v in batch.items()}
        try:
            with trainer.micro_batches.fixed(size):  # an OOM must reach us, not halve the micro-batch
                trainer.train_step(big)
            trainer.check()
            _sync(trainer.device)
            return True
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            if not is_oom(err):
                raise
            trainer.optimizer.zero_grad(set_to_none=True)
            release_memory()
            return False

    low, high = 0, max(1, saved)
    while high <= limit and fits(high):
        low, high = high, high * 2
    while high - low > max(1, low // 16):
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _repeat(value, repeats: int, size: int):
    import torch

    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return value.repeat(repeats, *([1] * (value.dim() - 1)))[:size]
    if isinstance(value, dict):
        return {k: _repeat(v, repeats, size) for k, v in value.items()}
    if isinstance(value, list):
        return (value * repeats)[:size]
    return value
