"""Qt-free state of the studio: a run built from its events (metrics, diagnostics, snapshots, checkpoints).

Views subscribe to these objects' signals; nothing here imports Qt, so the state is tested and replayed headless.
"""

from amt_studio.state.run import CheckpointInfo, LogLine, RunState
from amt_studio.state.series import Series, SeriesGroup
from amt_studio.state.signal import Signal
from amt_studio.state.snapshot import SnapshotData, SnapshotTimeline, load_snapshot

__all__ = [
    "CheckpointInfo",
    "LogLine",
    "RunState",
    "Series",
    "SeriesGroup",
    "Signal",
    "SnapshotData",
    "SnapshotTimeline",
    "load_snapshot",
]
