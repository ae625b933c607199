"""The start page: what to do first (new run on the CPU preset, attach, inspect) and the runs this studio knows,
live ones marked with their step and state; a double click (or Attach) opens one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from amt_studio.state.registry import RunSummary, summarize_run
from amt_studio.state.status import RunStatus
from amt_studio.views import theme

REFRESH_MS = 2000
WELCOME = f"""<h2 style='color:{theme.TEXT}'>AMT Studio</h2>
<p style='color:{theme.MUTED}'>Train the Advanced Manipulation Transformer and watch it learn, or inspect a checkpoint.
No data and no GPU needed: a synthetic hand-object world renders training images on the fly.</p>
<ol style='color:{theme.TEXT}'>
<li><b>New run</b> (Ctrl+N): pick the <b>cpu</b> preset. On a 2-core CPU it validates first at step 20 (within
a minute), then every 100 steps, against the mean pose's error; after about 5 minutes its held-out error is about
three quarters of the mean pose's (77 against 107 mm here). The trainer runs in its own process: closing the window
can leave it training, and this page finds it again.</li>
<li><b>Attach</b> (Ctrl+O): watch a run directory written by <code>amt-core train</code>, live or finished.</li>
<li><b>Inspect</b>: open a checkpoint, run it on samples or image files, compare with the truth in 3D.</li>
</ol>"""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h ago"
    return time.strftime("%Y-%m-%d", time.localtime(time.time() - seconds))


class StartPage(QWidget):
    """`runs` returns the run directories to list (the window's recent and discovered runs), newest first."""

    COLUMNS = ("", "run", "state", "step", "preset", "last event", "folder")

    def __init__(self, runs: Callable[[], list[Path]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._runs = runs
        self.summaries: list[RunSummary] = []
        welcome = QLabel(WELCOME)
        welcome.setWordWrap(True)
        welcome.setTextFormat(Qt.TextFormat.RichText)
        self.new_button = QPushButton("New run…")
        self.attach_button = QPushButton("Attach…")
        self.inspect_button = QPushButton("Inspect a checkpoint…")
        self.open_button = QPushButton("Open selected run")
        self.compare_button = QPushButton("Compare with the current run")
        buttons = QHBoxLayout()
        for button in (self.new_button, self.attach_button, self.inspect_button):
            button.setMinimumHeight(32)
            buttons.addWidget(button)
        buttons.addStretch(1)
        title = QLabel("Runs (live ones first; double-click to open)")
        title.setObjectName("title")
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.empty = QLabel("No runs yet. Start one with New run, or attach to a run directory.")
        self.empty.setObjectName("title")
        row_buttons = QHBoxLayout()
        row_buttons.addWidget(self.open_button)
        row_buttons.addWidget(self.compare_button)
        row_buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 16, 24, 16)
        layout.addWidget(welcome)
        layout.addLayout(buttons)
        layout.addSpacing(12)
        layout.addWidget(title)
        layout.addWidget(self.empty)
        layout.addWidget(self.table, 1)
        layout.addLayout(row_buttons)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    def refresh(self) -> None:
        """Summarise every known run again (a few small file reads each); live runs go first."""
        if not self.isVisible() and self.summaries:
            return
        summaries = [s for s in (summarize_run(path) for path in self._runs()) if s is not None]
        summaries.sort(key=lambda s: (not s.live, -(s.last_time or 0.0)))
        selected = self.selected_run()
        self.summaries = summaries
        self.table.setRowCount(len(summaries))
        for row, summary in enumerate(summaries):
            cells = (
                "●" if summary.live else "",
                summary.run_dir.name,
                ("live · " if summary.live else "") + summary.state,
                str(summary.step),
                summary.preset,
                _age(summary.age_s),
                str(summary.run_dir.parent),
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, str(summary.run_dir))
                if summary.live and col in (0, 2):
                    item.setForeground(QColor(theme.OK))
                elif summary.state in (RunStatus.FAILED, RunStatus.ENDED):
                    item.setForeground(QColor(theme.ERROR if summary.state == RunStatus.FAILED else theme.MUTED))
                if col == 3:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
            if selected is not None and summary.run_dir == selected:
                self.table.selectRow(row)
        self.empty.setVisible(not summaries)
        self.table.setVisible(bool(summaries))
        self.open_button.setEnabled(bool(summaries))
        self.compare_button.setEnabled(bool(summaries))

    def selected_run(self) -> Path | None:
        row = self.table.currentRow()
        if not 0 <= row < self.table.rowCount() or self.table.item(row, 1) is None:
            return None
        return Path(self.table.item(row, 1).data(Qt.ItemDataRole.UserRole))

    def row_of(self, run_dir: Path) -> int:
        """The table row showing `run_dir`, or -1."""
        for row, summary in enumerate(self.summaries):
            if summary.run_dir.resolve() == Path(run_dir).resolve():
                return row
        return -1

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self.refresh()
