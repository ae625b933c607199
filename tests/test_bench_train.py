"""`amt-core bench train` on the CPU (micro preset), and the trainer's transforms as the run's config records them."""

from __future__ import annotations

import argparse
import json

import pytest

from amt_core.errors import UserError
from amt_core.train import bench


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
    assert recorded["checkpointing"] == {"policy": "every:2", "blocks": 5}
    assert recorded["compiled"] == [] and recorded["fp8"] is None and recorded["ddp"] is False
