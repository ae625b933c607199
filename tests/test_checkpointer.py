"""The Checkpointer (`train/checkpointer.py`): retention never loses what a user relies on (manual saves, stage
ends, the best validation and rollback targets survive `keep_checkpoints`; after a rollback the new branch's
checkpoints sort newest and are kept), and `--resume CKPT` past a corrupt latest checkpoint continues on a new
branch."""

from __future__ import annotations

import json

import pytest
from helpers.toys import events_of, toy_config, toy_trainer

from amt_core.errors import UserError
from amt_core.train import checkpoint_files as ckpt_io
from amt_core.train.control import Command


def _run_to(trainer, step: int) -> None:
    while trainer.step < step:
        trainer.handle_commands()
        trainer.train_step(trainer.next_batch())
        trainer.after_step()


def _reasons(run_dir, name: str) -> list[str]:
    return ckpt_io.retained_reasons(run_dir / "checkpoints" / name)


def test_retention_after_manual_save_stage_end_best_and_rollback(tmp_path):
    config = toy_config(steps=(6, 40, 40), ckpt_every=1, keep_checkpoints=2, eval_every=4)
    trainer = toy_trainer(tmp_path, config)
    trainer.start()
    try:
        _run_to(trainer, 3)
        assert trainer.apply_command(Command.SAVE) == {"checkpoint": "step_00000003"}
        _run_to(trainer, 20)
        names = ckpt_io.list_checkpoints(tmp_path / "checkpoints")
        assert "step_00000003" in names and _reasons(tmp_path, "step_00000003") == ["manual"]  # 17 steps later
        assert "step_00000006" in names and "stage_end" in _reasons(tmp_path, "step_00000006")
        best = [n for n in names if "best" in _reasons(tmp_path, n)]
        assert best == [trainer.checkpointer.best_checkpoint]  # exactly one best, and it is the trainer's
        validations = {e["step"]: e["metrics"]["mpjpe_mm"] for e in events_of(tmp_path, "validation")}
        assert validations[int(best[0][-8:])] == min(validations.values())
        assert names[-2:] == ["step_00000019", "step_00000020"]
        assert len(names) <= 2 + 4  # keep_last 2 + initial, manual, stage end, best: nothing else accumulated

        trainer.apply_command(Command.ROLLBACK, "step_00000003")
        assert trainer.checkpointer.branch == 1 and trainer.step == 3
        assert "rollback_target" in _reasons(tmp_path, "step_00000003")
        assert ckpt_io.latest_checkpoint(tmp_path / "checkpoints").name == "step_00000003"  # a resume follows it
        _run_to(trainer, 9)
        names = ckpt_io.list_checkpoints(tmp_path / "checkpoints")
        assert names[-2:] == ["step_b0001_00000008", "step_b0001_00000009"]  # the new branch is the newest
        assert "step_00000019" not in names  # the abandoned tail went first...
        best = trainer.checkpointer.best_checkpoint
        assert ("step_00000020" in names) == (best == "step_00000020")  # ...unless it is the best
        for kept in ("step_00000000", "step_00000003", "step_00000006", "step_b0001_00000006", best):
            assert kept in names
        assert "stage_end" in _reasons(tmp_path, "step_b0001_00000006")
        rollback = events_of(tmp_path, "rollback")[-1]
        assert rollback["branch"] == 1 and rollback["checkpoint"] == "step_00000003"
        trainer.finish()
    finally:
        trainer.close()

    resumed = toy_trainer(
        tmp_path,
        toy_config(steps=(6, 40, 40), ckpt_every=1, keep_checkpoints=2, eval_every=4, max_steps=11),
        resume=True,
    )
    assert resumed.train() == "finished"
    assert resumed.checkpointer.branch == 1
    latest = ckpt_io.latest_checkpoint(tmp_path / "checkpoints").name
    assert latest == "step_b0001_00000011"
    state = json.loads((tmp_path / "checkpoints" / latest / "config.json").read_text())
    assert state["config"]["trainer"]["keep_checkpoints"] == 2


def test_rollbacks_to_the_same_target_each_start_a_new_branch(tmp_path):
    config = toy_config(steps=(40, 3, 3), ckpt_every=2, keep_checkpoints=2)
    trainer = toy_trainer(tmp_path, config)
    trainer.start()
    try:
        _run_to(trainer, 4)
        for branch in (1, 2, 3):
            trainer.apply_command(Command.ROLLBACK, "step_00000002")
            assert trainer.checkpointer.branch == branch
            _run_to(trainer, 6)
            assert ckpt_io.latest_checkpoint(tmp_path / "checkpoints").name == f"step_b{branch:04d}_00000006"
        names = ckpt_io.list_checkpoints(tmp_path / "checkpoints")
        assert names[-1] == "step_b0003_00000006" and "step_00000002" in names
        trainer.finish()
    finally:
        trainer.close()


def test_resume_from_a_named_checkpoint_when_the_latest_is_corrupt(tmp_path):
    first = toy_trainer(tmp_path, toy_config(max_steps=4, ckpt_every=1))
    first.train()
    folder = tmp_path / "checkpoints"
    weights = folder / "step_00000004" / ckpt_io.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])  # torn by a failing disk
    with pytest.raises(UserError, match=r"step_00000004 is corrupt.*--resume step_00000003"):
        toy_trainer(tmp_path, toy_config(max_steps=6, ckpt_every=1), resume=True).train()
    with pytest.raises(UserError, match=r"--resume step_00000099: no complete checkpoint"):
        trainer = toy_trainer(tmp_path, toy_config(max_steps=6, ckpt_every=1), resume=True)
        trainer.resume_from = "step_00000099"
        trainer.train()
    trainer = toy_trainer(tmp_path, toy_config(max_steps=6, ckpt_every=1), resume=True)
    trainer.resume_from = "step_00000003"
    assert trainer.train() == "finished"
    assert trainer.checkpointer.branch == 1  # continued on a new branch: the corrupt step 4 is not overwritten in place
    assert ckpt_io.latest_checkpoint(folder).name == "step_b0001_00000006"
    assert (folder / "step_00000004").exists()
    states = events_of(tmp_path, "state")
    assert states[-2]["resumed_from"] == "step_00000003"
