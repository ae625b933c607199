"""A synthetic dataset folder with a truncated shard or manifest: `datasets check` and reading give one line each
that names the file and the fix (the real-dataset readers have theirs beside their own fixtures)."""

from __future__ import annotations

import shutil

import pytest

from amt_core.commands.datasets import check
from amt_core.data import open_dataset
from amt_core.errors import UserError


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from amt_core.synth.world import WorldConfig
    from amt_core.synth.writer import write_dataset

    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, 4, 3, WorldConfig(size=64), workers=1, shard_size=2)
    return root


def test_a_truncated_shard_is_one_line(shards, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    shard = sorted(copy.glob("shard-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:1000])
    count, problems = check(f"synth:{copy}", samples=4)
    assert count is None and len(problems) == 1, problems  # found when the folder opens: no sample is read
    assert f"the first {shard.name}" in problems[0] and "amt-core synth command" in problems[0]
    with pytest.raises(UserError, match="shards missing or unreadable") as err:
        open_dataset(f"synth:{copy}")
    assert "\n" not in str(err.value)


def test_a_truncated_manifest_is_one_line(shards, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    manifest = next(p for p in copy.iterdir() if p.suffix == ".json")
    manifest.write_text(manifest.read_text()[:20])
    count, problems = check(f"synth:{copy}")
    assert count is None and len(problems) == 1 and str(manifest) in problems[0], problems
    with pytest.raises(UserError) as err:
        open_dataset(f"synth:{copy}")
    assert "\n" not in str(err.value) and str(manifest) in str(err.value)
