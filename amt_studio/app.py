"""`amt-studio`: start the desktop app (optionally attached to a run directory given on the command line)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amt-studio", description="AMT Studio: watch, steer and inspect AMT training."
    )
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run directory to attach to (live or finished)")
    parser.add_argument("--inspect", type=Path, metavar="CKPT", help="open a checkpoint in the inspector")
    parser.add_argument(
        "--first-paint",
        action="store_true",
        help="print the seconds from launch to the window's first paint, then quit (what bench studio measures)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from amt_studio.views.theme import apply_theme
    from amt_studio.window import APPLICATION, ORGANIZATION, MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setDesktopFileName("amt-studio")
    from amt_core.paths import ASSETS_DIR

    app.setWindowIcon(QIcon(str(ASSETS_DIR / "icons" / "amt-studio.svg")))
    apply_theme(app)
    window = MainWindow()
    window.warm_up = not args.first_paint  # quitting while Open3D loads would print its allocator report
    window.show()
    if args.first_paint:
        from PySide6.QtCore import QTimer

        def report() -> None:
            if window.first_paint_s is None:
                QTimer.singleShot(5, report)
                return
            print(f"first_paint_s {window.first_paint_s:.3f}", flush=True)
            app.quit()

        QTimer.singleShot(0, report)
        return app.exec()
    if args.run_dir is not None:
        window.attach(args.run_dir)
    if args.inspect is not None:
        window.tabs.setCurrentWidget(window.inspect)
        window.inspect.open_checkpoint(args.inspect)
    return exit_now(app.exec())


def exit_now(code: int) -> int:
    """Leave as soon as the window has closed. Everything that must outlive it is on disk by then (settings and
    recent runs are synced on close; a trainer runs in its own process, a stop is handed to a detached stopper), and
    the worker threads only read. A normal exit would still join those threads (one may be mid-way through loading a
    snapshot while the warm-up imports torch) and tear down torch and Open3D: 2-9 s measured here with the window
    already gone."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
