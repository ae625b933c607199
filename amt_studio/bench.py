"""`amt-core bench studio`: how the studio holds up while a real micro run trains in the background (offscreen Qt
when there is no display).

Without `--soak`: time to first paint (a fresh `amt-studio --first-paint` process), the 3D panel's frames/s at
512x512 and the event-loop stalls over `--seconds`. With `--soak MINUTES`: the real window watches a live micro run
with fast cadences (metrics every step, diagnostics, snapshots, checkpoints, validation every few steps) while the
soak steers it through the studio's own session API: pause and resume, stage switches, rollbacks, snapshots. The
window runs in a child process, so a crash (a segfault, `none_dealloc`) is reported rather than taking the
benchmark with it. Figures: crashes, the `None` refcount drift (sys.getrefcount(None), sampled every second; a
PySide6 that drops references to None shows here long before it aborts), RSS growth, event-loop stall p50/p99/max,
commands confirmed, 3D frames/s.

A probe timer asks to fire every 5 ms; a stall is how late it fires (wall clock).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amt_core.train.control import Command
from amt_studio.state.status import RunStatus

SOAK_WARM_UP_S = 60.0
"""Seconds of the soak (after the first snapshot; at most a quarter of a short soak) before the baselines of RSS
and None refcount are taken: the first plots, curves, validation series and snapshot caches fill then. The None
refcount's baseline and final figure are taken right after a full garbage collection (uncollected cycles hold
references to None: without it the count wanders by thousands); the samples in between show the trend (a PySide6
that drops references falls steadily)."""
SOAK_CADENCE = [
    "trainer.log_every=1",
    "trainer.diag_every=3",
    "trainer.snapshot_every=5",
    "trainer.ckpt_every=10",
    "trainer.eval_every=15",
    "trainer.eval_samples=8",
    "trainer.keep_checkpoints=4",
]
LONG_STAGES = [f"stages.{i}.steps=100000" for i in range(3)]


def open_bench_window(work: Path):
    """(app, window): the studio's main window on settings kept in `work`, shown at a fixed size, stopping its
    trainer on close without asking."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from amt_studio.views.theme import apply_theme
    from amt_studio.window import MainWindow

    app = QApplication.instance() or QApplication([])
    apply_theme(app)
    settings = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, show_dialogs=False)
    window.ask_live_run = lambda: "stop"
    window.resize(1500, 920)
    window.show()
    return app, window


def pump_events_until(app, condition, timeout_s: float) -> bool:
    """Process Qt events until `condition()` holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.005)
    return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to watch the training run")
    parser.add_argument("--frames", type=int, default=60, help="frames rendered for the frames/s figure")
    parser.add_argument("--size", type=int, default=512, help="3D panel size in pixels (square)")
    parser.add_argument("--preset", default="micro", help="trainer preset of the background run")
    parser.add_argument(
        "--soak",
        type=float,
        metavar="MINUTES",
        help="soak the window this many minutes against a live run steered through pause, stages and rollbacks",
    )
    parser.add_argument("--work-dir", type=Path, help="where the run and the soak's samples go (default: a temp dir)")


def _shape(frame) -> str:  # noqa: ANN001 (a render.raycast.Frame)
    """WIDTHxHEIGHT a frame was cast at (an orbiting camera's frames are cast smaller, then scaled up)."""
    return "" if frame is None else f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}"


def _still_frames_ms(scene, count: int) -> list[float]:  # noqa: ANN001 (a views.scene3d.Scene3DView)
    """Milliseconds of full-resolution frames, the sharp frame shown once the camera rests."""
    width, height = scene.render_size()
    times = []
    for _ in range(count):
        begin = time.perf_counter()
        scene.renderer.render(scene.camera, width, height)
        times.append((time.perf_counter() - begin) * 1000.0)
    return times


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def rss_mb() -> float:
    """Resident memory of this process, MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def first_paint_s() -> float:
    """Seconds from launching `amt-studio` to its window's first paint, measured in a fresh process."""
    from amt_core.errors import UserError

    env = dict(os.environ)
    if not env.get("DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = subprocess.run(
        [sys.executable, "-m", "amt_studio", "--first-paint"], capture_output=True, text=True, env=env, timeout=120
    )
    for line in out.stdout.splitlines():
        if line.startswith("first_paint_s "):
            return float(line.split()[1])
    raise UserError(f"bench studio: amt-studio --first-paint printed no figure: {out.stderr[-500:]}")


