"""An on-disk cache of the grasp bank, shared by every process and run on this machine.

A bank entry is a pure function of (seed, class, slot), the grasp settings and the code and assets that build it,
and costs about 60 ms; a live dataset's DataLoader workers each used to rebuild their bank from nothing, at start
and at every loader restart (hard-case mining refreshes restart it). Entries live in
`cache_dir()/grasp_bank/<fingerprint>/`, where the fingerprint hashes the grasp settings and the source and asset
files they depend on, so changed code never reads old grasps. Writes are atomic; an unreadable entry is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from functools import cache
from pathlib import Path

import numpy as np

from amt_core import __version__, paths
from amt_core.atomic import atomic_write
from amt_core.synth.grasp import Grasp, GraspConfig

_ARRAYS = ("pose", "shape", "rot_matrix", "trans", "verts", "joints", "contact", "contact_points", "contact_normals")
# What a grasp depends on besides its config: the synthesizer and the contact-force solver that scores its grasps,
# the hand layer and its asset, the object catalog and its geometry.
_SOURCES = ("synth/grasp.py", "synth/forces.py", "hand", "objects")


@cache
def _sources_digest() -> str:
    root = Path(__file__).resolve().parent.parent  # amt_core/
    digest = hashlib.sha256(__version__.encode())
    targets = [(root, root / name) for name in _SOURCES] + [(paths.ASSETS_DIR, paths.ASSETS_DIR / "hand")]
    for base, target in targets:
        files = sorted(target.rglob("*")) if target.is_dir() else [target]
        for path in files:
            if path.is_file() and path.suffix in (".py", ".npz"):
                digest.update(str(path.relative_to(base)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(config: GraspConfig) -> str:
    """What a cached grasp was built with: the grasp settings and the code and assets behind them."""
    settings = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return hashlib.sha256((settings + _sources_digest()).encode()).hexdigest()[:20]


class GraspBankCache:
    """Bank entries on disk for one grasp configuration (`enabled=False`: a cache that never hits)."""

    def __init__(self, config: GraspConfig, root: Path | None = None, enabled: bool = True) -> None:
        self.enabled = enabled and os.environ.get("AMT_GRASP_CACHE", "1") != "0"
        self.root: Path | None = None
        if self.enabled:
            try:
                self.root = (root or paths.cache_dir() / "grasp_bank") / fingerprint(config)
            except OSError:  # no writable cache directory: build every grasp, as without a cache
                self.enabled = False

    def _path(self, key: tuple[int, int, int]) -> Path:
        seed, class_index, slot = key
        return self.root / f"{seed}_{class_index}_{slot}.npz"

    def load(self, key: tuple[int, int, int]) -> Grasp | None:
        """The cached grasp, or None (not cached, or an entry that does not read: it will be rebuilt)."""
        if not self.enabled:
            return None
        try:
            with np.load(self._path(key), allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {name: data[name] for name in _ARRAYS}
            return Grasp(
                class_id=int(meta["class_id"]),
                kind=str(meta["kind"]),
                penetration=float(meta["penetration"]),
                fingers_in_contact=tuple(meta["fingers_in_contact"]),
                **arrays,
            )
        except (OSError, KeyError, ValueError, TypeError):  # missing, truncated or foreign: build it again
            return None

    def store(self, key: tuple[int, int, int], grasp: Grasp) -> None:
        """Write an entry atomically; a cache that cannot be written (read-only home) is simply not used."""
        if not self.enabled:
            return
        meta = {
            "class_id": grasp.class_id,
            "kind": grasp.kind,
            "penetration": float(grasp.penetration),
            "fingers_in_contact": list(grasp.fingers_in_contact),
        }
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, fsync=False) as handle:  # a cache: rebuilt if a crash loses it
                np.savez(handle, meta=np.array(json.dumps(meta)), **{name: getattr(grasp, name) for name in _ARRAYS})
        except OSError:
            pass  # an entry that cannot be cached is built again next time
