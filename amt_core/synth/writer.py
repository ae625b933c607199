"""Writes a synthetic dataset folder: shards rendered by worker processes, resumable, the same bytes for a seed.

The `World` is built once, in this process, and forked workers share it (a spawned worker builds its own). With
several workers, the grasps the pending samples need are built first, each once, spread over the workers, and handed
to the worker that renders each shard; then workers render whole shards. Shards already complete on disk are skipped,
so re-running an interrupted command finishes it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from threadpoolctl import threadpool_limits

from amt_core.objects import num_classes
from amt_core.synth.shards import Manifest, prepare_folder, shard_is_complete, write_shard
from amt_core.synth.world import TIMINGS, World, WorldConfig, grasp_key, single_threaded

_WORLD: World | None = None


@dataclass(kw_only=True)
class WriteResult:
    """What a write did."""

    written: int  # shards written by this run
    skipped: int  # shards already complete
    samples: int  # samples rendered by this run
    grasp_phase_s: float  # wall seconds spent building the grasp bank before rendering (several workers only)
    render_phase_s: float  # wall seconds spent rendering and writing shards
    startup_s: float  # wall seconds before the first sample: the World, the worker processes, the folder scan
    timings: dict[str, float]  # CPU seconds summed over workers: bank_s (building bank grasps), grasp_s, scene_s,
    # render_s, forces_s, label_s (forces included), write_s, startup_s (worker set-up); grasps_built (a count)


_STARTUP_S = 0.0  # seconds this worker spent building its World, reported once with its first result


def _init_worker(config: WorldConfig) -> None:
    """Build this process's World (a new one per dataset: its disk cache follows the environment of the call)."""
    global _WORLD, _STARTUP_S
    t0 = time.perf_counter()
    _WORLD = World(config)
    _STARTUP_S = time.perf_counter() - t0


def _init_pool_worker(config: WorldConfig) -> None:
    single_threaded()  # this process only renders; the workers together use every core
    if _WORLD is None or _WORLD.config != config:  # a forked worker shares the parent's World; a spawned one builds
        _init_worker(config)


def _take_startup() -> float:
    global _STARTUP_S
    seconds, _STARTUP_S = _STARTUP_S, 0.0
    return seconds


def _build_grasp(key: tuple[int, int, int]):
    t0 = time.process_time()
    grasp = _WORLD.bank_grasp(*key)
    return key, grasp, time.process_time() - t0, _take_startup()


def _render_shard(task: tuple) -> tuple[int, int, dict[str, float]]:
    root, seed, shard, start, stop, bank = task
    world = _WORLD
    for key, grasp in bank.items():
        world.add_to_bank(key, grasp)
    before = dict(world.timings)
    records = [world.record(seed, index) for index in range(start, stop)]
    t0 = time.process_time()
    write_shard(Path(root), shard, records, start)
    timings = {key: world.timings[key] - before[key] for key in TIMINGS if key != "samples"}
    timings["write_s"] = time.process_time() - t0
    timings["startup_s"] = _take_startup()
    return shard, stop - start, timings


def write_dataset(
    root: str | Path,
    num: int,
    seed: int,
    config: WorldConfig | None = None,
    workers: int = 1,
    shard_size: int = 64,
    progress: Callable[[int, int, str], None] | None = None,
) -> WriteResult:
    """Render `num` samples of dataset `seed` into shard files under `root` (resuming a previous run there).

    Args:
        root: output folder; created if missing; must hold nothing or a run with the same settings.
        num: samples in the dataset. seed: the dataset seed.
        config: the world's settings (image size, hand-only share, ...).
        workers: processes rendering shards (1 renders in this process).
        shard_size: samples per shard.
        progress: called with (samples done, samples total, note) as shards finish (skipped ones count as done);
            while grasps are being built first, the note says how many.
    """
    t_start = time.perf_counter()
    config = config or WorldConfig()
    root = Path(root)
    _init_worker(config)  # forked workers share this World: one build instead of one per worker
    startup_cpu = _take_startup()
    manifest = Manifest(
        num=num,
        seed=seed,
        size=config.size,
        shard_size=shard_size,
        hand_only_share=config.hand_only_share,
        num_verts=_WORLD.num_verts,
    )
    prepare_folder(root, manifest)
    pending = _pending_shards(root, manifest)
    done = num - sum(stop - start for _, start, stop in pending)
    tally = _Tally(num, done, startup_cpu, progress)
    if workers <= 1 or len(pending) <= 1:
        t_pool = t_render = time.perf_counter()
        t_end = _write_in_process(root, seed, pending, tally.totals, tally.finish)
    else:
        t_pool, t_render, t_end = _write_with_pool(
            root, seed, config, workers, pending, tally.totals, tally.finish, tally.note
        )
    return WriteResult(
        written=len(pending),
        skipped=manifest.num_shards - len(pending),
        samples=tally.rendered,
        startup_s=t_pool - t_start,
        grasp_phase_s=t_render - t_pool,
        render_phase_s=t_end - t_render,
        timings=tally.totals,
    )


