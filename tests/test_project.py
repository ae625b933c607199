"""The project as a whole: lint clean, the GUI boundary holds, `amt-core info` and the CLI's error path work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from helpers.architecture import strongly_connected

from amt_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _dev_tool(name: str) -> str:
    """A dev dependency's command, beside this interpreter (a venv's bin) or on PATH; a missing one fails the test:
    a lint that silently skips proves nothing."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    assert found, f"{name} is missing: it is a dev dependency, install it with pip install -e '.[dev]'"
    return found


def test_ruff_clean():
    ruff = _dev_tool("ruff")
    paths = ["amt_core", "amt_studio", "tests", "scripts"]
    result = subprocess.run([ruff, "check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([ruff, "format", "--check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold():
    """The layers (foundations at the bottom, the studio at the top), no cycles, amt_core free of the GUI."""
    result = subprocess.run([_dev_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycle_between_modules():
    """No module imports itself back through others (imports inside functions count; `if TYPE_CHECKING:` imports,
    which never run, do not). A cycle is the first thing that makes a layer impossible to move or test alone."""
    import grimp  # comes with import-linter, a dev dependency: missing, the test fails rather than skips

    graph = grimp.build_graph("amt_core", "amt_studio", exclude_type_checking_imports=True)
    modules = set(graph.modules)
    imports = {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}
    cycles = strongly_connected(imports)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(sorted(c)) for c in cycles)


def test_the_cycle_finder_finds_cycles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(edges) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


LONG_FUNCTION = 80
"""Lines a function may have before it must say why it is long, in a `# long: <why>` comment near its top."""


def test_long_functions_say_why():
    import ast

    unexplained = []
    for package in ("amt_core", "amt_studio"):
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                length = node.end_lineno - node.lineno + 1
                head = lines[node.lineno - 1 : node.lineno + 14]
                if length > LONG_FUNCTION and not any(line.strip().startswith("# long:") for line in head):
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not unexplained, "split these, or say why they are long (# long: ...):\n" + "\n".join(unexplained)


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
