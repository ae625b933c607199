"""One notifier for every error the app meets (trainer crash, refused command, failed worker): it logs the error,
shows it in a non-modal dialog with the traceback, and keeps the app usable.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget


@dataclass(kw_only=True)
class Notice:
    title: str
    message: str
    details: str = ""


class Notifier(QObject):
    """Reports errors without blocking: `error()` opens (or updates) one non-modal message box."""

    raised = Signal(object)  # Notice

    def __init__(self, parent: QWidget | None = None, show_dialogs: bool = True) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.show_dialogs = show_dialogs
        self.history: list[Notice] = []
        self.box: QMessageBox | None = None

    def error(self, title: str, message: str, details: str = "") -> None:
        notice = Notice(title=title, message=message, details=details)
        self.history.append(notice)
        self.raised.emit(notice)
        if not self.show_dialogs:
            return
        if self.box is None:
            self.box = QMessageBox(self.parent_widget)
            self.box.setIcon(QMessageBox.Icon.Critical)
            self.box.setModal(False)
        self.box.setWindowTitle(title)
        self.box.setText(message)
        self.box.setDetailedText(details)
        self.box.show()

    def exception(self, title: str, err: BaseException) -> None:
        import traceback

        details = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        self.error(title, f"{type(err).__name__}: {err}", details)
