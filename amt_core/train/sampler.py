"""Which samples each step trains on: a seeded, resumable batch plan with DDP sharding and hard-case mining.

The plan is a pure function of (seed, epoch, position, mining pool): a permutation per epoch, cut into global
batches, each rank taking its contiguous slice. Its state is the position of the last *consumed* batch, so a
DataLoader prefetching ahead never shifts a resume. Hard-case mining replaces a share of each batch by samples drawn
(weighted by their last error) from a pool of the hardest samples seen, refreshed every few hundred steps.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from amt_core.train.stopping import quiet_worker


def _generator(*keys: int) -> torch.Generator:
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class BatchPlan:
    """Global batches of dataset indices, epoch after epoch, for `world_size` ranks."""

    def __init__(self, dataset_len: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} must be a multiple of the {world_size} processes")
        if dataset_len < global_batch:
            raise ValueError(f"the dataset has {dataset_len} samples, fewer than one batch of {global_batch}")
        self.dataset_len = dataset_len
        self.global_batch = global_batch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0  # batches consumed in this epoch
        self.mining_share = 0.0
        self.pool: list[int] = []
        self.pool_weights: list[float] = []
        self.errors: OrderedDict[int, float] = OrderedDict()  # index -> last error, most recent last
        self.max_errors = 100_000
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_len // self.global_batch

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(self.dataset_len, generator=_generator(self.seed, epoch))
            self._perm_epoch = epoch
        return self._perm

    def global_indices(self, epoch: int, position: int) -> list[int]:
        """The global batch at (epoch, position)."""
        start = position * self.global_batch
        indices = self._permutation(epoch)[start : start + self.global_batch].tolist()
        mined = round(self.mining_share * self.global_batch) if self.pool else 0
        if mined:
            weights = torch.tensor(self.pool_weights, dtype=torch.float64)
            picks = torch.multinomial(
                weights, mined, replacement=True, generator=_generator(self.seed, epoch, position, 7)
            )
            indices[-mined:] = [self.pool[i] for i in picks.tolist()]
        return indices

    def local_indices(self, indices: list[int]) -> list[int]:
        per_rank = self.global_batch // self.world_size
        return indices[self.rank * per_rank : (self.rank + 1) * per_rank]

    def iterate(self) -> Iterator[tuple[int, int, list[int]]]:
        """(epoch, position, this rank's indices) from the current position on (the position is not advanced)."""
        epoch, position = self.epoch, self.position
        while True:
            if position >= self.batches_per_epoch:
                epoch, position = epoch + 1, 0
            yield epoch, position, self.local_indices(self.global_indices(epoch, position))
            position += 1

    def consumed(self, epoch: int, position: int) -> None:
        """Mark the batch at (epoch, position) as trained on."""
        self.epoch, self.position = epoch, position + 1

    def samples_seen(self) -> int:
        return (self.epoch * self.batches_per_epoch + self.position) * self.global_batch

    # hard-case mining

    def record_errors(self, indices: list[int], errors: list[float]) -> None:
        for index, error in zip(indices, errors):
            self.errors.pop(index, None)
            self.errors[index] = float(error)
        while len(self.errors) > self.max_errors:
            self.errors.popitem(last=False)

    def refresh_pool(self, share: float, pool_size: int) -> bool:
        """Set the mining share and rebuild the pool of hardest samples. Returns whether the plan changed."""
        old = (self.mining_share, self.pool)
        self.mining_share = share
        if share <= 0 or not self.errors:
            self.pool, self.pool_weights = [], []
        else:
            ranked = sorted(self.errors.items(), key=lambda kv: kv[1], reverse=True)[:pool_size]
            self.pool = [index for index, _ in ranked]
            self.pool_weights = [max(error, 1e-9) for _, error in ranked]
        return old != (self.mining_share, self.pool)

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "mining_share": self.mining_share,
            "pool": list(self.pool),
            "pool_weights": list(self.pool_weights),
            "error_indices": list(self.errors.keys()),
            "error_values": list(self.errors.values()),
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), int(state["seed"])
        self.mining_share = float(state["mining_share"])
        self.pool, self.pool_weights = list(state["pool"]), list(state["pool_weights"])
        self.errors = OrderedDict(zip(state["error_indices"], state["error_values"]))


class IndexedDataset(Dataset):
    """A dataset whose samples also carry their index (`index`), so a batch says which samples it holds."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.dataset[index])
        sample["index"] = torch.tensor(index, dtype=torch.long)
        return sample


class PlanBatches:
    """The batch_sampler handed to a DataLoader: yields index lists and remembers, in order, where each came from."""

    def __init__(self, plan: BatchPlan) -> None:
        self.plan = plan
        self.origins: deque[tuple[int, int]] = deque()

    def __iter__(self) -> Iterator[list[int]]:
        for epoch, position, indices in self.plan.iterate():
            self.origins.append((epoch, position))
            yield indices


def plan_loader(
    dataset: Dataset, batches: PlanBatches, num_workers: int, pin_memory: bool, seed: int | None = None
) -> DataLoader:
    """The trainer's DataLoader: `batches` picks each batch's samples, which carry their `index`.

    The loader gets its own generator seeded by `seed` (by default from the plan's seed, epoch and position):
    starting an iterator draws the workers' base seed from it, and drawing from the global generator instead would
    shift the training noise after a resume (6 steps + resume + 6 would differ from 12). Its workers ignore the stop
    signals (`stopping.quiet_worker`): the trainer stops them after its last checkpoint.
    """
    plan = batches.plan
    if seed is None:
        seed = ((plan.seed * 1_000_003 + plan.rank) * 1_000_003 + plan.epoch) * 1_000_003 + plan.position
    generator = torch.Generator().manual_seed(seed % (1 << 63))
    return DataLoader(
        IndexedDataset(dataset),
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=generator,
        worker_init_fn=quiet_worker,
    )
