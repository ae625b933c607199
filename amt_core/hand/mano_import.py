"""Convert a licensed MANO pickle (Python 2, chumpy arrays inside) to a plain .npz that smplx and HandModel load.

chumpy does not install on current numpy, so the unpickler here maps chumpy's classes to a stand-in that keeps the
pickled state and rebuilds numpy arrays from it. Only an exact list of globals may be unpickled (`safe_pickle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse

from amt_core.atomic import atomic_write
from amt_core.errors import UserError
from amt_core.safe_pickle import (
    BYTES_FROM_PYTHON2,
    NUMPY_ARRAYS,
    OBJECT_RECONSTRUCTION,
    RefusedGlobal,
    SafeUnpickler,
)

FINGERTIP_IDS = np.array([745, 317, 444, 556, 673], dtype=np.int64)  # thumb, index, middle, ring, little (V = 778)
MANO_VERTS = 778
NUM_JOINTS = 16
REQUIRED = (
    "v_template",
    "f",
    "J_regressor",
    "weights",
    "kintree_table",
    "shapedirs",
    "posedirs",
    "hands_components",
    "hands_mean",
)
Side = Literal["right", "left"]


class _ChumpyState:
    """Stands in for any chumpy class: keeps the pickled state so `_to_array` can rebuild the value."""

    chumpy_class = "Ch"

    def __setstate__(self, state: Any) -> None:
        # pickles of objects with __slots__ carry (dict_state, slot_state)
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = state if isinstance(state, dict) else {"x": state}


class _SparseState:
    """Stands in for a scipy.sparse matrix pickled by any scipy version; `_to_array` rebuilds it densely."""

    sparse_class = "csc_matrix"

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


def _stand_in(base: type, attribute: str, name: str) -> type:
    return type(f"{base.__name__}_{name}", (base,), {attribute: name})


class MANOUnpickler(SafeUnpickler):
    """An unpickler that needs neither chumpy nor a matching scipy, and refuses every global outside an exact list.

    chumpy and scipy.sparse classes become stand-ins of ours (nothing of those packages is imported); numpy may give
    only what arrays, dtypes and scalars need, so e.g. `numpy.load` or `numpy.testing` helpers are refused by name.
    """

    ALLOWED = NUMPY_ARRAYS | BYTES_FROM_PYTHON2 | OBJECT_RECONSTRUCTION

    def __init__(self, file, encoding: str = "latin1") -> None:
        super().__init__(
            file,
            self.ALLOWED,
            stand_ins={
                "chumpy": lambda name: _stand_in(_ChumpyState, "chumpy_class", name),
                "scipy.sparse": lambda name: _stand_in(_SparseState, "sparse_class", name),
            },
            encoding=encoding,
        )


def _to_array(value: Any, key: str) -> Any:
    """Turn chumpy and sparse stand-ins (recursively) into numpy arrays; other values pass through."""
    if isinstance(value, _SparseState):
        return _sparse_to_dense(value, key)
    if not isinstance(value, _ChumpyState):
        return value
    state, kind = value.state, value.chumpy_class
    if "a" in state and kind != "Ch":  # reordering ops: Select, reshape, transpose, ... wrap another array `a`
        inner = np.asarray(_to_array(state["a"], key))
        if kind == "Select" or "idxs" in state:
            out = inner.ravel()[np.asarray(state["idxs"]).ravel()]
            shape = state.get("preferred_shape")
            return out.reshape(shape) if shape is not None else out
        if kind == "reshape" or "newshape" in state:
            return inner.reshape(state["newshape"])
        if kind == "transpose" or "axes" in state:
            return inner.transpose(state.get("axes"))
        raise UserError(f"MANO key {key!r} holds a chumpy {kind} expression this importer cannot evaluate")
    if "x" in state:
        return np.asarray(_to_array(state["x"], key))
    raise UserError(f"MANO key {key!r} holds a chumpy {kind} object without data (keys: {sorted(state)})")


def _sparse_to_dense(value: _SparseState, key: str) -> np.ndarray:
    state, kind = value.state, value.sparse_class
    shape = tuple(state.get("_shape", state.get("shape", ())))
    try:
        if kind.startswith("coo"):
            coords = state.get("coords") or (state["row"], state["col"])
            matrix = scipy.sparse.coo_matrix((state["data"], tuple(coords)), shape=shape)
        else:
            ctor = scipy.sparse.csr_matrix if kind.startswith("csr") else scipy.sparse.csc_matrix
            matrix = ctor((state["data"], state["indices"], state["indptr"]), shape=shape)
    except (KeyError, ValueError, TypeError) as err:
        raise UserError(f"MANO key {key!r}: unreadable sparse matrix {kind} ({err})") from err
    return np.asarray(matrix.toarray())


def read_pickle(path: Path) -> dict[str, Any]:
    """Unpickle a MANO file into a dict of numpy arrays and plain values (UserError on any failure)."""
    if not path.exists():
        raise UserError(f"{path}: no such file; pass the MANO_RIGHT.pkl or MANO_LEFT.pkl from the MANO download")
    if not path.is_file():
        raise UserError(f"{path}: not a file; pass the MANO_RIGHT.pkl or MANO_LEFT.pkl itself")
    try:
        with path.open("rb") as handle:
            raw = MANOUnpickler(handle, encoding="latin1").load()
    except UserError:
        raise
    except RefusedGlobal as err:
        raise UserError(f"{path}: {err}; this is not a MANO model file (or it was tampered with)") from None
    except Exception as err:  # noqa: BLE001 - a damaged pickle can raise almost anything; report it as one line
        detail = " ".join(str(err).split())[:160] or "no detail"
        raise UserError(f"{path}: not a readable MANO pickle ({type(err).__name__}: {detail})") from err
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the pickle holds a {type(raw).__name__}, not MANO's dict of arrays")
    return {str(k): _to_array(v, str(k)) for k, v in raw.items()}


def check_arrays(data: dict[str, Any], source: Path) -> dict[str, np.ndarray]:
    """Check every key MANO needs and the consistency of their shapes; return them as plain arrays.

    Vertex count V is taken from v_template and may differ from MANO's 778 (other MANO-layout hands); the joint
    count is MANO's 16, so the pose has 45 values.
    """
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise UserError(f"{source}: missing MANO key(s) {', '.join(missing)}; is this a MANO model file?")
    arrays: dict[str, np.ndarray] = {}
    for key in REQUIRED:
        try:
            array = np.asarray(data[key])
        except (TypeError, ValueError) as err:
            raise UserError(f"{source}: key {key!r} is not an array ({err})") from err
        if array.dtype.kind not in "biuf":
            raise UserError(f"{source}: key {key!r} has non-numeric dtype {array.dtype}")
        if not np.all(np.isfinite(array)):
            raise UserError(f"{source}: key {key!r} holds NaN or infinite values")
        arrays[key] = array
    verts = arrays["v_template"].shape[0] if arrays["v_template"].ndim == 2 else -1
    pose_dims = 3 * (NUM_JOINTS - 1)
    expected = {
        "v_template": (verts, 3),
        "J_regressor": (NUM_JOINTS, verts),
        "weights": (verts, NUM_JOINTS),
        "kintree_table": (2, NUM_JOINTS),
        "posedirs": (verts, 3, 9 * (NUM_JOINTS - 1)),
        "hands_components": (pose_dims, pose_dims),
        "hands_mean": (pose_dims,),
    }
    if verts < 4:
        raise UserError(f"{source}: v_template has shape {arrays['v_template'].shape}, expected (V, 3)")
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise UserError(f"{source}: {key} has shape {arrays[key].shape}, expected {shape} (V = {verts})")
    shapedirs = arrays["shapedirs"]
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (verts, 3) or shapedirs.shape[2] < 1:
        raise UserError(f"{source}: shapedirs has shape {shapedirs.shape}, expected ({verts}, 3, 10)")
    faces = arrays["f"]
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise UserError(f"{source}: f has shape {faces.shape} and dtype {faces.dtype}, expected (F, 3) integers")
    if faces.min() < 0 or faces.max() >= verts:
        raise UserError(f"{source}: f refers to vertex {faces.max()} but v_template has {verts} vertices")
    if verts == MANO_VERTS and faces.shape[0] != 1538:
        raise UserError(f"{source}: f has {faces.shape[0]} faces, MANO's 778-vertex hand has 1538")
    out = {k: (v.astype(np.int64) if v.dtype.kind in "biu" else v.astype(np.float64)) for k, v in arrays.items()}
    if verts == MANO_VERTS:
        out["fingertip_ids"] = FINGERTIP_IDS.copy()
    return out


def side_from_name(path: Path) -> Side | None:
    """ "right"/"left" when the file name says so (MANO_RIGHT.pkl), else None."""
    name = path.name.upper()
    if "RIGHT" in name and "LEFT" not in name:
        return "right"
    if "LEFT" in name and "RIGHT" not in name:
        return "left"
    return None


@dataclass(kw_only=True)
class ImportResult:
    """What `import_mano` wrote."""

    path: Path
    side: Side | None
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]


def output_path(out: Path, side: Side | None) -> Path:
    """Resolve --out: a folder gets MANO_<SIDE>.npz; a file name must carry the side (smplx reads it from there)."""
    if out.is_dir():
        if side is None:
            raise UserError(f"{out} is a folder and the side is unknown; pass --side right|left or a file name")
        return out / f"MANO_{side.upper()}.npz"
    if out.suffix != ".npz":
        raise UserError(f"{out}: the output must be a .npz file (e.g. MANO_RIGHT.npz)")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: the output folder does not exist; create it first")
    if side is not None:
        named = side_from_name(out)
        if named != side:
            # smplx.MANO decides the side from "RIGHT" in the file's base name, so a wrong name flips the hand
            raise UserError(
                f"{out.name}: the model is a {side} hand but the name says {named or 'no side'}; smplx reads the "
                f"side from the name, so call it e.g. MANO_{side.upper()}.npz"
            )
    return out


def write_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write atomically (`amt_core.atomic`); UserError naming the file if it cannot be written."""
    try:
        with atomic_write(path) as handle:
            np.savez_compressed(handle, **arrays)
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror or err})") from err


def import_mano(source: Path, out: Path, *, side: Side | None = None, force: bool = False) -> ImportResult:
    """Read a MANO pickle, check it, and write its arrays under MANO's key names to a compressed .npz.

    Args:
        source: MANO_RIGHT.pkl / MANO_LEFT.pkl (or another MANO-layout pickle).
        out: the .npz to write, or a folder (then MANO_<SIDE>.npz inside it).
        side: "right" or "left"; by default read from the source's file name.
        force: replace an existing output file.

    Returns:
        Where it wrote, the side, and each key's shape and dtype.
    """
    named = side_from_name(source)
    if side is not None and named is not None and side != named:
        raise UserError(f"{source.name} names a {named} hand but --side {side} was given; drop --side or fix it")
    side = side or named
    target = output_path(out, side)  # check the destination before the (slow) read
    if target.exists() and not force:
        raise UserError(f"{target} exists; pass --force to replace it")
    arrays = check_arrays(read_pickle(source), source)
    write_npz(arrays, target)
    return ImportResult(
        path=target,
        side=side,
        shapes={k: tuple(v.shape) for k, v in arrays.items()},
        dtypes={k: str(v.dtype) for k, v in arrays.items()},
    )
