"""The overfit probe behind docs/learning.md: a model and a loss, N fixed samples in memory, a plain AdamW loop.

It leaves out the trainer's stage plan, gradient processing and events, so one switch of the model or the loss can
be measured in a minute or two. Prints the training-set MPJPE (root-relative), PA-MPJPE and MPVPE at the end.

    python scripts/memorise.py --data synth:DIR [--model amt_micro] [--steps 600] [--lr 1e-3]
        [--set hand.sigma.enabled=false ...]       # model overrides (dotted keys, JSON values)
        [--weight joints3d=30 ...] [--only joints3d,root]   # loss weights; --only zeroes every other term
        [--plain-rootrel]                          # a plain root-relative joint distance instead of AMTLoss
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch.utils.data import DataLoader

from amt_core.losses.amt_loss import TERM_GROUPS
from amt_core.metrics import MetricAccumulator
from amt_core.models import model_config
from amt_core.train import parts


def _rows(batch: dict, index: torch.Tensor, num: int) -> dict:
    """The samples `index` of a collated batch of `num` samples (nested `valid` flags included)."""
    return {
        key: _rows(value, index, num)
        if isinstance(value, dict)
        else value[index]
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == num
        else value
        for key, value in batch.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="amt_micro")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--weight", action="append", default=[], metavar="TERM=W")
    parser.add_argument("--only", default="", help="comma-separated loss terms to keep (others weight 0)")
    parser.add_argument("--plain-rootrel", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    dataset = parts.open_data(args.data)
    num = len(dataset)
    data = next(iter(DataLoader(dataset, batch_size=num, shuffle=False)))
    overrides = dict(item.split("=", 1) for item in args.overrides)
    model = parts.build_model(model_config(args.model, **overrides))  # text values: config_tree's one rule
    weights = {k: float(v) for k, v in (item.split("=", 1) for item in args.weight)}
    if args.only:
        keep = set(args.only.split(","))
        weights.update({term: 0.0 for term in TERM_GROUPS if term not in keep})
    loss_fn = parts.build_loss({"weights": weights})
    params = [p for p in model.parameters() if p.requires_grad] + list(loss_fn.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    generator = torch.Generator().manual_seed(0)
    per_epoch = max(1, num // args.batch)
    start = time.monotonic()
    model.train()
    for step in range(args.steps):
        if step % per_epoch == 0:
            order = torch.randperm(num, generator=generator)
        index = order[(step % per_epoch) * args.batch : (step % per_epoch + 1) * args.batch]
        batch = _rows(data, index, num)
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        out = model(batch)
        if args.plain_rootrel:
            pred, gt = out.joints3d - out.joints3d[:, :1], batch["joints3d"] - batch["joints3d"][:, :1]
            loss = (pred - gt).norm(dim=-1).mean()
        else:
            loss = loss_fn(out, batch, epoch=step * args.batch / num).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.monotonic() - start:.0f} s)", flush=True)
    model.eval()
    accumulator = MetricAccumulator()
    with torch.no_grad():
        for first in range(0, num, args.batch):
            index = torch.arange(first, min(first + args.batch, num))
            batch = _rows(data, index, num)
            accumulator.update(model(batch), batch)
    r = accumulator.compute()
    print(
        f"training-set MPJPE {r['mpjpe_mm']:.1f} mm, PA-MPJPE {r['pa_mpjpe_mm']:.1f} mm, "
        f"MPVPE {r.get('mpvpe_mm', float('nan')):.1f} mm; mean pose {r['ref_mean_pose_mpjpe_mm']:.1f} mm; "
        f"{args.steps} steps in {time.monotonic() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
