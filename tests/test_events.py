"""The typed event contract: every kind round-trips through events.jsonl, older lines (no `v`) and unknown kinds
read, a field a kind does not have is refused at write time, and the studio takes typed events and lines alike. The log
under damage: the reader tails a growing file and leaves partial lines, skips and counts torn lines and stray bytes,
and a resumed writer never glues its first event to a torn line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from amt_core.errors import UserError
from amt_core.train.control import Command
from amt_core.train.events import (
    ANOMALY_TYPES,
    EVENT_TYPES,
    SCHEMA_VERSION,
    Anomaly,
    Checkpoint,
    CommandApplied,
    DataBound,
    Diagnostics,
    Error,
    EventReader,
    EventWriter,
    InvalidLabels,
    LossExplosion,
    Metrics,
    NonFiniteRun,
    NonFiniteStep,
    NotLearning,
    OutOfMemory,
    Rollback,
    SlowPrecision,
    Snapshot,
    Stage,
    State,
    Unknown,
    Validation,
    parse_event,
)
from amt_core.train.kinds import AnomalyAction, AnomalyKind, CheckpointReason, StopReason, TrainerState
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
    LossExplosion(
        step=3,
        time=8.0,
        loss=1e9,
        median=0.5,
        batch=[1, 2],
        checkpoint="step_00000002",
        lr_scale=0.5,
    ),
    Rollback(step=2, time=9.0, checkpoint="step_00000002", from_step=3, reason="explosion", lr_scale=0.5, branch=1),
    CommandApplied(step=2, time=10.0, command=Command.STAGE, arg="2", ok=True, stage=2),
    Error(step=2, time=11.0, message="RuntimeError: boom", traceback="Traceback ..."),
]


def test_every_kind_round_trips_through_the_file(tmp_path):
    assert {e.kind for e in ONE_OF_EACH} == set(EVENT_TYPES)  # one of each kind the trainer writes
    assert all(isinstance(e, EVENT_TYPES[e.kind]) for e in ONE_OF_EACH)  # (an anomaly is its kind's subclass)
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


# Each anomaly kind as the trainer wrote it before the kinds had classes of their own (`Anomaly(what=...)` with the
# same arguments): the new classes must write these lines byte for byte, and read them back as themselves.
OLD_ANOMALY_LINES = {
    NonFiniteStep: '{"v": 1, "kind": "anomaly", "step": 5, "time": 1.5, "what": "non_finite", "action": "skipped", '
    '"loss": "nan", "batch": [3, 4], "skipped_total": 2}',
    LossExplosion: '{"v": 1, "kind": "anomaly", "step": 5, "time": 1.5, "what": "explosion", "action": "rollback", '
    '"loss": 1000000000.0, "median": 0.5, "batch": [1, 2], "checkpoint": "step_00000004", "lr_scale": 0.5}',
    NonFiniteRun: '{"v": 1, "kind": "anomaly", "step": 5, "time": 1.5, "what": "non_finite_run", "action": '
    '"rollback", "loss": "inf", "checkpoint": "step_00000004", "lr_scale": 0.25}',
    OutOfMemory: '{"v": 1, "kind": "anomaly", "step": 5, "time": 1.5, "what": "out_of_memory", "action": '
    '"micro_batch_halved", "batch": [7], "micro_batch": 4}',
    SlowPrecision: '{"v": 1, "kind": "anomaly", "step": 5, "time": 1.5, "what": "slow_precision", "action": "none", '
    '"message": "bf16 on this CPU is slower than fp32"}',
    DataBound: '{"v": 1, "kind": "anomaly", "step": 5, "time": 1.5, "what": "data_bound", "action": "none", '
    '"message": "waited", "data_share": 0.4}',
    InvalidLabels: '{"v": 1, "kind": "anomaly", "step": 5, "time": 1.5, "what": "invalid_labels", "action": '
    '"labels_skipped", "message": "skipped", "batch": [0, 1], "count": 1}',
    NotLearning: '{"v": 1, "kind": "anomaly", "step": 5, "time": 1.5, "what": "not_learning", "action": "none", '
    '"message": "not better", "mpjpe_mm": 90.0, "ref_mean_pose_mpjpe_mm": 80.0}',
}
NEW_ANOMALIES = [
    NonFiniteStep(step=5, time=1.5, loss=float("nan"), batch=[3, 4], skipped_total=2),
    LossExplosion(step=5, time=1.5, loss=1e9, median=0.5, batch=[1, 2], checkpoint="step_00000004", lr_scale=0.5),
    NonFiniteRun(step=5, time=1.5, loss=float("inf"), checkpoint="step_00000004", lr_scale=0.25),
    OutOfMemory(step=5, time=1.5, batch=[7], micro_batch=4),
    SlowPrecision(step=5, time=1.5, message="bf16 on this CPU is slower than fp32"),
    DataBound(step=5, time=1.5, message="waited", data_share=0.4),
    InvalidLabels(step=5, time=1.5, message="skipped", batch=[0, 1], count=1),
    NotLearning(step=5, time=1.5, message="not better", mpjpe_mm=90.0, ref_mean_pose_mpjpe_mm=80.0),
]


@pytest.mark.parametrize("event", NEW_ANOMALIES, ids=lambda e: type(e).__name__)
def test_each_anomaly_kind_writes_the_old_line_and_reads_back_as_its_class(tmp_path, event):
    assert set(OLD_ANOMALY_LINES) == set(ANOMALY_TYPES.values())  # every kind is covered
    writer = EventWriter(tmp_path)
    writer.write(event)
    writer.close()
    line = (tmp_path / "events.jsonl").read_text()
    assert line == OLD_ANOMALY_LINES[type(event)] + "\n"
    parsed = parse_event(json.loads(line))
    assert type(parsed) is type(event) and isinstance(parsed, Anomaly)
    assert parsed.what == event.what and parsed.action == event.action and parsed.message == event.message


def test_an_anomaly_kind_holds_its_own_fields_and_values():
    oom = OutOfMemory(step=5, time=1.5, micro_batch=4, batch=[7])
    assert oom.what is AnomalyKind.OUT_OF_MEMORY and oom.action is AnomalyAction.MICRO_BATCH_HALVED
    with pytest.raises(TypeError, match="median"):  # a field another kind has
        OutOfMemory(step=1, median=2.0)
    with pytest.raises(ValueError, match="is a NonFiniteStep, not a LossExplosion"):
        LossExplosion(step=1, what="non_finite")
    with pytest.raises(ValueError, match="action must be one of"):
        NonFiniteStep(step=1, action="ignored")


def test_lines_outside_the_known_values_read_as_what_they_can_be():
    newer = parse_event({"kind": "anomaly", "step": 3, "time": 1.0, "what": "cosmic_ray", "message": "bit flip"})
    assert type(newer) is Anomaly and newer.what == "cosmic_ray" and newer.message == "bit flip"
    state = RunState()
    state.ingest([newer, NEW_ANOMALIES[-1]])
    assert state.markers[0].label == "cosmic_ray: bit flip" and state.not_learning == "not better"
    assert isinstance(parse_event({"kind": "state", "step": 1, "state": "dreaming"}), Unknown)
    with pytest.raises(ValueError, match="State.state must be one of"):
        State(step=1, state="dreaming")
    typed = State(step=1, state="stopped", reason="signal", signal="SIGTERM")
    assert typed.state is TrainerState.STOPPED and typed.reason is StopReason.SIGNAL
    assert json.dumps(typed.to_dict()).count('"stopped"') == 1
    assert Checkpoint(step=1, name="a", reason="stage_end").reason is CheckpointReason.STAGE_END
    with pytest.raises(ValueError, match="Checkpoint.reason"):
        Checkpoint(step=1, name="a", reason="whim")


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
