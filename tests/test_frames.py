"""The 22 local frames: proper rigid transforms for any finite joints (degenerate ones too), the seed's layout,
and exact round trips between camera and local coordinates."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from amt_core.geometry.frames import (
    CANONICAL_JOINTS,
    FRAME_NAMES,
    FRAME_ORIGINS,
    FRAME_X_FROM,
    FRAME_X_TO,
    NUM_FRAMES,
    from_local,
    local_frames,
    to_local,
)
from amt_core.joints import FINGER_BASES, FINGERTIPS

coords = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, width=32)
joint_sets = st.lists(st.tuples(coords, coords, coords), min_size=21, max_size=21)


def assert_proper(frames: torch.Tensor) -> None:
    R = frames[..., :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=torch.float64), atol=1e-5, rtol=0)
    bottom = frames[..., 3, :]
    torch.testing.assert_close(bottom, torch.tensor([0.0, 0.0, 0.0, 1.0]).expand_as(bottom))


def test_layout_matches_the_seed():
    assert NUM_FRAMES == 22 and len(FRAME_NAMES) == len(set(FRAME_NAMES)) == 22
    assert FRAME_ORIGINS[:5] == FINGERTIPS and FRAME_ORIGINS[5:10] == FINGER_BASES
    assert len(FRAME_ORIGINS[10:]) == 12 and all(FRAME_X_TO[i] == FRAME_X_FROM[i] + 1 for i in range(10, 22))
    assert all(FRAME_X_FROM[i] == 0 for i in range(5, 10))  # metacarpals follow wrist -> finger base


def test_canonical_hand_frames_follow_bones_and_palm():
    joints = torch.tensor(CANONICAL_JOINTS)
    frames = local_frames(joints)
    assert frames.shape == (22, 4, 4)
    assert_proper(frames)
    torch.testing.assert_close(frames[:, :3, 3], joints[list(FRAME_ORIGINS)])
    bones = joints[list(FRAME_X_TO)] - joints[list(FRAME_X_FROM)]
    torch.testing.assert_close(frames[:, :3, 0], bones / bones.norm(dim=-1, keepdim=True))
    palm = torch.linalg.cross(joints[5] - joints[0], joints[17] - joints[0])
    assert ((frames[:, :3, 2] @ (palm / palm.norm())) > 0.9).all()  # z is the palm normal, made orthogonal to x


@settings(max_examples=60, deadline=None)
@given(joint_sets, st.floats(min_value=0.0, max_value=1.0))
def test_proper_for_any_joints(points, collapse):
    joints = torch.tensor(points)
    # Blend towards a single point so coincident and nearly coincident joints are covered too.
    joints = joints * (1 - collapse) + joints[:1] * collapse
    frames = local_frames(joints.unsqueeze(0))
    assert torch.isfinite(frames).all()
    assert_proper(frames)


def test_degenerate_hands_give_proper_frames_and_finite_gradients():
    line = torch.arange(21.0).unsqueeze(-1) * torch.tensor([0.0, 0.0, 0.01])  # all joints on the optical axis
    cases = [
        torch.zeros(21, 3),  # every joint coincident
        torch.full((21, 3), 0.5),
        line,  # collinear: bones along z, palm collapsed
        line[:, [2, 0, 1]],  # collinear along x
        torch.tensor(CANONICAL_JOINTS) * torch.tensor([1.0, 1.0, 0.0]),  # flat hand: fine
    ]
    batch = torch.stack(cases).requires_grad_(True)
    frames = local_frames(batch)
    assert_proper(frames)
    frames.sum().backward()
    assert torch.isfinite(batch.grad).all()


@settings(max_examples=30, deadline=None)
@given(joint_sets, st.lists(st.tuples(coords, coords, coords), min_size=4, max_size=4))
def test_local_round_trip(points, others):
    joints = torch.tensor(points, dtype=torch.float64)
    frames = local_frames(joints)
    query = torch.tensor(others, dtype=torch.float64)
    local = to_local(query, frames)
    assert local.shape == (22, 4, 3)
    torch.testing.assert_close(from_local(local, frames), query.expand(22, 4, 3), atol=1e-9, rtol=0)
    # Rigid: distances are preserved in every frame.
    torch.testing.assert_close(torch.cdist(local, local), torch.cdist(query, query).expand(22, 4, 4), atol=1e-9, rtol=0)
    # Each frame's origin joint sits at its local origin.
    origins = to_local(joints, frames)[torch.arange(22), list(FRAME_ORIGINS)]
    torch.testing.assert_close(origins, torch.zeros(22, 3, dtype=torch.float64), atol=1e-9, rtol=0)
