"""The CLI's one-line errors (`amt_core/errors.py` and the handler in `cli.py`), exit 2: usage errors that point to
`--help`, unknown names with the closest match and a count (not the whole list), an empty `--preset`, flags refused in
the user's own words; and errors at the boundary with the machine, each one line naming the path: a real 2 MB tmpfs
filled up and a read-only mount (as root; where mounting is not permitted those tests skip and the injected versions
stand in) for train's first checkpoint, synth's shards, the cache, and predict's and eval's outputs."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import one_error_line

from amt_core.cli import main

MAX_LINE = 300


def amt(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amt_core", *argv], capture_output=True, text=True, timeout=300, **kwargs
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) < MAX_LINE, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ("train", "--max-steps", "abc"),
        ("train", "--device", "tpu"),
        ("synth", "--num", "abc"),
        ("eval",),
        ("eval", "--ckpt", "x", "--batch-size", "abc"),
    ],
)
def test_usage_errors_are_one_line_that_points_to_help(argv) -> None:
    result = amt(*argv)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"amt-core {argv[0]}: error: ") and line.endswith(f"see amt-core {argv[0]} --help")


def test_unknown_names_are_one_short_line_with_the_closest_match(tmp_path) -> None:
    result = amt("train", "--preset", "micro", "--run-dir", str(tmp_path / "a"), "--set", "trainer.seeed=1")
    line = one_line(result)
    assert result.returncode == 2 and "did you mean 'seed'?" in line and "more)" in line
    result = amt("train", "--preset", "micro", "--run-dir", str(tmp_path / "b"), "--set", "loss.weights.joint3d=1")
    line = one_line(result)
    assert result.returncode == 2 and "'joints3d'" in line
    result = amt("train", "--preset", "micro", "--run-dir", str(tmp_path / "c"), "--data", "nosuch:/x")
    line = one_line(result)
    assert result.returncode == 2 and "known: synth, freihand" in line and "datasets list" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_an_empty_preset_is_refused_not_replaced_by_the_default(tmp_path) -> None:
    result = amt("train", "--preset", "", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "--preset is empty" in one_line(result)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["train", "--preset", "micro", "--max-time", "-1"], ["--max-time must be >= 0 minutes", "got -1"]),
        (["train", "--preset", "micro", "--max-steps", "-5"], ["--max-steps must be >= 0", "got -5"]),
        (["train", "--preset", "micro", "--batch-size", "0"], ["--batch-size must be >= 1"]),
        (["ctl", ".", "status", "--timeout", "-1"], ["--timeout must be > 0 seconds, got -1"]),
        (["ctl", ".", "status", "--timeout", "0"], ["--timeout must be > 0 seconds, got 0"]),
    ],
)
def test_flags_are_refused_in_the_users_own_words(argv, fragments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*argv[:1], *argv[1:]]) == 2
    line = one_error_line(capsys.readouterr().err, *fragments)
    assert "trainer." not in line  # not the config field the flag becomes
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- the boundary with the machine


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
    one_error_line(capsys.readouterr().err, f"disk full at {run_dir / 'checkpoints'}", "free space")
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
    one_error_line(capsys.readouterr().err, f"disk full at {run_dir / 'checkpoints'}", "free space")


# --------------------------------------------------------------------------- synth's shards


def test_synth_shard_on_a_full_tmpfs_is_one_line(small_fs, capsys):
    _fill(small_fs, leave=64 * 1024)  # room for the manifest, not for a shard of 8 samples at 64 px
    out = small_fs / "ds"
    assert main(["synth", "--out", str(out), "--num", "8", "--size", "64", "--shard-size", "8"]) == 2
    one_error_line(capsys.readouterr().err, f"disk full at {out}", "free space")
    assert not list(out.glob(".*.tmp"))  # the temporary shard went with the error


def test_synth_on_a_read_only_mount_is_one_line(read_only_fs, capsys):
    out = read_only_fs / "ds"
    assert main(["synth", "--out", str(out), "--num", "2", "--size", "64"]) == 2
    one_error_line(capsys.readouterr().err, str(out), "read-only", "writable folder")


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
    one_error_line(capsys.readouterr().err, f"disk full at {out}/shard-00000.safetensors")


# --------------------------------------------------------------------------- the cache


def test_cache_on_a_full_tmpfs_is_one_line(small_fs, tmp_path):
    _fill(small_fs, leave=16 * 1024)
    cache = small_fs / "cache"
    result = _cli(["synth", "--out", str(tmp_path / "ds"), "--num", "2", "--size", "64"], {"AMT_CACHE_DIR": str(cache)})
    assert result.returncode == 2, result.stderr[-2000:]
    one_error_line(result.stderr, f"disk full at {cache}")


def test_cache_on_a_read_only_mount_is_one_line(read_only_fs, tmp_path):
    result = _cli(
        ["synth", "--out", str(tmp_path / "ds"), "--num", "2", "--size", "64"], {"AMT_CACHE_DIR": str(read_only_fs)}
    )
    assert result.returncode == 2, result.stderr[-2000:]
    one_error_line(result.stderr, f"cache folder {read_only_fs}", "set AMT_CACHE_DIR")
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


# --------------------------------------------------------------------------- predict's and eval's outputs


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
    one_error_line(capsys.readouterr().err, f"disk full at {out}", "free space")


def test_predict_and_eval_outputs_on_a_read_only_mount(micro_run, read_only_fs, tmp_path, capsys):
    out = read_only_fs / "pred"
    assert main(["predict", "--ckpt", str(micro_run), str(_image(tmp_path / "in")), "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err, str(out), "read-only")
    report = read_only_fs / "eval.json"
    assert main(["eval", "--ckpt", str(micro_run), "--max-samples", "2", "--json", str(report)]) == 2
    one_error_line(capsys.readouterr().err, f"--json {report}", "not writable")  # refused before evaluating
