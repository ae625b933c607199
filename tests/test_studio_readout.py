"""The hover read-out's words (`amt_studio.views.readout.read_at`): the logged step nearest the mouse, the values
logged at that step only, the curve nearest the mouse first, log plots read back as values."""

from __future__ import annotations

import numpy as np

from amt_studio.views.readout import Reading, read_at


def test_reads_the_nearest_logged_step_and_only_the_values_logged_there() -> None:
    every_step = Reading("total", np.array([10.0, 11.0, 12.0]), np.array([1.0, 2.0, 3.0]), log=False)
    every_other = Reading("val", np.array([10.0, 12.0]), np.array([50.0, 40.0]), log=False)
    text, x = read_at("loss: total", [every_step, every_other], 11.2, None, by_time=False)
    assert x == 11.0 and text == "loss: total · step 11 · total 2"  # val was not logged at step 11
    text, x = read_at("loss: total", [every_step, every_other], 11.8, 3.5, by_time=False)
    assert x == 12.0 and text == "loss: total · step 12 · total 3, val 40"  # the curve nearest y=3.5 first
    text, _x = read_at("loss: total", [every_step, every_other], 11.8, 39.0, by_time=False)
    assert text.endswith("val 40, total 3")


def test_log_plots_say_values_and_time_axes_say_minutes() -> None:
    log = Reading("lr · other-run", np.array([0.5, 1.5]), np.array([-3.0, -4.0]), log=True)
    text, x = read_at("learning rate", [log], 1.4, None, by_time=True)
    assert x == 1.5 and text == "learning rate · 1.50 min · lr · other-run 0.0001"


def test_nothing_to_read_is_a_blank_line() -> None:
    empty = Reading("total", np.array([]), np.array([]), log=False)
    assert read_at("loss: total", [empty, Reading("none", None, None, log=False)], 3.0, None, False) == (" ", None)
