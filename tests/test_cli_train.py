"""`amt-core train / eval / predict / ctl` from the command line: a micro run end to end, bad input that fails with
one line, exit code 2, and nothing overwritten, giving up as exit 3, and `train --help` and the first line stating the
plan and the time limit."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from PIL import Image

from amt_core.cli import main
from amt_core.train.events import EventReader
from amt_core.train.trainer import TrainingFailed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--preset", "nope"], "unknown preset"),
        (["train", "--preset", "micro", "--set", "trainer.log_evry=1"], "no key 'log_evry'"),
        (["train", "--preset", "micro", "--set", "stages.0.lr=-1"], "lr must be > 0"),
        (["train", "--preset", "micro", "--data", "synth:/no/such/folder"], "synth"),
        (["train", "--preset", "micro", "--model", "amt_nope"], "unknown model"),
        (["eval", "--ckpt", "/no/such/ckpt"], "does not exist"),
        (["ctl", "/no/such/run", "pause"], "not a run directory"),
        (["ctl", ".", "fly"], "unknown command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing written


def test_live_run_dir_is_refused(tmp_path, capsys):
    import os

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    (run_dir / "events.jsonl").write_text("keep\n")
    assert main(["train", "--preset", "micro", "--run-dir", str(run_dir), "--resume"]) == 2
    assert "owned by a live run" in capsys.readouterr().err
    assert (run_dir / "events.jsonl").read_text() == "keep\n"


def test_micro_train_eval_predict(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "micro", "--run-dir", str(run_dir), "--max-steps", "2"]) == 0
    events = EventReader(run_dir).read_all()
    kinds = {e["kind"] for e in events}
    assert {"state", "stage", "metrics", "diagnostics", "checkpoint"} <= kinds
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["preset"] == "micro" and "torch" in config["versions"]
    diagnostics = [e for e in events if e["kind"] == "diagnostics"][0]
    assert diagnostics["pred_std_mm"] > 0 and diagnostics["attention_entropy"] and diagnostics["grad_norm"]

    report = tmp_path / "eval.json"
    assert main(["eval", "--ckpt", str(run_dir), "--max-samples", "4", "--batch-size", "4", "--json", str(report)]) == 0
    metrics = json.loads(report.read_text())
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "auc_0_50", "pred_std_mm", "gt_std_mm", "num_samples"):
        assert key in metrics, key
    assert metrics["num_samples"] == 4 and metrics["mpjpe_mm"] > 0
    # the trivial predictors on the same samples, with the training data's mean pose the trainer stored
    for key in ("ref_mean_pose_mpjpe_mm", "ref_mean_pose_pa_mpjpe_mm", "ref_wrist_mpjpe_mm", "skill_mpjpe"):
        assert isinstance(metrics[key], float), key
    assert metrics["ref_mean_pose_source"] == "train"
    assert metrics["skill_mpjpe"] == pytest.approx(1 - metrics["mpjpe_mm"] / metrics["ref_mean_pose_mpjpe_mm"])
    assert "mean pose" in capsys.readouterr().out

    image = tmp_path / "hand.png"
    Image.fromarray((np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(run_dir), str(image), "--out", str(out)]) == 0
    record = json.loads((out / "hand.json").read_text())
    assert np.asarray(record["joints3d_m"]).shape == (21, 3) and "object" in record and "contacts" in record
    assert (out / "hand_hand.ply").stat().st_size > 0 and (out / "hand_object.ply").exists()
    assert Image.open(out / "hand_overlay.png").size[0] >= 256

    (run_dir / "checkpoints" / "latest").write_text("step_00000002\n")
    weights = run_dir / "checkpoints" / "step_00000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run_dir / "checkpoints" / "step_00000002")]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_output_into_a_closed_pipe_is_not_a_traceback():
    """`amt-core train --print-config | head -1`: the reader leaves early; no BrokenPipeError traceback, exit 0."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "amt_core", "train", "--preset", "cpu", "--print-config"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes a byte: every write meets a closed pipe
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_giving_up_is_one_line_and_exit_3(tmp_path, monkeypatch, capsys):
    import amt_core.train.trainer as trainer_module

    class GivesUp:
        def __init__(self, *args, **kwargs) -> None:
            self.is_main = True

        def train(self):
            raise TrainingFailed("explosion at step 8 after 3 rollbacks; lower the learning rate")

    monkeypatch.setattr(trainer_module, "Trainer", GivesUp)
    code = main(["train", "--preset", "micro", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 3
    assert err.strip().count("\n") == 0 and "explosion at step 8 after 3 rollbacks" in err and "intact" in err


def test_help_and_the_first_line_state_the_plan_and_the_time_limit(capsys):
    from amt_core.commands.train import plan_line
    from amt_core.presets import apply_overrides, get_preset

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default 0: no time limit)" in help_text
    micro, cpu = get_preset("micro"), get_preset("cpu")
    micro_steps, cpu_steps = (sum(s.steps for s in c.stages) for c in (micro, cpu))
    assert f"micro plans {micro_steps} steps, cpu {cpu_steps}" in help_text  # kept true to the presets
    line = plan_line(apply_overrides(micro, ["trainer.max_steps=200"]), 100, "runs/x", resume=False)
    assert f"the plan is {micro_steps} steps" in line and "--max-steps 200 does not lengthen it" in line
    assert line.endswith("no time limit")
    line = plan_line(apply_overrides(micro, ["trainer.max_time_s=90"]), 100, "runs/x", resume=False)
    assert line.endswith("1.5 minutes of training")
