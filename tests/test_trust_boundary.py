"""Errors at the boundary with the machine, each one line naming the path, exit 2: a real 2 MB tmpfs filled up and a
read-only mount (as root; where mounting is not permitted those tests skip and the injected versions below stand in)
for train's first checkpoint, synth's shards and the cache; and a run directory recognised before anything is
written: `--resume` on an empty or a foreign folder, a foreign folder without and with `--force`."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amt_core.cli import main
from amt_core.errors import MAX_LINE

SMALL_FS = "2m"


def _mount(target: Path, *options: str) -> bool:
    """Mount a tmpfs at `target` (a `size=` option limits it); False when this process may not mount."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(target)], capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _unmount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs (skips with the reason where mounting is not permitted)."""
    target = tmp_path / "small"
    if not _mount(target, f"size={SMALL_FS}"):
        pytest.skip("mount -t tmpfs is not permitted here (not root, or no CAP_SYS_ADMIN); the injected tests run")
    yield target
    _unmount(target)


@pytest.fixture
def read_only_fs(tmp_path):
    """An empty tmpfs remounted read-only."""
    target = tmp_path / "ro"
    if not _mount(target, "size=1m"):
        pytest.skip("mount -t tmpfs is not permitted here (not root, or no CAP_SYS_ADMIN); the injected tests run")
    subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True, capture_output=True, timeout=30)
    yield target
    _unmount(target)


def _fill(mount: Path, leave: int) -> None:
    """Take all but `leave` bytes of a filesystem with one file."""
    stat = os.statvfs(mount)
    free = stat.f_bavail * stat.f_frsize
    with open(mount / "ballast", "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))


def _one_error_line(err: str, *fragments: str) -> str:
    """The command's error output, checked to be one line under MAX_LINE with no traceback, holding `fragments`."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert len(line) < MAX_LINE and "Traceback" not in err, line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`amt-core ARGS` in a fresh process: the cache tests need one whose in-memory caches are empty."""
    return subprocess.run(
        [sys.executable, "-m", "amt_core", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


# --------------------------------------------------------------------------- train's first checkpoint


def test_train_first_checkpoint_on_a_full_tmpfs_is_one_line(small_fs, capsys):
    run_dir = small_fs / "run"
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(run_dir)]) == 2
    _one_error_line(capsys.readouterr().err, f"disk full at {run_dir / 'checkpoints'}", "free space")
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith((".tmp-", ".space-probe"))]


def test_train_first_checkpoint_when_safetensors_reports_a_full_disk(tmp_path, monkeypatch, capsys):
    """Injected: safetensors' own error for ENOSPC (its message carries 'os error 28', not an errno)."""
    from safetensors import SafetensorError

    from amt_core.train import checkpoint_files as ckpt_io

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ckpt_io, "save_file", full)
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(run_dir)]) == 2
    _one_error_line(capsys.readouterr().err, f"disk full at {run_dir / 'checkpoints'}", "free space")


# --------------------------------------------------------------------------- synth's shards


def test_synth_shard_on_a_full_tmpfs_is_one_line(small_fs, capsys):
    _fill(small_fs, leave=64 * 1024)  # room for the manifest, not for a shard of 8 samples at 64 px
    out = small_fs / "ds"
    assert main(["synth", "--out", str(out), "--num", "8", "--size", "64", "--shard-size", "8"]) == 2
    _one_error_line(capsys.readouterr().err, f"disk full at {out}", "free space")
    assert not list(out.glob(".*.tmp"))  # the temporary shard went with the error


def test_synth_on_a_read_only_mount_is_one_line(read_only_fs, capsys):
    out = read_only_fs / "ds"
    assert main(["synth", "--out", str(out), "--num", "2", "--size", "64"]) == 2
    _one_error_line(capsys.readouterr().err, str(out), "read-only", "writable folder")


