"""Screenshots of AMT Studio for the README: the training view (with the baseline's run overlaid), the checkpoint
inspector and the start page.

Trains two short real runs, AMT and its baseline (or uses --run-dir), opens them in the studio offscreen (no display
needed), and saves studio_training.png, studio_inspect.png and studio_start.png under --out (the README keeps
docs/images/1280x800 and docs/images/1920x1080), offscreen on a screen of --size.

    python scripts/screenshots.py                      # trains a short micro run first (about a minute on a CPU)
    python scripts/screenshots.py --run-dir runs/cpu-1 # a run you already have
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="an existing run directory (default: train a short one)")
    parser.add_argument("--steps", type=int, default=90, help="length of the short run, in steps")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="where the PNGs go")
    parser.add_argument("--size", default="1600x1000", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--sample", type=int, default=1, help="the snapshot / inspector sample shown")
    return parser.parse_args()


def train_short_run(steps: int, preset: str = "micro", root: Path | None = None) -> Path:
    """A micro run at 128 px with events often enough to fill the plots."""
    root = root or Path(tempfile.mkdtemp(prefix="amt-screenshots-"))
    run_dir = root / f"{preset}-128"
    third = max(steps // 3, 1)
    argv = [
        sys.executable,
        "-m",
        "amt_core",
        "train",
        "--preset",
        preset,
        "--run-dir",
        str(run_dir),
        "--data",
        "synth:live?seed=0&size=128&num=4096",
        "--val-data",
        "synth:live?seed=10000&size=128&num=16",
        "--set",
        f"stages.0.steps={third}",
        "--set",
        f"stages.1.steps={third}",
        "--set",
        f"stages.2.steps={third}",
        "--set",
        "trainer.snapshot_every=10",
        "--set",
        "trainer.diag_every=3",
        "--set",
        "trainer.ckpt_every=30",
        "--set",
        "trainer.snapshot_samples=4",
        "--set",
        "trainer.eval_every=15",
        "--set",
        "trainer.eval_samples=16",
    ]
    print(f"training {steps} steps into {run_dir} ...", flush=True)
    subprocess.run(argv, check=True, cwd=ROOT)
    return run_dir


def main() -> int:
    args = parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if not os.environ.get("DISPLAY"):  # offscreen, on a screen of the size asked for (the window fits its screen)
        screens = Path(tempfile.mkdtemp()) / "screens.json"
        screens.write_text(json.dumps({"screens": [{"name": "shot", "width": width, "height": height}]}))
        os.environ.setdefault("QT_QPA_PLATFORM", f"offscreen:configfile={screens}")
    run_dir = args.run_dir or train_short_run(args.steps)
    baseline_dir = None if args.run_dir else train_short_run(args.steps, "baseline_micro", run_dir.parent)

    from PySide6.QtCore import QSettings  # noqa: TID251 (a GUI script)
    from PySide6.QtGui import QIcon  # noqa: TID251
    from PySide6.QtWidgets import QApplication  # noqa: TID251

    from amt_studio.views.theme import apply_theme  # noqa: TID251
    from amt_studio.window import MainWindow  # noqa: TID251

    app = QApplication.instance() or QApplication([])
    app.setWindowIcon(QIcon(str(ROOT / "packaging" / "icons" / "amt-studio.svg")))
    apply_theme(app)
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, show_dialogs=False, runs_dir=run_dir.parent)
    window.resize(width, height)
    window.show()

    def pump(condition, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not condition():
            app.processEvents()
            time.sleep(0.01)
        if not condition():
            raise SystemExit("screenshots: the studio did not get there in time")

    session = window.attach(run_dir)
    state = session.state
    pump(
        lambda: not session.source.has_unread() and state.state in ("finished", "stopped") and len(state.snapshots) > 0
    )
    for _ in range(40):  # let every curve appear (a few per refresh) and the latest snapshot load
        window.tick()
        app.processEvents()
        time.sleep(0.02)
    pump(lambda: window.snapshots.current is not None and window.snapshots.current_index == len(state.snapshots) - 1)
    window.snapshots.sample.setValue(args.sample)
    shown = (len(state.snapshots) - 1, args.sample)
    pump(lambda: window.tick() is None and window.snapshots._shown == shown)
    if baseline_dir is not None:
        window.add_overlay(baseline_dir)
        overlay = window.overlays[baseline_dir.name].state
        pump(lambda: window.tick() is None and overlay.state in ("finished", "stopped"))
    window.plots.smoothing.setValue(60)
    for _ in range(60):  # every plot fed again (one per tick), overlay curves included
        window.tick()
        app.processEvents()
        time.sleep(0.01)
    pump(lambda: window.tick() is None and not window.plots._dirty)
    scene = window.snapshots.scene
    scene.camera.orbit(-35, 12)  # a three-quarter view shows depth better than the image camera's (framing kept)
    scene.render_now()
    app.processEvents()
    args.out.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(args.out / "studio_training.png"))

    window.tabs.setCurrentWidget(window.inspect)
    panel = window.inspect
    panel.open_checkpoint(state.checkpoints[-1].path)
    pump(lambda: panel.inspector.model is not None and not panel.working)
    panel.run_dataset()
    pump(lambda: panel.data is not None and not panel.working)
    panel.table.selectRow(args.sample)
    panel.scene.camera.orbit(35, 12)
    panel.scene.render_now()
    for _ in range(5):
        app.processEvents()
    window.grab().save(str(args.out / "studio_inspect.png"))
    window.tabs.setCurrentWidget(window.start_page)
    window.start_page.refresh()
    for _ in range(5):
        app.processEvents()
    window.grab().save(str(args.out / "studio_start.png"))
    print(f"wrote studio_training.png, studio_inspect.png and studio_start.png to {args.out}")
    session.close()
    window.inspect.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
