"""What this machine can run: the CUDA device's compute capability and name, cuDNN, and which optional kernel
libraries import. Module-level functions, so tests can stand in for a Hopper GPU or a missing package.
"""

from __future__ import annotations

import importlib
import importlib.util

import torch

FP8_PACKAGES: dict[str, str] = {"te": "transformer_engine.pytorch", "torchao": "torchao.float8"}
"""The FP8 backends in order of preference, and the module each one needs."""


def cuda_capability(device: torch.device | str | None = None) -> tuple[int, int] | None:
    """The compute capability of `device` (default: the current CUDA device), or None when it is not a usable CUDA
    device."""
    if device is not None and torch.device(device).type != "cuda":
        return None
    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def gpu_name(device: torch.device | str) -> str:
    """The GPU's marketing name, or the device type ("cpu") off CUDA: the machine part of every measurement's key."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return device.type


def cudnn_version() -> int | None:
    """cuDNN version torch runs with (e.g. 90400 for 9.4.0), or None without cuDNN."""
    if not torch.backends.cudnn.is_available():
        return None
    return torch.backends.cudnn.version()


def installed(module: str) -> bool:
    """Whether `module` can be found (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install can fail inside find_spec itself
        return False


def fp8_backends() -> tuple[str, ...]:
    """The FP8 backends that import here ("te", "torchao"), in order of preference."""
    found = []
    for name, module in FP8_PACKAGES.items():
        try:
            importlib.import_module(module)
        # Not only ImportError: TE raises OSError or RuntimeError when its CUDA libraries are missing.
        except Exception:
            continue
        found.append(name)
    return tuple(found)
