"""DDP on the CPU (gloo): 2 processes with half the batch each end where one process with the whole batch ends."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp
from helpers.toys import toy_config, toy_trainer

from amt_core.train.checkpoint_files import latest_checkpoint, load_checkpoint

STEPS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    toy_trainer(run_dir, toy_config(max_steps=STEPS)).train()


def test_two_processes_match_one(tmp_path):
    single = toy_trainer(tmp_path / "single", toy_config(max_steps=STEPS))
    single.train()
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    a = load_checkpoint(latest_checkpoint(tmp_path / "single" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "ddp" / "checkpoints"))
    assert b.state["step"] == STEPS and b.config["world_size"] == 2
    for name in a.weights:
        torch.testing.assert_close(a.weights[name], b.weights[name], rtol=1e-4, atol=1e-6)
    initial = load_checkpoint(tmp_path / "single" / "checkpoints" / "step_00000000").weights
    assert not torch.allclose(initial["head.weight"], a.weights["head.weight"])
    for name, value in a.state["loss"].items():  # the loss's learnable joint weights are averaged too
        torch.testing.assert_close(value, b.state["loss"][name], rtol=1e-4, atol=1e-6)
