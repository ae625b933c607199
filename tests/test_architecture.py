"""The architecture's structural rules, read from the source: no import cycle in amt_core (`TYPE_CHECKING` imports
included), nothing outside `train/trainer.py` writes the trainer's attributes, `trainer.py` stays short, and long
functions are few and say why. Each rule's checker is also run on a small tree that breaks it, to show it can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.architecture import (
    functions,
    import_cycles,
    import_edges,
    long_reasons,
    package_modules,
    trainer_writes,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("amt_core", "amt_studio")
TRAINER = ROOT / "amt_core" / "train" / "trainer.py"

TRAINER_LINES = 350
"""Lines `trainer.py` stays under: the loop and its parts' wiring, nothing more."""
LONG_FUNCTION = 60
"""Lines (`def` to the last line) a function may have before it needs a `# long: <reason>` comment in its body."""
MOST_LONG_REASONS = 3
"""`# long:` reasons a package may carry: beyond a few, a split would do."""


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _cycles_text(cycles) -> str:
    return "\n".join(
        f"{len(group)} modules ({', '.join(group)}); one cycle: " + "; ".join(str(edge) for edge in cycle)
        for group, cycle in cycles
    )


# --- no import cycle, TYPE_CHECKING imports included -------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_with_type_checking_imports(package):
    """A module that needs another only for its types still depends on it: a cycle through `if TYPE_CHECKING:`
    means the two cannot be understood, moved or tested apart (the trainer and its parts were one such circle)."""
    cycles = import_cycles(import_edges(ROOT, (package,)))
    assert not cycles, f"{len(cycles)} import cycles in {package} (one per group):\n{_cycles_text(cycles)}"


def test_no_part_of_the_trainer_imports_the_trainer():
    """The calls run one way: `trainer.py` calls its parts, and no module beside it in `train/` imports it, not even
    for its types (they read it through `train/view.py`'s Protocols)."""
    edges = import_edges(ROOT, ("amt_core",))
    back = [
        edge for edge in edges if edge.target == "amt_core.train.trainer" and edge.source.startswith("amt_core.train")
    ]
    assert not back, "modules in amt_core/train import trainer.py: " + "; ".join(map(str, back))
    assert any(edge.target == "amt_core.train.trainer" for edge in edges)  # the graph does see imports of it


def test_the_import_graph_sees_every_kind_of_import(tmp_path):
    """Relative, absolute, in a function, under TYPE_CHECKING, `from pkg import submodule`: each is an edge."""
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import thing\n",
            "pkg/a.py": "from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
            "thing = 1\nif TYPE_CHECKING:\n    from pkg.sub.b import B\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/b.py": "def f():\n    from .. import c\n    import pkg.d.attribute\n    from . import e\n",
            "pkg/c.py": "import os\nfrom pkg import a as _a\n",
            "pkg/d.py": "from .sub import *\n",
            "pkg/sub/e.py": "from ..sub import b\n",
        },
    )
    assert set(package_modules(root, "pkg")) == {"pkg", "pkg.a", "pkg.c", "pkg.d", "pkg.sub", "pkg.sub.b", "pkg.sub.e"}
    edges = {(edge.source, edge.target) for edge in import_edges(root, ("pkg",))}
    assert edges == {
        ("pkg", "pkg.a"),
        ("pkg.a", "pkg.sub.b"),  # TYPE_CHECKING
        ("pkg.sub.b", "pkg.c"),  # relative, two levels, inside a function, a submodule by name
        ("pkg.sub.b", "pkg.d"),  # `import pkg.d.attribute`: the longest prefix that is a module
        ("pkg.sub.b", "pkg.sub.e"),
        ("pkg.c", "pkg.a"),
        ("pkg.d", "pkg.sub"),  # a star import of a package
        ("pkg.sub.e", "pkg.sub.b"),
    }


def test_an_import_cycle_through_type_checking_fails_and_is_printed(tmp_path):
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/trainer.py": "from pkg import hooks\n",
            "pkg/hooks.py": "from pkg.probes import probe\n",
            "pkg/probes.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.trainer import Trainer\n",
            "pkg/leaf.py": "from pkg import trainer\n",
        },
    )
    cycles = import_cycles(import_edges(root, ("pkg",)))
    assert [group for group, _ in cycles] == [["pkg.hooks", "pkg.probes", "pkg.trainer"]]
    assert [[(edge.source, edge.target) for edge in cycle] for _, cycle in cycles] == [
        [("pkg.hooks", "pkg.probes"), ("pkg.probes", "pkg.trainer"), ("pkg.trainer", "pkg.hooks")]
    ]
    assert "pkg.probes -> pkg.trainer (probes.py:3)" in _cycles_text(cycles)
    (root / "pkg/probes.py").write_text("def probe():\n    pass\n")
    assert import_cycles(import_edges(root, ("pkg",))) == []


# --- nothing outside trainer.py writes the trainer ----------------------------------------------------------------


