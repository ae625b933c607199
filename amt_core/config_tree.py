"""Typed dataclass configs from outside: the one override walker (`override`) and the one reader (`build`).

Every config in amt_core is a tree of dataclasses whose leaves are typed. Values from outside reach a leaf by one
rule (`coerce`): a string for a field that is not a string is text from a command line and is parsed (`true`/`false`,
`null`/`none`, JSON, and for tuples also `1,2,4`), then checked against the field's annotation; a string field takes
the text as it is, and an enum field (`StrEnum`) the member of that value. Unknown keys are a one-line `UserError`
naming the keys that exist there, and every dataclass on the path is rebuilt with `dataclasses.replace`, so its
`__post_init__` checks run again.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from amt_core.errors import UserError, choices

_MISSING = object()


def parse_value(text: str) -> Any:
    """Command-line text as a value: true/false, null/none, a JSON number, list or object, else the text itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_names(obj: Any) -> list[str]:
    """The settable fields of a dataclass (instance or class)."""
    return [f.name for f in dataclasses.fields(obj) if f.init]


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", None) or str(annotation)


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """`value` as the type `annotation` names (the one conversion rule, see the module docstring).

    Raises:
        UserError: a value that is not of the type (`KEY: expected int, got 'three'`), or a nested config it
            cannot build.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, annotation, key)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{key}: expected str, got {value!r}")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            allowed = ", ".join(str(member.value) for member in annotation)
            raise UserError(f"{key}: expected one of {allowed}, got {value!r}") from None
    if isinstance(value, str) and origin is tuple and "," in value and not value.lstrip().startswith("["):
        value = [parse_value(part) for part in value.split(",") if part.strip()]
    elif isinstance(value, str):
        value = parse_value(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif origin is tuple:
        items = list(value) if isinstance(value, list | tuple) else [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(item, args[0], f"{key}.{i}") for i, item in enumerate(items))
        if not args:
            return tuple(items)
        if len(items) == len(args):
            return tuple(coerce(item, arg, f"{key}.{i}") for i, (item, arg) in enumerate(zip(items, args)))
    elif origin is dict:
        if isinstance(value, Mapping):
            value_type = args[1] if args else Any
            return {name: coerce(item, value_type, f"{key}.{name}") for name, item in value.items()}
    elif dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if isinstance(value, Mapping):
            return build(annotation, value, key)
    elif isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise UserError(f"{key}: expected {_type_name(annotation)}, got {value!r}")


def _coerce_union(value: Any, annotation: Any, key: str) -> Any:
    """`coerce` for `A | B | ...`: text stays text where str is a member; else the first member that takes it."""
    args = typing.get_args(annotation)
    if isinstance(value, str) and str in args:
        return value
    if isinstance(value, str) and type(None) in args:
        value = parse_value(value)
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce(value, arg, key)
        except UserError:
            continue
    raise UserError(f"{key}: expected {_type_name(annotation)}, got {value!r}")


def build(cls: type, data: Mapping[str, Any], key: str = "") -> Any:
    """A dataclass `cls` from JSON-like data (nested mappings for nested configs); absent fields take defaults.

    Raises:
        UserError: an unknown key (naming the known ones), a value of the wrong type, or one the checks refuse.
    """
    names = field_names(cls)
    unknown = [name for name in data if name not in names]
    if unknown:
        raise UserError(f"{key or cls.__name__}: no key {unknown[0]!r} here; {choices(unknown[0], names)}")
    hints = _hints(cls)
    values = {name: coerce(value, hints[name], _join(key, name)) for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as err:  # a required field absent
        raise UserError(f"{key or cls.__name__}: {err}") from None
    except ValueError as err:
        raise UserError(f"{key or cls.__name__}: {err}") from None


def override(obj: Any, changes: Mapping[str, Any], *, nested: bool = False, source: str = "") -> Any:
    """A copy of the config `obj` with `changes` applied, each through `coerce` to its field's type.

    Args:
        obj: a dataclass config (nested dataclasses, dicts and tuples of them inside).
        changes: dotted keys to values (`{"refine.steps": 4}`, `{"stages.0.lr": "1e-3"}`), or with `nested`, a
            mapping shaped like the config (`{"weights": {"kl": 0}}`), merged into it: a mapping under a section that
            exists updates its keys and leaves the rest as they are.
        source: a prefix for error messages (`"--set "`).

    Raises:
        UserError: an unknown key (naming the keys that exist there), a value of the wrong type, or a value the
            checks of a config on the path refuse.
    """
    if nested:
        assignments = list(_leaves(obj, changes, []))
    else:
        assignments = [(key.split("."), value) for key, value in changes.items()]
    for parts, value in assignments:
        key = ".".join(parts)
        obj = _set(obj, type(obj), parts, value, source + key)
    return obj


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _child(obj: Any, name: str) -> Any:
    if dataclasses.is_dataclass(obj):
        return getattr(obj, name) if name in field_names(obj) else _MISSING
    if isinstance(obj, dict):
        return obj.get(name, _MISSING)
    if isinstance(obj, tuple) and name.isdigit() and int(name) < len(obj):
        return obj[int(name)]
    return _MISSING


def _leaves(obj: Any, changes: Mapping[str, Any], prefix: list[str]) -> Iterator[tuple[list[str], Any]]:
    """The (path, value) assignments of a nested mapping: descends where the config has a section of that name."""
    for name, value in changes.items():
        child = _child(obj, str(name))
        section = dataclasses.is_dataclass(child) or isinstance(child, dict)
        if isinstance(value, Mapping) and value and section:
            yield from _leaves(child, value, [*prefix, str(name)])
        else:
            yield [*prefix, str(name)], value


def _set(obj: Any, annotation: Any, parts: list[str], value: Any, key: str) -> Any:
    """`obj` with the path `parts` set to `value`: dataclasses are replaced (checks rerun), dicts and tuples copied."""
    head, rest = parts[0], parts[1:]
    if dataclasses.is_dataclass(obj):
        names = field_names(obj)
        if head not in names:
            raise UserError(f"{key}: no key {head!r} here; {choices(head, names)}")
        hint = _hints(type(obj))[head]
        new = _set(getattr(obj, head), hint, rest, value, key) if rest else coerce(value, hint, key)
        try:
            return dataclasses.replace(obj, **{head: new})
        except (TypeError, ValueError) as err:
            raise UserError(f"{key}: {err}") from None
    item_type = _item_type(annotation, head)
    if isinstance(obj, tuple):
        if not head.isdigit() or int(head) >= len(obj):
            raise UserError(f"{key}: {head!r} is not an index below {len(obj)}")
        items = list(obj)
        index = int(head)
        items[index] = _set(items[index], item_type, rest, value, key) if rest else coerce(value, item_type, key)
        return tuple(items)
    if isinstance(obj, dict):  # keys are checked by the dict's owner (its __post_init__), values here
        if rest:
            if head not in obj:
                raise UserError(f"{key}: no section {head!r} here; sections are {', '.join(map(str, obj)) or 'none'}")
            return {**obj, head: _set(obj[head], item_type, rest, value, key)}
        return {**obj, head: coerce(value, item_type, key)}
    raise UserError(f"{key}: {type(obj).__name__} has no keys to set")


def _item_type(annotation: Any, head: str) -> Any:
    """The annotation of an element of a tuple or dict annotation (Any when unknown)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        args = tuple(a for a in args if a is not type(None))
        return _item_type(args[0], head) if len(args) == 1 else Any
    if origin is dict and args:
        return args[1]
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[int(head)] if head.isdigit() and int(head) < len(args) else Any
    return Any
