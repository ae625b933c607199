"""Shared pytest setup. Qt only: GUI tests run offscreen (or on the display that is there), never on a user's screen
settings; nothing here touches tests that do not use Qt.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Before any QApplication exists: without a display, Qt's offscreen platform renders widgets in memory.
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def qt_settings(tmp_path):
    """A QSettings in a temporary INI file, so GUI tests never read or change the user's settings."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "studio-settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(scope="module")
def micro():
    """amt_micro in eval mode, seeded, built on one thread (attention tests patch copies of it)."""
    import torch

    from amt_core.models import create_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield create_model("amt_micro").eval()
    torch.set_num_threads(threads)
