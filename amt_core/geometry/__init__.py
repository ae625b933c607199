"""Cameras and projection, rotations (6D <-> matrix, axis-angle), rigid transforms.

Conventions: metres; the OpenCV camera frame (x right, y down, z forward); pixel centres at integer coordinates.
"""

from amt_core.geometry.camera import project_to_image, unproject_pixels
from amt_core.geometry.rotations import (
    axis_angle_to_matrix,
    geodesic_angle,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
    transform_points,
)

__all__ = [
    "project_to_image",
    "unproject_pixels",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "rot6d_to_matrix",
    "matrix_to_rot6d",
    "geodesic_angle",
    "transform_points",
]
