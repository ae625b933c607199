"""Measurements that pick a fast path on this machine (attention kernel, FP8 threshold), cached on disk.

One JSON file per kind under `cache_dir()`, one key layout (`measurement_key`: the GPU, torch, then what was measured)
and one timer (`cuda_seconds`). A missing, unreadable or corrupt cache reads as empty: it only costs a re-measurement.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from amt_core import paths
from amt_core.accel import probe
from amt_core.atomic import atomic_write_text


def measurement_key(device: torch.device | str, *parts: str) -> str:
    """`'<GPU name>|torch <version>|part|...'`: the machine and software a measurement holds for."""
    return "|".join((probe.gpu_name(device), f"torch {torch.__version__}", *parts))


class MeasuredCache:
    """A JSON file of measurements by key, written atomically: processes measuring at once never leave half a file."""

    def __init__(self, file_name: str, path: Path | str | None = None) -> None:
        """Args:
        file_name: the file under `cache_dir()`.
        path: another location (tests); default `cache_dir() / file_name`, resolved at each use.
        """
        self.file_name = file_name
        self._path = Path(path) if path is not None else None

    @property
    def path(self) -> Path:
        """The file (raises OSError when there is no writable cache directory)."""
        return self._path if self._path is not None else paths.cache_dir() / self.file_name

    def read(self) -> dict[str, Any]:
        """Every entry, or {} when the file is missing, unreadable or not a JSON object."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Any:
        """The entry under `key`, or None."""
        return self.read().get(key)

    def put(self, key: str, entry: Any) -> None:
        """Store `entry` under `key`, keeping the other entries.

        Raises:
            OSError: the cache cannot be written.
        """
        path = self.path
        data = self.read()
        data[key] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


def cuda_seconds(step: Callable[[], None], device: torch.device, *, warmup: int = 3, iters: int = 20) -> float:
    """Seconds per call of `step`, timed with CUDA events over `iters` back-to-back calls after `warmup`, so launch
    overhead counts as it does in training."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000 / iters
