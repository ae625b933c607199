"""The on-disk synthetic dataset: a manifest plus shards of stacked records, written atomically and resumable.

A folder holds `synth.json` (the settings that made it) and `shard-00000.safetensors`, ... Each shard stacks the
records of consecutive sample indices; a record depends only on (seed, index), so a resumed run writes the same bytes
as an uninterrupted one. A shard is written to a temporary name and renamed, so a killed run never leaves a shard
that fails to read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save

from amt_core.atomic import atomic_write_bytes
from amt_core.errors import UserError

MANIFEST = "synth.json"
FORMAT = "amt-synth"
VERSION = 1
_META_KEY = "amt"


@dataclass(kw_only=True, slots=True)
class Manifest:
    """The settings a shard folder was made with; a resumed run must match them."""

    num: int
    seed: int
    size: int
    shard_size: int
    hand_only_share: float
    num_verts: int

    @property
    def num_shards(self) -> int:
        return (self.num + self.shard_size - 1) // self.shard_size

    def shard_range(self, shard: int) -> tuple[int, int]:
        """[start, stop) sample indices of a shard."""
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.num)

    def to_json(self) -> str:
        body = {"format": FORMAT, "version": VERSION} | {k: getattr(self, k) for k in self.__slots__}
        return json.dumps(body, indent=2, sort_keys=True) + "\n"


def shard_path(root: Path, shard: int) -> Path:
    return Path(root) / f"shard-{shard:05d}.safetensors"


def read_manifest(root: Path) -> Manifest:
    """The manifest of a shard folder; UserError if the folder or its manifest is missing or malformed."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"synthetic dataset folder {root} does not exist; make one with `amt-core synth --out {root}`")
    path = root / MANIFEST
    if not path.is_file():
        raise UserError(f"{root} has no {MANIFEST}; it is not a synthetic dataset (make one with amt-core synth)")
    try:
        body = json.loads(path.read_text())
        if body.get("format") != FORMAT or body.get("version") != VERSION:
            raise ValueError(f"format {body.get('format')} version {body.get('version')}")
        return Manifest(**{k: body[k] for k in Manifest.__slots__})
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} is malformed ({err}); delete the folder and run amt-core synth again") from err


def prepare_folder(root: Path, manifest: Manifest) -> None:
    """Create the folder and its manifest, or check that an existing one was made with the same settings."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"--out {root} is a file; give a folder")
    root.mkdir(parents=True, exist_ok=True)
    if (root / MANIFEST).is_file():
        found = read_manifest(root)
        if found != manifest:
            diff = ", ".join(
                f"{k} {getattr(found, k)} (asked {getattr(manifest, k)})"
                for k in Manifest.__slots__
                if getattr(found, k) != getattr(manifest, k)
            )
            raise UserError(f"{root} holds a dataset made with other settings: {diff}; use a new --out folder")
    else:
        if any(root.glob("shard-*.safetensors")):
            raise UserError(f"{root} holds shards but no {MANIFEST}; use an empty --out folder")
        atomic_write_bytes(root / MANIFEST, manifest.to_json().encode())
    for stale in root.glob(".shard-*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)


def shard_is_complete(root: Path, shard: int, count: int) -> bool:
    """Whether a shard exists, its header reads and it holds `count` records."""
    path = shard_path(root, shard)
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = json.loads(handle.metadata()[_META_KEY])
            return meta["count"] == count and len(list(handle.keys())) > 0
    except Exception:  # noqa: BLE001 - any unreadable shard is simply written again
        return False


def write_shard(root: Path, shard: int, records: list[dict[str, np.ndarray]], first_index: int) -> Path:
    """Stack records (dicts of numpy arrays with equal keys and shapes) into one shard, atomically."""
    keys = sorted(records[0])
    tensors = {key: np.ascontiguousarray(np.stack([rec[key] for rec in records])) for key in keys}
    meta = json.dumps({"count": len(records), "first_index": first_index}, sort_keys=True)
    path = shard_path(root, shard)
    atomic_write_bytes(path, save(tensors, metadata={_META_KEY: meta}))
    return path


def read_shard(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """(stacked arrays, first sample index) of one shard; UserError if it does not read."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = json.loads(handle.metadata()[_META_KEY])
        return load_file(str(path)), int(meta["first_index"])
    except Exception as err:  # noqa: BLE001 - reported as one line
        raise UserError(
            f"shard {path} does not read ({err}); run amt-core synth again on its folder to rewrite it"
        ) from err
