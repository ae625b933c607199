"""Where the project's files live: shipped assets (installed with the package) and the user's cache."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

from amt_core.errors import UserError


def _assets_dir() -> Path:
    """The installed `amt_assets` package (the checkout's top-level `assets/`, mapped by pyproject)."""
    spec = find_spec("amt_assets")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the amt_assets package is not installed; reinstall with `bash packaging/setup.sh install`")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


ASSETS_DIR = _assets_dir()


def cache_dir() -> Path:
    """The cache for files built on first use (SDF grids, ...): $AMT_CACHE_DIR, else ~/.cache/amt-studio.

    Raises:
        UserError: the folder cannot be created or is not writable (a read-only disk, no permission).
    """
    root = os.environ.get("AMT_CACHE_DIR")
    path = Path(root) if root else Path.home() / ".cache" / "amt-studio"
    try:
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK)  # False on a read-only mount, for root too
    except OSError as err:
        raise UserError(f"cache folder {path}: {err.strerror}; set AMT_CACHE_DIR to a writable folder") from None
    if not writable:
        raise UserError(f"cache folder {path} is not writable; set AMT_CACHE_DIR to a writable folder")
    return path
