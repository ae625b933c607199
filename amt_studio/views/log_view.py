"""The log view: the run's log lines (events, commands, trainer output), coloured by level, newest at the bottom."""

from __future__ import annotations

import html
import time

from PySide6.QtWidgets import QPlainTextEdit, QWidget

from amt_studio.state.run import LogLine
from amt_studio.views import theme

_COLOURS = {"info": theme.TEXT, "warning": theme.WARNING, "error": theme.ERROR}
MAX_LINES = 5000


class LogView(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_LINES)
        self.setStyleSheet("font-family: monospace; font-size: 9pt;")
        self.lines: list[LogLine] = []
        """The lines shown (the newest MAX_LINES, like the text: a run of days does not grow the window)."""

    def add(self, line: LogLine) -> None:
        self.lines.append(line)
        if len(self.lines) > 2 * MAX_LINES:
            del self.lines[:-MAX_LINES]
        stamp = time.strftime("%H:%M:%S", time.localtime(line.time))
        step = f"[{line.step:>6}] " if line.step is not None else " " * 9
        colour = _COLOURS.get(line.level, theme.TEXT)
        text = html.escape(line.text).replace("\n", "<br>")
        self.appendHtml(
            f'<span style="color:{theme.MUTED}">{stamp} {step}</span><span style="color:{colour}">{text}</span>'
        )

    def clear_lines(self) -> None:
        self.lines.clear()
        self.clear()