def run(args: argparse.Namespace) -> dict:
    from amt_core.errors import UserError

    if args.seconds <= 0 or args.frames < 1 or not 64 <= args.size <= 2048:
        raise UserError("bench studio: --seconds > 0, --frames >= 1 and --size in [64, 2048]")
    if args.soak is not None and not 0.5 <= args.soak <= 24 * 60:
        raise UserError(f"bench studio: --soak takes minutes in [0.5, 1440], got {args.soak}")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="amt-bench-studio-"))
    work.mkdir(parents=True, exist_ok=True)
    paint = first_paint_s()
    if args.soak is None:
        result = _watch(args, work)
    else:
        result = soak(args.soak, work, preset=args.preset, size=args.size)
    return {"first_paint_s": paint, **result}


# ---- the soak: a child process runs the window; the parent reports even when it dies ------------------------------


def soak(minutes: float, work: Path, preset: str = "micro", size: int = 512) -> dict:
    """Run the soak in a child process and summarise its samples (a crash is a figure, not an exception)."""
    samples_path = work / "soak-samples.jsonl"
    result_path = work / "soak-result.json"
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    if not env.get("DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    argv = [sys.executable, "-m", "amt_studio.bench", "--soak-child", str(minutes), str(work), preset, str(size)]
    log_path = work / "soak-window.log"
    with open(log_path, "wb") as log:
        child = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=minutes * 60 + 900)
    _stop_orphan(work / "run")
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    crashed = child.returncode != 0 or not result
    samples = [json.loads(line) for line in samples_path.read_text().splitlines()] if samples_path.exists() else []
    summary = {
        "soak_minutes": minutes,
        "crashes": int(crashed),
        "exit_code": child.returncode,
        "samples": len(samples),
        **result,
    }
    if crashed:
        summary["crash_log_tail"] = log_path.read_bytes()[-1500:].decode("utf-8", "replace")
        summary.update(_refcount_and_rss(samples, warm_up_s(minutes)))
    return summary


def _stop_orphan(run_dir: Path) -> None:
    """Terminate the soak's trainer if the window died without stopping it (it runs in its own session)."""
    import signal

    from amt_core.train.rundir import read_lock, run_is_live

    lock = read_lock(run_dir)
    if lock and run_is_live(run_dir):
        os.kill(int(lock["pid"]), signal.SIGTERM)


def warm_up_s(minutes: float) -> float:
    return min(SOAK_WARM_UP_S, 0.25 * minutes * 60.0)


def _refcount_and_rss(samples: list[dict], warm_up: float = SOAK_WARM_UP_S) -> dict:
    """None refcount drift (between the collected baseline and end samples, else the medians of the first and last
    ten) and RSS growth (medians of the first and last ten samples after the warm-up)."""
    import numpy as np

    steady = [s for s in samples if s["t"] >= warm_up] or samples
    if len(steady) < 2:
        return {}
    head, tail = steady[:10], steady[-10:]
    collected = [s for s in samples if s.get("collected")]
    if len(collected) >= 2:
        none_start, none_end = float(collected[0]["none_refs"]), float(collected[-1]["none_refs"])
    else:
        none_start = float(np.median([s["none_refs"] for s in head]))
        none_end = float(np.median([s["none_refs"] for s in tail]))
    span_min = max((tail[-1]["t"] - head[0]["t"]) / 60.0, 1e-9)
    rss_start = float(np.median([s["rss_mb"] for s in head]))
    rss_end = float(np.median([s["rss_mb"] for s in tail]))
    return {
        "none_refs_start": none_start,
        "none_refs_end": none_end,
        "none_drift": none_end - none_start,
        "none_refs_lowest": float(min(s["none_refs"] for s in steady)),
        "none_drift_per_min": (none_end - none_start) / span_min,
        "rss_mb_start": rss_start,
        "rss_mb_end": rss_end,
        "rss_growth_mb": rss_end - rss_start,
    }


