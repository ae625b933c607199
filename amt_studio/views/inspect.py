"""The inspector tab: open a checkpoint, take dataset samples or image files, run the model on a worker thread, and
see the 3D scene, the image with skeletons and attention, and per-sample errors; export meshes and screenshots.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from amt_studio.state.snapshot import SnapshotData
from amt_studio.views.image_view import ImageOverlayView
from amt_studio.views.notifier import Notifier
from amt_studio.views.scene3d import Scene3DView

SAMPLES_PER_LOAD = 8


class InspectPanel(QWidget):
    def __init__(self, notifier: Notifier, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.notifier = notifier
        self._inspector = None  # made on first use: amt_studio.inspector imports torch
        self.data: SnapshotData | None = None
        self.run_dir: Path | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amt-inspect")
        self._jobs: list[tuple[str, Future, Callable[[Any], None]]] = []
        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._poll_jobs)

        top, second = self._build_toolbar()
        self._build_panes()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(second)
        layout.addWidget(self.splitter, 1)
        self.current_index = 0
        self.labels: list[str] = []
        """What each row is: a dataset index, or an image file's name."""
        self.image.set_attention_strength(self.attention_strength.value() / 100.0)
        self._update_buttons()

    def _build_toolbar(self) -> tuple[QHBoxLayout, QHBoxLayout]:
        """The two rows above the panes: the checkpoint; the samples to run it on and what to show or export."""
        self.open_button = QPushButton("Open checkpoint…")
        self.open_button.clicked.connect(self._open_dialog)
        self.model_label = QLabel("no checkpoint")
        self.model_label.setObjectName("title")
        self.spec = QLineEdit()
        self.spec.setPlaceholderText("dataset spec, e.g. synth:live?seed=10000&size=128&num=64")
        self.start = QSpinBox()
        self.start.setRange(0, 10_000_000)
        self.start.setPrefix("from sample ")
        self.load_button = QPushButton("Run on samples")
        self.load_button.clicked.connect(self.run_dataset)
        self.images_button = QPushButton("Open images…")
        self.images_button.clicked.connect(self._images_dialog)
        self.attention_box = QCheckBox("attention")
        self.attention_box.setChecked(True)
        self.attention_box.toggled.connect(lambda _on: self._show_sample(self.current_index))
        self.attention_strength = QSlider(Qt.Orientation.Horizontal)
        self.attention_strength.setRange(0, 100)
        self.attention_strength.setValue(65)
        self.attention_strength.setFixedWidth(90)
        self.attention_strength.setToolTip("attention overlay strength (inferno colour map, min to max of the map)")
        self.attention_strength.valueChanged.connect(lambda v: self.image.set_attention_strength(v / 100.0))
        self.export_button = QPushButton("Export meshes…")
        self.export_button.clicked.connect(self._export_dialog)
        self.shot_button = QPushButton("Screenshot…")
        self.shot_button.clicked.connect(self._screenshot_dialog)
        self.busy = QLabel("")
        top = QHBoxLayout()
        for widget in (self.open_button, self.model_label):
            top.addWidget(widget)
        top.addStretch(1)
        second = QHBoxLayout()
        for widget in (
            self.spec,
            self.start,
            self.load_button,
            self.images_button,
            self.attention_box,
            self.attention_strength,
            self.export_button,
            self.shot_button,
            self.busy,
        ):
            second.addWidget(widget)
        second.setStretch(0, 1)
        return top, second

    def _build_panes(self) -> None:
        """The 3D and image panes side by side over the full-width metrics table; both splitters can be dragged."""
        self.scene = Scene3DView()
        self.image = ImageOverlayView()
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["sample", "MPJPE mm", "PA-MPJPE mm", "object mm", "class", "true class"])
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)  # compact rows
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # every column fits: no sideways scroll
        header.setMinimumSectionSize(60)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.currentCellChanged.connect(lambda row, *_: self._show_sample(row))
        views = QSplitter(Qt.Orientation.Horizontal)
        views.addWidget(self.scene)
        views.addWidget(self.image)
        views.setSizes([600, 400])
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(views)
        self.splitter.addWidget(self.table)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([600, 400])

    @property
    def inspector(self):  # noqa: ANN201 (Inspector, imported lazily)
        if self._inspector is None:
            from amt_studio.inspector import Inspector

            self._inspector = Inspector()
        return self._inspector

    # ---- jobs on the worker thread -----------------------------------------------------------------------

    def _submit(self, what: str, fn: Callable[..., Any], done: Callable[[Any], None], *args: Any) -> None:
        self._jobs.append((what, self._pool.submit(fn, *args), done))
        self.busy.setText(f"{what}…")
        self._timer.start()
        self._update_buttons()

    def _poll_jobs(self) -> None:
        keep = []
        for what, future, done in self._jobs:
            if not future.done():
                keep.append((what, future, done))
                continue
            err = future.exception()
            if err is not None:
                self.notifier.exception(f"{what} failed", err)
            else:
                try:
                    done(future.result())
                except Exception as view_err:  # a view failing must not leave the panel busy
                    self.notifier.exception(f"showing the result of {what} failed", view_err)
        self._jobs = keep
        if not keep:
            self._timer.stop()
            self.busy.setText("")
        self._update_buttons()

    @property
    def working(self) -> bool:
        return bool(self._jobs)

    def _update_buttons(self) -> None:
        has_model = self._inspector is not None and self._inspector.model is not None and not self.working
        self.open_button.setEnabled(not self.working)
        self.load_button.setEnabled(has_model)
        self.images_button.setEnabled(has_model)
        self.export_button.setEnabled(self.data is not None)
        self.shot_button.setEnabled(self.data is not None)

    # ---- actions -----------------------------------------------------------------------------------------

    def set_run_dir(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def _open_dialog(self) -> None:
        start = str(self.run_dir / "checkpoints") if self.run_dir else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a checkpoint folder (or a run directory)", start)
        if folder:
            self.open_checkpoint(Path(folder))

    def open_checkpoint(self, path: Path) -> None:
        self._submit("loading the checkpoint", self.inspector.load_checkpoint, self._loaded, path)

    def _loaded(self, info) -> None:  # noqa: ANN001 (amt_studio.inspector.LoadedModel)
        stage = f", stage {info.stage}" if info.stage else ""
        self.model_label.setText(f"{info.name} · {info.path.name} (step {info.step}{stage})")
        if not self.spec.text():
            self.spec.setText(info.val_data)

    def run_dataset(self) -> None:
        spec, start = self.spec.text().strip(), self.start.value()

        def job() -> SnapshotData:
            return self.inspector.predict(self.inspector.dataset_samples(spec, start, SAMPLES_PER_LOAD))

        self._submit("running the model", job, lambda data: self._show(data, [str(start + i) for i in range(8)]))

    def _images_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", str(Path.home()), "Images (*.png *.jpg *.jpeg)")
        if files:
            self.run_images([Path(f) for f in files])

    def run_images(self, paths: list[Path]) -> None:
        def job() -> SnapshotData:
            return self.inspector.predict([self.inspector.image_sample(p) for p in paths])

        self._submit("running the model", job, lambda data: self._show(data, [Path(p).name for p in paths]))

    def _show(self, data: SnapshotData, labels: list[str]) -> None:
        self.data = data
        self.labels = labels
        self.scene._camera_set = False  # frame the new content
        errors = data.sample_errors_mm()
        pa = _pa_errors_mm(data)
        obj = _object_errors_mm(data)
        self.table.setRowCount(data.num_samples)
        for row in range(data.num_samples):
            cells = [
                labels[row] if row < len(labels) else str(row),
                f"{errors[row]:.1f}" if errors is not None and np.isfinite(errors[row]) else "–",
                f"{pa[row]:.1f}" if pa is not None and data.has("joints3d", row) else "–",
                f"{obj[row]:.1f}" if obj is not None and np.isfinite(obj[row]) else "–",
                _class_cell(data, row),
                _true_class_cell(data, row),
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        self.table.selectRow(0)
        self._show_sample(0)
        self._update_buttons()

    def _show_sample(self, index: int) -> None:
        if self.data is None or not 0 <= index < self.data.num_samples:
            return
        self.current_index = index
        errors = self.data.sample_errors_mm()
        label = self.labels[index] if index < len(self.labels) else f"sample {index}"
        label = label if not label.isdigit() else f"sample {label}"
        detail = f" · MPJPE {errors[index]:.1f} mm" if errors is not None and np.isfinite(errors[index]) else ""
        self.scene.caption = label + detail
        self.image.caption = f"{label}   solid: predicted   dashed: true"
        self.scene.set_sample(self.data, index)
        self.image.set_sample(self.data, index)
        if not self.attention_box.isChecked():
            self.image.set_attention(None)

    def _export_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export meshes to", str(Path.home()))
        if folder:
            self.export(Path(folder))

    def export(self, folder: Path) -> list[Path]:
        from amt_studio.inspector import export_meshes

        paths = export_meshes(self.data, self.current_index, folder)
        self.busy.setText(f"wrote {len(paths)} meshes to {folder}")
        return paths

    def _screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", str(Path.home() / "inspect.png"), "PNG (*.png)")
        if path:
            self.grab().save(path)

    def shutdown(self) -> None:
        self._timer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _pa_errors_mm(data: SnapshotData) -> np.ndarray | None:
    if data.pred_joints3d is None or data.gt_joints3d is None:
        return None
    from amt_core.metrics.hand import pa_joint_errors

    return pa_joint_errors(data.pred_joints3d, data.gt_joints3d).mean(-1).numpy() * 1000.0


def _object_errors_mm(data: SnapshotData) -> np.ndarray | None:
    """(S,) distance between the predicted and the true object centre, millimetres; NaN where no true object."""
    if data.pred_obj_trans is None or data.gt_obj_trans is None:
        return None
    errors = np.linalg.norm(data.pred_obj_trans - data.gt_obj_trans, axis=-1) * 1000.0
    return np.where([data.has("obj", i) for i in range(len(errors))], errors, np.nan)


def _class_cell(data: SnapshotData, row: int) -> str:
    from amt_core.objects.catalog import class_names

    names = class_names()
    pred = int(data.pred_obj_class[row]) if data.pred_obj_class is not None else None
    gt = int(data.gt_obj_class[row]) if data.gt_obj_class is not None else None
    name = names[pred] if pred is not None and 0 <= pred < len(names) else "–"
    if gt is None or not data.has("obj", row):
        return name
    return f"{name} ✓" if pred == gt else f"{name} ✗"


def _true_class_cell(data: SnapshotData, row: int) -> str:
    from amt_core.objects.catalog import class_names

    if data.gt_obj_class is None or not data.has("obj", row):
        return "–"
    gt = int(data.gt_obj_class[row])
    names = class_names()
    return names[gt] if 0 <= gt < len(names) else "none"
