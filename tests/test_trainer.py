"""The trainer on toy parts: exact resume, non-finite batches skipped and recorded, NaN labels counted and skipped,
explosions rolled back, and giving up (TrainingFailed) after too many rollbacks."""

from __future__ import annotations

import pytest
import torch
from helpers.toys import NaNLabels, NoisyToyModel, ToyDataset, events_of, toy_config, toy_trainer

from amt_core.train import checkpoint_files as ckpt_io
from amt_core.train.checkpoint_files import latest_checkpoint, load_checkpoint
from amt_core.train.sampler import BatchPlan
from amt_core.train.trainer import TrainingFailed


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(latest_checkpoint(run_dir / "checkpoints")).weights


def _noisy_trainer(run_dir, max_steps: int, resume: bool = False):
    return toy_trainer(run_dir, toy_config(steps=(4, 4, 4), max_steps=max_steps), resume, model=NoisyToyModel)


def test_resume_is_exact(tmp_path):
    """12 straight steps and 6 + resume + 6 are bit for bit the same on the CPU: weights, losses, every term."""
    straight = _noisy_trainer(tmp_path / "a", max_steps=12)
    assert straight.train() == "finished"
    first = _noisy_trainer(tmp_path / "b", max_steps=6)  # stops mid stage 2
    first.train()
    assert first.step == 6 and first.stage == 1
    resumed = _noisy_trainer(tmp_path / "b", max_steps=12, resume=True)
    resumed.train()
    assert resumed.step == 12 and resumed.stage == 2  # crossed the stage boundary at 8 after the resume
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    metrics_a = {e["step"]: e for e in events_of(tmp_path / "a", "metrics")}
    metrics_b = {e["step"]: e for e in events_of(tmp_path / "b", "metrics")}
    for step in range(1, 13):
        assert metrics_a[step]["loss"] == metrics_b[step]["loss"], step
        assert metrics_a[step]["terms"] == metrics_b[step]["terms"], step
    # training moved the weights at all (a broken optimizer would pass the comparison)
    initial = load_checkpoint(tmp_path / "a" / "checkpoints" / "step_00000000").weights
    assert not torch.allclose(initial["head.weight"], a["head.weight"])
    states = [e["state"] for e in events_of(tmp_path / "b", "state")]
    assert states == ["running", "finished", "running", "finished"]


def test_nan_batch_is_skipped_and_recorded(tmp_path):
    config = toy_config(max_steps=5, ckpt_every=1)
    bad = BatchPlan(64, config.batch_size, config.trainer.seed).global_indices(0, 2)[3]  # in the 3rd batch
    trainer = toy_trainer(tmp_path, config, dataset=ToyDataset(nan_at=[bad]))
    assert trainer.train() == "finished"
    anomalies = events_of(tmp_path, "anomaly")
    assert len(anomalies) == 1
    assert anomalies[0]["what"] == "non_finite" and anomalies[0]["step"] == 3
    assert bad in anomalies[0]["batch"] and anomalies[0]["action"] == "skipped"
    assert events_of(tmp_path, "metrics")[-1]["skipped_total"] == 1
    before = load_checkpoint(tmp_path / "checkpoints" / "step_00000002").weights
    after = load_checkpoint(tmp_path / "checkpoints" / "step_00000003").weights
    for name in before:  # the skipped step left every weight exactly as it was
        assert torch.equal(before[name], after[name]), name
    final = load_checkpoint(tmp_path / "checkpoints" / "step_00000005").weights
    assert all(torch.isfinite(v).all() for v in final.values())
    assert not torch.equal(final["head.weight"], after["head.weight"])  # and training went on


def test_explosion_rolls_back_with_lr_backoff(tmp_path):
    config = toy_config(steps=(20, 3, 3), max_steps=11, ckpt_every=5)
    bad = BatchPlan(64, config.batch_size, config.trainer.seed).global_indices(0, 7)[0]  # in the 8th batch
    trainer = toy_trainer(tmp_path, config, dataset=ToyDataset(explode_at=[bad]))
    assert trainer.train() == "finished"
    anomalies = [e for e in events_of(tmp_path, "anomaly") if e["what"] == "explosion"]
    assert len(anomalies) == 1 and anomalies[0]["step"] == 8 and anomalies[0]["checkpoint"] == "step_00000005"
    rollbacks = events_of(tmp_path, "rollback")
    assert len(rollbacks) == 1 and rollbacks[0]["step"] == 5 and rollbacks[0]["from_step"] == 8
    assert rollbacks[0]["lr_scale"] == 0.5
    metrics = events_of(tmp_path, "metrics")
    after = [e for e in metrics if e["time"] > rollbacks[0]["time"]]
    assert after and after[0]["step"] == 6 and all(e["lr_scale"] == 0.5 for e in after)
    assert trainer.step == 11 and trainer.state.rollbacks == 1
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path).values())


def test_stage_plan_learning_rates_and_groups(tmp_path):
    trainer = toy_trainer(tmp_path, toy_config(max_steps=4))
    groups = {g["group"]: g["lr_scale"] for g in trainer.optimizer.param_groups}
    assert groups == {"backbone": 0.01, "encoders": 0.5, "decoders": 1.0, "loss": 1.0}
    no_decay = [g for g in trainer.optimizer.param_groups if g["weight_decay"] == 0]
    names = {id(p): n for n, p in trainer.module.named_parameters()}
    undecayed = {names.get(id(p)) for g in no_decay for p in g["params"]}
    assert {"norm.weight", "norm.bias", "head.bias"} <= undecayed and "head.weight" not in undecayed
    trainer.train()
    metrics = events_of(tmp_path, "metrics")
    assert metrics[0]["lr"]["backbone"] == 0.0  # stage 1 freezes the pretrained backbone
    assert metrics[-1]["stage"] == 2 and metrics[-1]["lr"]["backbone"] > 0
    assert [e["stage"] for e in events_of(tmp_path, "stage")] == [1, 2]


