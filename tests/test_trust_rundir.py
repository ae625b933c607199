"""The run directory under contention and damage: one winner among concurrent lock takers, event logs with torn
lines and stray bytes read to the end, and a resumed writer that never glues its first event to a torn line."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

import pytest

from amt_core.errors import UserError
from amt_core.train.events import EventReader, EventWriter
from amt_core.train.rundir import RunDir, read_lock, run_is_live


def _take(path: str, start_at: float, results, release) -> None:
    """One contender: wait for the common start, try to take the lock, report, and (winning) hold it until every
    contender has reported: a late starter on a loaded machine must find it held, not released."""
    while time.time() < start_at:
        pass
    run = RunDir(path)
    try:
        run.acquire(resume=True)
    except UserError as err:
        results.put(("lost", str(err)))
        return
    results.put(("won", os.getpid()))
    release.wait(timeout=120)
    run.release()


def test_one_winner_among_concurrent_processes(tmp_path):
    context = multiprocessing.get_context("fork")
    for trial in range(3):
        path = tmp_path / f"run{trial}"
        results, release = context.Queue(), context.Event()
        start_at = time.time() + 0.5
        procs = [context.Process(target=_take, args=(str(path), start_at, results, release)) for _ in range(12)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        release.set()
        for p in procs:
            p.join(timeout=30)
        won = [o for o in outcomes if o[0] == "won"]
        assert len(won) == 1, outcomes
        assert all("owned by a live run" in o[1] for o in outcomes if o[0] == "lost")
        assert not (path / "lock").exists()  # the winner released it


def test_one_winner_among_concurrent_threads(tmp_path):
    """Threads of one process too (each opens its own lock file description), 200 rounds of 8."""
    for trial in range(200):
        path = tmp_path / f"run{trial}"
        barrier = threading.Barrier(8)
        runs, errors = [RunDir(path) for _ in range(8)], []

        def take(run: RunDir, barrier=barrier, errors=errors) -> None:
            barrier.wait()
            try:
                run.acquire(resume=True)
            except UserError as err:
                errors.append(str(err))

        threads = [threading.Thread(target=take, args=(run,)) for run in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [run for run in runs if run._locked]
        assert len(winners) == 1, (trial, errors)
        assert len(errors) == 7
        assert read_lock(path)["pid"] == os.getpid() and run_is_live(path)
        winners[0].release()


def test_lock_is_held_for_the_run_and_freed_on_release(tmp_path):
    first = RunDir(tmp_path)
    first.acquire(resume=False)
    with pytest.raises(UserError, match="owned by a live run"):
        RunDir(tmp_path).acquire(resume=True)
    first.release()
    with RunDir(tmp_path) as second:  # freed: the next one takes it
        second.acquire(resume=True)
        assert read_lock(tmp_path)["pid"] == os.getpid()


def _write_raw(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_reader_skips_and_counts_bad_lines_and_never_raises(tmp_path):
    writer = EventWriter(tmp_path)
    writer.emit("state", 0, state="running")
    log = tmp_path / "events.jsonl"
    _write_raw(log, b'{"v": 1, "kind": "metrics", "step": 1, "loss": \xff\xfe}\n')  # a non-UTF-8 byte
    _write_raw(log, b"not json at all\n")
    _write_raw(log, b"[1, 2, 3]\n")  # JSON, but not an event object
    _write_raw(log, b'\x80{"v": 1}\n')
    writer.emit("metrics", 2, loss=1.0)
    reader = EventReader(tmp_path)
    events = reader.read_all()
    assert [e["step"] for e in events] == [0, 2]
    assert reader.bad_lines == 4
    writer.emit("metrics", 3, loss=0.5)  # a poll after the bad lines still sees new events
    assert [e["step"] for e in reader.read_new()] == [3]
    assert [e["step"] for e in reader.read_all()] == [0, 2, 3] and reader.bad_lines == 4  # read_all recounts
    writer.close()


def test_reader_moves_past_a_chunk_of_only_bad_lines_and_an_overlong_line(tmp_path):
    log = tmp_path / "events.jsonl"
    _write_raw(log, b"\xff" * 100 + b"\n")
    _write_raw(log, b"x" * 5000 + b"\n")  # longer than a whole read below
    _write_raw(log, json.dumps({"v": 1, "kind": "state", "step": 7, "time": 0}).encode() + b"\n")
    reader = EventReader(tmp_path)
    events = []
    for _ in range(20):
        events += reader.read_new(max_bytes=1024)
    assert [e["step"] for e in events] == [7]
    assert reader.bad_lines >= 2


def test_resumed_writer_starts_a_new_line_after_a_torn_one(tmp_path):
    writer = EventWriter(tmp_path)
    writer.emit("state", 0, state="running")
    writer.close()
    _write_raw(tmp_path / "events.jsonl", b'{"v": 1, "kind": "metrics", "st')  # killed mid-line
    resumed = EventWriter(tmp_path)
    resumed.emit("state", 5, state="running", resumed_from="step_00000004")
    resumed.emit("metrics", 6, loss=1.0)
    resumed.close()
    reader = EventReader(tmp_path)
    events = reader.read_all()
    assert [(e["kind"], e["step"]) for e in events] == [("state", 0), ("state", 5), ("metrics", 6)]
    assert reader.bad_lines == 1
    again = EventWriter(tmp_path)  # a clean end adds no empty line
    again.close()
    assert not (tmp_path / "events.jsonl").read_bytes().endswith(b"\n\n")
