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


def test_old_checkpoint_predicts_what_it_predicted_before(old_checkpoint) -> None:
    model, config, _ = model_from_checkpoint(str(old_checkpoint), torch.device("cpu"))
    expected = np.load(old_checkpoint / "expected.npz")
    with torch.no_grad():
        out = model(_inputs())
    np.testing.assert_allclose(out.joints3d.numpy(), expected["joints3d"], atol=1e-5)
    np.testing.assert_allclose(out.hand_verts.numpy(), expected["hand_verts"], atol=1e-5)
    np.testing.assert_allclose(out.obj_logits.numpy(), expected["obj_logits"], atol=1e-5)


def test_old_checkpoint_resumes(tmp_path, old_checkpoint) -> None:
    from amt_core.cli import main

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(old_checkpoint, run / "checkpoints" / "step_00000000")
    shutil.copy(old_checkpoint / "config.json", run / "config.json")
    code = main(["train", "--run-dir", str(run), "--resume", "--max-steps", "1", "--device", "cpu"])
    assert code == 0
    names = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert names[-1] == "step_00000001"


def test_checkpoint_from_before_trainstate_predicts_what_it_did(checkpoint_before_trainstate) -> None:
    model, _, _ = model_from_checkpoint(str(checkpoint_before_trainstate), torch.device("cpu"))
    expected = np.load(checkpoint_before_trainstate / "expected.npz")
    with torch.no_grad():
        out = model(_inputs())
    np.testing.assert_allclose(out.joints3d.numpy(), expected["initial_joints3d"], atol=1e-5)
    np.testing.assert_allclose(out.hand_verts.numpy(), expected["initial_hand_verts"], atol=1e-5)
    np.testing.assert_allclose(out.obj_logits.numpy(), expected["initial_obj_logits"], atol=1e-5)


def test_checkpoint_from_before_trainstate_resumes_as_the_old_trainer_did(tmp_path, checkpoint_before_trainstate):
    """Two steps from the old checkpoint with today's trainer land where the old trainer's two steps landed (the
    optimizer, stage plan, batch plan, RNGs and counters all came back from the old layout)."""
    from amt_core.cli import main

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint_before_trainstate, run / "checkpoints" / "step_00000000")
    shutil.copy(checkpoint_before_trainstate / "config.json", run / "config.json")
    args = ["train", "--run-dir", str(run), "--resume", "--max-steps", "2", "--set", "trainer.progress=none"]
    assert main(args) == 0
    model, _, _ = model_from_checkpoint(str(run / "checkpoints" / "step_00000002"), torch.device("cpu"))
    expected = np.load(checkpoint_before_trainstate / "expected.npz")
    with torch.no_grad():
        out = model(_inputs())
    assert np.abs(expected["resumed_joints3d"] - expected["initial_joints3d"]).max() > 1e-3  # the steps moved it
    np.testing.assert_allclose(out.joints3d.numpy(), expected["resumed_joints3d"], atol=1e-4)
    np.testing.assert_allclose(out.hand_verts.numpy(), expected["resumed_hand_verts"], atol=1e-4)
    np.testing.assert_allclose(out.obj_logits.numpy(), expected["resumed_obj_logits"], atol=1e-4)
