"""`packaging/setup.sh` chooses a project environment (`.venv` in the checkout) for a distribution's Python that
refuses `pip install` into itself (PEP 668), and uses an active virtual environment as it is."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "packaging" / "setup.sh"


def _checkout(tmp_path: Path) -> Path:
    """A bare checkout holding only the setup script (so nothing it could create lands in the real one)."""
    root = tmp_path / "checkout"
    (root / "packaging").mkdir(parents=True)
    shutil.copy(SETUP, root / "packaging" / "setup.sh")
    return root


def _externally_managed_python(tmp_path: Path) -> Path:
    """A copy of this Python whose standard library carries the EXTERNALLY-MANAGED marker, as Debian 12's and
    Ubuntu 24.04's do: the interpreter copied, its standard library linked entry by entry (no site-packages)."""
    root = tmp_path / "distro-python"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(os.path.realpath(sys.executable), root / "bin" / "python3")
    stdlib = Path(sysconfig.get_path("stdlib", scheme="posix_prefix", vars={"base": sys.base_prefix}))
    lib = root / "lib" / stdlib.name
    lib.mkdir(parents=True)
    for entry in stdlib.iterdir():
        if entry.name != "site-packages":
            (lib / entry.name).symlink_to(entry)
    (lib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=use a virtual environment\n")
    return root / "bin" / "python3"


def _setup_env(checkout: Path, python: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHON")}
    return subprocess.run(
        ["bash", str(checkout / "packaging" / "setup.sh"), "env"],
        env=dict(clean, PYTHON=str(python), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(sys.platform != "linux", reason="the setup script is for Debian and Ubuntu")
def test_externally_managed_python_gets_a_project_venv(tmp_path) -> None:
    python = _externally_managed_python(tmp_path)
    marker = subprocess.run(
        [
            str(python),
            "-c",
            "import os, sysconfig\n"
            "print(os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))",
        ],
        capture_output=True,
        text=True,
    )
    assert marker.stdout.strip() == "True", marker.stderr  # the copy really is externally managed
    checkout = _checkout(tmp_path)
    out = _setup_env(checkout, python)
    assert out.returncode == 0, out.stderr
    assert f"Python environment {checkout / '.venv'} " in out.stdout
    assert "externally managed (PEP 668)" in out.stdout
    assert not (checkout / ".venv").exists()  # `env` only chooses: nothing created, nothing installed


@pytest.mark.skipif(sys.platform != "linux", reason="the setup script is for Debian and Ubuntu")
def test_an_active_virtual_environment_is_used_as_it_is(tmp_path) -> None:
    venv = tmp_path / "myenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    checkout = _checkout(tmp_path)
    out = _setup_env(checkout, venv / "bin" / "python")
    assert out.returncode == 0, out.stderr
    assert f"Python environment {venv} ({venv} is a virtual environment)" in out.stdout


def test_unknown_command_is_one_line_and_exit_2(tmp_path) -> None:
    out = subprocess.run(["bash", str(SETUP), "instal"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "setup: unknown command 'instal'; use one of: studio, test, install, env"
    ]
