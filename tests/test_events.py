"""The typed event contract: every kind round-trips through events.jsonl, older lines (no `v`) and unknown kinds
read, a field a kind does not have is refused at write time, and the studio takes typed events and lines alike."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from amt_core.errors import UserError
from amt_core.train.control import Command
from amt_core.train.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Anomaly,
    Checkpoint,
    CommandApplied,
    Diagnostics,
    Error,
    EventReader,
    EventWriter,
    Metrics,
    Rollback,
    Snapshot,
    Stage,
    State,
    Unknown,
    Validation,
    parse_event,
)
from amt_studio.state.run import RunState

ONE_OF_EACH = [
    State(step=0, time=1.0, state="running", resumed_from="step_00000004"),
    Stage(step=0, time=2.0, stage=1, name="components", reason="start"),
    Metrics(
        step=1,
        time=3.0,
        stage=1,
        epoch=0.1,
        loss=0.5,
        terms={"joints": 0.25},
        lr={"decoders": 1e-3},
        images_per_s=30.0,
        memory={"rss_mb": 500.0},
        skipped_total=0,
        micro_batch=8,
    ),
    Diagnostics(step=1, time=4.0, grad_norm={"decoders": 1.5}, pred_std_mm=20.0, collapsed=False, gt_std_mm=30.0),
    Validation(step=2, time=5.0, metrics={"mpjpe_mm": 80.0, "ref_mean_pose_mpjpe_mm": 90.0}),
    Snapshot(step=2, time=6.0, path="snapshots/step_00000002.npz", samples=4, reason="periodic"),
    Checkpoint(
        step=2,
        time=7.0,
        name="step_00000002",
        path="checkpoints/step_00000002",
        reason="periodic",
        stage=1,
        removed=["step_00000001"],
        branch=0,
        retain=[],
    ),
    Anomaly(
        step=3,
        time=8.0,
        what="explosion",
        loss=1e9,
        median=0.5,
        batch=[1, 2],
        action="rollback",
        checkpoint="step_00000002",
        lr_scale=0.5,
    ),
    Rollback(step=2, time=9.0, checkpoint="step_00000002", from_step=3, reason="explosion", lr_scale=0.5, branch=1),
    CommandApplied(step=2, time=10.0, command=Command.STAGE, arg="2", ok=True, stage=2),
    Error(step=2, time=11.0, message="RuntimeError: boom", traceback="Traceback ..."),
]


def test_every_kind_round_trips_through_the_file(tmp_path):
    assert {type(e) for e in ONE_OF_EACH} == set(EVENT_TYPES.values())  # one of each kind the trainer writes
    writer = EventWriter(tmp_path)
    for event in ONE_OF_EACH:
        writer.write(event)
    writer.close()
    lines = EventReader(tmp_path).read_all()
    assert all(line["v"] == SCHEMA_VERSION for line in lines)
    assert [parse_event(line) for line in lines] == ONE_OF_EACH
    assert "reason" not in lines[0] and lines[0]["resumed_from"] == "step_00000004"  # unset optionals not written
    assert lines[-2]["command"] == "stage"  # the wire word, not the enum's repr


def test_old_lines_unknown_kinds_and_missing_fields_still_read():
    old = parse_event(
        {
            "kind": "checkpoint",
            "step": 5,
            "time": 1.0,
            "name": "step_00000005",
            "path": "x",
            "reason": "periodic",
            "stage": 1,
            "removed": [],
        }
    )
    assert old == Checkpoint(step=5, time=1.0, name="step_00000005", path="x", reason="periodic", stage=1)
    newer = parse_event({"v": 9, "kind": "metrics", "step": 1, "time": 1.0, "loss": 1.0, "added_later": 3})
    assert isinstance(newer, Metrics) and newer.loss == 1.0
    assert parse_event({"v": 1, "kind": "teleport", "step": 4, "time": 2.0}) == Unknown(
        step=4, time=2.0, name="teleport"
    )
    assert isinstance(parse_event({"kind": "state", "step": 7, "time": 0}), Unknown)  # no `state`: cannot be typed


def test_writer_refuses_fields_a_kind_does_not_have(tmp_path):
    writer = EventWriter(tmp_path)
    with pytest.raises(TypeError, match="memory_bytes"):
        writer.emit("metrics", 1, loss=1.0, memory_bytes=5)
    with pytest.raises(ValueError, match="unknown event kind"):
        writer.emit("bogus", 1)
    writer.close()
    assert (tmp_path / "events.jsonl").read_text() == ""


def test_studio_takes_typed_events_and_lines_alike():
    typed, lines = RunState(), RunState()
    typed.ingest(ONE_OF_EACH)
    lines.ingest([json.loads(json.dumps(e.to_dict())) for e in ONE_OF_EACH])
    for state in (typed, lines):
        assert state.state == "failed" and state.stage == 1 and state.step == 2
        assert state.losses["joints"].last() == pytest.approx(0.25)
        assert state.training["memory/rss_mb"].last() == pytest.approx(500.0)
        assert state.rollbacks == [(2, 3)]
    assert [line.text for line in typed.log] == [line.text for line in lines.log]
    state = RunState()
    state.ingest([{"v": 1, "kind": "teleport", "step": 4, "time": 2.0}])
    assert state.log[-1].text == "event 'teleport' at step 4"


def test_command_words_and_arguments():
    assert [str(c) for c in Command] == ["pause", "resume", "stop", "save", "snapshot", "stage", "rollback", "status"]
    assert Command.parse("stage", "2") is Command.STAGE and Command.parse(Command.PAUSE) is Command.PAUSE
    with pytest.raises(UserError, match="unknown command 'fly'"):
        Command.parse("fly")
    with pytest.raises(UserError, match="rollback needs an argument"):
        Command.parse("rollback")


def test_events_and_commands_import_without_torch():
    code = "import sys, amt_core.train.events, amt_core.train.control\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
