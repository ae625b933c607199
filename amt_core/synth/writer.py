"""Writes a synthetic dataset folder: shards rendered by worker processes, resumable, the same bytes for a seed.

Each worker builds its own `World` once. With several workers, the grasps the pending samples need are built first,
each once, spread over the workers, and handed to the worker that renders each shard; then workers render whole
shards. Shards already complete on disk are skipped, so re-running an interrupted command finishes it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amt_core.synth.shards import Manifest, prepare_folder, shard_is_complete, write_shard
from amt_core.synth.world import World, WorldConfig, grasp_key

_WORLD: World | None = None


@dataclass(kw_only=True)
class WriteResult:
    """What a write did."""

    written: int  # shards written by this run
    skipped: int  # shards already complete
    samples: int  # samples rendered by this run
    grasp_phase_s: float  # wall seconds spent building the grasp bank before rendering (several workers only)
    render_phase_s: float  # wall seconds spent rendering and writing shards
    timings: dict[str, float]  # CPU seconds summed over workers: grasp_s, render_s, label_s, write_s, startup_s;
    # and grasps_built (a count)


_STARTUP_S = 0.0  # seconds this worker spent building its World, reported once with its first result


def _init_worker(config: WorldConfig) -> None:
    global _WORLD, _STARTUP_S
    t0 = time.perf_counter()
    _WORLD = World(config)
    _STARTUP_S = time.perf_counter() - t0


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
    timings = {key: world.timings[key] - before[key] for key in ("grasp_s", "render_s", "label_s")}
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
    config = config or WorldConfig()
    root = Path(root)
    from amt_core.hand import HandModel

    manifest = Manifest(
        num=num,
        seed=seed,
        size=config.size,
        shard_size=shard_size,
        hand_only_share=config.hand_only_share,
        num_verts=int(HandModel(config.grasp.hand_path).num_verts),
    )
    prepare_folder(root, manifest)
    pending, done = [], 0
    for shard in range(manifest.num_shards):
        start, stop = manifest.shard_range(shard)
        if shard_is_complete(root, shard, stop - start):
            done += stop - start
        else:
            pending.append((shard, start, stop))
    skipped = manifest.num_shards - len(pending)
    if progress:
        progress(done, num, "")
    totals = dict.fromkeys(("grasp_s", "render_s", "label_s", "write_s", "startup_s", "grasps_built"), 0.0)
    rendered = 0

    def finish(result: tuple[int, int, dict[str, float]]) -> None:
        nonlocal done, rendered
        _, count, timings = result
        done += count
        rendered += count
        for key, value in timings.items():
            totals[key] += value
        if progress:
            progress(done, num, "")

    t_start = time.perf_counter()
    if workers <= 1 or len(pending) <= 1:
        _init_worker(config)
        for shard, start, stop in pending:
            finish(_render_shard((str(root), seed, shard, start, stop, {})))
        totals["grasps_built"] = float(len(_WORLD._bank))
        return WriteResult(
            written=len(pending),
            skipped=skipped,
            samples=rendered,
            grasp_phase_s=0.0,
            render_phase_s=time.perf_counter() - t_start,
            timings=totals,
        )

    # fork: workers inherit the imported modules; each builds its own World (Open3D scenes are per process).
    context = mp.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(min(workers, len(pending)), initializer=_init_worker, initargs=(config,)) as pool:
        classes = _num_classes()
        keys_of = {
            shard: [grasp_key(seed, index, config, classes) for index in range(start, stop)]
            for shard, start, stop in pending
        }
        needed = sorted({key for keys in keys_of.values() for key in keys if key is not None})
        bank = {}
        for key, grasp, seconds, startup in pool.imap_unordered(_build_grasp, needed, chunksize=4):
            bank[key] = grasp
            if progress:
                progress(done, num, f"grasps {len(bank)}/{len(needed)}")
            totals["grasp_s"] += seconds
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
    return WriteResult(
        written=len(pending),
        skipped=skipped,
        samples=rendered,
        grasp_phase_s=t_render - t_start,
        render_phase_s=t_end - t_render,
        timings=totals,
    )


def _num_classes() -> int:
    from amt_core.objects import num_classes

    return num_classes()
