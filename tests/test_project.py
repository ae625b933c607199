"""The project as a whole: lint clean, the GUI boundary holds, `amt-core info` and the CLI's error path work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amt_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_clean():
    result = subprocess.run(
        ["ruff", "check", "amt_core", "amt_studio", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter not installed")
def test_import_contract_amt_core_never_imports_gui():
    result = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_amt_core_loads_no_qt():
    code = (
        "import pkgutil, importlib, sys, amt_core\n"
        "for m in pkgutil.walk_packages(amt_core.__path__, 'amt_core.'):\n"
        "    if m.name.endswith('__main__'): continue\n"
        "    importlib.import_module(m.name)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('PySide6', 'pyqtgraph', 'amt_studio')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_info_reports_versions_device_and_accelerators(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("python", "torch", "timm", "open3d", "smplx"):
        assert info["versions"][key], key
    assert info["device"]["type"] in ("cpu", "cuda")
    assert set(info["accelerators"]) >= {"flash_attn_3", "flash_attn_2", "transformer_engine", "xformers"}
    speed = info["speed"]  # what the GPU path would use here: attention auto at the presets' token counts, FP8
    assert {"attention auto @ 257 tokens", "attention auto @ 1370 tokens", "fp8", "bf16 peak TFLOP/s"} <= set(speed)
    if info["device"]["type"] == "cpu":
        assert speed["attention auto @ 257 tokens"].startswith("cpu: sdpa")
        assert speed["fp8"].startswith("FP8 needs a CUDA GPU")


def test_info_table_runs_as_a_command():
    result = subprocess.run([sys.executable, "-m", "amt_core", "info"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "torch" in result.stdout and "flash_attn_2" in result.stdout


def test_unknown_command_exits_nonzero():
    result = subprocess.run([sys.executable, "-m", "amt_core", "frobnicate"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
