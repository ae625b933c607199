"""Start-up: how long the window took to paint since the process started (what `bench studio` reports), and the
heavy imports put off until after that paint, so they never delay it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_IMPORTED = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; elsewhere since this module was imported)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def warm_up() -> None:
    """Import the heavy modules (torch, Open3D, trimesh) and build the object catalog (meshes for the 3D panel), so a
    first snapshot or the New-run dialog rarely waits for them."""
    import open3d  # noqa: F401

    import amt_core.presets  # noqa: F401 (torch)
    import amt_studio.render.primitives  # noqa: F401 (trimesh)
    import amt_studio.render.raycast  # noqa: F401
    from amt_core.objects.catalog import catalog

    catalog()


def warm_up_in_background() -> threading.Thread:
    """`warm_up` on a daemon thread; call it after the first paint (importing torch holds the GIL for seconds)."""
    thread = threading.Thread(target=warm_up, name="amt-warm-up", daemon=True)
    thread.start()
    return thread
