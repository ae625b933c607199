"""The 3D panel's renderer, Qt-free: Open3D ray casting (Embree) plus numpy shading into an RGB array.

Interactive on a CPU without a GPU: the scene is rebuilt only when its content changes; a frame only casts rays.
"""

from amt_studio.render.camera import OrbitCamera
from amt_studio.render.content import MeshLayer, snapshot_layers
from amt_studio.render.raycast import RaycastRenderer

__all__ = ["MeshLayer", "OrbitCamera", "RaycastRenderer", "snapshot_layers"]
