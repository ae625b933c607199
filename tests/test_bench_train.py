"""`amt-core bench train` on the CPU (micro preset), and the trainer's transforms as the run's config records them."""

from __future__ import annotations

import argparse
import json

import pytest

from amt_core.bench import train as bench
from amt_core.errors import UserError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(["--preset", "micro", "--steps", "1", "--warmup", "1", *argv])


def test_rows_per_combination_with_flops_and_a_reason_for_what_cannot_run():
    result = bench.run(_args("--precision", "fp32,fp8", "--checkpointing", "none,selective", "--peak-tflops", "1"))
    rows = result["rows"]
    assert [(r["precision"], r["ckpt"]) for r in rows] == [
        ("fp32", "none"),
        ("fp32", "selective"),
        ("fp8", "none"),
        ("fp8", "selective"),
    ]
    measured, refused = rows[:2], rows[2:]
    for row in measured:
        assert row["images_per_s"] > 0 and row["step_ms"] > 0 and row["rss_peak_mb"] > 0
        assert row["attn"] == "sdpa" and row["fp8"] == "-"
        # MFU is achieved FLOP/s over the given peak, and the FLOPs are the counted ones
        assert row["mfu"] == pytest.approx(row["tflops"] / 1.0)
        assert row["tflops"] == pytest.approx(result["gflop_per_image"] * row["images_per_s"] / 1e3, rel=0.05)
    # selective checkpointing keeps the matmul outputs but recomputes the element-wise ones: less is saved
    assert 0 < measured[1]["act_mb_per_image"] < measured[0]["act_mb_per_image"]
    for row in refused:
        assert "FP8 needs a CUDA GPU" in row["error"] and "images_per_s" not in row
    assert result["device"] == "cpu" and result["model"] == "amt_micro" and result["gflop_per_image"] > 0.05
    assert result["images_per_s"] == max(r["images_per_s"] for r in measured)


def test_mfu_is_not_invented_without_a_known_peak():
    result = bench.run(_args("--no-flops"))
    assert "mfu" not in result["rows"][0] and "gflop_per_image" not in result
    result = bench.run(_args())
    assert result["rows"][0]["mfu"] == "n/a" and result["peak_tflops"] == "unknown"


def test_pipeline_reports_the_devices_busy_share():
    row = bench.run(_args("--pipeline", "--no-flops", "--steps", "2"))["rows"][0]
    assert 0.0 < row["device_busy"] <= 1.0
    assert row["data_wait_ms"] >= 0.0


def test_nothing_runnable_is_one_error():
    with pytest.raises(UserError, match=r"FP8 needs a CUDA GPU.*\(and 1 more combinations could not run\)"):
        bench.run(_args("--precision", "fp8", "--attn", "sdpa,math"))
    with pytest.raises(UserError, match="unknown checkpointing 'sometimes'"):
        bench.run(_args("--checkpointing", "sometimes"))
    with pytest.raises(UserError, match="--peak-tflops must be > 0"):
        bench.run(_args("--peak-tflops", "0"))


def test_the_run_config_records_the_transforms_in_order(tmp_path):
    from amt_core.presets import apply_overrides, get_preset
    from amt_core.train.trainer import Trainer

    config = apply_overrides(get_preset("micro"), ["trainer.checkpointing=every:2", "trainer.attention=math"])
    trainer = Trainer(config, tmp_path / "run")
    try:
        trainer.start()
        recorded = json.loads((tmp_path / "run" / "config.json").read_text())["acceleration"]
    finally:
        trainer.close()
    assert recorded["order"] == ["attention", "checkpointing", "compile", "fp8", "ddp"]
    assert recorded["applied"] == ["attention", "checkpointing"]
    assert recorded["attention"]["backend"] == "math"
    # the micro model's five transformer blocks are its heads' (its trunk is convolutional): every second one, 3
    assert recorded["checkpointing"] == {"policy": "every:2", "blocks": 3}
    assert recorded["compiled"] == [] and recorded["fp8"] is None and recorded["ddp"] is False