def _soak_child(minutes: float, work: Path, preset: str, size: int) -> int:
    """The window under test: start the run, steer it, sample, write soak-result.json. Runs in its own process."""
    # long: one script in time order; the timer callbacks share the counters it reports, as closures
    from PySide6.QtCore import QElapsedTimer, QTimer

    from amt_studio.session import trainer_argv

    app, window = open_bench_window(work)
    run_dir = work / "run"
    argv = trainer_argv(preset=preset, run_dir=run_dir, overrides=LONG_STAGES + SOAK_CADENCE)
    session = window.start_run(argv, run_dir)
    if session is None:
        print(f"soak: the trainer did not start: {window.notifier.history[-1].message}", file=sys.stderr)
        return 3
    state = session.state

    pump_until = functools.partial(pump_events_until, app)

    if not pump_until(lambda: len(state.snapshots) >= 1 or state.state == RunStatus.FAILED, 300):
        print("soak: no snapshot from the trainer within 5 minutes", file=sys.stderr)
        return 3
    stalls: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]
    probe = QTimer()
    probe.setInterval(5)

    def on_probe() -> None:
        now = clock.nsecsElapsed()
        stalls.append(max(0.0, (now - last[0]) / 1e6 - 5.0))
        last[0] = now

    probe.timeout.connect(on_probe)
    probe.start()
    scene = window.snapshots.scene
    frame_ms: list[float] = []
    still_ms: list[float] = []
    motion_px = [""]
    commands = {"sent": 0, "confirmed": 0, "failed": 0}
    pending: list[tuple[str, float, object]] = []  # (what, deadline, confirmation check)
    samples_file = open(work / "soak-samples.jsonl", "w")  # noqa: SIM115 (closed below)
    start = time.monotonic()
    next_sample = next_action = start
    next_frames = start + 10.0
    plan = _steering_plan()
    ticks_at_start = len(window.tick_ms)
    tick_count = [0]
    window.timer.timeout.connect(lambda: tick_count.__setitem__(0, tick_count[0] + 1))
    step_max = 0
    baseline_taken = False

    def write_sample(now: float, collected: bool = False) -> None:
        if collected:  # a full collection takes a while: it is not a stall of the studio's own making
            probe.stop()
            gc.collect()
        sample = {
            "t": now - start,
            "none_refs": sys.getrefcount(None),
            "rss_mb": rss_mb(),
            "step": state.step,
            "state": state.state,
            "visible": window.isVisible(),
            "ticks": tick_count[0],
            "collected": collected,
        }
        samples_file.write(json.dumps(sample) + "\n")
        samples_file.flush()
        if collected:
            last[0] = clock.nsecsElapsed()
            probe.start()

    while time.monotonic() - start < minutes * 60.0:
        app.processEvents()
        time.sleep(0.002)
        now = time.monotonic()
        step_max = max(step_max, state.step)
        if now >= next_sample:
            next_sample += 1.0
            collect = not baseline_taken and now - start >= warm_up_s(minutes)
            baseline_taken = baseline_taken or collect
            write_sample(now, collected=collect)
        for item in list(pending):
            what, deadline, check = item
            if check():
                commands["confirmed"] += 1
                pending.remove(item)
            elif now > deadline:
                commands["failed"] += 1
                print(f"soak: '{what}' not confirmed in time (state {state.state}, stage {state.stage})", flush=True)
                pending.remove(item)
        if now >= next_action and not pending and state.is_live:
            what, check = next(plan)(window, state)
            if what:
                commands["sent"] += 1
                pending.append((what, now + 120.0, check))
            next_action = now + 6.0
        if now >= next_frames and scene.renderer.layers:  # the 3D panel at the asked size, orbiting
            next_frames = now + 30.0
            probe.stop()  # back-to-back frames on purpose are not a stall of the window's own making
            scene.setFixedSize(size, size)
            for _ in range(10):
                scene.camera.orbit(4.0, 1.0)
                begin = time.perf_counter()
                scene.render_now()
                frame_ms.append((time.perf_counter() - begin) * 1000.0)
            motion_px[0] = _shape(scene.frame)
            still_ms.extend(_still_frames_ms(scene, 2))
            scene.setMinimumSize(240, 240)
            scene.setMaximumSize(16777215, 16777215)
            app.processEvents()
            last[0] = clock.nsecsElapsed()
            probe.start()
    write_sample(time.monotonic(), collected=True)
    probe.stop()
    samples_file.close()
    alive = window.isVisible() and tick_count[0] > 0
    ticks = list(window.tick_ms)
    samples = [json.loads(line) for line in (work / "soak-samples.jsonl").read_text().splitlines()]
    errors = [n.title + ": " + n.message for n in window.notifier.history]
    result = {
        "window_alive": alive,
        "trainer_state": state.state,
        "trainer_steps_max": step_max,
        "events_applied": state.events_seen,
        "rollbacks": len(state.rollbacks),
        "commands_sent": commands["sent"],
        "commands_confirmed": commands["confirmed"],
        "commands_failed": commands["failed"],
        "notices": errors[:5],
        "stall_ms_p50": _percentile(stalls, 50),
        "stall_ms_p99": _percentile(stalls, 99),
        "stall_ms_max": max(stalls) if stalls else float("nan"),
        "tick_ms_p99": _percentile(ticks[ticks_at_start:] or ticks, 99),
        "panel_fps": 1000.0 / _percentile(frame_ms, 50) if frame_ms else float("nan"),
        "frame_ms_p99": _percentile(frame_ms, 99),
        "panel_px": f"{size}x{size}",
        "orbit_frame_px": motion_px[0],
        "still_frame_ms_p50": _percentile(still_ms, 50) if still_ms else float("nan"),
        "cpu_cores": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        **_refcount_and_rss(samples, warm_up_s(minutes)),
    }
    window.close()
    (work / "soak-result.json").write_text(json.dumps(result, indent=2, default=float))
    return 0


