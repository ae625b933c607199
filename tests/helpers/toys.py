"""Toy parts for the trainer tests: a tiny model returning AMTOutput (and one with dropout), a deterministic dataset
in the Sample schema with optional NaN / exploding samples (and one with NaN labels), a RunConfig sized for a
few-second run, and a poll for what a running trainer shows."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import Dataset

from amt_core.geometry.camera import project_to_image
from amt_core.losses import AMTLoss
from amt_core.models.cnn import CNNConfig
from amt_core.schema.output import AMTOutput
from amt_core.schema.sample import empty_sample
from amt_core.train.config import RunConfig
from amt_core.train.mixup import MixUpConfig
from amt_core.train.stability import StabilityConfig
from amt_core.train.stages import seed_stages
from amt_core.train.trainer_config import TrainerConfig

SIZE = 16
ROOT = torch.tensor([0.0, 0.0, 0.5])


class ToyModel(nn.Module):
    """Image -> 21 joints; module names follow the AMT's groups (backbone, hand_encoder, head)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.GELU())
        self.hand_encoder = nn.Linear(8 * 4 * 4, 32)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 63)

    def forward(self, batch: dict) -> AMTOutput:
        features = self.backbone(batch["image"]).flatten(1)
        hidden = self.norm(torch.nn.functional.gelu(self.hand_encoder(features)))
        joints = self.head(hidden).view(-1, 21, 3) * 0.05 + ROOT.to(hidden)  # (B, 21, 3) metres
        return AMTOutput(joints3d=joints, joints2d=project_to_image(joints, batch["K"]))


class NoisyToyModel(ToyModel):
    """The toy with dropout on its input: training draws from the global torch generator every step, as the real
    models do (dropout, drop path), so a resume that restores that generator imperfectly shows in the weights."""

    def forward(self, batch: dict):
        return super().forward({**batch, "image": torch.nn.functional.dropout(batch["image"], 0.2, self.training)})


class ToyDataset(Dataset):
    """Samples that are a pure function of their index; `nan_at` / `explode_at` corrupt chosen indices."""

    def __init__(self, num: int = 64, nan_at=(), explode_at=(), delay_s: float = 0.0) -> None:
        self.num, self.nan_at, self.explode_at, self.delay_s = num, set(nan_at), set(explode_at), delay_s

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> dict:
        if self.delay_s:
            time.sleep(self.delay_s)
        generator = torch.Generator().manual_seed(index)
        sample = empty_sample(SIZE, SIZE, 0)
        sample["image"] = torch.rand(3, SIZE, SIZE, generator=generator)
        joints = ROOT + 0.03 * torch.randn(21, 3, generator=generator) + 0.05 * sample["image"].mean()
        if index in self.explode_at:
            joints = joints * 1e4
        sample["K"] = torch.tensor([[20.0, 0.0, 8.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]])
        sample["joints3d"] = joints
        sample["joints2d"] = project_to_image(joints, sample["K"])
        sample["valid"]["joints3d"] = torch.tensor(True)
        sample["valid"]["joints2d"] = torch.tensor(True)
        if index in self.nan_at:
            sample["image"][0, 0, 0] = float("nan")
        return sample


class NaNLabels(ToyDataset):
    """Some samples' joints (and so their 2D joints) are NaN, as a broken annotation would be."""

    def __init__(self, bad) -> None:
        super().__init__()
        self.bad = set(bad)

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        if index in self.bad:
            sample["joints3d"] = sample["joints3d"].clone()
            sample["joints3d"][3, 1] = float("nan")
            sample["joints2d"] = sample["joints2d"].clone()
            sample["joints2d"][3] = float("inf")
        return sample


def toy_config(steps=(3, 3, 3), batch_size: int = 8, stability: dict | None = None, **trainer) -> RunConfig:
    settings = dict(
        device="cpu",
        log_every=1,
        diag_every=1000,
        snapshot_every=0,
        ckpt_every=1000,
        progress="none",
        tensorboard=False,
    )
    settings.update(trainer)
    return RunConfig(
        preset="toy",
        model_name="toy",
        model=CNNConfig(),  # a label only: the toy trainers are handed ToyModel
        data="toy",
        val_data="toy",
        batch_size=batch_size,
        loss=AMTLoss.Config(weights={"diversity": 0.0}),
        mixup=MixUpConfig(enabled=False),  # mixing within a rank's half batch differs from the whole batch's (DDP)
        stages=seed_stages(
            steps=steps, warmup_steps=1, direct_terms_off=("refinement", "physics"), physics_terms=("physics",)
        ),
        stability=StabilityConfig(check_every=1, spike_min_history=4, **(stability or {})),
        trainer=TrainerConfig(**settings),
    )


def toy_trainer(run_dir, config: RunConfig | None = None, resume: bool = False, dataset=None, model=None):
    """A trainer on toy parts; `model` is the model's class (ToyModel), built after seeding so runs start alike."""
    from amt_core.train import parts
    from amt_core.train.trainer import Trainer

    config = config or toy_config()
    torch.manual_seed(config.trainer.seed)
    return Trainer(
        config,
        run_dir,
        resume=resume,
        model=(model or ToyModel)(),
        loss=parts.build_loss(config.loss),
        dataset=dataset if dataset is not None else ToyDataset(),
        val_dataset=ToyDataset(8),
    )


def events_of(run_dir, kind: str | None = None) -> list[dict]:
    from amt_core.train.events import EventReader

    events = EventReader(run_dir).read_all()
    return [e for e in events if kind is None or e["kind"] == kind]


def wait_for(predicate, timeout_s: float = 180.0):
    """Poll `predicate` until it returns something true, and return that; an AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")
