"""The run directory (`train/rundir.py`): the lock against a second trainer (refused while its owner lives, taken over
from a dead one, one winner among concurrent takers), and a folder recognised before anything is written: `--resume`
on an empty or a foreign folder, a foreign folder without and with `--force`, a run killed before its config."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.cli import one_error_line

from amt_core.cli import main
from amt_core.errors import UserError
from amt_core.train.rundir import RunDir, read_lock, run_is_live


def _lock(path, pid: int) -> None:
    import socket

    path.mkdir(parents=True, exist_ok=True)
    (path / "lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_live_lock_refused_and_stale_lock_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(tmp_path / "live", sleeper.pid)
        (tmp_path / "live" / "events.jsonl").write_text('{"kind": "state"}\n')
        assert run_is_live(tmp_path / "live")
        with pytest.raises(UserError, match="owned by a live run"):
            RunDir(tmp_path / "live").acquire(resume=True)
        assert (tmp_path / "live" / "events.jsonl").read_text() == '{"kind": "state"}\n'  # nothing overwritten
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not run_is_live(tmp_path / "live")
    with RunDir(tmp_path / "live") as run:  # the owner died: a resume takes the lock over
        run.acquire(resume=True)
        assert json.loads((tmp_path / "live" / "lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / "live" / "lock").exists()


def test_existing_run_needs_resume(tmp_path):
    (tmp_path / "events.jsonl").write_text("")
    with pytest.raises(UserError, match="already holds a run"):
        RunDir(tmp_path).acquire(resume=False)
    file = tmp_path / "afile"
    file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        RunDir(file).acquire(resume=False)


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


# --------------------------------------------------------------------------- a folder that is not a run


def _tree_hash(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with a hash of its bytes (folders: their name)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(folder.rglob("*"))
    }


def _foreign(folder: Path) -> Path:
    """A folder of someone's own files, with names a run writes among them."""
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "config.json").write_text('{"theirs": true}\n')
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "latest").write_text("my latest\n")
    return folder


@pytest.mark.parametrize("kind", ["empty", "foreign", "missing"])
def test_resume_on_a_folder_without_a_run_is_refused_and_nothing_changes(tmp_path, capsys, kind):
    folder = tmp_path / "dir"
    if kind == "empty":
        folder.mkdir()
    elif kind == "foreign":
        _foreign(folder)
    before = _tree_hash(tmp_path)
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder), "--resume"]) == 2
    expected = {"empty": "is empty", "foreign": "is not a run directory", "missing": "does not exist"}[kind]
    one_error_line(capsys.readouterr().err, "--resume", str(folder), expected)
    assert _tree_hash(tmp_path) == before


def test_a_foreign_folder_is_refused_without_force_and_its_files_are_never_overwritten(tmp_path, capsys):
    folder = _foreign(tmp_path / "dir")
    before = _tree_hash(folder)
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder)]) == 2
    one_error_line(capsys.readouterr().err, "not written by amt-core", "checkpoints/latest (+1 more)")
    assert _tree_hash(folder) == before
    # --force does not make a clash acceptable: their config.json and checkpoints/latest are where the run writes
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder), "--force"]) == 2
    one_error_line(capsys.readouterr().err, "checkpoints/latest (+1 more)", "move it away")
    assert _tree_hash(folder) == before


def test_force_starts_a_run_beside_files_it_leaves_alone(tmp_path, capsys):
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder)]) == 2
    one_error_line(capsys.readouterr().err, "is not empty and is not a run (notes.txt)", "--force")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder), "--force"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("training micro") and "stopping at step 1" in out
    assert (folder / "notes.txt").read_text() == "my notes\n"
    assert (folder / "config.json").exists() and any((folder / "checkpoints").glob("step_*"))
    # now a run: --resume is accepted and the notes stay
    assert main(["train", "--preset", "micro", "--max-steps", "2", "--run-dir", str(folder), "--resume"]) == 0
    assert (folder / "notes.txt").read_text() == "my notes\n"


def test_a_run_killed_before_its_config_is_still_a_run(tmp_path):
    """kill -9 between taking the lock and writing config.json leaves the lock and empty folders: --resume takes it
    (and starts afresh, there being no checkpoint); a file named lock that a trainer did not write does not count."""
    from amt_core.errors import UserError
    from amt_core.train.rundir import RunDir

    (tmp_path / "lock").write_text("")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "snapshots").mkdir()
    RunDir(tmp_path).check_start(resume=True)
    (tmp_path / "lock").write_text("my own lock notes\n")
    with pytest.raises(UserError, match="is not a run directory"):
        RunDir(tmp_path).check_start(resume=True)
