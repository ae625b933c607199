"""The run directory: the lock against a second trainer, the event log and its incremental reader, presets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from amt_core.errors import UserError
from amt_core.losses.amt_loss import DEFAULT_WEIGHTS, AMTLoss
from amt_core.presets import SMALL_LOSS, apply_overrides, get_preset, list_presets
from amt_core.train.config import config_from_dict
from amt_core.train.events import SCHEMA_VERSION, EventReader, EventWriter
from amt_core.train.rundir import RunDir, run_is_live


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


def test_event_reader_tails_and_leaves_partial_lines(tmp_path):
    writer = EventWriter(tmp_path)
    writer.emit("state", 0, state="running")
    reader = EventReader(tmp_path)
    first = reader.read_new()
    assert [e["kind"] for e in first] == ["state"] and first[0]["v"] == SCHEMA_VERSION
    assert {"v", "kind", "step", "time"} <= first[0].keys()
    writer.emit("metrics", 1, loss=float("nan"), lr={"decoders": 1e-3})
    with open(tmp_path / "events.jsonl", "a") as f:  # a half-written line, as a reader may see mid-write
        f.write('{"v": 1, "kind": "metr')
    events = reader.read_new()
    assert len(events) == 1 and events[0]["loss"] == "nan"  # strict JSON: non-finite floats become strings
    assert reader.read_new() == []
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('ics", "step": 2, "time": 0}\n')
    assert [e["step"] for e in reader.read_new()] == [2]
    with pytest.raises(ValueError, match="unknown event kind"):
        writer.emit("bogus", 3)
    writer.close()
    (tmp_path / "events.jsonl").write_text('{"kind": "state", "step": 0}\n')  # a new run: the file shrank
    assert [e["step"] for e in reader.read_new()] == [0]


def test_presets_and_overrides():
    assert {"micro", "cpu", "dinov2_s", "dinov2_l", "baseline_cpu"} <= set(list_presets())
    assert get_preset("baseline_cpu").model_name == "baseline_cpu"
    assignments = [
        "stages.0.steps=7",
        "model.refine.steps=2",
        "trainer.log_every=3",
        "loss.weights.diversity=0",
        "stages.2.loss_scale.physics=3",
    ]
    config = apply_overrides(get_preset("cpu"), assignments)
    assert config.stages[0].steps == 7 and config.trainer.log_every == 3
    preset_model = get_preset("cpu").model
    assert config.model == replace(preset_model, refine=replace(preset_model.refine, steps=2))  # only that changed
    # merged over the preset's own (the loss defaults fill in every other term)
    assert config.loss == AMTLoss.Config(weights={**SMALL_LOSS["weights"], "diversity": 0})
    assert config.loss.weights == {**DEFAULT_WEIGHTS, **SMALL_LOSS["weights"], "diversity": 0}
    assert config.stages[2].loss_scale["physics"] == 3.0
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for bad, message in [
        ("trainer.log_evry=3", "no key 'log_evry'"),
        ("trainer.log_every=0", ">= 1"),
        ("stages.4.lr=1", "not an index"),
        ("batch_size=x", "expected int"),
        ("nokey", "KEY=VALUE"),
        ("stages.0.hard_mining=2", "hard_mining"),
    ]:
        with pytest.raises(UserError, match=message):
            apply_overrides(config, [bad])
    with pytest.raises(UserError, match="unknown preset"):
        get_preset("dinov3")
