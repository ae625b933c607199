"""The scripts under scripts/ name modules and functions of the packages that a rename can leave behind (the fault
campaign once stopped halfway on an import of a renamed module): every `from amt_core... import name` and
`from amt_studio... import name` in them, the Python embedded in the shell scripts included, must resolve."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
_FROM = re.compile(r"^\s*from\s+(amt_core[\w.]*|amt_studio[\w.]*)\s+import\s+([\w, ]+?)(?:\s+as\s+\w+)?\s*(?:#.*)?$")


def _python_imports(path: Path) -> list[tuple[str, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("amt_core", "amt_studio"):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (alias.name, "") for alias in node.names if alias.name.split(".")[0] in ("amt_core", "amt_studio")
            ]
    return found


def _shell_imports(path: Path) -> list[tuple[str, str]]:
    found = []
    for line in path.read_text().splitlines():
        match = _FROM.match(line)
        if match:
            found += [(match.group(1), name.strip()) for name in match.group(2).split(",") if name.strip()]
    return found


def _imports() -> list[tuple[str, str, str]]:
    rows = []
    for path in sorted(SCRIPTS.iterdir()):
        if path.suffix == ".py":
            rows += [(path.name, module, name) for module, name in _python_imports(path)]
        elif path.suffix == ".sh":
            rows += [(path.name, module, name) for module, name in _shell_imports(path)]
    return rows


def test_the_scan_finds_imports_in_python_and_in_shell_scripts():
    found = set(_imports())
    assert ("fault_campaign.sh", "amt_core.cli", "main") in found  # a shell script's embedded Python
    assert ("fault_campaign.sh", "amt_core.train", "checkpoint_files") in found  # `import x as y`
    assert ("screenshots.py", "amt_studio.window", "MainWindow") in found  # an import inside a function


@pytest.mark.parametrize("script,module,name", _imports(), ids=lambda v: str(v))
def test_every_name_a_script_imports_exists(script, module, name):
    imported = importlib.import_module(module)
    if name:
        assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}") is not None, (
            f"scripts/{script} imports {name} from {module}, which has no such name"
        )
