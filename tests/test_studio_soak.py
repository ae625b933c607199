"""The studio's 2-minute soak in the suite: the real window (in a child process) watches a live micro run while it
is paused, resumed, switched between stages, rolled back and snapshotted through the studio (`amt-core bench studio
--soak`). Fails on a crash, a dead window, a lost command, or references to None lost over the soak (the PySide6
6.12.0 bug loses about 80 a second; a full collection brackets the figure, so it is exact).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui

SOAK_MINUTES = 2.0


def test_two_minute_soak_against_a_live_run(tmp_path) -> None:
    pytest.importorskip("pytestqt")
    from amt_studio.bench import soak

    result = soak(SOAK_MINUTES, tmp_path)
    assert result["crashes"] == 0, result.get("crash_log_tail")
    assert result["window_alive"] and result["samples"] >= 110
    assert result["commands_failed"] == 0 and result["commands_confirmed"] >= 6, result
    assert result["rollbacks"] >= 1 and result["trainer_steps_max"] > 0
    assert result["none_drift"] >= -200, f"references to None were lost: {result['none_drift']:.0f}"
    assert result["rss_growth_mb"] < 50.0, result["rss_growth_mb"]
    assert result["notices"] == [], result["notices"]
