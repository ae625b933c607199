"""The studio's dark theme: a Fusion palette, a small style sheet and pyqtgraph's colours, applied once at start."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

BACKGROUND = "#15171c"
PANEL = "#1d2027"
TEXT = "#d7dae0"
MUTED = "#8a90a0"
ACCENT = "#f29e5c"
WARNING = "#f0c040"
ERROR = "#ff5c5c"
OK = "#6cc46c"

# Curve colours: a qualitative set of ten, distinct on the dark background (after Tableau 10, lightened); a plot gives
# each of its series the next unused one, so no colour repeats inside a plot of up to ten series.
CURVE_COLORS = (
    "#4e9de6",
    "#f29e5c",
    "#6cc46c",
    "#e06c9f",
    "#b38cf0",
    "#3fc1c9",
    "#f0c040",
    "#c49c6c",
    "#a6d854",
    "#f2f2f2",
)
REFERENCE = "#a0a4ac"
"""Reference lines (a constant predictor's error): grey, dashed."""

STYLE_SHEET = f"""
QMainWindow, QDialog {{ background: {BACKGROUND}; }}
QDockWidget::title {{ background: {PANEL}; padding: 4px 8px; color: {MUTED}; }}
QToolBar {{ background: {PANEL}; border: 0; spacing: 4px; padding: 3px; }}
QToolButton {{ padding: 4px 9px; border-radius: 4px; color: {TEXT}; }}
QToolButton:hover {{ background: #2b303a; }}
QToolButton:checked {{ background: #394050; }}
QToolButton:disabled {{ color: #555b68; }}
QStatusBar {{ background: {PANEL}; color: {MUTED}; }}
QStatusBar QLabel {{ padding: 0 8px; }}
QPlainTextEdit, QTextEdit, QListWidget, QTableWidget {{ background: #121419; border: 1px solid #262a33; }}
QTabBar::tab {{ background: {PANEL}; color: {MUTED}; padding: 6px 16px; border: 0; }}
QTabBar::tab:selected {{ color: {TEXT}; border-bottom: 2px solid {ACCENT}; }}
QLabel#warning {{ background: #4a3a10; color: {WARNING}; padding: 4px 10px; border-radius: 4px; font-weight: bold; }}
QLabel#error {{ background: #4a1616; color: {ERROR}; padding: 4px 10px; border-radius: 4px; font-weight: bold; }}
QLabel#title {{ color: {MUTED}; font-weight: bold; }}
"""


def apply_theme(app: QApplication) -> None:
    """Dark Fusion palette plus the style sheet, and pyqtgraph's default colours to match."""
    import pyqtgraph as pg

    app.setStyle("Fusion")
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: BACKGROUND,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: "#121419",
        QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: PANEL,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.Highlight: "#3d6fb0",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: MUTED,
    }
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#555b68"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor("#555b68"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#555b68"))
    app.setPalette(palette)
    app.setStyleSheet(STYLE_SHEET)
    # No antialiasing: with ~30 loss curves, antialiased paths made one plot repaint take up to 90 ms on a 2-core CPU
    # (event-loop stall p99 56-61 ms); without it the p99 is 35-38 ms (`amt-core bench studio`), and 1-px lines look
    # the same at plot sizes.
    pg.setConfigOptions(background=BACKGROUND, foreground=MUTED, antialias=False)
