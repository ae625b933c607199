"""`amt-core bench studio`: the 3D panel's frames/s at 512x512 and the window's event-loop stalls while a real
micro run trains in the background (offscreen Qt when there is no display).

A probe timer asks to fire every 5 ms; a stall is how late it fires (wall clock); its CPU part is the GUI thread's
own CPU time in that interval (the rest is the machine being busy elsewhere). The 3D figure orbits the camera over
the run's latest snapshot (a hand and an object) and renders each frame through the panel's own widget.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to watch the training run")
    parser.add_argument("--frames", type=int, default=60, help="frames rendered for the frames/s figure")
    parser.add_argument("--size", type=int, default=512, help="3D panel size in pixels (square)")
    parser.add_argument("--preset", default="micro", help="trainer preset of the background run")


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run(args: argparse.Namespace) -> dict:
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from amt_core.errors import UserError
    from amt_studio.session import trainer_argv
    from amt_studio.views.theme import apply_theme
    from amt_studio.window import MainWindow

    if args.seconds <= 0 or args.frames < 1 or not 64 <= args.size <= 2048:
        raise UserError("bench studio: --seconds > 0, --frames >= 1 and --size in [64, 2048]")
    app = QApplication.instance() or QApplication([])
    apply_theme(app)
    work = Path(tempfile.mkdtemp(prefix="amt-bench-studio-"))
    settings = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, show_dialogs=False)
    window.ask_live_run = lambda: "stop"
    window.resize(1500, 920)
    window.show()
    stages = [f"stages.{i}.steps=100000" for i in range(3)]
    cadence = ["trainer.snapshot_every=5", "trainer.diag_every=5", "trainer.ckpt_every=50"]
    argv = trainer_argv(preset=args.preset, run_dir=work / "run", overrides=stages + cadence)
    session = window.start_run(argv, work / "run")
    if session is None:
        raise UserError(f"bench studio: the trainer did not start: {window.notifier.history[-1].message}")

    def pump_until(condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            app.processEvents()
            if condition():
                return True
            time.sleep(0.005)
        return False

    try:
        if not pump_until(lambda: len(session.state.snapshots) >= 1 or session.state.state == "failed", 300):
            raise UserError("bench studio: no snapshot from the trainer within 5 minutes")
        if session.state.state == "failed":
            raise UserError(
                f"bench studio: the trainer failed: {session.state.error[0] if session.state.error else ''}"
            )
        events_before, window.tick_ms[:] = session.state.events_seen, []
        stalls: list[float] = []
        busy: list[float] = []  # GUI-thread CPU time within each stall: the part the studio's own work caused
        clock = QElapsedTimer()
        clock.start()
        last = [clock.nsecsElapsed(), time.thread_time()]
        probe = QTimer()
        probe.setInterval(5)

        def on_probe() -> None:
            now, cpu = clock.nsecsElapsed(), time.thread_time()
            stalls.append(max(0.0, (now - last[0]) / 1e6 - 5.0))
            busy.append(max(0.0, (cpu - last[1]) * 1000.0 - 5.0))
            last[:] = [now, cpu]

        probe.timeout.connect(on_probe)
        probe.start()
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.001)
        probe.stop()
        events = session.state.events_seen - events_before
        ticks = list(window.tick_ms)
        # 3D panel: the latest snapshot, orbiting, one frame per step through the widget.
        panel = window.snapshots
        pump_until(lambda: panel.current is not None, 60)
        scene = panel.scene
        scene.setFixedSize(args.size, args.size)
        app.processEvents()
        scene.render_now()
        frame_ms = []
        for _ in range(args.frames):
            scene.camera.orbit(4.0, 1.0)
            start = time.perf_counter()
            scene.render_now()
            frame_ms.append((time.perf_counter() - start) * 1000.0)
        triangles = sum(len(layer.faces) for layer in scene.renderer.layers)
        window.close()
    finally:
        if session.process is not None and session.process.poll() is None:
            session.process.terminate()
    return {
        "panel_fps": 1000.0 / _percentile(frame_ms, 50),
        "frame_ms_p50": _percentile(frame_ms, 50),
        "frame_ms_p99": _percentile(frame_ms, 99),
        "panel_px": f"{scene.render_size()[0]}x{scene.render_size()[1]}",
        "triangles": triangles,
        "stall_ms_p50": _percentile(stalls, 50),
        "stall_ms_p99": _percentile(stalls, 99),
        "stall_ms_max": max(stalls) if stalls else float("nan"),
        "stall_cpu_ms_p99": _percentile(busy, 99),
        "tick_ms_p99": _percentile(ticks, 99),
        "watched_s": args.seconds,
        "events_applied": events,
        "trainer_steps": session.state.step,
        "images_per_s": session.state.images_per_s or 0.0,
        "cpu_cores": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }
