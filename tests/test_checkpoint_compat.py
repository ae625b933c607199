"""A checkpoint written before the architecture refactor (commit 0d8374c, `amt-core train --preset micro`, step 0)
still loads, rebuilds the same model and predicts what it predicted then; and it resumes."""

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
