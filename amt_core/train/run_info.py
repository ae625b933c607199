"""config.json, of the run and of each checkpoint: the resolved config and what the run ran on (versions, device,
parameter counts, the stage lengths, the acceleration applied, the training data's mean pose)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import timm
import torch

from amt_core import __version__

if TYPE_CHECKING:
    from amt_core.train.view import TrainerView


def versions() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "amt_core": __version__,
        "python": sys.version.split()[0],
    }


def run_info(trainer: TrainerView) -> dict[str, Any]:
    """config.json's contents for the run as it stands now."""
    groups = trainer.optimizer.param_groups
    param_groups = {
        g: sum(p.numel() for pg in groups if pg["group"] == g for p in pg["params"]) for g in trainer.groups
    }
    pose = trainer.mean_pose.mean()
    return {
        "config": trainer.config.to_dict(),
        "versions": versions(),
        "device": str(trainer.device),
        "world_size": trainer.dist.world_size,
        "parameters": sum(p.numel() for p in trainer.module.parameters()),
        "param_groups": param_groups,
        "stage_lengths": trainer.stages.lengths,
        "acceleration": trainer.prepared.to_dict(),
        "reference_pose": None if pose is None else pose.tolist(),
        "command": sys.argv,
        "pid": os.getpid(),
    }
