"""Framing in the Training tab's snapshot panel under pytest-qt (offscreen): the 3D camera fits hand and object,
predicted and true, into the frame; legend and captions sit beside the rendered content, never over it; the image
view clips its overlays to the image; the renderer's ray culling gives the picture casting every ray gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from helpers.studio import write_snapshot  # noqa: E402

from amt_studio.render.camera import OrbitCamera  # noqa: E402
from amt_studio.render.content import snapshot_layers  # noqa: E402
from amt_studio.render.raycast import RaycastRenderer  # noqa: E402
from amt_studio.state.snapshot import SnapshotData, load_snapshot  # noqa: E402

pytestmark = pytest.mark.gui
HAND_AND_OBJECT = ("pred hand", "gt hand", "pred object", "gt object")


def spread_snapshot(tmp_path: Path) -> SnapshotData:
    """A snapshot whose true object sits well above and beside the hand (as a badly placed prediction's truth can):
    a camera framed on the hand alone cuts it off."""
    arrays = write_snapshot(tmp_path / "w.npz", step=3)
    arrays["gt_obj_trans"] = arrays["gt_obj_trans"] + np.array([0.05, -0.12, 0.0])
    np.savez(tmp_path / "s.npz", **arrays)
    return load_snapshot(tmp_path / "s.npz")


def projected(scene, verts: np.ndarray) -> np.ndarray:
    """(N, 2) pixels of `verts` in the panel's full-resolution frame, from its current camera."""
    width, height = scene.render_size()
    extrinsic, K = scene.camera.extrinsic(), scene.camera.intrinsic(width, height)
    cam = verts @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    assert (cam[:, 2] > 0).all(), "some vertex is behind the eye"
    return cam[:, :2] / cam[:, 2:] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]


def assert_everything_framed(scene, tight: bool = True) -> None:
    """Every vertex of every layer projects inside the frame; with `tight`, the content spans most of one axis."""
    width, height = scene.render_size()
    names = {layer.name for layer in scene.renderer.layers}
    assert set(HAND_AND_OBJECT) <= names
    all_uv = []
    for layer in scene.renderer.layers:
        uv = projected(scene, layer.verts)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= width) & (uv[:, 1] >= 0) & (uv[:, 1] <= height)
        assert inside.all(), f"{layer.name}: {int((~inside).sum())} of {len(uv)} vertices fall outside the frame"
        all_uv.append(uv)
    uv = np.concatenate(all_uv)
    span = (uv.max(0) - uv.min(0)) / np.array([width, height])
    if tight:  # the hand is not a speck: the content fills the frame along its limiting axis
        assert span.max() > 0.85, f"content spans only {span} of the frame"


@pytest.fixture
def scene(qtbot):
    from amt_studio.views.scene3d import Scene3DView

    view = Scene3DView()
    qtbot.addWidget(view)
    return view


@pytest.mark.parametrize("size", [(520, 480), (640, 300), (300, 640)])
def test_default_camera_frames_hand_and_object_together(qtbot, scene, tmp_path, size) -> None:
    snapshot = spread_snapshot(tmp_path)
    scene.resize(*size)
    scene.caption = "snapshot at step 3, sample 0"
    scene.show()
    scene.set_sample(snapshot, 0)
    frame = scene.render_now()
    assert frame.rgb.shape[:2] == scene.render_size()[::-1]
    assert_everything_framed(scene)
    shown = {scene.renderer.layers[i].name for i in np.unique(frame.layer_index) if i >= 0}
    assert {"pred hand", "gt object"} <= shown  # both in the picture, not only inside the frustum
    # Orbit away, then a reset (double click, Home) frames it all again from the image camera.
    scene.camera.orbit(150, 60)
    scene.camera.zoom(6)
    scene.render_now()
    scene.reset_view()
    assert_everything_framed(scene)
    # F frames everything from the direction the user orbited to.
    scene.camera.orbit(120, -40)
    yaw, pitch = scene.camera.yaw, scene.camera.pitch
    scene.frame_view()
    assert (scene.camera.yaw, scene.camera.pitch) == (yaw, pitch)
    assert_everything_framed(scene)


