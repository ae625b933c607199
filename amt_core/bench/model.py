"""`amt-core bench model`: forward and train-step images/s and batch-1 latency per preset, AMT beside the baseline.

Both models of a preset share the backbone configuration and run on random images at the preset's size. The train
step is forward + a proxy loss (the mean of every floating output, so every head is in the graph) + backward + an
AdamW step; it measures the model, not the loss functions. Figures are medians over the timed iterations.
Columns: fwd_img_s (inference, batch --batch-size), train_img_s (train step), bs1_ms (inference latency, batch 1);
`<preset>_amt_vs_baseline_train` is AMT's train-step throughput over the baseline's; `images_per_s` is AMT's
train-step throughput on the first preset.
"""

from __future__ import annotations

import argparse
import statistics
import time

from amt_core.errors import UserError

SIZES = ("micro", "cpu", "dinov2_s", "dinov2_b", "dinov2_l", "dinov2_g")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", action="append", choices=SIZES, help="preset size to measure (repeatable; default: micro and cpu)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward / train step (default 8)")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per figure (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")


def _median_seconds(fn, iters: int, warmup: int, sync) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(model, size: int, batch_size: int, iters: int, warmup: int, device) -> dict:
    import torch  # in the functions that run: `amt-core bench model --help` answers without torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def batch_of(n: int) -> dict:
        K = torch.tensor([[1.2 * size, 0.0, size / 2], [0.0, 1.2 * size, size / 2], [0.0, 0.0, 1.0]], device=device)
        return {"image": torch.rand(n, 3, size, size, device=device), "K": K.expand(n, 3, 3).contiguous()}

    batch, single = batch_of(batch_size), batch_of(1)
    model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def train_step() -> None:
        out = model(batch)
        loss = out.joints3d.sum() * 0
        for value in vars(out).values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                loss = loss + value.float().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    train_s = _median_seconds(train_step, iters, warmup, sync)
    model.eval()
    with torch.inference_mode():
        forward_s = _median_seconds(lambda: model(batch), iters, warmup, sync)
        latency_s = _median_seconds(lambda: model(single), iters, warmup, sync)
    return {
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "fwd_img_s": batch_size / forward_s,
        "train_img_s": batch_size / train_s,
        "bs1_ms": 1000.0 * latency_s,
    }


def run(args: argparse.Namespace) -> dict:
    import torch

    from amt_core.hand import HandModel
    from amt_core.models.registry import create_model

    if args.batch_size < 1 or args.iters < 1 or args.warmup < 0:
        raise UserError("bench model: --batch-size and --iters must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("bench model: --device cuda but no CUDA GPU is visible; use --device cpu")
    device = torch.device(device_name)
    hand_layer = HandModel()
    rows, result = [], {}
    for size in args.preset or ["micro", "cpu"]:
        figures = {}
        for kind in ("amt", "baseline"):
            torch.manual_seed(0)
            extra = {"hand_layer": hand_layer} if kind == "amt" else {}
            model = create_model(f"{kind}_{size}", **extra)
            px = model.config.backbone.img_size
            figures[kind] = _measure(model, px, args.batch_size, args.iters, args.warmup, device)
            rows.append({"model": f"{kind}_{size}", "px": px, **figures[kind]})
            del model
        ratio = figures["amt"]["train_img_s"] / figures["baseline"]["train_img_s"]
        result[f"{size}_amt_vs_baseline_train"] = ratio
        result.setdefault("images_per_s", figures["amt"]["train_img_s"])
    result["device"] = device_name
    result["threads"] = torch.get_num_threads()
    result["batch_size"] = args.batch_size
    return {"rows": rows, **result}
