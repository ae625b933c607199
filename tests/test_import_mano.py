"""`amt-core import-mano`: a MANO-layout pickle with stand-in chumpy objects round-trips to an .npz smplx loads."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from amt_core.cli import main
from amt_core.hand.mano_import import REQUIRED, MANOUnpickler, _ChumpyState, _SparseState

# MANO's parents: wrist, then index, middle, little, ring, thumb chains of three (4294967295 = no parent)
KINTREE = np.array([[4294967295, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14], list(range(16))], dtype=np.uint32)


class Py2Pickler(pickle._Pickler):
    """Writes every str as a Python 2 byte string (the STRING opcodes), as MANO's Python 2 pickles hold them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def py2_pickle(obj: object) -> bytes:
    """Protocol 2 with Python 2 strings and the module paths of numpy 1 and old scipy, like MANO_RIGHT.pkl."""
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    raw = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    return raw.replace(b"cscipy.sparse._csc\n", b"cscipy.sparse.csc\n")


@contextlib.contextmanager
def fake_chumpy() -> Iterator[dict[str, type]]:
    """Modules named like chumpy's, registered only while pickling, with classes pickled the way chumpy's are."""
    package, ch_module, reordering = (types.ModuleType(n) for n in ("chumpy", "chumpy.ch", "chumpy.reordering"))
    classes = {}
    for module, name in ((ch_module, "Ch"), (reordering, "Select"), (reordering, "transpose")):
        cls = type(name, (), {"__module__": module.__name__})
        setattr(module, name, cls)
        classes[name] = cls
    names = {"chumpy": package, "chumpy.ch": ch_module, "chumpy.reordering": reordering}
    saved = {k: sys.modules.get(k) for k in names}
    sys.modules.update(names)
    try:
        yield classes
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


def make_ch(cls: type, **state: object) -> object:
    obj = cls.__new__(cls)
    # what chumpy's Ch.__getstate__ leaves: its terms plus bookkeeping (the weak dictionaries are dropped)
    obj.__dict__.update({"_dirty_vars": set(), "_itr": None, "_depends_on_deps": {}, "_make_dense": False})
    obj.__dict__.update(state)
    return obj


def mano_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    regressor = rng.random((16, 778)) * (rng.random((16, 778)) < 0.05)
    regressor /= regressor.sum(axis=1, keepdims=True)
    return {
        "v_template": rng.normal(0, 0.04, (778, 3)),
        "f": rng.integers(0, 778, (1538, 3)).astype(np.uint32),
        "J_regressor": regressor,
        "weights": rng.dirichlet(np.full(16, 0.3), size=778),
        "kintree_table": KINTREE,
        "shapedirs": rng.normal(0, 1e-3, (778, 3, 10)),
        "posedirs": rng.normal(0, 1e-3, (778, 3, 135)),
        "hands_components": rng.normal(0, 0.3, (45, 45)),
        "hands_mean": rng.normal(0, 0.2, 45),
    }


def write_mano_pickle(path: Path, arrays: dict[str, np.ndarray], drop: str | None = None) -> None:
    """A pickle laid out like MANO_RIGHT.pkl: chumpy arrays (Ch, Select, transpose), a csc J_regressor, extras."""
    rng = np.random.default_rng(1)
    with fake_chumpy() as ch:
        flat = arrays["posedirs"].ravel()
        order = rng.permutation(flat.size)
        base = np.empty_like(flat)
        base[order] = flat  # Select(a=base, idxs=order) gives back posedirs
        data = {
            "v_template": make_ch(ch["Ch"], x=arrays["v_template"]),
            "f": arrays["f"],
            "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"]),
            "weights": arrays["weights"],
            "kintree_table": arrays["kintree_table"],
            "shapedirs": make_ch(ch["Ch"], x=arrays["shapedirs"]),
            "posedirs": make_ch(
                ch["Select"], a=make_ch(ch["Ch"], x=base), idxs=order, preferred_shape=arrays["posedirs"].shape
            ),
            "hands_components": make_ch(
                ch["transpose"], a=make_ch(ch["Ch"], x=arrays["hands_components"].T.copy()), axes=(1, 0)
            ),
            "hands_mean": arrays["hands_mean"],
            "hands_coeffs": rng.normal(size=(20, 45)),
            "bs_style": "lbs",
            "bs_type": "lrotmin",
        }
        if drop:
            data.pop(drop)
        path.write_bytes(py2_pickle(data))


