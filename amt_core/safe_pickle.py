"""Unpickling files from outside (dataset annotations, MANO models) with an exact allow-list of globals.

A pickle names the callables it wants called; `pickle.load` imports and calls whatever it names, so a downloaded
file can run any code. `SafeUnpickler` resolves only the (module, name) pairs it is given and refuses the rest by
name, before anything is imported. The numpy entries are the ones numpy 1 and 2 write for arrays, dtypes and
scalars (protocols 0 to 5); `numpy.core.*` (Python 2 and numpy 1 pickles) maps to numpy 2's `numpy._core.*`.
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

NUMPY_ARRAYS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)
"""What numpy writes into a pickle of arrays, dtypes and numpy scalars (and nothing else of numpy)."""

BYTES_FROM_PYTHON2: frozenset[tuple[str, str]] = frozenset({("_codecs", "encode")})
"""Python 3 writes `bytes` at protocols 0-2 as `_codecs.encode(text, 'latin1')`."""

OBJECT_RECONSTRUCTION: frozenset[tuple[str, str]] = frozenset(
    {
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
    }
)
"""What plain Python 2 class instances and sets need (MANO's chumpy objects are rebuilt this way)."""

_RENAMED_MODULES = {"copy_reg": "copyreg", "__builtin__": "builtins"}  # Python 2 names


def canonical(module: str, name: str) -> tuple[str, str]:
    """The (module, name) a global means today: Python 2 and numpy 1 module names mapped to their new homes."""
    module = _RENAMED_MODULES.get(module, module)
    if module == "numpy.core" or module.startswith("numpy.core."):
        module = "numpy._core" + module[len("numpy.core") :]
    return module, name


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (nothing of it was imported or called)."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"refusing to load {module}.{name}: not in the allow-list of what these files hold")
        self.module, self.name = module, name


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals; `stand_ins` maps a module prefix to a factory that
    returns a class of ours for a name there (e.g. chumpy's classes, which do not install on numpy 2)."""

    def __init__(
        self,
        file: io.BufferedIOBase,
        allowed: Iterable[tuple[str, str]],
        stand_ins: dict[str, Callable[[str], type]] | None = None,
        encoding: str = "ASCII",
    ) -> None:
        super().__init__(file, encoding=encoding)
        self.allowed = frozenset(allowed)
        self.stand_ins = stand_ins or {}

    def find_class(self, module: str, name: str) -> Any:
        for prefix, factory in self.stand_ins.items():
            if (module == prefix or module.startswith(prefix + ".")) and name.isidentifier():
                return factory(name)
        resolved = canonical(module, name)
        if resolved not in self.allowed:
            raise RefusedGlobal(module, name)
        # Imported and looked up only after the check, so refusing never imports the module a pickle names.
        return getattr(importlib.import_module(resolved[0]), resolved[1])


def load_file(path: Path, allowed: Iterable[tuple[str, str]], encoding: str = "ASCII") -> Any:
    """Unpickle one file with an allow-list (errors propagate: callers turn them into one line naming the file)."""
    with open(path, "rb") as handle:
        return SafeUnpickler(handle, allowed, encoding=encoding).load()
