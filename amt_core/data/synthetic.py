"""Synthetic hand-object samples as Datasets: read from shards (`synth:DIR`) or rendered on the fly (`synth:live`).

Items are Samples (`amt_core.schema.sample`) plus synthetic-only extras with fixed shapes, so batches collate:
`depth` (H, W) metres along z (0 where no surface); `grasp_stable` () bool (the solved contact forces hold the
object within tolerance; False for hand-only samples); `wrench_residual` (2,) (net force N, net torque N·m about the
centre of mass left by those forces); `contact_normals` (MAX_CONTACTS, 3) unit normals into the object at the contact
points (zeros where `contact_point_mask` is False); `gravity_dir` (3,) the unit gravity direction, camera frame.
Pass `extras=0` in the spec to leave them out (to mix with datasets that lack them).
Live items depend only on (seed, split, index), never on the DataLoader worker that renders them. Only the live path
imports `amt_core.synth.world` (the renderer: Open3D, trimesh, the catalog), so reading shards does without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch.utils.data import Dataset

from amt_core.data.registry import DatasetSpec
from amt_core.errors import UserError
from amt_core.schema.sample import empty_sample
from amt_core.synth.shards import read_manifest, shard_is_complete, shard_path

SPLITS = ("train", "val", "test")
EXTRAS = ("depth", "grasp_stable", "wrench_residual", "contact_normals", "gravity_dir")


def record_to_sample(record: dict[str, np.ndarray], extras: bool = True) -> dict:
    """A Sample (dict of torch tensors, every field present) from one synthetic record (dict of numpy arrays)."""
    _, height, width = record["image"].shape
    num_verts = record["hand_verts"].shape[0]
    sample = empty_sample(height, width, num_verts)
    sample["image"] = torch.from_numpy(record["image"].astype(np.float32) / 255.0)
    for name in ("K", "joints3d", "joints2d", "hand_pose", "hand_shape", "hand_rot", "hand_trans", "hand_verts"):
        sample[name] = torch.from_numpy(np.asarray(record[name], dtype=np.float32).copy())
    sample["hand_mask"] = torch.from_numpy(record["hand_mask"].astype(bool))
    sample["obj_mask"] = torch.from_numpy(record["obj_mask"].astype(bool))
    sample["contact"] = torch.from_numpy(record["contact"].astype(np.float32))
    has_obj = bool(record["has_obj"])
    if has_obj:
        sample["obj_class"] = torch.tensor(int(record["obj_class"]), dtype=torch.int64)
        sample["obj_rot"] = torch.from_numpy(record["obj_rot"].astype(np.float32))
        sample["obj_trans"] = torch.from_numpy(record["obj_trans"].astype(np.float32))
        sample["contact_points"] = torch.from_numpy(record["contact_points"].astype(np.float32))
        sample["contact_forces"] = torch.from_numpy(record["contact_forces"].astype(np.float32))
        sample["contact_point_mask"] = torch.from_numpy(record["contact_point_mask"].astype(bool))
    valid = sample["valid"]
    for name in ("joints3d", "joints2d", "mano", "hand_verts", "masks", "contact"):
        valid[name] = torch.tensor(True)  # a hand-only sample's contact labels are known: all zero
    for name in ("obj", "contact_points", "forces"):
        valid[name] = torch.tensor(has_obj)
    if extras:
        sample["depth"] = torch.from_numpy(record["depth"].astype(np.float32))
        sample["grasp_stable"] = torch.tensor(bool(record["grasp_stable"]))
        sample["wrench_residual"] = torch.from_numpy(record["wrench_residual"].astype(np.float32))
        sample["contact_normals"] = torch.from_numpy(record["contact_normals"].astype(np.float32))
        sample["gravity_dir"] = torch.from_numpy(record["gravity_dir"].astype(np.float32))
    return sample


class SynthShardDataset(Dataset):
    """Samples from a folder written by `amt-core synth` (or `amt_core.synth.writer.write_dataset`).

    Args:
        root: the folder (holds synth.json and shard-*.safetensors).
        start, stop: the index range [start, stop) to expose (a held-out tail, for example).
        extras: include the synthetic-only fields (EXTRAS).
        cache_shards: shard files kept open per process (reads are per sample, memory-mapped).
    """

    def __init__(
        self, root: str | Path, start: int = 0, stop: int | None = None, extras: bool = True, cache_shards: int = 32
    ) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        missing = [
            k
            for k in range(self.manifest.num_shards)
            if not shard_is_complete(self.root, k, self.manifest.shard_range(k)[1] - self.manifest.shard_range(k)[0])
        ]
        if missing:
            raise UserError(
                f"{self.root} is incomplete ({len(missing)} of {self.manifest.num_shards} shards missing or "
                f"unreadable, the first {shard_path(self.root, missing[0]).name}); finish it with the same amt-core "
                f"synth command (it resumes and rewrites them)"
            )
        stop = self.manifest.num if stop is None else stop
        if not 0 <= start <= stop <= self.manifest.num:
            raise UserError(f"range [{start}, {stop}) is outside the {self.manifest.num} samples of {self.root}")
        self.start, self.stop, self.extras = start, stop, extras
        self._cache: dict[int, object] = {}  # shard -> open safetensors handle
        self._cache_order: list[int] = []
        self._cache_size = max(1, cache_shards)
        self._pid = os.getpid()

    def __len__(self) -> int:
        return self.stop - self.start

    def record(self, index: int) -> dict[str, np.ndarray]:
        """The raw record (numpy arrays) of item `index`.

        Only that sample's bytes are read (a memory-mapped slice of each array), not its whole shard: a shuffled
        plan touches a different shard at almost every item, and loading whole shards made reading ~50x slower.
        """
        if not 0 <= index < len(self):
            raise IndexError(index)
        global_index = self.start + index
        shard = global_index // self.manifest.shard_size
        offset = global_index - shard * self.manifest.shard_size
        handle = self._handle(shard)
        try:
            return {key: handle.get_slice(key)[offset] for key in handle.keys()}
        except SafetensorError as err:
            path = shard_path(self.root, shard)
            raise UserError(f"shard {path} does not read ({err}); run amt-core synth again on its folder") from err

    def _handle(self, shard: int):
        """An open safetensors handle of a shard; a few stay open per process (handles do not cross a fork)."""
        if self._pid != os.getpid():
            self._cache, self._cache_order, self._pid = {}, [], os.getpid()
        if shard not in self._cache:
            path = shard_path(self.root, shard)
            try:
                self._cache[shard] = safe_open(str(path), framework="numpy")
            except Exception as err:  # safetensors raises its own types for a truncated or foreign file
                raise UserError(f"shard {path} does not read ({err}); run amt-core synth again on its folder") from err
            self._cache_order.append(shard)
            while len(self._cache_order) > self._cache_size:
                self._cache.pop(self._cache_order.pop(0))
        return self._cache[shard]

    def __getitem__(self, index: int) -> dict:
        return record_to_sample(self.record(index), extras=self.extras)


class SynthLiveDataset(Dataset):
    """Samples rendered on demand (inside DataLoader workers), a pure function of (seed, split, index).

    Args:
        seed: the dataset seed; `split` picks an independent stream of it (train, val, test).
        num: the length reported to samplers.
        world_config: size, hand-only share and the rest of `amt_core.synth.world.WorldConfig`.
        extras: include the synthetic-only fields (EXTRAS).
    """

    def __init__(self, seed: int = 0, num: int = 10000, split: str = "train", world_config=None, extras=True) -> None:
        from amt_core.synth.world import WorldConfig

        if split not in SPLITS:
            raise UserError(f"split '{split}' is unknown; use one of {', '.join(SPLITS)}")
        if num < 1:
            raise UserError(f"num must be at least 1, got {num}")
        self.seed, self.num, self.split, self.extras = seed, num, split, extras
        self.world_config = world_config or WorldConfig()
        self._world = None
        self._pid = -1

    def __len__(self) -> int:
        return self.num

    @property
    def stream_seed(self) -> int:
        """The seed the world sees: distinct per split, so val never repeats a train sample."""
        return self.seed * len(SPLITS) + SPLITS.index(self.split)

    def record(self, index: int) -> dict[str, np.ndarray]:
        from amt_core.synth.world import World, single_threaded

        if not 0 <= index < self.num:
            raise IndexError(index)
        if self._world is None or self._pid != os.getpid():  # one world per worker process, built on first use
            if torch.utils.data.get_worker_info() is not None:
                single_threaded()  # a DataLoader worker: the trainer's process keeps its threads
            self._world = World(self.world_config)
            self._pid = os.getpid()
        return self._world.record(self.stream_seed, index)

    def __getitem__(self, index: int) -> dict:
        return record_to_sample(self.record(index), extras=self.extras)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ValueError(text)


def open_synth(spec: DatasetSpec) -> Dataset:
    """Open `synth:DIR[?split=train|val&val_share=F&extras=0|1]` or `synth:live?seed=S&size=PX&num=N[&split=..]`."""
    extras = spec.take("extras", _bool, True, "0 or 1")
    if spec.target == "live":
        from amt_core.synth.world import WorldConfig

        spec.check_keys(("seed", "size", "num", "split", "hand_only_share", "extras"))
        seed = spec.take("seed", int, 0, "an integer")
        size = spec.take("size", int, 128, "pixels, e.g. 128 or 224")
        num = spec.take("num", int, 10000, "a positive integer")
        share = spec.take("hand_only_share", float, 0.1, "a number in [0, 1]")
        split = spec.take("split", str, "train")
        try:
            config = WorldConfig(size=size, hand_only_share=share)
        except ValueError as err:
            raise UserError(f"dataset spec '{spec.text}': {err}") from err
        return SynthLiveDataset(seed=seed, num=num, split=split, world_config=config, extras=extras)
    spec.check_keys(("split", "val_share", "extras"))
    if not spec.target:
        raise UserError(f"dataset spec '{spec.text}' names no folder; write synth:DIR or synth:live?seed=0")
    root = Path(spec.target).expanduser()
    split = spec.take("split", str, "all")
    share = spec.take("val_share", float, 0.05, "a number in (0, 1)")
    if not 0.0 < share < 1.0:
        raise UserError(f"dataset spec '{spec.text}': val_share must be in (0, 1), got {share}")
    full = SynthShardDataset(root, extras=extras)
    if split == "all":
        return full
    cut = len(full) - max(1, int(round(share * len(full))))
    if split == "train":
        return SynthShardDataset(root, 0, cut, extras=extras)
    if split == "val":
        return SynthShardDataset(root, cut, len(full), extras=extras)
    raise UserError(f"dataset spec '{spec.text}': split must be all, train or val for a folder, got '{split}'")


__all__ = ["SynthShardDataset", "SynthLiveDataset", "record_to_sample", "open_synth"]