def test_synth_write_error_without_a_file_name_names_the_shard(tmp_path, monkeypatch, capsys):
    """Injected: a write that fails with ENOSPC and no file name (as `write()` does) still names the file."""
    import amt_core.atomic

    real_replace = amt_core.atomic.os.replace

    def full(source, target):
        if str(target).endswith(".safetensors"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(amt_core.atomic.os, "replace", full)
    out = tmp_path / "ds"
    assert main(["synth", "--out", str(out), "--num", "2", "--size", "64"]) == 2
    _one_error_line(capsys.readouterr().err, f"disk full at {out}/shard-00000.safetensors")


# --------------------------------------------------------------------------- the cache


def test_cache_on_a_full_tmpfs_is_one_line(small_fs, tmp_path):
    _fill(small_fs, leave=16 * 1024)
    cache = small_fs / "cache"
    result = _cli(["synth", "--out", str(tmp_path / "ds"), "--num", "2", "--size", "64"], {"AMT_CACHE_DIR": str(cache)})
    assert result.returncode == 2, result.stderr[-2000:]
    _one_error_line(result.stderr, f"disk full at {cache}")


def test_cache_on_a_read_only_mount_is_one_line(read_only_fs, tmp_path):
    result = _cli(
        ["synth", "--out", str(tmp_path / "ds"), "--num", "2", "--size", "64"], {"AMT_CACHE_DIR": str(read_only_fs)}
    )
    assert result.returncode == 2, result.stderr[-2000:]
    _one_error_line(result.stderr, f"cache folder {read_only_fs}", "set AMT_CACHE_DIR")
    assert not (tmp_path / "ds").exists() or not any((tmp_path / "ds").glob("shard-*"))


def test_cache_folder_that_cannot_be_created_is_one_line(tmp_path, monkeypatch):
    """No mount needed: AMT_CACHE_DIR below a file (ENOTDIR), as a mistyped variable gives."""
    from amt_core import paths
    from amt_core.errors import UserError

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("AMT_CACHE_DIR", str(tmp_path / "file" / "cache"))
    with pytest.raises(UserError, match=r"cache folder .*file/cache: Not a directory; set AMT_CACHE_DIR"):
        paths.cache_dir()


def test_the_boundary_handler_maps_only_conditions_of_the_machine():
    from amt_core.errors import boundary_line

    line = boundary_line(OSError(errno.EROFS, "Read-only file system", "/mnt/x"))
    assert line == "/mnt/x is on a read-only filesystem; choose a writable folder"
    assert "disk quota exceeded at /q" in boundary_line(OSError(errno.EDQUOT, "Disk quota exceeded", "/q"))
    assert "permission denied at /p" in boundary_line(PermissionError(errno.EACCES, "Permission denied", "/p"))
    assert boundary_line(ValueError("a bug")) is None  # the program's own errors stay tracebacks
    assert boundary_line(OSError(errno.ECONNRESET, "reset")) is None


# --------------------------------------------------------------------------- the run directory


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
    _one_error_line(capsys.readouterr().err, "--resume", str(folder), expected)
    assert _tree_hash(tmp_path) == before


def test_a_foreign_folder_is_refused_without_force_and_its_files_are_never_overwritten(tmp_path, capsys):
    folder = _foreign(tmp_path / "dir")
    before = _tree_hash(folder)
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder)]) == 2
    _one_error_line(capsys.readouterr().err, "not written by amt-core", "checkpoints/latest (+1 more)")
    assert _tree_hash(folder) == before
    # --force does not make a clash acceptable: their config.json and checkpoints/latest are where the run writes
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder), "--force"]) == 2
    _one_error_line(capsys.readouterr().err, "checkpoints/latest (+1 more)", "move it away")
    assert _tree_hash(folder) == before


def test_force_starts_a_run_beside_files_it_leaves_alone(tmp_path, capsys):
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder)]) == 2
    _one_error_line(capsys.readouterr().err, "is not empty and is not a run (notes.txt)", "--force")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder), "--force"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("training micro") and "stopping at step 1" in out
    assert (folder / "notes.txt").read_text() == "my notes\n"
    assert (folder / "config.json").exists() and any((folder / "checkpoints").glob("step_*"))
    # now a run: --resume is accepted and the notes stay
    assert main(["train", "--preset", "micro", "--max-steps", "2", "--run-dir", str(folder), "--resume"]) == 0
    assert (folder / "notes.txt").read_text() == "my notes\n"


# --------------------------------------------------------------------------- predict's and eval's outputs


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("boundary") / "run"
    assert main(["train", "--preset", "micro", "--max-steps", "1", "--run-dir", str(folder)]) == 0
    return folder


def _image(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(exist_ok=True)
    path = folder / "hand.png"
    Image.new("RGB", (64, 48), (120, 90, 60)).save(path)
    return path


def test_predict_out_on_a_full_tmpfs_names_the_folder(micro_run, small_fs, tmp_path, capsys):
    _fill(small_fs, leave=8 * 1024)  # the JSON fits, the meshes and the overlay do not
    out = small_fs / "pred"
    assert main(["predict", "--ckpt", str(micro_run), str(_image(tmp_path / "in")), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, f"disk full at {out}", "free space")


def test_predict_and_eval_outputs_on_a_read_only_mount(micro_run, read_only_fs, tmp_path, capsys):
    out = read_only_fs / "pred"
    assert main(["predict", "--ckpt", str(micro_run), str(_image(tmp_path / "in")), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, str(out), "read-only")
    report = read_only_fs / "eval.json"
    assert main(["eval", "--ckpt", str(micro_run), "--max-samples", "2", "--json", str(report)]) == 2
    _one_error_line(capsys.readouterr().err, f"--json {report}", "not writable")  # refused before evaluating


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
