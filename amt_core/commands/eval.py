"""`amt-core eval --ckpt PATH --data SPEC [--json FILE]`: every metric of a checkpoint on a dataset.

Prints a table and, with --json, writes the metrics (mpjpe_mm, pa_mpjpe_mm, auc_0_50, pred_std_mm, gt_std_mm,
num_samples, and the object and contact metrics where the data has them) plus where they came from. Beside the
model, the trivial predictors are scored on the same samples: the training data's mean pose (stored in the
checkpoint by the trainer) and all joints on the wrist (`ref_mean_pose_mpjpe_mm`, `ref_mean_pose_pa_mpjpe_mm`,
`ref_wrist_mpjpe_mm`, `skill_mpjpe` = 1 - model / mean-pose reference).

Where the dataset has its own protocol (FreiHAND, HO3D, DexYCB; `amt_core.metrics.protocols`), its numbers follow,
keyed `<protocol>/<metric>` as the official scripts compute them. `--submission FILE` writes the CodaLab file of an
evaluation split (HO3D's, FreiHAND's) from the same predictions.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from amt_core.metrics import keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="a checkpoint folder, or a run directory (its latest checkpoint)")
    parser.add_argument("--data", help="dataset spec (default: the run's held-out val_data)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the metrics to this JSON file")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-samples", type=int, default=0, help="evaluate only the first N samples (0: all)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--submission", type=Path, metavar="FILE", help="also write the challenge's JSON (ho3d or freihand data)"
    )


def run(args: argparse.Namespace) -> int:
    from amt_core.errors import UserError

    if args.batch_size < 1 or args.max_samples < 0 or args.workers < 0:
        raise UserError("--batch-size must be >= 1, --max-samples and --workers >= 0")
    for flag, path in (("--json", args.json), ("--submission", args.submission)):
        if path is not None and path.is_dir():
            raise UserError(f"{flag} {path} is a folder; give a file name")
        if path is not None and not path.parent.is_dir():  # checked now: not after minutes of evaluation
            raise UserError(f"{flag} {path}: the folder {path.parent} does not exist; create it or give another path")
        if path is not None and not os.access(path.parent, os.W_OK):  # a read-only disk, too
            raise UserError(f"{flag} {path}: the folder {path.parent} is not writable; give another path")

    from rich.console import Console

    from amt_core.atomic import atomic_write_text
    from amt_core.train import parts
    from amt_core.train.evaluate import evaluate
    from amt_core.train.parts import resolve_device
    from amt_core.train.progress import CountProgress

    device = resolve_device(args.device)
    model, config, folder = parts.model_from_checkpoint(args.ckpt, device)
    reference = parts.reference_pose_of(folder)
    spec = args.data or config.val_data
    dataset = parts.open_data(spec)
    protocol, submission = _protocol_and_submission(spec, args.submission, model)
    precision = config.trainer.precision if device.type == "cuda" else "fp32"
    console = Console(stderr=True)
    total = min(args.max_samples, len(dataset)) if args.max_samples else len(dataset)
    with CountProgress("eval", total, "samples") as progress:
        metrics = evaluate(
            model,
            dataset,
            device,
            batch_size=args.batch_size,
            precision=precision,
            max_samples=args.max_samples,
            num_workers=args.workers,
            reference_pose=reference,
            on_batch=lambda done, _total: progress.update(done),
            on_output=_feeder(protocol, submission),
        )
    if protocol is not None:
        metrics.update(protocol.compute())
    if submission is not None:
        _write_submission(spec, args.submission, submission, console)
    if metrics.get("invalid_samples"):
        console.print(
            f"warning: {metrics['invalid_samples']} samples have NaN or infinite labels; their labels were "
            "skipped (the figures are over the valid ones)"
        )
    _print_table(metrics, folder, spec)
    if args.json is not None:
        report = {**metrics, "checkpoint": str(folder), "data": spec, "model": config.model_name}
        atomic_write_text(args.json, json.dumps(report, indent=2, default=float))
    return 0


def _protocol_and_submission(spec: str, submission: Path | None, model):
    """(the dataset's protocol or None, a list collecting (joints, verts) per batch for --submission or None).
    A submission the model cannot make is refused before anything runs."""
    from amt_core.data.registry import parse_spec
    from amt_core.errors import UserError
    from amt_core.metrics.protocols import protocol_for

    if submission is not None:
        if parse_spec(spec).scheme not in ("ho3d", "freihand"):
            raise UserError(f"--submission writes HO3D's and FreiHAND's challenge files; {spec} is neither")
        layer = getattr(model, "hand_layer", None)
        found = f"{layer.num_verts} vertices" if layer is not None else "no mesh"
        if layer is None or int(layer.num_verts) != 778:
            raise UserError(
                f"--submission needs MANO meshes (778 vertices) and this model predicts {found}: the challenges "
                f"score MANO's mesh, which a model on the shipped open hand cannot give; leave out --submission"
            )
    return protocol_for(spec), ([] if submission is not None else None)


def _feeder(protocol, submission: list | None):
    """The per-batch callback: the protocol gets the predictions against the batch; the submission keeps them."""
    if protocol is None and submission is None:
        return None

    def feed(output, batch: dict) -> None:
        if protocol is not None:
            protocol.update(output.joints3d, batch, output.hand_verts)
        if submission is not None:
            verts = output.hand_verts
            submission.append((output.joints3d.float().cpu(), None if verts is None else verts.float().cpu()))

    return feed


def _write_submission(spec: str, path: Path, batches: list, console) -> None:
    import torch

    from amt_core.data.registry import parse_spec
    from amt_core.metrics.protocols import write_freihand_submission, write_ho3d_submission

    joints = torch.cat([j for j, _ in batches]).double().numpy()
    verts = torch.cat([v for _, v in batches]).double().numpy()
    write = write_ho3d_submission if parse_spec(spec).scheme == "ho3d" else write_freihand_submission
    write(path, joints, verts)
    console.print(f"wrote the submission for {len(joints)} samples to {path} (zip it as pred.zip to upload)")


def _print_table(metrics: dict, folder: Path, spec: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{folder} on {spec}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console = Console()
    console.print(table)
    model, reference = metrics.get(keys.MPJPE_MM), metrics.get(keys.REF_MEAN_POSE_MPJPE_MM)
    if model is not None and reference is not None:
        verdict = "better than" if model < reference else "NOT better than"
        source = "training data's" if metrics.get(keys.REF_MEAN_POSE_SOURCE) == "train" else "evaluated samples' own"
        wrist = metrics.get(keys.REF_WRIST_MPJPE_MM, float("nan"))
        console.print(
            f"MPJPE {model:.1f} mm is {verdict} predicting the {source} mean pose ({reference:.1f} mm; "
            f"all joints on the wrist: {wrist:.1f} mm)"
        )