def test_a_diverged_prediction_does_not_shrink_the_hand(qtbot, scene, tmp_path) -> None:
    """A predicted object metres away stays drawn where it is but out of the framing; hands and the true object
    fill the frame."""
    arrays = write_snapshot(tmp_path / "w.npz", step=3)
    arrays["pred_obj_trans"] = arrays["pred_obj_trans"] + np.array([1.5, 0.0, 1.0])
    np.savez(tmp_path / "s.npz", **arrays)
    scene.resize(400, 400)
    scene.show()
    scene.set_sample(load_snapshot(tmp_path / "s.npz"), 0)
    scene.render_now()
    width, height = scene.render_size()
    near = np.concatenate([layer.verts for layer in scene.renderer.layers if layer.name != "pred object"])
    uv = projected(scene, near)
    assert (uv.min(0) >= 0).all() and (uv.max(0) <= [width, height]).all()
    assert ((uv.max(0) - uv.min(0)) / [width, height]).max() > 0.85
    # the orbit centre stays with the hand and the true object, not half-way to the stray prediction
    assert np.linalg.norm(scene.camera.target - near.mean(0)) < 0.1 and scene.camera.distance < 0.5


def test_framing_follows_a_resize_until_the_user_moves_the_camera(qtbot, scene, tmp_path) -> None:
    scene.resize(600, 420)
    scene.show()
    scene.set_sample(spread_snapshot(tmp_path), 0)
    scene.render_now()
    scene.resize(260, 560)  # a narrow, tall panel: the wide framing would cut the sides
    qtbot.waitUntil(lambda: scene.render_size() == scene.frame.rgb.shape[1::-1], timeout=5000)
    assert_everything_framed(scene)
    distance = scene.camera.distance
    from PySide6.QtCore import QPoint, Qt

    qtbot.mousePress(scene, Qt.MouseButton.LeftButton, pos=QPoint(100, 200))
    qtbot.mouseMove(scene, QPoint(140, 210))
    qtbot.mouseRelease(scene, Qt.MouseButton.LeftButton, pos=QPoint(140, 210))
    assert not scene.auto_frame
    yaw = scene.camera.yaw
    scene.resize(500, 500)
    scene.render_now()
    assert scene.camera.yaw == yaw and scene.camera.distance == distance  # the user's view is kept


@pytest.mark.parametrize("width", [240, 360, 700])
def test_legend_and_caption_sit_outside_the_rendered_frame(qtbot, scene, tmp_path, width) -> None:
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QFontMetrics

    scene.resize(width, 420)
    scene.caption = "snapshot at step 3, sample 0 · MPJPE 12.3 mm, a caption long enough to be elided on a narrow panel"
    scene.show()
    scene.set_sample(spread_snapshot(tmp_path), 0)
    scene.render_now()
    layout = scene.panel_layout()
    assert len(layout.legend_items) == 4
    assert not layout.legend.isEmpty() and not layout.caption.isEmpty()
    assert not layout.legend.intersects(layout.content) and not layout.caption.intersects(layout.content)
    assert layout.content.height() > 0.6 * scene.height()
    metrics = QFontMetrics(scene.font())
    for swatch, baseline, label, _rgb in layout.legend_items:
        text = QRect(int(baseline.x()), int(baseline.y()) - metrics.ascent(), metrics.horizontalAdvance(label), 1)
        text.setHeight(metrics.height())
        assert layout.legend.contains(swatch) and layout.legend.contains(text), label
    # The frame is drawn exactly into the content rect: its first row is the render's background gradient, the row
    # above it (the legend strip, beside the labels) the panel's own fill.
    picture = scene.grab().toImage()
    x = scene.width() - 3
    fill = picture.pixelColor(x, layout.content.top() - 1).name()
    rendered = picture.pixelColor(x, layout.content.top() + 1).name()
    assert fill == "#121419" and rendered != fill
    assert picture.pixelColor(x, layout.content.bottom() + 2).name() == "#121419"


def test_motion_frames_are_reduced_then_a_full_frame_follows(qtbot, scene, tmp_path) -> None:
    scene.resize(400, 400)
    scene.show()
    scene.set_sample(spread_snapshot(tmp_path), 0)
    scene.render_now()
    scene._ms_per_pixel = 1.0  # as if frames were slow: a moving camera gets the smallest frames
    for _ in range(3):
        scene.camera.orbit(5.0, 1.0)
        frame = scene.render_now()
    assert scene.motion_scale < 1.0 and frame.rgb.shape[1] < scene.render_size()[0]
    qtbot.waitUntil(lambda: scene.frame.rgb.shape[1::-1] == scene.render_size(), timeout=5000)
    assert scene.motion_scale == 1.0


