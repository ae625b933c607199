"""Shared pytest setup: GUI tests run offscreen (or on the display that is there), never on a user's screen settings;
and the fixtures several test files use (one thread, the micro model, a micro run, the old checkpoint), each made only
where a test asks for it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

OFFSCREEN_SCREENS = {
    "screens": [
        {"name": "desktop", "x": 0, "y": 0, "width": 1920, "height": 1080, "logicalDpi": 96},
        {"name": "laptop", "x": 1920, "y": 0, "width": 1280, "height": 800, "logicalDpi": 96},
    ]
}
"""The offscreen platform's screens: a 1920x1080 desktop (primary) and a 1280x800 laptop beside it, so layout tests
put the window on the screen size they test."""


def pytest_configure(config: pytest.Config) -> None:
    # Before any QApplication exists: without a display, Qt's offscreen platform renders widgets in memory.
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        screens = Path(tempfile.mkdtemp(prefix="amt-qt-screens-")) / "screens.json"
        screens.write_text(json.dumps(OFFSCREEN_SCREENS))
        os.environ.setdefault("QT_QPA_PLATFORM", f"offscreen:configfile={screens}")


@pytest.fixture
def qt_settings(tmp_path):
    """A QSettings in a temporary INI file, so GUI tests never read or change the user's settings."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "studio-settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests: the CPU is shared by parallel jobs, and two threads fighting for
    two cores are slower than one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def micro(one_thread):
    """amt_micro on the scratch ViT (the GPU presets' backbone family; the micro preset's own trunk is convolutional) in
    eval mode, seeded, on one thread: the attention tests patch copies of its timm blocks."""
    import torch

    from amt_core.models import create_model

    torch.manual_seed(0)
    return create_model("amt_micro", **{"backbone.variant": "scratch", "backbone.depth": 4}).eval()


def _reassemble_checkpoint(stored_name: str, folder):
    """A stored checkpoint folder put back together: tests/data/<stored_name> keeps its weights without the hand
    layer's buffers (2.9 MB of constants, equal to the shipped open hand's, checked when it was trimmed), which are
    put back here from the asset, under the same names and with the file's metadata, so the folder is the one the
    trainer wrote."""
    import shutil
    from pathlib import Path

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from amt_core.hand.model import HandModel

    stored = Path(__file__).parent / "data" / stored_name
    folder.mkdir()
    for name in ("config.json", "state.pt", "expected.npz"):
        shutil.copy(stored / name, folder / name)
    trimmed = stored / "weights_without_hand.safetensors"
    with safe_open(str(trimmed), framework="pt") as handle:
        metadata = handle.metadata()
    weights = load_file(trimmed)
    weights.update({f"hand_layer.{k}": v.contiguous() for k, v in HandModel().state_dict().items()})
    save_file(weights, folder / "model.safetensors", metadata=metadata)
    return folder


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    """A micro run of one step, trained through the CLI: a checkpoint for predict and eval."""
    from amt_core.cli import main

    folder = tmp_path_factory.mktemp("micro") / "run"
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder)]) == 0
    return folder


@pytest.fixture(scope="session")
def old_checkpoint(tmp_path_factory):
    """The checkpoint folder written before the first architecture refactor (commit 0d8374c, `amt-core train
    --preset micro`, step 0)."""
    return _reassemble_checkpoint("checkpoint_v1", tmp_path_factory.mktemp("old") / "step_00000000")


@pytest.fixture(scope="session")
def checkpoint_before_trainstate(tmp_path_factory):
    """The checkpoint folder written before the trainer's second architecture step (TrainState, a checkpointer given
    named parts; commit 15f4627, `amt-core train --preset micro --max-steps 2`, step 0). Its expected.npz holds the
    predictions of that checkpoint (`initial_*`) and of the step-2 checkpoint the old trainer wrote when it resumed
    from it (`resumed_*`), which an uninterrupted old run matched bit for bit."""
    return _reassemble_checkpoint("checkpoint_v2", tmp_path_factory.mktemp("v2") / "step_00000000")
