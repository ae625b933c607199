"""The structural checks behind tests/test_architecture.py, read from the source with `ast` (nothing is imported):
the import graph and its cycles, writes to the trainer's attributes, and long functions with their `# long:` reasons.

Each check takes a folder, so a test can run it on a small tree in tmp_path that breaks the rule.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package in `root / package`, by dotted name (`a/b/__init__.py` is `a.b`)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `source` imports `target` at `path:line`."""

    source: str
    target: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.path.name}:{self.line})"


def import_edges(root: Path, packages: tuple[str, ...]) -> list[Import]:
    """The imports between the packages' own modules: all of them, those inside functions and under
    `if TYPE_CHECKING:` included. `from pkg import name` imports the submodule `pkg.name` when there is one, else
    `pkg`; `import a.b.c` imports the longest prefix that is a module."""
    modules: dict[str, Path] = {}
    for package in packages:
        modules.update(package_modules(root, package))
    edges = []
    for source, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, source, is_package, modules):
                if target != source:
                    edges.append(Import(source, target, path, node.lineno))
    return edges


def _targets(node: ast.AST, source: str, is_package: bool, modules: dict[str, Path]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            found = _longest_module(alias.name, modules)
            if found:
                yield found
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            # level 1 is the package the module is in (for an __init__, the package itself)
            anchor = source.split(".") if is_package else source.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if alias.name != "*" and submodule in modules:
                yield submodule
            else:
                found = _longest_module(base, modules)
                if found:
                    yield found


def _longest_module(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_cycles(edges: list[Import]) -> list[tuple[list[str], list[Import]]]:
    """Each group of modules that import each other (a strongly connected component of more than one module), with
    one shortest cycle through its first module: the chain of imports that closes it."""
    graph: dict[str, dict[str, Import]] = {}
    for edge in edges:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
        graph.setdefault(edge.target, {})
    cycles = []
    for group in strongly_connected({node: set(targets) for node, targets in graph.items()}):
        cycles.append((sorted(group), _shortest_cycle(min(group), group, graph)))
    return cycles


def _shortest_cycle(start: str, group: set[str], graph: dict[str, dict[str, Import]]) -> list[Import]:
    """Breadth-first from `start` within `group` back to `start`."""
    came_from: dict[str, Import] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target, edge in sorted(graph[node].items()):
            if target not in group:
                continue
            if target == start:
                chain = [edge]
                while chain[0].source != start:
                    chain.insert(0, came_from[chain[0].source])
                return chain
            if target not in came_from:
                came_from[target] = edge
                queue.append(target)
    raise AssertionError(f"{start} is in a strongly connected group but reaches no cycle")  # pragma: no cover


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively: the groups of more than one node that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(group)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


TRAINER_NAMES = ("trainer", "_trainer")
"""What the trainer is called where it is handed around: a name `trainer`/`_trainer`, or `self.trainer`/
`self._trainer`."""


def trainer_writes(path: Path) -> list[str]:
    """Where the module at `path` assigns an attribute of the trainer, or a part of one: `trainer.x = ...`,
    `trainer.x.y += ...`, `self._trainer.x[k]: int = ...`, in tuple and list targets too, as `for`/`with` targets,
    and `setattr(trainer, ...)` / `object.__setattr__(trainer, ...)`. Rebinding the name (`trainer = ...`,
    `self.trainer = ...`) or an item of a dict that happens to be called `trainer` is not a write to the trainer."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.For | ast.AsyncFor):
            targets = [node.target]
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            targets = [node.optional_vars]
        elif isinstance(node, ast.Call) and _is_setattr(node.func) and node.args:
            if _is_trainer(node.args[0]) or _is_trainer_part(node.args[0]):
                found.append((node.lineno, ast.unparse(node)))
        for target in targets:
            for leaf in _flatten(target):
                if _is_trainer_part(leaf):
                    found.append((leaf.lineno, f"{ast.unparse(leaf)} = ..."))
    return [f"{path}:{line} {text}" for line, text in sorted(found)]


def _flatten(target: ast.expr) -> Iterator[ast.expr]:
    if isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _flatten(element)
    elif isinstance(target, ast.Starred):
        yield from _flatten(target.value)
    else:
        yield target


def _is_trainer(node: ast.expr) -> bool:
    """`trainer`, `_trainer`, `self.trainer` or `self._trainer`."""
    if isinstance(node, ast.Name):
        return node.id in TRAINER_NAMES
    return (
        isinstance(node, ast.Attribute)
        and node.attr in TRAINER_NAMES
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def _is_trainer_part(node: ast.expr) -> bool:
    """An attribute of the trainer (`trainer.step`), or anything under one (`trainer.tc.x`, `trainer.history[k]`)."""
    if isinstance(node, ast.Attribute):
        return _is_trainer(node.value) or _is_trainer_part(node.value)
    if isinstance(node, ast.Subscript):
        return _is_trainer_part(node.value)
    return False


def _is_setattr(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == "setattr"
    return isinstance(func, ast.Attribute) and func.attr == "__setattr__"


LONG_REASON = "# long:"
"""The comment that says why a function is long: `# long: <reason>`, inside the function's lines."""


@dataclass(frozen=True)
class Function:
    """A function (or method) in the source, with the `# long:` reasons in its own lines (not its nested ones')."""

    path: Path
    name: str
    line: int
    length: int
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        why = f" (# long: {self.reasons[0]})" if self.reasons else ""
        return f"{self.path}:{self.line} {self.name}: {self.length} lines{why}"


def functions(path: Path) -> list[Function]:
    """Every function in the module at `path`, its length (`end_lineno - lineno + 1`, the `def` line to the last
    line, decorators left out) and its `# long:` reasons, each given to the innermost function that holds it."""
    source = path.read_text()
    nodes = [
        node
        for node in ast.walk(ast.parse(source, str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    reasons: dict[int, list[str]] = {id(node): [] for node in nodes}
    for line, reason in long_reasons(source):
        holders = [node for node in nodes if node.lineno <= line <= node.end_lineno]
        if holders:
            innermost = max(holders, key=lambda node: node.lineno)
            reasons[id(innermost)].append(reason)
    return [
        Function(path, node.name, node.lineno, node.end_lineno - node.lineno + 1, tuple(reasons[id(node)]))
        for node in sorted(nodes, key=lambda node: node.lineno)
    ]


def long_reasons(source: str) -> list[tuple[int, str]]:
    """The `# long: <reason>` comments of the source (real comments, not text in strings), with their line; a
    comment without a reason after the colon is not one."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.string.startswith(LONG_REASON):
            reason = token.string[len(LONG_REASON) :].strip()
            if reason:
                found.append((token.start[0], reason))
    return found
