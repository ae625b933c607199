"""Plot axes whose labels never overlap: compact numbers and ticks thinned to a label's size apart, on linear and log
axes of the sizes the studio's small plots have."""

from __future__ import annotations

import pytest

pytest.importorskip("pyqtgraph")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (0.25, "0.25"),
        (1200.0, "1200"),
        (12_000.0, "12k"),
        (3e-4, "300µ"),
        (1.5e-5, "15µ"),
        (-2e-3, "-2m"),
        (2.5e6, "2.5M"),
        (999_960.0, "1M"),
    ],
)
def test_si_format_is_short(value, text) -> None:
    from amt_studio.views.axes import si_format

    assert si_format(value) == text


def test_thinned_ticks_are_a_label_apart_on_every_level() -> None:
    from amt_studio.views.axes import thin_levels

    levels = [(10.0, [0.0, 10.0, 20.0, 30.0]), (1.0, [float(v) for v in range(31)])]
    out = thin_levels(levels, 0.0, 30.0, size_px=150.0, gap_px=24.0)
    kept = sorted(v for _spacing, values in out for v in values)
    gaps = [(b - a) * 150.0 / 30.0 for a, b in zip(kept, kept[1:])]
    assert {0.0, 10.0, 20.0, 30.0} <= set(kept) and min(gaps) >= 24.0  # the coarse level first, finer where room is


@pytest.mark.parametrize(("log", "low", "high"), [(False, 0.0, 1.0), (True, -4.5, -3.2), (True, -6.0, 1.0)])
def test_axis_labels_of_a_small_plot_never_overlap(qtbot, log, low, high) -> None:
    from amt_studio.views.axes import MIN_LABEL_GAP_PX, CompactAxis

    axis = CompactAxis("left")
    axis.setLogMode(False, log)
    size = 110.0  # a 150-px plot's data height
    values = sorted(v for _spacing, level in axis.tickValues(low, high, size) for v in level)
    assert values, "no tick at all"
    pixels = [(v - low) / (high - low) * size for v in values]
    assert all(b - a >= MIN_LABEL_GAP_PX["left"] for a, b in zip(pixels, pixels[1:]))
    labels = axis.tickStrings(values, 1.0, 1.0)
    assert all(len(label) <= 6 for label in labels), labels  # '300µ', '0.25', not '0.00030000'
