"""`atomic_write`: the target holds the old content or the new, never a part; errors leave no temporary file."""

from __future__ import annotations

import json
import os
import stat

import pytest

from amt_core.atomic import atomic_write, atomic_write_bytes, atomic_write_json, stale_temporaries


def test_replaces_whole_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})
    atomic_write_json(target, {"step": 2, "path": tmp_path})  # a Path is written as its str
    assert json.loads(target.read_text()) == {"step": 2, "path": str(tmp_path)}
    assert stale_temporaries(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["state.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "weights.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(target) as handle:
            handle.write(b"new, half")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old" and stale_temporaries(tmp_path) == []


def test_permissions_and_stale_temporaries(tmp_path):
    secret = tmp_path / "control.json"
    atomic_write_bytes(secret, b"{}", perm=0o600)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    left = tmp_path / ".control.json.abcd1234.tmp"  # what a killed writer leaves
    left.write_bytes(b"partial")
    assert stale_temporaries(tmp_path) == [left]
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):
            pass
