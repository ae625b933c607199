"""Start-up and finding runs again: the window paints without torch, `amt-core --help` and `ctl` never import it,
and the start page lists a live run started from the window, then attaches to it from a new window after the first
one closed (its trainer left training headless, as after a crash of the window).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "timm", "torchvision", "open3d")


def imported_after(code: str) -> list[str]:
    """Heavy modules in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [line for line in out.stdout.splitlines() if line.startswith("heavy:")][-1]
    return [m for m in line.removeprefix("heavy:").split(",") if m]


def test_cli_start_up_paths_never_import_torch(tmp_path) -> None:
    help_code = "from amt_core.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert imported_after(help_code) == []
    ctl_code = f"from amt_core.cli import main\nassert main(['ctl', {str(tmp_path)!r}, 'status']) == 2"
    assert imported_after(ctl_code) == []
    bench_help = "from amt_core.cli import main\ntry:\n    main(['bench', '--help'])\nexcept SystemExit:\n    pass"
    assert imported_after(bench_help) == []
    brief = "from amt_core.cli import main\nassert main(['info', '--brief']) == 0"
    assert imported_after(brief) == []
    for argv in (["train", "--bogus"], ["trian"]):  # an argument error, an unknown command: exit 2, no torch
        code = (
            "from amt_core.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\nassert rc == 2, rc"
        )
        assert imported_after(code) == []


def test_bench_cli_prints_its_figures() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "amt_core", "bench", "cli", "--repeat", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    import json

    rows = {row["case"]: row for row in json.loads(out.stdout)["rows"]}
    assert rows["amt-core --help"]["exit"] == "0" and rows["amt-core info --brief"]["exit"] == "0"
    assert rows["amt-core ctl RUN status"]["exit"] == "2"  # no trainer holds that run: one line, exit 2
    assert rows["amt-core train --bogus (argument error)"]["exit"] == "2"
    assert all(row["median_s"] > 0 for row in rows.values())


@pytest.mark.gui
def test_window_paints_before_heavy_modules_load() -> None:
    code = (
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from amt_studio.window import MainWindow\n"
        "w = MainWindow(show_dialogs=False)\nw.warm_up = False\nw.show()\n"
        "while w.first_paint_s is None:\n    app.processEvents()\n"
        "w.tabs.setCurrentIndex(1)\nw.tabs.setCurrentIndex(2)\napp.processEvents()"
    )
    assert imported_after(code) == []


@pytest.mark.gui
def test_start_page_finds_a_live_run_after_the_window_closed(qtbot, qt_settings, tmp_path) -> None:
    pytest.importorskip("pytestqt")
    from amt_studio.session import trainer_argv
    from amt_studio.window import MainWindow

    runs = tmp_path / "runs"
    first = MainWindow(settings=qt_settings, show_dialogs=False, runs_dir=runs)
    qtbot.addWidget(first)
    first.show()
    assert first.tabs.currentWidget() is first.start_page and first.start_page.empty.isVisibleTo(first)
    run_dir = tmp_path / "elsewhere" / "live-run"  # not under runs_dir: found through the recent list
    stages = [f"stages.{i}.steps=400" for i in range(3)]
    session = first.start_run(trainer_argv(preset="micro", run_dir=run_dir, overrides=stages), run_dir)
    try:
        qtbot.waitUntil(lambda: session.state.state == "running" and session.state.step >= 2, timeout=120_000)
        first.tabs.setCurrentWidget(first.start_page)
        first.start_page.refresh()
        row = first.start_page.row_of(run_dir)
        assert row >= 0 and first.start_page.summaries[row].live
        assert first.start_page.table.item(row, 2).text() == "live · running"
        first.ask_live_run = lambda: "leave"  # the window goes; the trainer stays (as when the window crashes)
        first.close()
        assert session.process.popen.poll() is None

        again = MainWindow(settings=qt_settings, show_dialogs=False, runs_dir=runs)
        qtbot.addWidget(again)
        again.show()
        page = again.start_page
        qtbot.waitUntil(lambda: page.row_of(run_dir) >= 0, timeout=10_000)
        row = page.row_of(run_dir)
        summary = page.summaries[row]
        assert summary.live and summary.state == "running" and summary.step >= 2 and summary.preset == "micro"
        assert int(page.table.item(row, 3).text()) == summary.step and page.table.item(row, 0).text() == "●"
        page.table.selectRow(row)
        page.open_button.click()  # one click attaches
        assert again.session is not None and again.session.run_dir == run_dir.resolve()
        assert again.tabs.currentWidget() is again.training_stack
        state = again.session.state
        qtbot.waitUntil(lambda: state.state == "running" and state.step > summary.step, timeout=60_000)
        assert again.pause_action.isEnabled()  # steerable: the control channel answers
        again.send("pause")
        qtbot.waitUntil(lambda: state.state == "paused", timeout=60_000)
        again.ask_live_run = lambda: "leave"
        again.close()
    finally:
        session.process.terminate()
        session.process.popen.wait(30)


@pytest.mark.gui
def test_help_menu_lists_the_shortcuts_and_the_dialog_offers_runnable_presets(qtbot, qt_settings, tmp_path) -> None:
    pytest.importorskip("pytestqt")
    from amt_studio.views.dialogs import NewRunDialog
    from amt_studio.window import MainWindow

    window = MainWindow(settings=qt_settings, show_dialogs=False, runs_dir=tmp_path)
    qtbot.addWidget(window)
    keys = dict(window.shortcuts())
    assert {"Ctrl+N", "Ctrl+O", "Space", "Ctrl+R", "Ctrl+1", "F1", "Ctrl+Shift+O"} <= set(keys)
    assert "Pause" in keys["Space"] and "New run" in keys["Ctrl+N"]
    cpu_only = NewRunDialog(runs_dir=tmp_path, has_cuda=False)
    qtbot.addWidget(cpu_only)
    offered = [cpu_only.preset.itemText(i) for i in range(cpu_only.preset.count())]
    assert cpu_only.preset.currentText() == "cpu" and "micro" in offered and "baseline_cpu" in offered
    assert not any(name.startswith(("dinov2", "baseline_dinov2")) for name in offered)
    with_gpu = NewRunDialog(runs_dir=tmp_path, has_cuda=True)
    qtbot.addWidget(with_gpu)
    assert with_gpu.preset.findText("dinov2_l") >= 0 and with_gpu.preset.currentText() == "dinov2_s"
