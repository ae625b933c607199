"""The image view: the input image with the projected predicted and true skeletons, object boxes, contacts and,
in the inspector, an attention map over the image. Overlays are clipped to the image; the caption has its own strip
below it.
"""

from __future__ import annotations

import functools

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetrics, QImage, QPainter, QPen
from PySide6.QtWidgets import QWidget

from amt_core.joints import BONES, FINGER_COLORS, finger_of
from amt_studio.render.content import confidence_rgb, object_mesh_for
from amt_studio.state.snapshot import SnapshotData

# The 12 edges of a box given its 8 corners in itertools.product order over (x, y, z) in {min, max}.
BOX_EDGES = ((0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6), (5, 7), (6, 7))
CAPTION_PAD_PX = 5
DEFAULT_CAPTION = "solid: predicted   dashed: true"


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame metres -> (N, 2) pixels (the project's one projection function)."""
    import torch  # loaded in the background at start; never before the window paints

    from amt_core.geometry.camera import project_to_image

    return project_to_image(
        torch.as_tensor(points, dtype=torch.float64), torch.as_tensor(K, dtype=torch.float64)
    ).numpy()


@functools.lru_cache(maxsize=1)
def attention_lut() -> np.ndarray:
    """(256, 3) float RGB 0-255 of the inferno colour map (dark purple ... yellow)."""
    import pyqtgraph as pg

    return pg.colormap.get("inferno").getLookupTable(nPts=256, alpha=False).astype(np.float32)


def object_box_corners(verts: np.ndarray, rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(8, 3) corners of the object's own-frame bounding box placed at (rot, trans)."""
    lo, hi = verts.min(0), verts.max(0)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return corners @ np.asarray(rot).T + np.asarray(trans)


class ImageOverlayView(QWidget):
    """Paints one sample's image and its 2D overlays, scaled to fit with the aspect ratio kept."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(200, 200)
        self.snapshot: SnapshotData | None = None
        self.index = 0
        self._image: QImage | None = None
        self.attention: np.ndarray | None = None  # (h, w) in [0, 1]
        self.attention_strength = 0.65
        """Opacity of the attention overlay at the map's maximum, 0-1 (the inspector's slider)."""
        self.show_pred = self.show_gt = self.show_object = self.show_contacts = True
        self.caption = ""

    def set_sample(self, snapshot: SnapshotData | None, index: int = 0) -> None:
        self.snapshot, self.index = snapshot, index
        self._image = None
        if snapshot is not None and snapshot.images is not None and index < len(snapshot.images):
            rgb = np.ascontiguousarray(snapshot.images[index])
            h, w = rgb.shape[:2]
            self._image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.attention = None
        if snapshot is not None and snapshot.attention is not None and index < len(snapshot.attention):
            self.attention = np.asarray(snapshot.attention[index], dtype=np.float32)
        self.update()

    def set_attention(self, attention: np.ndarray | None) -> None:
        self.attention = attention
        self.update()

    def set_attention_strength(self, strength: float) -> None:
        self.attention_strength = float(np.clip(strength, 0.0, 1.0))
        self.update()

    def caption_rect(self) -> QRect:
        """The strip along the bottom that holds the caption, below the image."""
        height = QFontMetrics(self.font()).height() + 2 * CAPTION_PAD_PX
        return QRect(0, max(self.height() - height, 0), self.width(), height)

    def image_rect(self) -> QRectF:
        """Where the image is drawn: scaled to fit above the caption strip, aspect ratio kept, centred."""
        area = QRectF(0, 0, self.width(), max(self.caption_rect().top(), 1))
        if self._image is None:
            return area
        w, h = self._image.width(), self._image.height()
        scale = min(area.width() / w, area.height() / h)
        return QRectF((area.width() - w * scale) / 2, (area.height() - h * scale) / 2, w * scale, h * scale)

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#121419"))
        if self._image is None:
            painter.setPen(QColor("#6a7080"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no image yet")
            painter.end()
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = self.image_rect()
        painter.drawImage(target, self._image)
        scale = target.width() / self._image.width()
        # Projections land anywhere (an object box can reach far past the crop): nothing is drawn outside the image.
        painter.setClipRect(target)
        if self.attention is not None:
            self._paint_attention(painter, target)
        snap, i = self.snapshot, self.index
        K = snap.K[i] if snap is not None and snap.K is not None else None
        if snap is not None and K is not None:

            def to_widget(points: np.ndarray) -> np.ndarray:
                return project(points, K) * scale + np.array([target.x(), target.y()])

            if self.show_object:
                self._paint_boxes(painter, snap, i, to_widget)
            if self.show_gt and snap.gt_joints3d is not None and snap.has("joints3d", i):
                self._paint_skeleton(painter, to_widget(snap.gt_joints3d[i]), dashed=True)
            if self.show_pred and snap.pred_joints3d is not None:
                self._paint_skeleton(painter, to_widget(snap.pred_joints3d[i]), dashed=False)
            if self.show_contacts and snap.pred_contact_points is not None:
                conf = snap.pred_contact_conf[i] if snap.pred_contact_conf is not None else None
                self._paint_contacts(painter, to_widget(snap.pred_contact_points[i]), conf)
        painter.setClipping(False)
        painter.setPen(QColor("#c8ccd4"))
        area = self.caption_rect().adjusted(CAPTION_PAD_PX, 0, -CAPTION_PAD_PX, 0)
        text = QFontMetrics(self.font()).elidedText(
            self.caption or DEFAULT_CAPTION, Qt.TextElideMode.ElideRight, area.width()
        )
        painter.drawText(area, Qt.AlignmentFlag.AlignCenter, text)
        painter.end()

    def attention_rgba(self) -> np.ndarray | None:
        """(h, w, 4) uint8: the attention map from its minimum to its maximum on the inferno colour map, opaque in
        proportion to the value and to `attention_strength` (the overlay the image view paints)."""
        if self.attention is None:
            return None
        att = np.asarray(self.attention, dtype=np.float32)
        low, high = float(att.min()), float(att.max())
        relative = (att - low) / max(high - low, 1e-12)
        rgb = attention_lut()[np.clip((relative * 255).astype(int), 0, 255)]
        alpha = (0.25 + 0.75 * relative[..., None]) * 255.0 * self.attention_strength
        return np.ascontiguousarray(np.concatenate([rgb, alpha], axis=-1).astype(np.uint8))

    def _paint_attention(self, painter: QPainter, target: QRectF) -> None:
        rgba = self.attention_rgba()
        att = self.attention
        h, w = att.shape
        overlay = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
        painter.drawImage(target, overlay)

    def _paint_skeleton(self, painter: QPainter, uv: np.ndarray, dashed: bool) -> None:
        for parent, child in BONES:
            colour = QColor(*FINGER_COLORS[finger_of(child)])
            if dashed:
                colour = colour.lighter(130)
            pen = QPen(colour, 1.6 if dashed else 2.4)
            pen.setStyle(Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
            painter.setPen(pen)
            painter.drawLine(QPointF(*uv[parent]), QPointF(*uv[child]))
        painter.setPen(QPen(QColor("#ffffff" if not dashed else "#a0a4ac"), 1))
        for j, (u, v) in enumerate(uv):
            colour = QColor(*FINGER_COLORS[finger_of(j)]) if j else QColor("#d0d0d0")
            painter.setBrush(colour if not dashed else Qt.BrushStyle.NoBrush)
            painter.drawEllipse(QPointF(u, v), 2.8, 2.8)

    def _paint_boxes(self, painter: QPainter, snap: SnapshotData, i: int, to_widget) -> None:
        for side, colour, dashed in (("gt", "#8cd08c", True), ("pred", "#9fa8f0", False)):
            cls, rot, trans = (getattr(snap, f"{side}_obj_{k}") for k in ("class", "rot", "trans"))
            cls = snap.gt_obj_class if cls is None else cls
            if cls is None or rot is None or trans is None or int(cls[i]) < 0 or not snap.has("obj", i):
                continue
            mesh = object_mesh_for(snap, int(cls[i]))
            if mesh is None:
                continue
            uv = to_widget(object_box_corners(mesh[0], rot[i], trans[i]))
            pen = QPen(QColor(colour), 1.4)
            pen.setStyle(Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
            painter.setPen(pen)
            for a, b in BOX_EDGES:
                painter.drawLine(QPointF(*uv[a]), QPointF(*uv[b]))

    def _paint_contacts(self, painter: QPainter, uv: np.ndarray, conf: np.ndarray | None) -> None:
        conf = np.ones(len(uv)) if conf is None else conf
        colours = confidence_rgb(conf)
        for (u, v), c, rgb in zip(uv, conf, colours):
            if c < 0.05:
                continue
            painter.setPen(QPen(QColor("#101010"), 1))
            painter.setBrush(QColor.fromRgbF(*rgb))
            painter.drawEllipse(QPointF(u, v), 2.0 + 3.0 * float(c), 2.0 + 3.0 * float(c))