def test_batch_plan_shards_mines_and_resumes():
    plan = BatchPlan(64, 8, seed=3)
    first = plan.global_indices(0, 0)
    assert len(set(first)) == 8 and first != plan.global_indices(1, 0)  # a new permutation each epoch
    halves = [BatchPlan(64, 8, seed=3, rank=r, world_size=2).local_indices(first) for r in (0, 1)]
    assert halves[0] + halves[1] == first
    plan.record_errors(list(range(64)), [float(i) for i in range(64)])
    assert plan.refresh_pool(0.5, pool_size=4) and plan.pool == [63, 62, 61, 60]
    mined = plan.global_indices(0, 1)
    assert set(mined[-4:]) <= {60, 61, 62, 63}
    plan.consumed(0, 1)
    copy = BatchPlan(64, 8, seed=3)
    copy.load_state_dict(plan.state_dict())
    assert [next(copy.iterate())[2]] == [next(plan.iterate())[2]]
    assert copy.samples_seen() == plan.samples_seen() == 16


def test_stages_by_wall_time(tmp_path):
    config = toy_config(steps=(1000, 1000, 1000), max_time_s=3.0, stage_by_time=True)
    trainer = toy_trainer(tmp_path, config, dataset=ToyDataset(delay_s=0.002))
    assert trainer.train() == "finished"
    stages = events_of(tmp_path, "stage")
    assert [e["stage"] for e in stages] == [1, 2, 3]
    assert (
        3.0 <= trainer.state.train_time_s < 30 and trainer.step < 3000
    )  # the time budget, not the step plan, ended it
    metrics = events_of(tmp_path, "metrics")
    times = {e["stage"]: e["train_time_s"] for e in metrics}  # the last time seen in each stage
    assert times[1] < times[2] < times[3]


def test_a_data_bound_run_says_so_once_and_every_metrics_event_has_the_wait(tmp_path):
    # each sample takes 100 ms to load against a toy step of a few milliseconds (0.15-0.6 s on a machine loaded
    # with 7 busy processes besides): the run is data-bound either way, and a metrics window of 6 steps waits 2.4 s
    config = toy_config(steps=(4, 4, 4), batch_size=4, log_every=6)
    toy_trainer(tmp_path, config, dataset=ToyDataset(delay_s=0.1)).train()
    metrics = events_of(tmp_path, "metrics")
    assert metrics and all(0.0 <= m["data_share"] <= 1.0 and m["data_wait_s"] >= 0.0 for m in metrics)
    assert max(m["data_share"] for m in metrics) > 0.5
    warnings = [e for e in events_of(tmp_path, "anomaly") if e["what"] == "data_bound"]
    assert len(warnings) == 1 and "amt-core synth" in warnings[0]["message"]


def test_a_compute_bound_run_raises_no_data_warning(tmp_path):
    import time

    from helpers.toys import ToyModel

    from amt_core.train import parts
    from amt_core.train.trainer import Trainer

    class SlowModel(ToyModel):  # 40 ms of "compute" per step against a loader that needs a few
        def forward(self, batch):
            time.sleep(0.04)
            return super().forward(batch)

    config = toy_config(steps=(4, 4, 4), batch_size=4)
    Trainer(
        config,
        tmp_path,
        model=SlowModel(),
        loss=parts.build_loss(config.loss),
        dataset=ToyDataset(),
        val_dataset=ToyDataset(8),
    ).train()
    metrics = events_of(tmp_path, "metrics")
    assert metrics and max(m["data_share"] for m in metrics) < 0.25
    assert not [e for e in events_of(tmp_path, "anomaly") if e["what"] == "data_bound"]


def test_nan_labels_are_counted_and_skipped_with_one_warning(tmp_path):
    bad = [0, 5, 9, 17, 33, 50]
    trainer = toy_trainer(tmp_path, toy_config(steps=(8, 8, 8), max_steps=8), dataset=NaNLabels(bad))
    assert trainer.train() == "finished"
    warnings = [e for e in events_of(tmp_path, "anomaly") if e["what"] == "invalid_labels"]
    assert len(warnings) == 1 and "NaN or infinite labels" in warnings[0]["message"]
    assert not [e for e in events_of(tmp_path, "anomaly") if e["what"] == "non_finite"]  # no step was lost to them
    assert events_of(tmp_path, "metrics")[-1]["invalid_samples"] == len(bad)  # 8 batches of 8: one epoch of 64
    weights = ckpt_io.load_checkpoint(ckpt_io.latest_checkpoint(tmp_path / "checkpoints")).weights
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_real_trainer_gives_up_with_training_failed(tmp_path):
    """What the CLI maps to exit 3: the trainer raises TrainingFailed after max_rollbacks explosions."""
    config = toy_config(steps=(40, 3, 3), max_steps=30, ckpt_every=2, stability={"max_rollbacks": 1})
    explode = list(range(64))  # every sample explodes once the spike history exists
    trainer = toy_trainer(tmp_path, config, dataset=ToyDataset(explode_at=explode))
    trainer.spike.check = lambda loss: trainer.step >= 6  # an explosion at every check from step 6 on
    with pytest.raises(TrainingFailed, match="after 1 rollbacks"):
        trainer.train()
    assert ckpt_io.latest_checkpoint(tmp_path / "checkpoints") is not None
