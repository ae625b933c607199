"""The training transforms run in the documented order (attention, checkpointing, compile, FP8, DDP), each only when
asked, and FP8 through Transformer Engine hands its autocast to the checkpointed blocks' recomputation."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from amt_core.accel.fp8 import Fp8Config, Fp8Report
from amt_core.models import create_model
from amt_core.train import parallelize
from amt_core.train.config import config_from_dict
from amt_core.train.ddp import DistInfo
from amt_core.train.trainer_config import TrainerConfig


def _format_1_config() -> dict:
    """The run config of the stored pre-refactor checkpoint (format 1: a model name plus overrides)."""
    return json.loads((Path(__file__).parent / "data" / "checkpoint_v1" / "config.json").read_text())["config"]


@pytest.fixture
def calls(monkeypatch):
    """Every transform replaced by a recorder that still does what the next one needs (names, a report)."""
    order: list[str] = []

    def attention(module, name="auto", **kwargs):
        order.append(f"attention:{name}")
        return "sdpa"

    def compile_model(module, mode="default", **kwargs):
        order.append(f"compile:{mode}")
        return ["backbone.vit.blocks.0"]

    def prepare_fp8(module, config, device):
        order.append(f"fp8:{config.backend}")
        backend = config.backend if config.backend != "auto" else "torchao"
        return Fp8Report(
            backend=backend,
            recipe="tensorwise",
            min_dim=1025,
            min_dim_source="default",
            converted=["a"],
            skipped={},
            flop_fraction=0.5,
        )

    def wrap(module, dist, device, find_unused):
        order.append("ddp")
        return torch.nn.Sequential(module) if dist.enabled else module

    real_make_policy = parallelize.make_policy

    def make_policy(spec):
        order.append(f"checkpointing:{spec}")
        return real_make_policy(spec)

    monkeypatch.setattr(parallelize, "set_attention_backend", attention)
    monkeypatch.setattr(parallelize, "compile_model", compile_model)
    monkeypatch.setattr(parallelize, "prepare_fp8", prepare_fp8)
    monkeypatch.setattr(parallelize.ddp, "wrap", wrap)
    monkeypatch.setattr(parallelize, "make_policy", make_policy)
    return order


def test_everything_asked_runs_in_the_documented_order(calls):
    module = create_model("amt_micro")
    tc = TrainerConfig(
        attention="math",
        checkpointing="selective",
        compile=True,
        compile_mode="max-autotune",
        precision="fp8",
        fp8=Fp8Config(backend="torchao"),
    )
    model, prepared = parallelize.prepare_model(module, tc, torch.device("cpu"), DistInfo(world_size=1))
    assert calls == ["attention:math", "checkpointing:selective", "compile:max-autotune", "fp8:torchao", "ddp"]
    assert prepared.applied == ["attention", "checkpointing", "compile", "fp8"] and model is module
    assert prepared.to_dict()["order"] == list(parallelize.ORDER)
    assert prepared.fp8_summary.startswith("FP8 (torchao, tensorwise): 1 of 1 Linear layers")


def test_only_what_is_asked_runs(calls):
    module = create_model("amt_micro")
    model, prepared = parallelize.prepare_model(module, TrainerConfig(), torch.device("cpu"), DistInfo())
    assert calls == ["attention:auto", "checkpointing:none", "ddp"]
    assert prepared.applied == ["attention"] and prepared.fp8 is None and not prepared.compiled
    # the older switch, in a format-1 run config, still means full checkpointing
    calls.clear()
    older = config_from_dict({**_format_1_config(), "trainer": {"grad_checkpointing": True}}).trainer
    parallelize.prepare_model(create_model("amt_micro"), older, torch.device("cpu"), DistInfo())
    assert calls[1] == "checkpointing:full"


def test_transformer_engine_fp8_reaches_the_recomputation(calls, monkeypatch):
    entered = []

    @contextlib.contextmanager
    def te_autocast():
        entered.append("te")
        yield

    monkeypatch.setattr(Fp8Report, "quantization_context", lambda self: te_autocast())
    module = create_model("amt_micro")
    tc = TrainerConfig(checkpointing="full", precision="fp8", fp8=Fp8Config(backend="te"))
    _, prepared = parallelize.prepare_model(module, tc, torch.device("cpu"), DistInfo())
    assert prepared.fp8.backend == "te"
    blocks = [m for m in module.modules() if getattr(m, "_amt_checkpoint_recompute", None) is not None]
    assert len(blocks) == len(prepared.checkpointed) > 0
    forward, recompute = blocks[0]._amt_checkpoint_recompute()
    with forward, recompute:
        pass
    assert entered == ["te"]  # the forward context is TE's own autocast's job; recomputation re-enters it


def test_ranks_take_rank_zeros_attention_choice(calls, monkeypatch):
    sent = []
    monkeypatch.setattr(parallelize.ddp, "broadcast_object", lambda obj, dist: sent.append(obj) or "fa3")
    module = create_model("amt_micro")
    _, prepared = parallelize.prepare_model(
        module, TrainerConfig(), torch.device("cpu"), DistInfo(rank=1, world_size=2)
    )
    # rank 1 measures nothing itself: it takes the broadcast choice and applies it
    assert sent == [None] and calls[0] == "attention:fa3" and prepared.attention == "fa3"