class _FakeGPU:
    """A trainer whose steps run out of memory above `capacity` samples, as a CUDA allocator would."""

    def __init__(self, capacity: int, micro_batch: int) -> None:
        import torch

        from amt_core.train.micro_batches import MicroBatches
        from amt_core.train.state import TrainState

        self.capacity, self.tried = capacity, []
        self.state = TrainState(micro_batch=micro_batch)
        self.micro_batches = MicroBatches(self.state, micro_batch, dynamic=True)
        self.device = torch.device("cpu")  # no CUDA calls: _sync and release_memory only act on CUDA
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

    def train_step(self, batch: dict) -> None:
        assert not self.micro_batches.dynamic  # the search must see the OOM, not a silently halved micro-batch
        size = batch["image"].shape[0]
        assert size == self.state.micro_batch and batch["index"].shape[0] == size
        self.tried.append(size)
        if size > self.capacity:
            raise RuntimeError(f"CUDA out of memory. Tried to allocate {size} MiB")

    def check(self) -> bool:
        return True


@pytest.mark.parametrize("capacity", [1, 37, 64, 1000])
def test_largest_batch_doubles_then_bisects_and_restores_the_trainer(capacity):
    import torch

    trainer = _FakeGPU(capacity, micro_batch=16)
    batch = {"image": torch.zeros(4, 3, 2, 2), "index": torch.arange(4), "meta": ["a", "b", "c", "d"]}
    found = bench._largest_batch(trainer, batch)
    assert found <= capacity and found >= capacity - max(1, capacity // 16)
    assert trainer.state.micro_batch == 16 and trainer.micro_batches.dynamic is True


def test_largest_batch_passes_other_errors_through():
    import torch

    trainer = _FakeGPU(8, micro_batch=4)
    trainer.train_step = lambda batch: (_ for _ in ()).throw(RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        bench._largest_batch(trainer, {"image": torch.zeros(4, 1), "index": torch.arange(4)})


def test_micro_batch_search_halves_on_out_of_memory_and_gives_up_in_one_line():
    import torch

    from amt_core.train.memory import find_micro_batch

    tried = []

    def attempt(size: int) -> None:
        tried.append(size)
        if size > 20:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    cuda = torch.device("cuda")  # only its type is read; nothing runs on a GPU
    assert find_micro_batch(attempt, 128, cuda) == 16 and tried == [128, 64, 32, 16]
    assert find_micro_batch(attempt, 128, torch.device("cpu")) == 128  # no search on the CPU
    with pytest.raises(UserError, match="not even a batch of 1 fits in GPU memory; use --set trainer.checkpointing"):
        find_micro_batch(lambda size: attempt(size + 100), 8, cuda)
    with pytest.raises(ValueError):
        find_micro_batch(lambda size: (_ for _ in ()).throw(ValueError("not an OOM")), 8, cuda)


def test_speedups_are_against_the_bf16_row_with_the_same_settings():
    rows = [
        {"precision": "bf16", "attn": "sdpa", "compile": True, "ckpt": "none", "images_per_s": 100.0},
        {"precision": "fp8", "attn": "sdpa", "compile": True, "ckpt": "none", "images_per_s": 90.0},
        {"precision": "fp8", "attn": "sdpa", "compile": False, "ckpt": "none", "images_per_s": 80.0},
        {"precision": "fp32", "attn": "sdpa", "compile": True, "ckpt": "none", "images_per_s": 25.0},
        {"precision": "fp8", "attn": "fa3", "compile": True, "ckpt": "none", "error": "no FlashAttention-3"},
    ]
    bench._speedups_over_bf16(rows)
    assert rows[1]["vs_bf16"] == pytest.approx(0.9)  # reported as it is, below 1 too
    assert rows[3]["vs_bf16"] == pytest.approx(0.25)
    assert "vs_bf16" not in rows[0] and "vs_bf16" not in rows[2] and "vs_bf16" not in rows[4]
