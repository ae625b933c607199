"""Held-out MPJPE against wall time for several runs, with the trivial references as lines: one PNG.

    python scripts/learning_curve.py OUT.png RUN_DIR [RUN_DIR ...] [--title TEXT]

Each run's `validation` events give the curve (minutes since the run's first event); the references (the training
data's mean pose, all joints at the wrist, on the validation samples) are read from the last validation event of the
first run that has them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b")


def read_events(run: Path) -> list[dict]:
    events = []
    for line in (run / "events.jsonl").read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a half-written last line of a live run
    return events


def curve(events: list[dict]) -> tuple[list[float], list[float], dict]:
    start = events[0]["time"]
    minutes, mpjpe, last = [], [], {}
    for event in events:
        metrics = event.get("metrics") or {}
        if event["kind"] == "validation" and "mpjpe_mm" in metrics:
            minutes.append((event["time"] - start) / 60)
            mpjpe.append(metrics["mpjpe_mm"])
            last = metrics
    return minutes, mpjpe, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--title", default="held-out MPJPE against wall time")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    references: dict = {}
    for colour, run in zip(COLOURS, args.runs):
        if not (run / "events.jsonl").is_file():
            print(f"learning_curve: {run} has no events.jsonl; pass run directories", file=sys.stderr)
            return 2
        events = read_events(run)
        config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
        name = config.get("config", {}).get("model", {}).get("name", run.name)
        minutes, mpjpe, last = curve(events)
        if minutes:
            ax.plot(minutes, mpjpe, color=colour, marker="o", markersize=3, linewidth=1.5, label=name)
        if not references and "ref_mean_pose_mpjpe_mm" in last:
            references = last
    if references:
        ax.axhline(
            references["ref_mean_pose_mpjpe_mm"],
            color="0.35",
            linestyle="--",
            linewidth=1.2,
            label=f"mean pose of the training data\n({references['ref_mean_pose_mpjpe_mm']:.1f} mm)",
        )
        ax.axhline(
            references["ref_wrist_mpjpe_mm"],
            color="0.6",
            linestyle=":",
            linewidth=1.2,
            label=f"all joints at the wrist\n({references['ref_wrist_mpjpe_mm']:.1f} mm)",
        )
    ax.set_xlabel("wall time (minutes)")
    ax.set_ylabel("held-out MPJPE (mm, root-relative)")
    ax.set_title(args.title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # outside the data
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
