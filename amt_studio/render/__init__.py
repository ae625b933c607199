"""The 3D panel's renderer, Qt-free: Open3D ray casting (Embree) plus numpy shading into an RGB array.

Interactive on a CPU without a GPU: the scene is rebuilt only when its content changes; a frame only casts rays.
Names are imported on first use, so importing a submodule does not load Open3D (seconds) before the window paints.
"""

import importlib

_WHERE = {
    "MeshLayer": "amt_studio.render.content",
    "snapshot_layers": "amt_studio.render.content",
    "OrbitCamera": "amt_studio.render.camera",
    "RaycastRenderer": "amt_studio.render.raycast",
}

__all__ = ["MeshLayer", "OrbitCamera", "RaycastRenderer", "snapshot_layers"]


def __getattr__(name: str):  # noqa: ANN202 (PEP 562)
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'amt_studio.render' has no attribute {name!r}")
