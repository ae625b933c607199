"""Checkpoints written before the architecture refactors still load, rebuild the same model and predict what they
predicted then, and resume: one from before the first step (commit 0d8374c) and one from before the second (commit
15f4627: TrainState and a checkpointer given named parts), whose resumed run predicts what the old trainer's did."""

from __future__ import annotations

import shutil

import numpy as np
import torch

from amt_core.train.parts import model_from_checkpoint


def _inputs() -> dict:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 64, 64, generator=g)
    K = torch.tensor([[80.0, 0, 32], [0, 80.0, 32], [0, 0, 1]]).expand(2, 3, 3).contiguous()
    return {"image": image, "K": K}


def _assert_predicts(checkpoint, expected: dict, prefix: str = "", atol: float = 1e-5) -> None:
    """The checkpoint's model predicts `expected[prefix + field]` for joints, hand vertices and object logits."""
    model, _, _ = model_from_checkpoint(str(checkpoint), torch.device("cpu"))
    with torch.no_grad():
        out = model(_inputs())
    for field in ("joints3d", "hand_verts", "obj_logits"):
        np.testing.assert_allclose(getattr(out, field).numpy(), expected[prefix + field], atol=atol)


def _resume_run(tmp_path, checkpoint):
    """A run directory holding only `checkpoint` (as step_00000000) and its config, as the old trainer left it."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, run / "checkpoints" / "step_00000000")
    shutil.copy(checkpoint / "config.json", run / "config.json")
    return run


def test_old_checkpoint_predicts_what_it_predicted_before(old_checkpoint) -> None:
    _assert_predicts(old_checkpoint, np.load(old_checkpoint / "expected.npz"))


def test_old_checkpoint_resumes(tmp_path, old_checkpoint) -> None:
    from amt_core.cli import main

    run = _resume_run(tmp_path, old_checkpoint)
    code = main(["train", "--run-dir", str(run), "--resume", "--max-steps", "1", "--device", "cpu"])
    assert code == 0
    names = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert names[-1] == "step_00000001"


def test_checkpoint_from_before_trainstate_predicts_what_it_did(checkpoint_before_trainstate) -> None:
    expected = np.load(checkpoint_before_trainstate / "expected.npz")
    _assert_predicts(checkpoint_before_trainstate, expected, prefix="initial_")


def test_checkpoint_from_before_trainstate_resumes_as_the_old_trainer_did(tmp_path, checkpoint_before_trainstate):
    """Two steps from the old checkpoint with today's trainer land where the old trainer's two steps landed (the
    optimizer, stage plan, batch plan, RNGs and counters all came back from the old layout)."""
    from amt_core.cli import main

    run = _resume_run(tmp_path, checkpoint_before_trainstate)
    args = ["train", "--run-dir", str(run), "--resume", "--max-steps", "2", "--set", "trainer.progress=none"]
    assert main(args) == 0
    expected = np.load(checkpoint_before_trainstate / "expected.npz")
    assert np.abs(expected["resumed_joints3d"] - expected["initial_joints3d"]).max() > 1e-3  # the steps moved it
    _assert_predicts(run / "checkpoints" / "step_00000002", expected, prefix="resumed_", atol=1e-4)