def test_no_module_outside_trainer_py_assigns_an_attribute_of_the_trainer():
    """The trainer owns its state: its parts are given what they need and return what they want done."""
    writes = [
        write
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != TRAINER
        for write in trainer_writes(path)
    ]
    shown = [write.replace(f"{ROOT}/", "") for write in writes]
    assert not writes, f"{len(writes)} writes to the trainer outside trainer.py:\n" + "\n".join(shown)


def test_the_trainer_write_scan_finds_each_form_of_write(tmp_path):
    path = tmp_path / "part.py"
    path.write_text(
        "def restore(trainer, self, state):\n"
        "    trainer.step = state['step']\n"  # 2
        "    trainer.tc.dynamic_batch = False\n"  # 3: a part of the trainer
        "    trainer.history['loss'] = 1.0\n"  # 4
        "    self.trainer.paused += 1\n"  # 5
        "    self._trainer.branch: int = 2\n"  # 6
        "    a, (trainer.x, *trainer.rest) = 1, (2, 3)\n"  # 7: two in one target
        "    setattr(trainer, 'stage', 1)\n"  # 8
        "    object.__setattr__(self._trainer, 'stage', 1)\n"  # 9
        "    for trainer.i in range(2):\n"  # 10
        "        pass\n"
        "    trainer = make()\n"  # a name rebound: not a write
        "    self.trainer = trainer\n"  # the attribute that holds it, set by its owner
        "    self.trainer_config = state\n"
        "    config.trainer_steps = 3\n"
        "    setattr(config, 'trainer', 1)\n"
        "    trainer['fp8'] = {}\n"  # an item of a dict called trainer (a config's section)
        "    config.trainer.seed = 1\n"  # a config's field named trainer
        "    step = trainer.step\n"  # a read
    )
    lines = [int(write.split(":")[1].split()[0]) for write in trainer_writes(path)]
    assert sorted(lines) == [2, 3, 4, 5, 6, 7, 7, 8, 9, 10]


# --- trainer.py is short -------------------------------------------------------------------------------------------


def test_trainer_py_is_under_its_line_budget():
    lines = len(TRAINER.read_text().splitlines())
    assert lines < TRAINER_LINES, f"amt_core/train/trainer.py has {lines} lines (under {TRAINER_LINES} wanted)"


# --- long functions are few and say why ----------------------------------------------------------------------------


def _long_function_problems(package_dir: Path) -> tuple[list[str], list[str]]:
    """(functions over LONG_FUNCTION lines without a reason, every `# long:` reason of the package)."""
    unexplained, reasons = [], []
    for path in sorted(package_dir.rglob("*.py")):
        unexplained += [str(f) for f in functions(path) if f.length > LONG_FUNCTION and not f.reasons]
        reasons += [f"{path}:{line} # long: {reason}" for line, reason in long_reasons(path.read_text())]
    return unexplained, reasons


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_over_60_lines_without_a_reason(package):
    unexplained, _ = _long_function_problems(ROOT / package)
    shown = [line.replace(f"{ROOT}/", "") for line in unexplained]
    assert not unexplained, (
        f"{len(unexplained)} functions in {package} over {LONG_FUNCTION} lines; split them, or say why in a "
        "`# long: <reason>` comment in the body:\n" + "\n".join(shown)
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_at_most_three_long_reasons_per_package(package):
    _, reasons = _long_function_problems(ROOT / package)
    shown = [line.replace(f"{ROOT}/", "") for line in reasons]
    assert len(reasons) <= MOST_LONG_REASONS, (
        f"{package} carries {len(reasons)} `# long:` reasons (at most {MOST_LONG_REASONS}); split where a split "
        "would do:\n" + "\n".join(shown)
    )


def test_the_long_function_check_fails_on_an_unexplained_long_function(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(LONG_FUNCTION - 1))  # def + body = LONG_FUNCTION lines
    inner_body = "".join(f"    {line}\n" for line in body.splitlines())
    source = (
        f"def exactly_at_the_limit():\n{body}"
        f"def one_over():\n{body}    return 0\n"
        f"def explained():\n    # long: one table, read top to bottom\n{body}"
        f"def reason_in_a_string():\n    '''# long: not a comment'''\n{body}"
        f"def empty_reason():\n    # long:\n{body}"
        f"def outer():\n    def inner():\n        # long: the inner's reason is not the outer's\n{inner_body}{body}"
    )
    _write(tmp_path, {"pkg/module.py": source})
    unexplained, reasons = _long_function_problems(tmp_path / "pkg")
    assert [line.split()[1] for line in unexplained] == ["one_over:", "reason_in_a_string:", "empty_reason:", "outer:"]
    assert len(reasons) == 2
    (tmp_path / "pkg/other.py").write_text("# long: a\n# long: b\n")
    _, reasons = _long_function_problems(tmp_path / "pkg")
    assert len(reasons) > MOST_LONG_REASONS
