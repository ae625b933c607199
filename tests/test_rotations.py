"""Rotation conversions (amt_core.geometry.rotations): 6D <-> matrix and axis-angle round trips, proper outputs."""

from __future__ import annotations

import math

import roma
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from amt_core.geometry.rotations import (
    axis_angle_to_matrix,
    geodesic_angle,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
)

unit = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
quaternions = st.tuples(unit, unit, unit, unit).filter(lambda q: sum(v * v for v in q) > 1e-3)


def _rotation(q) -> torch.Tensor:
    quat = torch.tensor(q, dtype=torch.float64)
    return roma.unitquat_to_rotmat(quat / quat.norm())


@settings(max_examples=100, deadline=None)
@given(quaternions)
def test_matrix_6d_matrix_round_trip(q):
    R = _rotation(q)
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(R)), R, atol=1e-10, rtol=0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-10, max_value=10, allow_nan=False), min_size=6, max_size=6))
def test_any_6d_gives_a_proper_rotation_that_round_trips(values):
    rot6d = torch.tensor(values, dtype=torch.float64)
    a, b = rot6d[:3], rot6d[3:]
    assume(a.norm() > 1e-3 and torch.linalg.cross(a, b).norm() > 1e-3 * b.norm().clamp(min=1e-3))
    R = rot6d_to_matrix(rot6d)
    torch.testing.assert_close(R.T @ R, torch.eye(3, dtype=torch.float64), atol=1e-9, rtol=0)
    assert abs(torch.linalg.det(R).item() - 1.0) < 1e-9
    torch.testing.assert_close(R[:, 0], a / a.norm())  # Gram-Schmidt keeps the first column's direction
    # The 6D of a rotation is that rotation's first two columns, so a second round trip is exact.
    torch.testing.assert_close(matrix_to_rot6d(R), torch.cat([R[:, 0], R[:, 1]]))
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(R)), R, atol=1e-10, rtol=0)


@settings(max_examples=100, deadline=None)
@given(st.tuples(unit, unit, unit).filter(lambda v: sum(x * x for x in v) > 1e-4), st.floats(0.0, math.pi - 1e-3))
def test_axis_angle_round_trip_and_geodesic(axis, angle):
    direction = torch.tensor(axis, dtype=torch.float64)
    rotvec = direction / direction.norm() * angle
    R = axis_angle_to_matrix(rotvec)
    torch.testing.assert_close(matrix_to_axis_angle(R), rotvec, atol=1e-6, rtol=0)
    identity = torch.eye(3, dtype=torch.float64)
    assert abs(geodesic_angle(identity, R).item() - angle) < 1e-3  # acos input is clamped to 1 - 1e-7
    assert geodesic_angle(R, R).item() < 1e-3


def test_batched_shapes():
    rot6d = torch.randn(4, 5, 6)
    R = rot6d_to_matrix(rot6d)
    assert R.shape == (4, 5, 3, 3) and matrix_to_rot6d(R).shape == (4, 5, 6)
