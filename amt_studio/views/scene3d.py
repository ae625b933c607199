"""The 3D panel: `RaycastRenderer` frames shown in a QWidget, with an orbit camera on the mouse.

Left drag orbits, right or middle drag pans, the wheel zooms, a double click (or Home) returns to the image camera's
view framing everything shown, F frames everything from the current direction. The legend sits in a strip above the
rendered frame and the caption in one below it, so text never covers the meshes. A frame is rendered only when the
camera or the content changed, coalesced to one per event-loop turn; while the camera keeps moving, frames are cast
at a lower resolution sized to a time budget, and a full-resolution frame follows once it rests.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFontMetrics, QImage, QKeyEvent, QMouseEvent, QPainter, QWheelEvent
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
FRAME_REACH_M = 0.5
"""Object layers whose centre lies farther than this from the hands' are left out of the framing (still drawn)."""
REFRAME_BELOW = 0.6
"""New content is re-framed when it leaves the frame or spans less than this share of it along both axes."""
MAX_RENDER_PX = 512
"""Frames are rendered at the content area's size up to this many pixels a side, then scaled to fit."""
FRAME_BUDGET_MS = 22.0
"""While the camera moves, frames aim to take at most this long, leaving time to paint at 30 frames/s."""
MIN_MOTION_SCALE = 0.375
"""The lowest resolution (relative to a full frame, per side) a moving camera's frames are cast at."""
MOTION_GAP_S = 0.25
"""Camera changes closer together than this are one motion; a change after a longer rest gets a full frame at once."""
SETTLE_MS = 150
"""A full-resolution frame follows this long after the last reduced one."""
TEXT_PAD_PX = 5
SWATCH_PX = 10
LEGEND_ENTRIES = (
    ("predicted hand", PRED_HAND_RGB, "pred hand"),
    ("true hand", GT_HAND_RGB, "gt hand"),
    ("predicted object", PRED_OBJECT_RGB, "pred object"),
    ("true object", GT_OBJECT_RGB, "gt object"),
)