def _steering_plan():
    """What the soak asks of the trainer, in a loop: each item sends one command through the window and returns
    (what, a check that the trainer confirmed it)."""

    def pause(window, state):
        window.send(Command.PAUSE)
        return "pause", lambda: state.state == RunStatus.PAUSED

    def resume(window, state):
        window.send(Command.RESUME)
        return "resume", lambda: state.state == RunStatus.RUNNING

    def stage(target: int):
        def switch(window, state):
            window.switch_stage(target)
            return f"stage {target}", lambda: state.stage == target

        return switch

    def rollback(window, state):
        # the second newest checkpoint: the run goes back a few steps and branches
        if len(state.checkpoints) < 2:
            return "", lambda: True
        target = sorted(state.checkpoints, key=lambda c: c.step)[-2]
        before = len(state.rollbacks)
        window.send(Command.ROLLBACK, target.name)
        return f"rollback {target.name}", lambda: len(state.rollbacks) > before

    def snapshot(window, state):
        count = len(state.snapshots)
        window.send(Command.SNAPSHOT)
        return "snapshot", lambda: len(state.snapshots) > count

    cycle = [pause, resume, stage(2), snapshot, rollback, stage(3), pause, stage(1), resume, rollback]
    while True:
        yield from cycle


# ---- the short benchmark: fps and stalls over --seconds ---------------------------------------------------------


def _watch(args: argparse.Namespace, work: Path) -> dict:
    """The paint/fps bench: a live micro run watched by the real window; frames/s and stall percentiles."""
    # long: one script in time order; the timer callbacks share the samples it reports, as closures
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QTimer

    from amt_core.errors import UserError
    from amt_studio.session import trainer_argv

    app, window = open_bench_window(work)
    cadence = ["trainer.snapshot_every=5", "trainer.diag_every=5", "trainer.ckpt_every=50"]
    argv = trainer_argv(preset=args.preset, run_dir=work / "run", overrides=LONG_STAGES + cadence)
    session = window.start_run(argv, work / "run")
    if session is None:
        raise UserError(f"bench studio: the trainer did not start: {window.notifier.history[-1].message}")

    pump_until = functools.partial(pump_events_until, app)

    try:
        if not pump_until(lambda: len(session.state.snapshots) >= 1 or session.state.state == RunStatus.FAILED, 300):
            raise UserError("bench studio: no snapshot from the trainer within 5 minutes")
        if session.state.state == RunStatus.FAILED:
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
        orbit_px = _shape(scene.frame)
        still_ms = _still_frames_ms(scene, 5)
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
        "orbit_frame_px": orbit_px,
        "still_frame_ms_p50": _percentile(still_ms, 50),
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


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--soak-child":
    sys.exit(_soak_child(float(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])))
