"""`amt-studio`: start the desktop app (optionally attached to a run directory given on the command line)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amt-studio", description="AMT Studio: watch, steer and inspect AMT training."
    )
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run directory to attach to (live or finished)")
    parser.add_argument("--inspect", type=Path, metavar="CKPT", help="open a checkpoint in the inspector")
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
    icon = Path(__file__).resolve().parent / "resources" / "amt-studio.svg"
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    apply_theme(app)
    window = MainWindow()
    window.show()
    if args.run_dir is not None:
        window.attach(args.run_dir)
    if args.inspect is not None:
        window.tabs.setCurrentWidget(window.inspect)
        window.inspect.open_checkpoint(args.inspect)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
