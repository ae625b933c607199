"""What the wheel ships: the top-level `assets/` folder as the package `amt_assets` (hand model, icon), and an
install that finds them without the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_assets_and_finds_them_outside_the_checkout(tmp_path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("amt_studio-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT / "assets").as_posix() for p in (ROOT / "assets").rglob("*") if p.is_file()}
    shipped = {n for n in shipped if not n.endswith((".pyc",)) and "__pycache__" not in n}
    assert {f"amt_assets/{n}" for n in shipped} <= names
    assert {"amt_assets/hand/OPENHAND_RIGHT.npz", "amt_assets/icons/amt-studio.svg"} <= names

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    probe = (
        "from amt_core.paths import ASSETS_DIR\n"
        "from amt_core.hand.model import HandModel\n"
        "HandModel(side='left')\n"
        "print(ASSETS_DIR)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == (target / "amt_assets").resolve()
