"""Where the project's files live: shipped assets (installed with the package) and the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def cache_dir() -> Path:
    """The cache for files built on first use (SDF grids, ...): $AMT_CACHE_DIR, else ~/.cache/amt-studio."""
    root = os.environ.get("AMT_CACHE_DIR")
    path = Path(root) if root else Path.home() / ".cache" / "amt-studio"
    path.mkdir(parents=True, exist_ok=True)
    return path
