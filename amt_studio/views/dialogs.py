"""Dialogs: a new run (preset, data, stage plan, run directory) and choosing what to do with a live run on close.

The presets (which import torch) are read when the dialog opens, never when the window module is imported; presets
that need a device this machine lacks (CUDA) are not offered.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from amt_core.train.kinds import Device
from amt_studio.session import trainer_argv

DEFAULT_RUNS_DIR = Path.home() / "amt-runs"


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (torch is imported here, when a dialog needs the answer)."""
    import torch

    return bool(torch.cuda.is_available())


def runnable_presets(has_cuda: bool) -> list[str]:
    """Presets this machine can run: those whose trainer device is 'cuda' only where CUDA is available."""
    from amt_core.presets import get_preset, list_presets

    return [name for name in list_presets() if has_cuda or get_preset(name).trainer.device != Device.CUDA]


class NewRunDialog(QDialog):
    """Collects a trainer command line; `argv()` and `run_dir()` give the result."""

    def __init__(
        self, parent: QWidget | None = None, runs_dir: Path = DEFAULT_RUNS_DIR, has_cuda: bool | None = None
    ) -> None:
        super().__init__(parent)
        self.has_cuda = cuda_available() if has_cuda is None else has_cuda
        self.setWindowTitle("New training run")
        self.setMinimumWidth(520)
        form = QFormLayout(self)
        self.preset = QComboBox()
        self.preset.addItems(runnable_presets(self.has_cuda))
        self.preset.setCurrentText("dinov2_s" if self.has_cuda else "cpu")
        if not self.has_cuda:
            self.preset.setToolTip("GPU presets (dinov2_*) are hidden: torch sees no CUDA device on this machine")
        self.data = QLineEdit()
        self.data.setPlaceholderText("preset's data, e.g. synth:live?seed=0&size=128")
        self.stage_steps = [QSpinBox() for _ in range(3)]
        stages_row = QHBoxLayout()
        for i, box in enumerate(self.stage_steps):
            box.setRange(0, 10_000_000)
            box.setPrefix(f"stage {i + 1}: ")
            box.setSuffix(" steps")
            box.setSpecialValueText(f"stage {i + 1}: preset")
            stages_row.addWidget(box)
        self.max_steps = QSpinBox()
        self.max_steps.setRange(0, 100_000_000)
        self.max_steps.setSpecialValueText("until the last stage ends")
        self.overrides = QLineEdit()
        self.overrides.setPlaceholderText("more --set key=value, separated by spaces (e.g. trainer.log_every=5)")
        self.run_dir_edit = QLineEdit(str(runs_dir / time.strftime("run-%Y%m%d-%H%M%S")))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        dir_row = QHBoxLayout()
        dir_row.addWidget(self.run_dir_edit)
        dir_row.addWidget(browse)
        form.addRow("Preset", self.preset)
        form.addRow("Data", self.data)
        form.addRow("Stage plan", stages_row)
        form.addRow("Max steps", self.max_steps)
        form.addRow("Overrides", self.overrides)
        form.addRow("Run directory", dir_row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Start training")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.preset.currentTextChanged.connect(self._preset_changed)
        self._preset_changed(self.preset.currentText())

    def _preset_changed(self, name: str) -> None:
        from amt_core.presets import get_preset

        config = get_preset(name)
        self.data.setPlaceholderText(config.data)
        for box, stage in zip(self.stage_steps, config.stages):
            box.setSpecialValueText(f"{stage.name}: {stage.steps or stage.epochs} {'steps' if stage.steps else 'ep'}")

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Run directory", str(Path(self.run_dir_edit.text()).parent))
        if folder:
            self.run_dir_edit.setText(str(Path(folder) / time.strftime("run-%Y%m%d-%H%M%S")))

    def run_dir(self) -> Path:
        return Path(self.run_dir_edit.text()).expanduser()

    def argv(self) -> list[str]:
        steps = tuple(box.value() for box in self.stage_steps)
        return trainer_argv(
            preset=self.preset.currentText(),
            run_dir=self.run_dir(),
            data=self.data.text().strip() or None,
            stage_steps=steps if any(steps) else None,
            max_steps=self.max_steps.value() or None,
            overrides=self.overrides.text().split(),
        )
