"""The 3D panel: `RaycastRenderer` frames shown in a QWidget, with an orbit camera on the mouse.

Left drag orbits, right or middle drag pans, the wheel zooms, a double click returns to the image camera's view.
A frame is rendered only when the camera or the content changed, coalesced to one per event-loop turn.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import QWidget

from amt_studio.render.camera import OrbitCamera
from amt_studio.render.content import (
    GT_HAND_RGB,
    GT_OBJECT_RGB,
    LAYERS,
    PRED_HAND_RGB,
    PRED_OBJECT_RGB,
    MeshLayer,
    snapshot_layers,
)
from amt_studio.render.raycast import Frame, RaycastRenderer
from amt_studio.state.snapshot import SnapshotData

HAND_LAYERS = ("pred hand", "gt hand", "pred skeleton", "gt skeleton")
MAX_RENDER_PX = 512
"""Frames are rendered at the widget's size up to this many pixels a side, then scaled to fit."""


class Scene3DView(QWidget):
    """Shows one snapshot sample in 3D; `set_sample` rebuilds the scene, mouse moves only re-cast rays."""

    frame_rendered = Signal(float)  # milliseconds the frame took

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(240, 240)
        self.setMouseTracking(False)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.renderer = RaycastRenderer()
        self.camera = OrbitCamera()
        self.visible_layers: set[str] = set(LAYERS)
        self.snapshot: SnapshotData | None = None
        self.sample_index = 0
        self.frame: Frame | None = None
        self._image: QImage | None = None
        self._drag: tuple[Qt.MouseButton, QPointF] | None = None
        self._camera_set = False
        self.frame_times_ms: deque[float] = deque(maxlen=120)
        self._pending = QTimer(self)
        self._pending.setSingleShot(True)
        self._pending.setInterval(0)
        self._pending.timeout.connect(self.render_now)
        self.caption = ""
        self.empty_text = "3D view: the hand and object of the latest snapshot appear here"

    # ---- content -----------------------------------------------------------------------------------------

    def set_sample(self, snapshot: SnapshotData | None, index: int = 0) -> None:
        self.snapshot, self.sample_index = snapshot, index
        self._rebuild()

    def set_prepared(self, snapshot: SnapshotData, index: int, layers: list[MeshLayer]) -> None:
        """Show a sample whose layers were built elsewhere (on a worker thread) with `snapshot_layers`."""
        self.snapshot, self.sample_index = snapshot, index
        self.set_layers(layers)

    def set_layer_visible(self, name: str, visible: bool) -> None:
        (self.visible_layers.add if visible else self.visible_layers.discard)(name)
        self._rebuild()

    def set_layers(self, layers: list[MeshLayer]) -> None:
        """Show arbitrary layers (the inspector's predictions use this too)."""
        self.renderer.set_layers(layers)
        if not self._camera_set:
            self.reset_view()
        self.request_render()

    def _rebuild(self) -> None:
        if self.snapshot is None or self.snapshot.num_samples == 0:
            self.renderer.set_layers([])
            self.request_render()
            return
        index = min(self.sample_index, self.snapshot.num_samples - 1)
        self.set_layers(snapshot_layers(self.snapshot, index, self.visible_layers))

    def reset_view(self) -> None:
        """Look from the image camera at the hand (the view that matches the input image), or at all the content
        when there is no hand: a far or oversized predicted object does not shrink the hand to a speck."""
        bounds = self.renderer.bounds(HAND_LAYERS) or self.renderer.bounds()
        if bounds is None:
            return
        self.camera.look_from_image_camera(
            (bounds[0] + bounds[1]) / 2.0, float(np.linalg.norm(bounds[1] - bounds[0])) / 2
        )
        self._camera_set = True
        self.request_render()

    # ---- rendering ---------------------------------------------------------------------------------------

    def render_size(self) -> tuple[int, int]:
        w, h = max(self.width(), 16), max(self.height(), 16)
        scale = min(1.0, MAX_RENDER_PX / max(w, h))
        return max(16, int(w * scale)), max(16, int(h * scale))

    def request_render(self) -> None:
        if not self._pending.isActive():
            self._pending.start()

    def render_now(self) -> Frame:
        width, height = self.render_size()
        start = time.perf_counter()
        self.frame = self.renderer.render(self.camera, width, height)
        rgb = self.frame.rgb
        self._image = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self.frame_times_ms.append(elapsed_ms)
        self.update()
        self.frame_rendered.emit(elapsed_ms)
        return self.frame

    def fps(self) -> float:
        if not self.frame_times_ms:
            return 0.0
        return 1000.0 / max(float(np.mean(self.frame_times_ms)), 1e-3)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#121419"))
        if self._image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(QRectF(self.rect()), self._image)
        self._paint_legend(painter)
        painter.end()

    def _paint_legend(self, painter: QPainter) -> None:
        entries = [
            ("predicted hand", PRED_HAND_RGB, "pred hand"),
            ("true hand", GT_HAND_RGB, "gt hand"),
            ("predicted object", PRED_OBJECT_RGB, "pred object"),
            ("true object", GT_OBJECT_RGB, "gt object"),
        ]
        present = {layer.name for layer in self.renderer.layers}
        y = 10
        painter.setPen(QColor("#c8ccd4"))
        for label, rgb, name in entries:
            if name not in present:
                continue
            painter.fillRect(10, y + 2, 10, 10, QColor.fromRgbF(*rgb))
            painter.drawText(26, y + 12, label)
            y += 16
        if self.caption:
            painter.setPen(QColor("#8a90a0"))
            painter.drawText(10, self.height() - 10, self.caption)
        if not present:
            painter.setPen(QColor("#6a7080"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.empty_text)

    # ---- mouse -------------------------------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag = (event.button(), event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            return
        button, last = self._drag
        delta = event.position() - last
        scale = self.render_size()[1] / max(self.height(), 1)
        if button == Qt.MouseButton.LeftButton:
            self.camera.orbit(delta.x(), delta.y())
        else:
            self.camera.pan(delta.x() * scale, delta.y() * scale, self.render_size()[1])
        self._drag = (button, event.position())
        self.request_render()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag = None

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.reset_view()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        self.camera.zoom(event.angleDelta().y() / 120.0)
        self.request_render()

    def resizeEvent(self, event) -> None:  # noqa: N802
        self.request_render()
        super().resizeEvent(event)
