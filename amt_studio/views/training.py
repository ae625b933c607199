"""The training tab's left column: the 3D scene and the image view of one snapshot sample, a timeline slider over
the run's snapshots (following the latest unless moved), a sample picker and the layer toggles.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSlider,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from amt_core.errors import UserError
from amt_studio.render.content import LAYERS, MeshLayer, snapshot_layers
from amt_studio.state.run import RunState
from amt_studio.state.snapshot import SnapshotData
from amt_studio.views.image_view import ImageOverlayView
from amt_studio.views.scene3d import Scene3DView


class SnapshotPanel(QWidget):
    """3D + 2D views of the snapshot chosen on the timeline.

    Loading a snapshot file and building its meshes happen on a worker thread; `refresh()` (called on the window's
    timer) starts that work for the wanted snapshot and shows the result when it is ready, so the window never waits.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene = Scene3DView()
        self.image = ImageOverlayView()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.scene)
        self.splitter.addWidget(self.image)
        self.splitter.setSizes([600, 400])
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.follow = QCheckBox("follow latest")
        self.follow.setChecked(True)
        self.sample = QSpinBox()
        self.sample.setPrefix("sample ")
        self.sample.setRange(0, 0)
        self.step_label = QLabel("no snapshot yet")
        self.step_label.setObjectName("title")
        self.step_label.setMinimumWidth(150)
        layers = QToolButton()
        layers.setText("Layers")
        layers.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(layers)
        for name in LAYERS:
            action = menu.addAction(name)
            action.setCheckable(True)
            action.setChecked(True)
            action.toggled.connect(lambda on, n=name: self.scene.set_layer_visible(n, on))
        layers.setMenu(menu)
        row = QHBoxLayout()
        row.addWidget(self.step_label)
        row.addWidget(self.slider, 1)
        row.addWidget(self.follow)
        row.addWidget(self.sample)
        row.addWidget(layers)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(row)
        self.state: RunState | None = None
        self.current: SnapshotData | None = None
        self.current_index = -1
        self.errors: list[str] = []
        self.wanted: tuple[int, int] | None = None  # (snapshot index, sample) to show next
        self._shown: tuple[int, int] | None = None
        self._job: tuple[tuple[int, int], Future] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amt-snapshot")
        self.slider.valueChanged.connect(self._slider_moved)
        self.sample.valueChanged.connect(lambda value: self._want(self.current_index, value))

    def set_state(self, state: RunState) -> None:
        self.state = state
        self.current, self.current_index = None, -1
        self.wanted = self._shown = None
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.step_label.setText("no snapshot yet")
        self.scene.set_sample(None)
        self.image.set_sample(None)
        state.snapshot_added.connect(lambda _i: self._on_added())
        state.snapshots_reset.connect(self._on_reset)
        if len(state.snapshots):
            self._on_added()

    def _on_reset(self) -> None:
        """A rollback dropped the snapshots past its step: show the newest one left (the abandoned step goes)."""
        self._shown = None
        if len(self.state.snapshots):
            self.follow.setChecked(True)
            self._on_added()
        else:
            self.wanted = None
            self.current, self.current_index = None, -1
            self.slider.setRange(0, 0)
            self.step_label.setText("no snapshot yet")
            self.scene.set_sample(None)
            self.image.set_sample(None)

    def _on_added(self) -> None:
        count = len(self.state.snapshots)
        self.slider.blockSignals(True)
        self.slider.setRange(0, count - 1)
        self.slider.setEnabled(count > 1)
        if self.follow.isChecked():
            self.slider.setValue(count - 1)
        self.slider.blockSignals(False)
        if self.follow.isChecked():
            self._want(count - 1, self.sample.value())

    def _slider_moved(self, value: int) -> None:
        self.follow.setChecked(value == self.slider.maximum())
        self._want(value, self.sample.value())

    def _want(self, index: int, sample: int) -> None:
        if self.state is not None and 0 <= index < len(self.state.snapshots):
            self.wanted = (index, sample)

    def refresh(self) -> None:
        """Show a finished load; start loading the wanted snapshot when it is not the one shown."""
        if self._job is not None and self._job[1].done():
            key, future = self._job
            self._job = None
            err = future.exception()
            if isinstance(err, UserError):  # a snapshot file removed or not readable
                self.errors.append(str(err))
            elif err is not None:
                raise err
            else:
                self._apply(key, *future.result())
        if self._job is None and self.wanted is not None and self.wanted != self._shown:
            key = self.wanted
            step, path = self.state.snapshots.entries[key[0]]
            self._job = (key, self._pool.submit(self._load, key, self.state.snapshots, set(self.scene.visible_layers)))

    @staticmethod
    def _load(key: tuple[int, int], timeline, visible: set[str]) -> tuple[SnapshotData, list[MeshLayer]]:
        snapshot = timeline.get(key[0])
        sample = min(key[1], max(snapshot.num_samples - 1, 0))
        return snapshot, snapshot_layers(snapshot, sample, visible) if snapshot.num_samples else []

    def _apply(self, key: tuple[int, int], snapshot: SnapshotData, layers: list[MeshLayer]) -> None:
        index, sample = key
        self._shown = key
        self.current, self.current_index = snapshot, index
        self.sample.blockSignals(True)
        self.sample.setRange(0, max(snapshot.num_samples - 1, 0))
        self.sample.blockSignals(False)
        sample = min(sample, max(snapshot.num_samples - 1, 0))
        errors = snapshot.sample_errors_mm()
        detail = f" · MPJPE {errors[sample]:.1f} mm" if errors is not None and sample < len(errors) else ""
        self.step_label.setText(f"step {snapshot.step} ({index + 1}/{len(self.state.snapshots)})")
        self.scene.caption = f"snapshot at step {snapshot.step}, sample {sample}{detail}"
        self.image.caption = f"solid: predicted   dashed: true{detail}"
        self.scene.set_prepared(snapshot, sample, layers)
        self.image.set_sample(snapshot, sample)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