@dataclass(kw_only=True)
class PanelLayout:
    """Where the 3D panel paints, in widget pixels: text strips and the rendered frame never overlap."""

    legend: QRect
    """The strip above the frame holding the legend (empty when there is nothing to name)."""
    legend_items: list[tuple[QRect, QPointF, str, tuple[float, float, float]]]
    """Per legend entry: its swatch, the baseline start of its label, the label and the colour."""
    caption: QRect
    """The strip below the frame holding the caption (empty without a caption)."""
    content: QRect
    """Where the rendered frame is drawn."""


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
        """False: frame the next content that arrives (the inspector clears it for a new image)."""
        self.auto_frame = True
        """Re-frame new content and a resized panel until the user moves the camera (a reset turns it back on)."""
        self._framed_for: tuple[int, int] | None = None
        self.frame_times_ms: deque[float] = deque(maxlen=120)
        self.motion_scale = 1.0
        """Resolution of the last frame relative to a full one, per side (below 1 only while the camera moves)."""
        self._ms_per_pixel: float | None = None
        self._last_camera: tuple | None = None
        self._last_camera_change = -math.inf
        self._pending = QTimer(self)
        self._pending.setSingleShot(True)
        self._pending.setInterval(0)
        self._pending.timeout.connect(self.render_now)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self.render_now)
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
        if not self._camera_set or (self.auto_frame and not self._framing_still_fits()):
            self._frame_content(from_image_camera=True)
        self.request_render()

    def _rebuild(self) -> None:
        if self.snapshot is None or self.snapshot.num_samples == 0:
            self.renderer.set_layers([])
            self.request_render()
            return
        index = min(self.sample_index, self.snapshot.num_samples - 1)
        self.set_layers(snapshot_layers(self.snapshot, index, self.visible_layers))

    def reset_view(self) -> None:
        """Look from the image camera (the view that matches the input image), framing every layer shown: hands
        and objects, predicted and true, all inside the frame with a small margin (see `framed_points`)."""
        self.auto_frame = True
        self._frame_content(from_image_camera=True)
        self.request_render()

    def frame_view(self) -> None:
        """Keep the current direction; move the camera so every layer shown fits the frame."""
        self._frame_content(from_image_camera=False)
        self.request_render()

    def framed_points(self) -> np.ndarray:
        """(N, 3) the vertices the camera frames: every layer shown, less any far-off object layer (more than
        FRAME_REACH_M from the hands' centre: a diverged prediction) that would shrink the hand to a speck."""
        hands = self.renderer.points(HAND_LAYERS)
        if not len(hands):
            return self.renderer.points()
        centre = (hands.min(0) + hands.max(0)) / 2.0
        near = [
            layer.verts
            for layer in self.renderer.layers
            if len(layer.verts)
            and (layer.name in HAND_LAYERS or np.linalg.norm(layer.verts.mean(0) - centre) <= FRAME_REACH_M)
        ]
        return np.concatenate(near)

    def _framing_still_fits(self) -> bool:
        """True when the current camera shows all of the (new) content inside the frame, and not as a speck: new
        snapshots then keep the view instead of jumping to a slightly different one each time."""
        points = self.framed_points()
        if not len(points) or self._framed_for != self.render_size():
            return False
        width, height = self.render_size()
        extrinsic, K = self.camera.extrinsic(), self.camera.intrinsic(width, height)
        cam = points @ extrinsic[:3, :3].T + extrinsic[:3, 3]
        if cam[:, 2].min() <= 1e-3:
            return False
        uv = cam[:, :2] / cam[:, 2:] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]
        size = np.array([width, height])
        inside = (uv.min(0) >= 0).all() and (uv.max(0) <= size).all()
        return bool(inside and ((uv.max(0) - uv.min(0)) / size).max() >= REFRAME_BELOW)

    def _frame_content(self, from_image_camera: bool) -> None:
        points = self.framed_points()
        if not len(points):
            return
        if from_image_camera:
            self.camera.look_from_image_camera((points.min(0) + points.max(0)) / 2.0)
        width, height = self.render_size()
        self.camera.frame_points(points, width, height)
        self._framed_for = (width, height)
        self._camera_set = True

    # ---- layout ------------------------------------------------------------------------------------------

    def legend_entries(self) -> list[tuple[str, tuple[float, float, float]]]:
        """(label, colour) of the hand and object layers shown."""
        present = {layer.name for layer in self.renderer.layers}
        return [(label, rgb) for label, rgb, name in LEGEND_ENTRIES if name in present]

    def panel_layout(self) -> PanelLayout:
        """The legend strip on top (entries flowing into rows), the caption strip at the bottom, the frame between."""
        metrics = QFontMetrics(self.font())
        line = metrics.height()
        width, height = max(self.width(), 1), max(self.height(), 1)
        items: list[tuple[QRect, QPointF, str, tuple[float, float, float]]] = []
        x, row = TEXT_PAD_PX, 0
        for label, rgb in self.legend_entries():
            item_width = SWATCH_PX + 6 + metrics.horizontalAdvance(label)
            if x > TEXT_PAD_PX and x + item_width > width - TEXT_PAD_PX:
                x, row = TEXT_PAD_PX, row + 1
            top = TEXT_PAD_PX + row * line
            swatch = QRect(x, top + (line - SWATCH_PX) // 2, SWATCH_PX, SWATCH_PX)
            items.append((swatch, QPointF(x + SWATCH_PX + 6, top + metrics.ascent()), label, rgb))
            x += item_width + 16
        legend_height = (row + 1) * line + 2 * TEXT_PAD_PX if items else 0
        caption_height = line + 2 * TEXT_PAD_PX if self.caption else 0
        content_height = max(height - legend_height - caption_height, 16)
        return PanelLayout(
            legend=QRect(0, 0, width, legend_height),
            legend_items=items,
            caption=QRect(0, height - caption_height, width, caption_height),
            content=QRect(0, legend_height, width, content_height),
        )

    # ---- rendering ---------------------------------------------------------------------------------------

    def render_size(self) -> tuple[int, int]:
        """Full-resolution frame size: the content area's, scaled down to MAX_RENDER_PX a side."""
        content = self.panel_layout().content
        w, h = max(content.width(), 16), max(content.height(), 16)
        scale = min(1.0, MAX_RENDER_PX / max(w, h))
        return max(16, int(w * scale)), max(16, int(h * scale))

    def request_render(self) -> None:
        if not self._pending.isActive():
            self._pending.start()

    def _camera_moving(self) -> bool:
        """True when the camera changed again soon after its last change (a drag, the wheel, an animation)."""
        camera = self.camera
        key = (*np.round(camera.target, 9), camera.distance, camera.yaw, camera.pitch, camera.fov_deg)
        now = time.perf_counter()
        if key == self._last_camera:
            return False
        moving = now - self._last_camera_change < MOTION_GAP_S
        self._last_camera, self._last_camera_change = key, now
        return moving

    def _motion_scale(self, pixels: int) -> float:
        """Per-side resolution for a moving camera's frame: what the recent cost per pixel allows within budget,
        in eighths (few distinct sizes, so the renderer's per-size tables are reused)."""
        if self._ms_per_pixel is None:
            return 1.0
        allowed = math.sqrt(FRAME_BUDGET_MS / max(self._ms_per_pixel * pixels, 1e-9))
        return float(np.clip(math.floor(allowed * 8.0) / 8.0, MIN_MOTION_SCALE, 1.0))

    def render_now(self) -> Frame:
        self._pending.stop()  # this frame answers any request made before it
        width, height = self.render_size()
        if self.auto_frame and self._framed_for not in (None, (width, height)):
            self._frame_content(from_image_camera=True)  # the content area changed shape since it was framed
        start = time.perf_counter()
        scale = self._motion_scale(width * height) if self._camera_moving() else 1.0
        frame_w, frame_h = max(16, round(width * scale)), max(16, round(height * scale))
        self.frame = self.renderer.render(self.camera, frame_w, frame_h)
        self.motion_scale = scale
        rgb = self.frame.rgb
        self._image = QImage(rgb.data, frame_w, frame_h, 3 * frame_w, QImage.Format.Format_RGB888).copy()
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if self.renderer.layers:
            per_pixel = elapsed_ms / (frame_w * frame_h)
            previous = self._ms_per_pixel
            self._ms_per_pixel = per_pixel if previous is None else 0.7 * previous + 0.3 * per_pixel
        self.frame_times_ms.append(elapsed_ms)
        if scale < 1.0:
            self._settle.start()  # (re)started: the sharp frame comes once the camera rests
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
        layout = self.panel_layout()
        if self._image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(QRectF(layout.content), self._image)
        self._paint_text(painter, layout)
        painter.end()

    def _paint_text(self, painter: QPainter, layout: PanelLayout) -> None:
        painter.setPen(QColor("#c8ccd4"))
        for swatch, baseline, label, rgb in layout.legend_items:
            painter.fillRect(swatch, QColor.fromRgbF(*rgb))
            painter.drawText(baseline, label)
        if self.caption:
            painter.setPen(QColor("#8a90a0"))
            area = layout.caption.adjusted(TEXT_PAD_PX, 0, -TEXT_PAD_PX, 0)
            text = QFontMetrics(self.font()).elidedText(self.caption, Qt.TextElideMode.ElideRight, area.width())
            painter.drawText(area, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
        if not self.renderer.layers:
            painter.setPen(QColor("#6a7080"))
            painter.drawText(layout.content, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.empty_text)

    # ---- mouse and keys ----------------------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag = (event.button(), event.position())
        self.auto_frame = False  # the user has taken the camera: new content no longer moves it

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            return
        button, last = self._drag
        delta = event.position() - last
        if button == Qt.MouseButton.LeftButton:
            self.camera.orbit(delta.x(), delta.y())
        else:  # widget pixels over the content area's height: the scene follows the mouse
            self.camera.pan(delta.x(), delta.y(), self.panel_layout().content.height())
        self._drag = (button, event.position())
        self.request_render()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag = None

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.reset_view()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        self.camera.zoom(event.angleDelta().y() / 120.0)
        self.auto_frame = False
        self.request_render()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_F:
            self.frame_view()
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802
        self.request_render()
        super().resizeEvent(event)
