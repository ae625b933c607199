"""The Run panel (the window's right dock): the run's name and folder, its last error, its checkpoints newest first,
and the buttons that roll back to the selected checkpoint or open it in the inspector.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from amt_studio.state.run import CheckpointInfo
from amt_studio.views import theme


class RunPanel(QWidget):
    """The dock's contents; the window connects `rollback_button` and `inspect_button` to what they do."""

    def __init__(self) -> None:
        super().__init__()
        self.checkpoint_list = QListWidget()
        self.rollback_button = QPushButton("Roll back to selected")
        self.inspect_button = QPushButton("Inspect selected")
        self.run_label = QLabel("no run")
        self.run_label.setWordWrap(True)
        self.error_label = QLabel("")
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.run_label)
        layout.addWidget(self.error_label)
        title = QLabel("Checkpoints")
        title.setObjectName("title")
        layout.addWidget(title)
        layout.addWidget(self.checkpoint_list, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.rollback_button)
        buttons.addWidget(self.inspect_button)
        layout.addLayout(buttons)

    def show_run(self, run_dir: Path) -> None:
        """A new run: its name and folder, no error yet."""
        self.run_label.setText(f"<b>{run_dir.name}</b><br><span style='color:{theme.MUTED}'>{run_dir}</span>")
        self.error_label.hide()

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()

    def fill(self, checkpoints: Iterable[CheckpointInfo]) -> None:
        """List these checkpoints, newest first, the newest selected."""
        self.checkpoint_list.clear()
        for info in reversed(list(checkpoints)):
            item = QListWidgetItem(f"{info.name}   step {info.step}")
            item.setData(Qt.ItemDataRole.UserRole, info.name)
            self.checkpoint_list.addItem(item)
        if self.checkpoint_list.count():
            self.checkpoint_list.setCurrentRow(0)

    def has_checkpoints(self) -> bool:
        return self.checkpoint_list.count() > 0

    def selected_checkpoint(self) -> str | None:
        item = self.checkpoint_list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def enable(self, rollback: bool) -> None:
        """Roll back as the window's control says; inspect whenever there is a checkpoint."""
        self.rollback_button.setEnabled(rollback)
        self.inspect_button.setEnabled(self.has_checkpoints())
