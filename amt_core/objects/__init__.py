"""The object catalog: YCB-like everyday objects (meshes, ids, masses, symmetries, textures) and their SDF grids.

`catalog()` lists the classes in id order; `get_object("mug")` finds one; `sdf_batch(...)` gives signed distances
from camera-frame points to posed objects of mixed classes in one call.
"""

from amt_core.objects.catalog import (
    ObjectClass,
    Symmetry,
    catalog,
    class_names,
    get_object,
    num_classes,
    sdf_bank,
    sdf_batch,
)
from amt_core.objects.sdf import Config as SDFConfig
from amt_core.objects.sdf import SDFBank, SDFGrid

__all__ = [
    "ObjectClass",
    "SDFBank",
    "SDFConfig",
    "SDFGrid",
    "Symmetry",
    "catalog",
    "class_names",
    "get_object",
    "num_classes",
    "sdf_bank",
    "sdf_batch",
]
