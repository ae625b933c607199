"""An orbit camera (orbit, pan, zoom around a target) in the OpenCV frame: x right, y down, z forward.

At yaw = pitch = 0 it looks along +z with y down, i.e. it sees the scene as the input image's camera does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FRAME_MARGIN = 0.08
"""Share of each half-width and half-height left free around framed content."""
MIN_DISTANCE_M = 0.02
"""The closest the eye gets to the orbit target (the wheel's limit too)."""


@dataclass(kw_only=True)
class OrbitCamera:
    target: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.5]))
    """(3,) the point orbited around, metres."""
    distance: float = 0.5
    """Metres from the eye to the target."""
    yaw: float = 0.0
    """Radians about the camera frame's y axis (down)."""
    pitch: float = 0.0
    """Radians about the eye's x axis; kept within ±89 degrees."""
    fov_deg: float = 40.0
    """Vertical field of view."""

    def __post_init__(self) -> None:
        if not 1.0 <= self.fov_deg <= 150.0:
            raise ValueError(f"OrbitCamera.fov_deg must be in [1, 150], got {self.fov_deg}")
        if self.distance <= 0:
            raise ValueError(f"OrbitCamera.distance must be > 0, got {self.distance}")
        self.target = np.asarray(self.target, dtype=np.float64)

    def rotation(self) -> np.ndarray:
        """(3, 3) world-to-camera rotation (rows: the camera's x, y, z axes in the world frame)."""
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
        pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
        cam_to_world = yaw @ pitch
        return cam_to_world.T

    def eye(self) -> np.ndarray:
        forward = self.rotation()[2]
        return self.target - self.distance * forward

    def extrinsic(self) -> np.ndarray:
        """(4, 4) world-to-camera transform."""
        R = self.rotation()
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = -R @ self.eye()
        return T

    def intrinsic(self, width: int, height: int) -> np.ndarray:
        """(3, 3) pinhole intrinsics for an image of (width, height) with this vertical field of view."""
        f = 0.5 * height / math.tan(math.radians(self.fov_deg) / 2.0)
        return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])

    # ---- mouse -------------------------------------------------------------------------------------------

    def orbit(self, dx_px: float, dy_px: float, speed: float = 0.01) -> None:
        self.yaw += dx_px * speed
        self.pitch = float(np.clip(self.pitch - dy_px * speed, -math.radians(89), math.radians(89)))

    def pan(self, dx_px: float, dy_px: float, height_px: int) -> None:
        """Move the target in the view plane so the scene follows the mouse."""
        metres_per_px = 2.0 * self.distance * math.tan(math.radians(self.fov_deg) / 2.0) / max(height_px, 1)
        R = self.rotation()
        self.target = self.target - (R[0] * dx_px + R[1] * dy_px) * metres_per_px

    def zoom(self, steps: float) -> None:
        """Positive steps move closer (a wheel notch is one step)."""
        self.distance = float(np.clip(self.distance * 0.9**steps, MIN_DISTANCE_M, 20.0))

    def look_from_image_camera(self, target: np.ndarray, radius: float | None = None) -> None:
        """Orbit around `target` from the image camera's direction (the view that matches the input image).

        With `radius` (metres), the distance is chosen so a sphere of that radius around the target fits the view.
        """
        self.target = np.asarray(target, dtype=np.float64)
        direction = self.target / max(float(np.linalg.norm(self.target)), 1e-9)
        self.distance = float(max(np.linalg.norm(self.target), 0.05))
        if radius is not None:
            self.distance = float(max(1.15 * radius / math.sin(math.radians(self.fov_deg) / 2.0), 0.05))
        self.yaw = math.atan2(direction[0], direction[2])
        self.pitch = -math.asin(float(np.clip(direction[1], -1.0, 1.0)))

    def frame_points(self, points: np.ndarray, width: int, height: int, margin: float = FRAME_MARGIN) -> None:
        """Keep the view direction; move the eye so every one of (N, 3) `points` (metres) projects inside an image
        of (width, height) pixels, with `margin` of each half-width and half-height left free, as close as it can.

        The eye is the tightest point behind the four frustum planes pushed through the points: along each image
        axis the two outermost planes meet at one eye position, and the axis that needs the eye further back wins
        (the other is then centred with room to spare). The orbit target goes to the depth of the points' centre.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(points) == 0:
            return
        if not 0.0 <= margin < 0.5:
            raise ValueError(f"frame_points: margin must be in [0, 0.5), got {margin}")
        rotation = self.rotation()
        q = points @ rotation.T  # (N, 3) in the camera's axes, not yet relative to the eye
        focal = self.intrinsic(width, height)[0, 0]
        eye_q = np.zeros(3)
        depth = []
        for axis, half_px in ((0, width / 2.0), (1, height / 2.0)):
            slope = half_px / focal * (1.0 - margin)  # tan of the half angle the points may use
            low = float(np.max(q[:, axis] - slope * q[:, 2]))
            high = float(np.min(q[:, axis] + slope * q[:, 2]))
            eye_q[axis] = (low + high) / 2.0
            depth.append((high - low) / (2.0 * slope))
        eye_q[2] = min(depth)
        centre_depth = float((q[:, 2].min() + q[:, 2].max()) / 2.0) - eye_q[2]
        nearest = float(q[:, 2].min()) - eye_q[2]
        # A point-like scene would put the eye on it: keep the eye a few centimetres in front of the nearest point.
        backoff = max(0.0, MIN_DISTANCE_M - nearest)
        eye_q[2] -= backoff
        self.distance = float(np.clip(centre_depth + backoff, MIN_DISTANCE_M, 20.0))
        eye = rotation.T @ eye_q
        self.target = eye + self.distance * rotation[2]
