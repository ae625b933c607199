"""`amt-core info`: versions, the compute device, and which optional accelerators are importable.

`--brief` answers without importing torch (package versions from their metadata, GPUs from the NVIDIA driver's
/proc entries), in a fraction of a second; the full report imports torch and asks it about the device.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--brief", action="store_true", help="versions and GPUs without importing torch (fast; no speed figures)"
    )


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


_PACKAGES = ("torch", "timm", "open3d", "smplx", "numpy", "PySide6")
_ACCELERATORS = {
    "flash_attn_3": "flash_attn_interface",
    "flash_attn_2": "flash_attn",
    "transformer_engine": "transformer_engine",
    "xformers": "xformers",
    "torchao": "torchao",
}


def _driver_gpus() -> list[str]:
    """GPU model names the NVIDIA driver lists in /proc (empty without the driver): no torch, no CUDA context."""
    from pathlib import Path

    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            fields = dict(line.split(":", 1) for line in info.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        names.append(fields.get("Model", "unknown").strip())
    return names


def collect_brief() -> dict:
    """What `info --brief` reports: versions from package metadata, GPUs from the driver, accelerators by spec."""
    from amt_core import __version__

    versions = {"amt_core": __version__, "python": platform.python_version()}
    versions.update({name.lower(): _version(name) for name in _PACKAGES})
    gpus = _driver_gpus()
    device = {"type": "cuda", "name": gpus[0], "count": len(gpus)} if gpus else {"type": "cpu"}
    device["name"] = device.get("name") or platform.processor() or platform.machine()
    accelerators = {name: importlib.util.find_spec(module) is not None for name, module in _ACCELERATORS.items()}
    return {"versions": versions, "device": device, "accelerators": accelerators}


def collect() -> dict:
    """Everything `info` reports, as plain data."""
    import torch

    from amt_core import __version__

    versions = {
        "amt_core": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": _version("timm"),
        "open3d": _version("open3d"),
        "smplx": _version("smplx"),
        "numpy": _version("numpy"),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        device = {
            "type": "cuda",
            "name": props.name,
            "count": torch.cuda.device_count(),
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
        }
    else:
        device = {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    accelerators = {name: importlib.util.find_spec(module) is not None for name, module in _ACCELERATORS.items()}
    return {"versions": versions, "device": device, "accelerators": accelerators, "speed": _speed(torch)}


def _speed(torch) -> dict:
    """What the GPU path would use here: attention `auto` at the presets' token counts, FP8, the bf16 peak."""
    from amt_core.accel.attention import autotune
    from amt_core.accel.precision import check_precision
    from amt_core.errors import UserError
    from amt_core.models.attention import requested_mode
    from amt_core.train.flops import bf16_peak_tflops

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    # DINOv2 at 224 px (16x16 patches + class token) and 518 px (37x37 + 1), ViT-L's 16 heads of 64
    attention = {f"attention auto @ {n} tokens": autotune(n, 64, 16, dtype, device).reason for n in (257, 1370)}
    forced = requested_mode()
    if forced != "auto":
        attention["attention forced ($AMT_ATTN)"] = forced
    try:
        check_precision("fp8", device)
        fp8 = "available"
    except UserError as err:
        fp8 = str(err)
    peak = bf16_peak_tflops(device)
    return {**attention, "fp8": fp8, "bf16 peak TFLOP/s": peak if peak else "unknown (bench train --peak-tflops)"}


def run(args: argparse.Namespace) -> int:
    info = collect_brief() if args.brief else collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="amt-core info", show_header=False)
    for name, value in info["versions"].items():
        table.add_row(name, str(value) if value else "not installed")
    table.add_row("device", ", ".join(f"{k}={v}" for k, v in info["device"].items()))
    for name, present in info["accelerators"].items():
        table.add_row(name, "importable" if present else "not installed")
    for name, value in info.get("speed", {}).items():
        table.add_row(name, str(value))
    Console().print(table)
    return 0