@pytest.fixture
def mano_pkl(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = mano_arrays()
    path = tmp_path / "MANO_RIGHT.pkl"
    write_mano_pickle(path, arrays)
    return path, arrays


def test_round_trip_and_smplx_loads(mano_pkl, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source, arrays = mano_pkl
    raw = source.read_bytes()  # the file names what real MANO pickles name
    for name in (b"chumpy.ch\nCh", b"chumpy.reordering\nSelect", b"scipy.sparse.csc\ncsc_matrix", b"numpy.core.mult"):
        assert name in raw
    with pytest.raises((UnicodeDecodeError, ModuleNotFoundError)):
        pickle.loads(raw)  # what plain pickle does with it
    assert "chumpy" not in sys.modules
    out = tmp_path / "out" / "MANO_RIGHT.npz"
    out.parent.mkdir()
    assert main(["import-mano", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "right" in printed
    assert "posedirs" in printed and "(778, 3, 135)" in printed and "fingertip_ids" in printed
    assert "chumpy" not in sys.modules  # converted without chumpy
    with np.load(out) as data:
        assert set(data.files) == {*REQUIRED, "fingertip_ids"}
        for key in REQUIRED:
            assert np.array_equal(data[key], arrays[key]), key
        assert data["fingertip_ids"].tolist() == [745, 317, 444, 556, 673]
    assert [p.name for p in out.parent.iterdir()] == ["MANO_RIGHT.npz"]  # no temporary files left

    import smplx
    import torch

    layer = smplx.MANO(model_path=str(out), ext="npz", use_pca=False, flat_hand_mean=True)
    assert layer.is_rhand
    output = layer(hand_pose=torch.zeros(1, 45), global_orient=torch.zeros(1, 3), betas=torch.zeros(1, 10))
    assert torch.allclose(output.vertices[0].double(), torch.from_numpy(arrays["v_template"]), atol=1e-6)
    assert np.array_equal(layer.faces, arrays["f"].astype(np.int64))
    joints = torch.from_numpy(arrays["J_regressor"] @ arrays["v_template"])
    assert torch.allclose(output.joints[0, :16].double(), joints, atol=1e-6)


def _assert_failed(code: int, capsys: pytest.CaptureFixture, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("case", ["truncated", "garbage", "missing_key", "wrong_shape", "not_a_dict", "evil"])
def test_bad_input_writes_nothing(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arrays = mano_arrays()
    source = tmp_path / "MANO_RIGHT.pkl"
    needle = "MANO_RIGHT.pkl"
    if case == "truncated":
        write_mano_pickle(source, arrays)
        source.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        needle = "not a readable MANO pickle"
    elif case == "garbage":
        source.write_bytes(b"\x00\x17 this is not a pickle at all " * 40)
        needle = "not a readable MANO pickle"
    elif case == "missing_key":
        write_mano_pickle(source, arrays, drop="weights")
        needle = "missing MANO key(s) weights"
    elif case == "wrong_shape":
        arrays["weights"] = arrays["weights"][:, :15]
        write_mano_pickle(source, arrays)
        needle = "weights has shape (778, 15), expected (778, 16)"
    elif case == "not_a_dict":
        source.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
        needle = "not MANO's dict"
    else:  # a pickle that would run a command must be refused, not executed

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'pwned'}",))

        source.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
        needle = "refusing to load"
    out = tmp_path / "out"
    out.mkdir()
    code = main(["import-mano", str(source), "--out", str(out / "MANO_RIGHT.npz")])
    _assert_failed(code, capsys, str(source), needle)
    assert list(out.iterdir()) == []
    assert not (tmp_path / "pwned").exists()


def test_paths_and_side(mano_pkl, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source, _ = mano_pkl
    missing = tmp_path / "nope" / "MANO_RIGHT.pkl"
    _assert_failed(main(["import-mano", str(missing), "--out", str(tmp_path / "a_RIGHT.npz")]), capsys, "no such file")
    _assert_failed(
        main(["import-mano", str(source), "--out", str(tmp_path / "absent" / "MANO_RIGHT.npz")]),
        capsys,
        "output folder does not exist",
    )
    # smplx tells the side from the name: an output that loses RIGHT would load as a left hand
    _assert_failed(main(["import-mano", str(source), "--out", str(tmp_path / "hand.npz")]), capsys, "MANO_RIGHT.npz")
    _assert_failed(
        main(["import-mano", str(source), "--out", str(tmp_path / "MANO_LEFT.npz"), "--side", "left"]),
        capsys,
        "names a right hand",
    )
    assert not list(tmp_path.glob("*.npz"))
    folder = tmp_path / "models"
    folder.mkdir()
    assert main(["import-mano", str(source), "--out", str(folder)]) == 0
    assert (folder / "MANO_RIGHT.npz").exists()
    capsys.readouterr()
    _assert_failed(main(["import-mano", str(source), "--out", str(folder)]), capsys, "--force")
    assert main(["import-mano", str(source), "--out", str(folder), "--force"]) == 0
    # a file without a side in its name converts when --side says which hand, under a name that carries it
    plain = tmp_path / "hand_model.pkl"
    plain.write_bytes(source.read_bytes())
    assert main(["import-mano", str(plain), "--out", str(tmp_path / "MANO_LEFT.npz"), "--side", "left"]) == 0


def test_unpickler_maps_python2_class_paths() -> None:
    """MANO's Python 2 pickles name chumpy.ch.Ch and scipy.sparse.csc.csc_matrix; both map without importing them."""
    unpickler = MANOUnpickler(__import__("io").BytesIO(b""), encoding="latin1")
    ch = unpickler.find_class("chumpy.ch", "Ch")
    sparse = unpickler.find_class("scipy.sparse.csc", "csc_matrix")
    assert issubclass(ch, _ChumpyState) and ch.chumpy_class == "Ch"
    assert issubclass(sparse, _SparseState) and sparse.sparse_class == "csc_matrix"
    assert unpickler.find_class("numpy.core.multiarray", "_reconstruct") is not None
    assert unpickler.find_class("__builtin__", "set") is set
    with pytest.raises(pickle.UnpicklingError):
        unpickler.find_class("os", "system")