def test_culled_rays_give_the_picture_of_every_ray(tmp_path) -> None:
    """Rays are cast only in tiles some triangle's screen box touches; the hits match casting every pixel's ray."""
    import open3d as o3d

    snapshot = spread_snapshot(tmp_path)
    renderer = RaycastRenderer()
    renderer.set_layers(snapshot_layers(snapshot, 0))
    camera = OrbitCamera()
    width, height = 300, 220
    camera.look_from_image_camera(renderer.points().mean(0))
    camera.frame_points(renderer.points(), width, height)
    for step in range(6):
        frame = renderer.render(camera, width, height)
        rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
            intrinsic_matrix=o3d.core.Tensor(camera.intrinsic(width, height)),
            extrinsic_matrix=o3d.core.Tensor(camera.extrinsic()),
            width_px=width,
            height_px=height,
        )
        every = np.isfinite(renderer._scene.cast_rays(rays)["t_hit"].numpy())
        differ = ((frame.layer_index >= 0) != every).sum()
        assert every.sum() > 2000 and differ <= 3, f"step {step}: {differ} pixels differ"  # float rounding at edges
        assert frame.rays_cast < 0.8 * width * height  # the background is mostly not cast
        camera.orbit(40.0, 15.0)


def box_outside_snapshot(tmp_path: Path) -> SnapshotData:
    """A snapshot whose true object's box reaches past the image's right edge."""
    arrays = write_snapshot(tmp_path / "w.npz", step=3)
    arrays["gt_obj_trans"] = arrays["gt_obj_trans"] + np.array([0.14, 0.0, 0.0])
    np.savez(tmp_path / "s.npz", **arrays)
    return load_snapshot(tmp_path / "s.npz")


def test_image_overlays_are_clipped_to_the_image(qtbot, tmp_path) -> None:
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QImage

    from amt_studio.render.content import object_mesh_for
    from amt_studio.views.image_view import ImageOverlayView, object_box_corners, project

    snapshot = box_outside_snapshot(tmp_path)
    view = ImageOverlayView()
    qtbot.addWidget(view)
    view.resize(460, 300)
    view.show_pred = view.show_gt = view.show_contacts = False  # only the boxes
    view.set_sample(snapshot, 0)
    target = view.image_rect()
    mesh = object_mesh_for(snapshot, int(snapshot.gt_obj_class[0]))
    corners = object_box_corners(mesh[0], snapshot.gt_obj_rot[0], snapshot.gt_obj_trans[0])
    scale = target.width() / snapshot.images.shape[2]
    uv = project(corners, snapshot.K[0]) * scale + np.array([target.x(), target.y()])
    assert (uv[:, 0] > target.right() + 10).any(), "the test's box does not reach past the image"
    picture = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height = picture.width(), picture.height()
    rgb = np.frombuffer(picture.constBits(), dtype=np.uint8).reshape(height, picture.bytesPerLine())
    rgb = rgb[:, : 3 * width].reshape(height, width, 3).astype(int)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    boxy = (green > 150) & (green > red + 40) & (green > blue + 40)  # the true box's pen, #8cd08c, even blended
    ys, xs = np.mgrid[0:height, 0:width]
    ratio = picture.width() / view.width()  # device pixels per widget pixel
    inside = QRectF(
        target.x() * ratio - 1, target.y() * ratio - 1, target.width() * ratio + 2, target.height() * ratio + 2
    )
    in_image = (xs >= inside.left()) & (xs <= inside.right()) & (ys >= inside.top()) & (ys <= inside.bottom())
    assert boxy[in_image].sum() > 20, "the box is not drawn at all"
    assert boxy[~in_image].sum() == 0, f"{int(boxy[~in_image].sum())} box pixels outside the image"


def test_image_caption_sits_below_the_image(qtbot, tmp_path) -> None:
    from PySide6.QtCore import QRectF

    from amt_studio.views.image_view import ImageOverlayView

    view = ImageOverlayView()
    qtbot.addWidget(view)
    view.caption = "solid: predicted   dashed: true · MPJPE 12.3 mm"
    view.set_sample(box_outside_snapshot(tmp_path), 0)
    for size in ((400, 300), (300, 500), (220, 200)):
        view.resize(*size)
        image, caption = view.image_rect(), QRectF(view.caption_rect())
        assert not image.intersects(caption) and image.bottom() <= caption.top()
        assert caption.bottom() <= view.height() and image.height() > 0.5 * (view.height() - caption.height())
    # the caption's text is painted in its strip: the strip has text-coloured pixels, the image's last row none
    picture = view.grab().toImage()
    strip = view.caption_rect()
    light = [
        picture.pixelColor(x, y).lightness() > 120
        for x in range(strip.left(), strip.right())
        for y in range(strip.top(), strip.bottom())
    ]
    assert sum(light) > 10
