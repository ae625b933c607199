"""A real dataset's folder checked from its spec without opening it (`amt-core datasets check`), for the readers whose
spec names one split (`scheme:PATH[:split]`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from amt_core.data.crop import split_target
from amt_core.data.registry import DatasetSpec


def split_layout_problems(
    spec: DatasetSpec,
    splits: Mapping[str, str],
    layout_problems: Callable[[Path, str], list[str]],
    split_choices: str,
) -> list[str]:
    """What the spec's folder lacks for its split (default train), one line each, or the one line that the split is
    unknown.

    Args:
        spec: the parsed spec.
        splits: the split names a spec may give -> the reader's name for the split.
        layout_problems: the reader's check of a folder for one split.
        split_choices: the splits to suggest for an unknown one ("train or eval").
    """
    root, (split,) = split_target(spec, ("split",), ("train",))
    if split not in splits:
        return [f"split '{split}' is unknown; use {split_choices}"]
    return layout_problems(root, splits[split])
