"""Weighted mixtures of datasets: `mix:SPEC*W+SPEC*W...`, e.g. `mix:freihand:/d/fh*0.5+synth:live?seed=1&extras=0*0.5`.

Each part is any spec `open_dataset` accepts; `*W` (a positive number, default 1) is its share of the mixture. The
mixture has as many items as its parts together, and a fixed map sends each item to one part's item, so any sampler
(shuffled or not) sees each part in proportion to its weight: a part with fewer items than its share repeats, a part
with more is spread evenly (every k-th item). Parts must give Samples of the same shapes (same crop size, same
hand vertex count, the same extra fields), which is checked when the mixture is opened.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from amt_core.data.registry import DatasetSpec, open_dataset
from amt_core.errors import UserError


def split_mix(text: str) -> list[tuple[str, float]]:
    """`SPEC*W+SPEC*W` -> [(spec, weight), ...]; a part without `*W` weighs 1. UserError on a bad weight."""
    parts = []
    for piece in text.split("+"):
        piece = piece.strip()
        if not piece:
            raise UserError(f"mixture '{text}' has an empty part; write SPEC*W+SPEC*W")
        spec, weight = piece, 1.0
        head, star, tail = piece.rpartition("*")
        if star:
            try:
                spec, weight = head, float(tail)
            except ValueError as err:
                raise UserError(f"mixture part '{piece}': weight '{tail}' is not a number") from err
        if not weight > 0 or not np.isfinite(weight):
            raise UserError(f"mixture part '{piece}': weight must be a positive number, got {weight}")
        parts.append((spec.strip(), weight))
    return parts


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Split `total` items in proportion to weights (largest remainder), every part at least 1."""
    shares = np.asarray(weights, dtype=np.float64) / sum(weights) * total
    counts = np.maximum(np.floor(shares).astype(int), 1)
    order = np.argsort(-(shares - np.floor(shares)))
    k = 0
    while counts.sum() < total:
        counts[order[k % len(counts)]] += 1
        k += 1
    return counts.tolist()


def _layout(sample: dict) -> dict[str, tuple]:
    layout = {}
    for name, value in sample.items():
        if isinstance(value, torch.Tensor):
            layout[name] = (tuple(value.shape), value.dtype)
        elif isinstance(value, dict):
            layout.update({f"{name}.{key}": (tuple(v.shape), v.dtype) for key, v in value.items()})
    return layout


class MixedDataset(Dataset):
    """Parts mixed by weight (see the module docstring).

    Args:
        parts: (dataset, weight) pairs, weights positive.
        names: a label per part, for messages.
        check: fetch one item of each part and refuse shapes that would not batch together.
    """

    def __init__(self, parts: list[tuple[Dataset, float]], names: list[str] | None = None, check: bool = True) -> None:
        if not parts:
            raise UserError("a mixture needs at least one part")
        self.datasets = [dataset for dataset, _ in parts]
        self.weights = [float(weight) for _, weight in parts]
        self.names = names or [f"part {k}" for k in range(len(parts))]
        for dataset, name in zip(self.datasets, self.names):
            if len(dataset) == 0:
                raise UserError(f"mixture part '{name}' has no samples")
        self.counts = _allocate(sum(len(d) for d in self.datasets), self.weights)
        self.starts = np.cumsum([0] + self.counts)
        if check and len(self.datasets) > 1:
            self._check_layouts()

    def _check_layouts(self) -> None:
        reference = _layout(self.datasets[0][0])
        for dataset, name in zip(self.datasets[1:], self.names[1:]):
            layout = _layout(dataset[0])
            differ = sorted(set(reference) ^ set(layout)) + sorted(
                k for k in set(reference) & set(layout) if reference[k] != layout[k]
            )
            if differ:
                shown = ", ".join(
                    f"{k} {reference.get(k, ('absent',))[0]} vs {layout.get(k, ('absent',))[0]}" for k in differ[:4]
                )
                raise UserError(
                    f"mixture parts '{self.names[0]}' and '{name}' give different samples ({shown}); use the same "
                    f"size= in every part, extras=0 on synth parts, and the same MANO setting (mano=) for all"
                )

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(part, index within the part) of mixture item `index`."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = int(np.searchsorted(self.starts, index, side="right") - 1)
        offset, count, size = index - int(self.starts[part]), self.counts[part], len(self.datasets[part])
        inner = offset % size if count > size else (offset * size) // count
        return part, inner

    def __getitem__(self, index: int) -> dict:
        part, inner = self.locate(index)
        return self.datasets[part][inner]


def open_mix(spec: DatasetSpec) -> MixedDataset:
    """Open `mix:SPEC*W+SPEC*W...` (the text after `mix:` is split on '+', so part paths must not contain '+')."""
    text = spec.text.split(":", 1)[1] if ":" in spec.text else spec.target
    parts = split_mix(text)
    datasets = []
    for part, weight in parts:
        if part.lower().startswith("mix:"):
            raise UserError(f"mixture part '{part}' is itself a mixture; list all parts in one mix: spec")
        datasets.append((open_dataset(part), weight))
    return MixedDataset(datasets, names=[part for part, _ in parts])


__all__ = ["MixedDataset", "open_mix", "split_mix"]
