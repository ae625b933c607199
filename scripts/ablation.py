"""Ablation table: several variants of a run, each trained with several seeds, scored on held-out data; one Markdown
row per variant with the mean over seeds and its spread, beside the trivial references on the same samples.

    python scripts/ablation.py OUT --minutes 5 --seeds 0 1 2 \\
        --variant "amt_cpu=" --variant "cnn_trunk=--set model.backbone.variant=cnn" --variant "cnn_cpu=--model cnn_cpu"

Every run is `amt-core train --preset PRESET --data TRAIN --val-data TEST --max-time MINUTES` (stages by time,
`trainer.seed` = the seed, which sets initialisation and data order) plus the variant's own arguments, then
`amt-core eval` on TEST. JOBS runs train at once, one torch thread each (THREADS), so steps per second are comparable
between rows only when every row ran with the same JOBS on a quiet machine. TRAIN and TEST default to the
side-by-side's pre-rendered data (rendered here when missing: 4000 samples of seed 0, 500 of seed 1, 128 px).
With `--stages A B C` instead of `--minutes`, the three stages run A, B and C steps (the memorisation probe:
`--preset micro --stages 100 400 100 --batch-size 8 --train synth:MEM --test synth:MEM`).
A finished run (its eval json exists) is not run again, so an interrupted table resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

AMT = [sys.executable, "-m", "amt_core"]


def render(path: Path, num: int, seed: int, size: int) -> None:
    if not (path / "done").exists():
        subprocess.run(
            [
                *AMT,
                "synth",
                "--out",
                str(path),
                "--num",
                str(num),
                "--seed",
                str(seed),
                "--size",
                str(size),
                "--workers",
                "2",
            ],
            check=True,
        )
        (path / "done").write_text("")


def run_one(out: Path, name: str, extra: list[str], seed: int, args: argparse.Namespace) -> dict:
    run_dir = out / name / f"seed{seed}"
    result = out / name / f"seed{seed}.json"
    if result.exists():
        return json.loads(result.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    budget = ["--max-time", str(args.minutes), "--set", "trainer.stage_by_time=true"] if args.minutes else []
    if args.stages:
        budget = [f"--set=stages.{i}.steps={n}" for i, n in enumerate(args.stages)]
    train = [
        *AMT,
        "train",
        "--preset",
        args.preset,
        "--data",
        args.train,
        "--val-data",
        args.test,
        "--run-dir",
        str(run_dir),
        "--set",
        f"trainer.seed={seed}",
        "--set",
        f"trainer.eval_every={args.eval_every}",
        "--set",
        f"trainer.eval_samples={args.eval_samples}",
        "--set",
        "trainer.num_workers=1",
        *budget,
        *extra,
    ]
    if args.batch_size:
        train += ["--batch-size", str(args.batch_size)]
    log = (out / name / f"seed{seed}.log").open("w")
    start = time.time()
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    subprocess.run(train, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    wall = time.time() - start
    subprocess.run(
        [*AMT, "eval", "--ckpt", str(run_dir), "--data", args.test, "--json", str(result)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        check=True,
    )
    data = json.loads(result.read_text())
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    data["steps"] = max(e["step"] for e in events)
    data["train_wall_s"] = wall
    result.write_text(json.dumps(data))
    return data


def mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--variant", action="append", required=True, help="NAME=ARGS (amt-core train arguments)")
    parser.add_argument("--common", default="", help="amt-core train arguments every variant gets (before its own)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--stages", type=int, nargs=3, default=None, help="steps per stage instead of --minutes")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train", default=None, help="training data spec (default: the side-by-side's)")
    parser.add_argument("--test", default=None, help="held-out data spec (default: the side-by-side's)")
    parser.add_argument("--eval-every", type=int, default=0)
    parser.add_argument("--eval-samples", type=int, default=128)
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", 2)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", 1)))
    args = parser.parse_args()
    if args.stages:
        args.minutes = 0
    if args.train is None or args.test is None:
        data = Path("runs/side_by_side/data")
        render(data / "train", 4000, 0, 128)
        render(data / "test", 500, 1, 128)
        args.train = args.train or f"synth:{data / 'train'}"
        args.test = args.test or f"synth:{data / 'test'}"
    variants = []
    for text in args.variant:
        name, _, rest = text.partition("=")
        variants.append((name.strip(), shlex.split(args.common) + shlex.split(rest)))
        (args.out / name.strip()).mkdir(parents=True, exist_ok=True)
    jobs = [(name, extra, seed) for seed in args.seeds for name, extra in variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: (job, run_one(args.out, *job, args)), jobs))
    rows: dict[str, list[dict]] = {}
    for (name, _, _), data in results:
        rows.setdefault(name, []).append(data)
    budget = f"{args.minutes:g} min" if args.minutes else f"{'/'.join(map(str, args.stages))} steps"
    load = os.getloadavg()
    lines = [
        f"| variant ({budget}, seeds {' '.join(map(str, args.seeds))}) | steps | MPJPE mm | PA-MPJPE mm "
        "| MPJPE / mean pose | pred std mm |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in rows.items():
        share = [r["mpjpe_mm"] / r["ref_mean_pose_mpjpe_mm"] for r in runs]
        lines.append(
            f"| {name} | {statistics.mean(r['steps'] for r in runs):.0f} "
            f"| {mean_spread([r['mpjpe_mm'] for r in runs])} "
            f"| {mean_spread([r['pa_mpjpe_mm'] for r in runs])} | {statistics.mean(share):.2f} "
            f"| {mean_spread([r['pred_std_mm'] for r in runs])} |"
        )
    ref = results[0][1]
    lines.append(
        f"| mean pose of the training data | - | {ref['ref_mean_pose_mpjpe_mm']:.1f} "
        f"| {ref['ref_mean_pose_pa_mpjpe_mm']:.1f} | 1.00 | 0.0 |"
    )
    lines.append(f"| all joints at the wrist | - | {ref['ref_wrist_mpjpe_mm']:.1f} | - | - | 0.0 |")
    lines.append("")
    lines.append(
        f"mean ± sample std over {len(args.seeds)} seeds; gt std {ref['gt_std_mm']:.1f} mm; "
        f"{ref['num_samples']} held-out samples; {args.jobs} runs at once, {args.threads} thread each; "
        f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    text = "\n".join(lines)
    print(text)
    (args.out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
