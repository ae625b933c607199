"""Untrusted pickles (`amt_core/safe_pickle.py`): `import-mano` and the HO-3D reader refuse every global outside
their allow-list, by name.

Each payload is first proven live (plain `pickle.loads` runs it and writes the marker file), then fed to our readers,
which must exit 2 naming the refused global while the marker stays absent: nothing ran.
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import numpy.testing._private.utils as np_test_utils
import pytest

from amt_core.cli import main
from amt_core.data.ho3d import load_meta
from amt_core.errors import UserError
from amt_core.safe_pickle import NUMPY_ARRAYS, RefusedGlobal, SafeUnpickler


class Call:
    """Pickles as a call of `func(*args)`: what an attacker writes into a file."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker: Path, tmp_path: Path) -> dict[str, tuple[Call, str]]:
    """name -> (payload object, the global our readers must name when refusing it)."""
    second = tmp_path / "second.pkl"  # what numpy.load(path, None, True) unpickles with plain pickle
    second.write_bytes(pickle.dumps(Call(os.system, f"touch {marker}"), protocol=2))
    write = f"open({str(marker)!r}, 'w').write('ran')"
    return {
        "os.system": (Call(os.system, f"touch {marker}"), "system"),
        "numpy.testing runstring": (Call(np_test_utils.runstring, write, {}), "runstring"),
        "numpy.load allow_pickle": (Call(np.load, str(second), None, True), "numpy.load"),
        "builtins.exec": (Call(builtins.exec, write), ".exec"),
        "builtins.eval": (Call(builtins.eval, write), ".eval"),
        "subprocess.Popen": (Call(subprocess.check_call, ["touch", str(marker)]), "check_call"),
    }


NAMES = [
    "os.system",
    "numpy.testing runstring",
    "numpy.load allow_pickle",
    "builtins.exec",
    "builtins.eval",
    "subprocess.Popen",
]


def _live(blob: bytes, marker: Path) -> None:
    """The payload really runs under plain pickle (so a reader that lets it through would leave the marker)."""
    pickle.loads(blob, encoding="latin1")  # noqa: S301 - the point of the test
    assert marker.exists(), "the payload did not run under plain pickle: the test would prove nothing"
    marker.unlink()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("protocol", [2, 4])
def test_import_mano_refuses_payload(name, protocol, tmp_path, capsys):
    marker = tmp_path / "marker"
    payload, needle = payloads(marker, tmp_path)[name]
    blob = pickle.dumps({"v_template": np.zeros((778, 3)), "f": payload}, protocol=protocol)
    _live(blob, marker)
    source = tmp_path / "MANO_RIGHT.pkl"
    source.write_bytes(blob)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["import-mano", str(source), "--out", str(out / "MANO_RIGHT.npz")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "refusing to load" in err and needle in err and str(source) in err, err
    assert not marker.exists()
    assert list(out.iterdir()) == []


def _ho3d_folder(root: Path, meta_blob: bytes) -> None:
    (root / "train" / "SEQ" / "rgb").mkdir(parents=True)
    (root / "train" / "SEQ" / "meta").mkdir(parents=True)
    (root / "train.txt").write_text("SEQ/0000\n")
    from PIL import Image

    Image.new("RGB", (64, 48)).save(root / "train" / "SEQ" / "rgb" / "0000.png")
    (root / "train" / "SEQ" / "meta" / "0000.pkl").write_bytes(meta_blob)


@pytest.mark.parametrize("name", NAMES)
def test_ho3d_reader_refuses_payload(name, tmp_path, capsys):
    marker = tmp_path / "marker"
    payload, needle = payloads(marker, tmp_path)[name]
    blob = pickle.dumps({"camMat": np.eye(3), "handJoints3D": payload}, protocol=2)
    _live(blob, marker)
    root = tmp_path / "ho3d"
    _ho3d_folder(root, blob)
    meta = root / "train" / "SEQ" / "meta" / "0000.pkl"
    with pytest.raises(UserError, match="refusing to load") as info:
        load_meta(meta)
    assert needle in str(info.value) and str(meta) in str(info.value)
    assert not marker.exists()
    code = main(["datasets", "check", f"ho3d:{root}"])  # the path users take first
    out = capsys.readouterr()
    assert code != 0
    assert "refusing to load" in out.out + out.err
    assert "Traceback" not in out.out + out.err
    assert not marker.exists()


def test_ho3d_reader_reads_what_real_files_hold(tmp_path):
    """Python 2-style pickles of arrays, numpy scalars, strings, None and numbers (protocols 0-2) and numpy 2's own
    (4, 5) load; the allow-list is not so tight that real annotations are refused."""
    meta = {
        "camMat": np.eye(3),
        "handPose": np.arange(48.0),
        "objName": "003_cracker_box",
        "objLabel": np.int64(2),
        "handBoundingBox": [1, 2, 3, 4],
        "handBeta": np.float32([0.1] * 10),
        "score": np.float64(0.5),
        "objCorners3D": None,
        "flags": (True, 1.5),
    }
    for protocol in range(6):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(meta, protocol=protocol))
        loaded = load_meta(path)
        assert loaded.keys() == meta.keys()
        np.testing.assert_array_equal(loaded["handPose"], meta["handPose"])
        assert loaded["objLabel"] == 2 and loaded["objName"] == "003_cracker_box"


def test_numpy_core_names_of_old_pickles_are_mapped_not_widened(tmp_path):
    """numpy 1's `numpy.core.multiarray._reconstruct` is allowed; a sibling name in the same module is not."""
    import io

    good = b"cnumpy.core.multiarray\n_reconstruct\n."
    assert SafeUnpickler(io.BytesIO(good), NUMPY_ARRAYS).load() is np._core.multiarray._reconstruct
    for module, name in [
        ("numpy.core.multiarray", "fromfile"),
        ("numpy", "load"),
        ("numpy.lib.npyio", "load"),
        ("numpy.core", "multiarray._reconstruct"),
        ("numpy.f2py", "compile"),
    ]:
        with pytest.raises(RefusedGlobal, match=f"{module}.{name}"):
            SafeUnpickler(io.BytesIO(f"c{module}\n{name}\n.".encode()), NUMPY_ARRAYS).load()