class _Tally:
    """A write's running count (samples done, those rendered by this run), its CPU seconds by kind, and the progress
    callback told of each change."""

    def __init__(self, num: int, done: int, startup_s: float, progress: Callable[[int, int, str], None] | None) -> None:
        self.num, self.done, self.rendered, self.progress = num, done, 0, progress
        self.totals = dict.fromkeys(("bank_s", *TIMINGS[:-1], "write_s", "startup_s", "grasps_built"), 0.0)
        self.totals["startup_s"] = startup_s
        self.note("")

    def finish(self, result: tuple[int, int, dict[str, float]]) -> None:
        """Count a rendered shard: (shard, samples, CPU seconds by kind)."""
        _, count, timings = result
        self.done += count
        self.rendered += count
        for key, value in timings.items():
            self.totals[key] += value
        self.note("")

    def note(self, text: str) -> None:
        if self.progress:
            self.progress(self.done, self.num, text)


def _pending_shards(root: Path, manifest: Manifest) -> list[tuple[int, int, int]]:
    """(shard, start, stop) of the shards not yet complete on disk."""
    pending = []
    for shard in range(manifest.num_shards):
        start, stop = manifest.shard_range(shard)
        if not shard_is_complete(root, shard, stop - start):
            pending.append((shard, start, stop))
    return pending


def _write_in_process(root, seed, pending, totals, finish) -> float:
    """Render the pending shards here, building bank grasps as samples need them; perf_counter() at the end."""
    banked = len(_WORLD._bank)
    with threadpool_limits(1):  # see single_threaded; scoped, since this is the caller's process
        for shard, start, stop in pending:
            finish(_render_shard((str(root), seed, shard, start, stop, {})))
    totals["grasps_built"] = float(len(_WORLD._bank) - banked)  # built or read from the disk cache
    return time.perf_counter()


def _write_with_pool(root, seed, config, workers, pending, totals, finish, note) -> tuple[float, float, float]:
    """Build the pending shards' bank grasps, each once, then render the shards, in worker processes.

    Returns:
        perf_counter() when the workers had started, when the bank was built and when the last shard was written.
    """
    # fork: workers inherit the imported modules and this process's World (Open3D scenes are built lazily, so each
    # worker makes its own); spawn builds a World per worker.
    context = mp.get_context("fork" if os.name == "posix" else "spawn")
    _WORLD.grasps.geometry.load_grids()  # before the fork, so the workers share one copy
    with context.Pool(min(workers, len(pending)), initializer=_init_pool_worker, initargs=(config,)) as pool:
        t_pool = time.perf_counter()
        classes = _num_classes()
        keys_of = {
            shard: [grasp_key(seed, index, config, classes) for index in range(start, stop)]
            for shard, start, stop in pending
        }
        needed = sorted({key for keys in keys_of.values() for key in keys if key is not None})
        bank = {}
        for key, grasp, seconds, startup in pool.imap_unordered(_build_grasp, needed, chunksize=4):
            bank[key] = grasp
            note(f"grasps {len(bank)}/{len(needed)}")
            totals["bank_s"] += seconds
            totals["startup_s"] += startup
        totals["grasps_built"] = float(len(needed))
        t_render = time.perf_counter()
        tasks = [
            (str(root), seed, shard, start, stop, {key: bank[key] for key in set(keys_of[shard]) if key is not None})
            for shard, start, stop in pending
        ]
        for result in pool.imap_unordered(_render_shard, tasks):
            finish(result)
        t_end = time.perf_counter()
    return t_pool, t_render, t_end


def _num_classes() -> int:
    return num_classes()
