"""The studio's main window: the start page (what to do first, known runs with live ones marked), the training tab
(snapshot views and plots, with other runs overlaid for comparison), the inspector tab, the run dock (checkpoints,
roll back), the log dock, the status bar and a Help menu listing the shortcuts. Events are drained on a 20 Hz timer.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from amt_core.errors import UserError
from amt_core.train.control import Command
from amt_studio.session import RunSession
from amt_studio.state.registry import discover_runs
from amt_studio.state.run import RunState
from amt_studio.stopper import stop_detached
from amt_studio.views import theme
from amt_studio.views.dialogs import DEFAULT_RUNS_DIR, NewRunDialog
from amt_studio.views.inspect import InspectPanel
from amt_studio.views.log_view import LogView
from amt_studio.views.notifier import Notifier
from amt_studio.views.plots import PlotsPanel
from amt_studio.views.start_page import StartPage
from amt_studio.views.training import SnapshotPanel

POLL_INTERVAL_MS = 50
DEFAULT_SIZE = (1500, 920)
"""The first window's size where the screen has room; on a smaller screen it takes 95 % of what is available."""
RUN_DOCK_BELOW = 1400
"""The Run panel folds away (its toolbar button brings it back) when the window gets narrower than this."""
"""Event drain period (20 Hz)."""
MAX_RECENT = 20
ORGANIZATION, APPLICATION = "amt-studio", "AMT Studio"
_IMPORTED = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; elsewhere since this module was imported)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


def _warm_up() -> None:
    """Import the heavy modules (torch, Open3D, trimesh) and build the object catalog (meshes for the 3D panel) in the
    background after the window has painted, so a first snapshot or the New-run dialog rarely waits for them."""
    import open3d  # noqa: F401

    import amt_core.presets  # noqa: F401 (torch)
    import amt_studio.render.primitives  # noqa: F401 (trimesh)
    import amt_studio.render.raycast  # noqa: F401
    from amt_core.objects.catalog import catalog

    catalog()


class MainWindow(QMainWindow):
    """One window, one run at a time (a new run or an attached one replaces the current one)."""

    def __init__(
        self, settings: QSettings | None = None, show_dialogs: bool = True, runs_dir: Path = DEFAULT_RUNS_DIR
    ) -> None:
        # long: builds the window (menus, tabs, panels, shortcuts) in reading order; each piece is used only here
        super().__init__()
        self.setWindowTitle("AMT Studio")
        self.settings = settings or QSettings(ORGANIZATION, APPLICATION)
        self.runs_dir = runs_dir
        """Where New run puts runs by default; the start page lists the runs found there too."""
        self.notifier = Notifier(self, show_dialogs=show_dialogs)
        self.session: RunSession | None = None
        self.overlays: dict[str, RunSession] = {}
        """Runs overlaid on the plots for comparison, by label."""
        self.tick_ms: list[float] = []
        """Duration of each event-drain tick, milliseconds (the bench reads it)."""

        self.snapshots = SnapshotPanel()
        self.plots = PlotsPanel()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.snapshots)
        splitter.addWidget(self.plots)
        splitter.setSizes([520, 760])
        self.training_splitter = splitter
        self.training_empty = QLabel(
            "No run yet.\n\nStart one with Run ▸ New run (Ctrl+N; the cpu preset validates within a minute,\n"
            "then every 100 steps), attach to a run directory (Ctrl+O), or pick a run on the Start page."
        )
        self.training_empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.training_empty.setObjectName("title")
        self.training_stack = QStackedWidget()
        self.training_stack.addWidget(self.training_empty)
        self.training_stack.addWidget(splitter)
        self.inspect = InspectPanel(self.notifier)
        self.start_page = StartPage(self.known_runs)
        self.start_page.new_button.clicked.connect(self.new_run)
        self.start_page.attach_button.clicked.connect(self.attach_dialog)
        self.start_page.inspect_button.clicked.connect(self.inspect_dialog)
        self.start_page.open_button.clicked.connect(self._open_selected_run)
        self.start_page.compare_button.clicked.connect(self._compare_selected_run)
        self.start_page.table.cellDoubleClicked.connect(lambda *_: self._open_selected_run())
        self.tabs = QTabWidget()
        self.tabs.addTab(self.start_page, "Start")
        self.tabs.addTab(self.training_stack, "Training")
        self.tabs.addTab(self.inspect, "Inspect")
        self.setCentralWidget(self.tabs)

        self.log_view = LogView()
        self.log_dock = self._dock("Log", self.log_view, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.checkpoint_list = QListWidget()
        self.rollback_button = QPushButton("Roll back to selected")
        self.rollback_button.clicked.connect(self.rollback_selected)
        self.inspect_button = QPushButton("Inspect selected")
        self.inspect_button.clicked.connect(self.inspect_selected)
        self.run_label = QLabel("no run")
        self.run_label.setWordWrap(True)
        self.error_label = QLabel("")
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        run_box = QWidget()
        run_layout = QVBoxLayout(run_box)
        run_layout.addWidget(self.run_label)
        run_layout.addWidget(self.error_label)
        title = QLabel("Checkpoints")
        title.setObjectName("title")
        run_layout.addWidget(title)
        run_layout.addWidget(self.checkpoint_list, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.rollback_button)
        buttons.addWidget(self.inspect_button)
        run_layout.addLayout(buttons)
        self.run_dock = self._dock("Run", run_box, Qt.DockWidgetArea.RightDockWidgetArea)

        self._build_actions()
        self._build_status_bar()
        self.notifier.raised.connect(lambda n: self._show_error(n.message))
        self._update_controls()

        self._shown_once = False
        self.warm_up = True
        """Import torch and Open3D in the background once the window has painted."""
        self.first_paint_s: float | None = None
        """Seconds from the process's start to the window's first paint (set once, by paintEvent)."""
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        self._restore_layout()
        self.fit_to_screen(first=self.settings.value("window/geometry") is None)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().paintEvent(event)
        if self.first_paint_s is None:
            self.first_paint_s = process_age_s()
            # Heavy imports start only now: importing torch holds the GIL for seconds and would delay this paint.
            if self.warm_up:
                QTimer.singleShot(100, self._start_warm_up)

    def _start_warm_up(self) -> None:
        threading.Thread(target=_warm_up, name="amt-warm-up", daemon=True).start()

    # ---- construction ------------------------------------------------------------------------------------

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut: str | None = None, tip: str = "", checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(f"{tip or text} ({shortcut})" if shortcut else tip or text)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.new_action = self._action("New run…", self.new_run, "Ctrl+N", "start a training run")
        self.attach_action = self._action("Attach…", self.attach_dialog, "Ctrl+O", "watch a run directory")
        self.compare_action = self._action(
            "Compare with run…", self.compare_dialog, "Ctrl+Shift+O", "overlay another run's curves (dashed)"
        )
        self.clear_compare_action = self._action("Remove compared runs", self.clear_overlays)
        self.pause_action = self._action("Pause", self.toggle_pause, "Space", "pause or resume training")
        self.stop_action = self._action(
            "Stop", lambda: self.send(Command.STOP), "Ctrl+.", "stop training (saves first)"
        )
        self.save_action = self._action("Save", lambda: self.send(Command.SAVE), "Ctrl+S", "save a checkpoint now")
        self.snapshot_action = self._action("Snapshot", lambda: self.send(Command.SNAPSHOT), "Ctrl+P", "snapshot now")
        self.rollback_action = self._action(
            "Roll back", self.rollback_selected, "Ctrl+R", "roll back to the checkpoint selected in the Run panel"
        )
        self.stage_group = QActionGroup(self)
        self.stage_actions = []
        for stage in (1, 2, 3):
            action = self._action(
                f"Stage {stage}",
                lambda _c=False, s=stage: self.switch_stage(s),
                f"Ctrl+{stage}",
                f"switch to stage {stage}",
                checkable=True,
            )
            self.stage_group.addAction(action)
            self.stage_actions.append(action)
        self.stage_group.setExclusive(True)
        self.quit_action = self._action("Quit", self.close, "Ctrl+Q")
        toolbar = self.addToolBar("Controls")
        toolbar.setObjectName("toolbar_controls")
        toolbar.setMovable(False)
        for action in (self.new_action, self.attach_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        for action in (
            self.pause_action,
            self.stop_action,
            self.save_action,
            self.snapshot_action,
            self.rollback_action,
        ):
            toolbar.addAction(action)
        toolbar.addSeparator()
        for action in self.stage_actions:
            toolbar.addAction(action)
        toolbar.addSeparator()
        self.run_dock_action = self.run_dock.toggleViewAction()
        self.run_dock_action.setText("Run panel")
        self.run_dock_action.setToolTip("show or hide the Run panel (checkpoints, roll back)")
        toolbar.addAction(self.run_dock_action)
        menu = self.menuBar().addMenu("&Run")
        for action in (self.new_action, self.attach_action, self.compare_action, self.clear_compare_action):
            menu.addAction(action)
        self.recent_menu = menu.addMenu("Recent runs")
        menu.addSeparator()
        menu.addAction(self.quit_action)
        controls = self.menuBar().addMenu("&Control")
        for action in (
            self.pause_action,
            self.stop_action,
            self.save_action,
            self.snapshot_action,
            self.rollback_action,
            *self.stage_actions,
        ):
            controls.addAction(action)
        view = self.menuBar().addMenu("&View")
        view.addAction(self.log_dock.toggleViewAction())
        view.addAction(self.run_dock.toggleViewAction())
        view.addAction(self._action("Reset 3D view", lambda: self.snapshots.scene.reset_view(), "Home"))
        view.addAction(self._action("Save screenshot…", self.save_screenshot, "Ctrl+Shift+S"))
        view.addAction(self._action("Start page", lambda: self.tabs.setCurrentWidget(self.start_page), "Ctrl+Home"))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self._action("Keyboard shortcuts", self.show_shortcuts, "F1"))
        self._fill_recent_menu()

    def shortcuts(self) -> list[tuple[str, str]]:
        """(shortcut, what it does) for every action that has one, in menu order."""
        rows = []
        for menu_action in self.menuBar().actions():
            menu = menu_action.menu()
            for action in menu.actions() if menu is not None else ():
                if not action.shortcut().isEmpty():
                    text = action.text().replace("&", "").rstrip("…")
                    rows.append((action.shortcut().toString(), f"{text}: {action.toolTip().split(' (')[0]}"))
        rows += [
            ("drag / right-drag / wheel", "3D panel: orbit, pan, zoom (double-click: back to the image's view)"),
            ("right-click a plot", "plot menu: Export CSV…, axes, export as image"),
        ]
        return rows

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{key}</b></td><td>&nbsp;&nbsp;{what}</td></tr>" for key, what in self.shortcuts())
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText(f"<table>{rows}</table>")
        box.setModal(False)
        box.show()
        self.shortcuts_box = box

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_state = QLabel("idle")
        self.status_stage = QLabel("stage –")
        self.status_step = QLabel("step 0")
        self.status_speed = QLabel("– img/s")
        self.status_eta = QLabel("ETA –")
        self.status_device = QLabel("device –")
        for label in (self.status_state, self.status_stage, self.status_step, self.status_speed, self.status_eta):
            bar.addWidget(label)
        bar.addPermanentWidget(self.status_device)

    # ---- runs --------------------------------------------------------------------------------------------

    def new_run(self) -> None:
        dialog = NewRunDialog(self, runs_dir=self.runs_dir)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.start_run(dialog.argv(), dialog.run_dir())

    def start_run(self, argv: list[str], run_dir: Path) -> RunSession | None:
        """Start a trainer in the background and watch it."""
        if not self._release_current():
            return None
        try:
            session = RunSession.start(argv, run_dir)
        except UserError as err:
            self.notifier.error("Cannot start the run", str(err))
            return None
        self._set_session(session)
        return session

    def attach_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Attach to a run directory", str(Path.home()))
        if folder:
            self.attach(Path(folder))

    def inspect_dialog(self) -> None:
        self.tabs.setCurrentWidget(self.inspect)
        self.inspect._open_dialog()

    def _open_selected_run(self) -> None:
        run_dir = self.start_page.selected_run()
        if run_dir is not None:
            self.attach(run_dir)

    def _compare_selected_run(self) -> None:
        run_dir = self.start_page.selected_run()
        if run_dir is not None:
            self.add_overlay(run_dir)

    def compare_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Overlay another run's curves", str(self.runs_dir))
        if folder:
            self.add_overlay(Path(folder))

    def add_overlay(self, run_dir: Path) -> RunSession | None:
        """Overlay another run (read from its events; never steered) on the plots, dashed, for comparison."""
        try:
            overlay = RunSession.attach(run_dir)
        except UserError as err:
            self.notifier.error("Cannot compare", str(err))
            return None
        if self.session is not None and overlay.run_dir == self.session.run_dir:
            self.notifier.error("Cannot compare", f"{overlay.run_dir.name} is the run shown; pick another run")
            overlay.close()
            return None
        label = overlay.run_dir.name
        if label in self.overlays:
            self.overlays.pop(label).close()
        self.overlays[label] = overlay
        overlay.poll()
        self.plots.add_overlay(label, overlay.state)
        if self.session is not None:
            self.tabs.setCurrentWidget(self.training_stack)
        return overlay

    def clear_overlays(self) -> None:
        for label, overlay in list(self.overlays.items()):
            self.plots.remove_overlay(label)
            overlay.close()
        self.overlays.clear()

    def attach(self, run_dir: Path) -> RunSession | None:
        """Watch a run directory: a live headless run, or a finished run replayed from its events."""
        try:
            session = RunSession.attach(run_dir)
        except UserError as err:  # the current run stays shown
            self.notifier.error("Cannot attach", str(err))
            return None
        if not self._release_current():
            session.close()
            return None
        self._set_session(session)
        return session

    def _release_current(self) -> bool:
        """Let go of the current run; a run this window started asks whether to stop it. False: cancelled."""
        if self.session is None:
            return True
        if self.session.owns_live_process:
            choice = self.ask_live_run()
            if choice == "cancel":
                return False
            if choice == "stop":
                self.session.control.send(Command.STOP)
        self.session.close()
        self.session = None
        return True

    def _set_session(self, session: RunSession) -> None:
        self.session = session
        state = session.state
        self.log_view.clear_lines()
        self.error_label.hide()
        for line in state.log:
            self.log_view.add(line)
        state.log_added.connect(self.log_view.add)
        state.error_raised.connect(lambda msg, trace: self.notifier.error("The trainer failed", msg, trace))
        state.checkpoints_changed.connect(self._fill_checkpoints)
        self.plots.set_state(state)
        self.snapshots.set_state(state)
        self.inspect.set_run_dir(session.run_dir)
        self.run_label.setText(
            f"<b>{session.run_dir.name}</b><br><span style='color:{theme.MUTED}'>{session.run_dir}</span>"
        )
        self.setWindowTitle(f"AMT Studio — {session.run_dir.name}")
        self._remember_recent(session.run_dir)
        self.training_stack.setCurrentIndex(1)
        self.tabs.setCurrentWidget(self.training_stack)
        self._fill_checkpoints()
        self._update_controls()

    # ---- the timer ---------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Drain events, refresh what changed, report command results; must stay short (the bench measures it)."""
        start = time.perf_counter()
        session = self.session
        if session is not None:
            try:
                results = session.poll()
            except Exception as err:  # a bad event must not stop the timer
                self.notifier.exception("Reading the run failed", err)
                results = []
            for result in results:
                if not result.ok:
                    self.notifier.error(f"Command '{result.command}' failed", result.message)
            for overlay in self.overlays.values():
                try:
                    overlay.poll()
                except Exception as err:  # an overlay's bad event must not stop the main run's updates
                    self.notifier.exception("Reading a compared run failed", err)
            self.plots.refresh()
            self.snapshots.refresh()
            for signal in (session.state.snapshot_added, session.state.metrics_changed, session.state.log_added):
                while signal.errors:
                    self.notifier.exception("A view failed to update", signal.errors.pop(0))
            self._update_status(session.state)
            self._update_controls()
        self.tick_ms.append((time.perf_counter() - start) * 1000.0)
        del self.tick_ms[:-2000]

    def _update_status(self, state: RunState) -> None:
        self.status_state.setText(state.state)
        colour = {"running": theme.OK, "paused": theme.WARNING, "failed": theme.ERROR}.get(state.state, theme.MUTED)
        self.status_state.setStyleSheet(f"color: {colour}; font-weight: bold;")
        self.status_stage.setText(f"stage {state.stage}" if state.stage else "stage –")
        total = f" / {state.max_steps}" if state.max_steps else ""
        self.status_step.setText(f"step {state.step}{total}")
        speed = f"{state.images_per_s:.1f} img/s" if state.images_per_s else "– img/s"
        if state.data_share is not None:  # how much of that time went to waiting for batches
            speed += f" · data wait {100 * state.data_share:.0f}%"
        self.status_speed.setText(speed)
        if state.state == "paused":
            self.status_eta.setText("ETA – (paused)")
        else:
            self.status_eta.setText(f"ETA {_fmt_duration(state.eta_seconds())}" if state.is_live else "ETA –")
        device = f"device {state.device or '–'}"
        self.status_device.setText(f"{device} · {state.compute}" if state.compute else device)

    def _update_controls(self) -> None:
        """Controls show the trainer's confirmed state; a control waits while its command is in flight."""
        session = self.session
        live = session is not None and session.state.is_live
        pending = set(session.control.pending) if session is not None else set()
        paused = session is not None and session.state.state == "paused"
        self.pause_action.setText("Resume" if paused else "Pause")
        self.pause_action.setEnabled(live and not pending & {Command.PAUSE, Command.RESUME})
        self.stop_action.setEnabled(live and Command.STOP not in pending)
        self.save_action.setEnabled(live and Command.SAVE not in pending)
        self.snapshot_action.setEnabled(live and Command.SNAPSHOT not in pending)
        can_roll = live and Command.ROLLBACK not in pending and self.checkpoint_list.count() > 0
        self.rollback_action.setEnabled(can_roll)
        self.rollback_button.setEnabled(can_roll)
        self.inspect_button.setEnabled(self.checkpoint_list.count() > 0)
        stage = session.state.stage if session is not None else None
        for index, action in enumerate(self.stage_actions, start=1):
            action.setEnabled(live and Command.STAGE not in pending)
            if action.isChecked() != (stage == index):
                action.setChecked(stage == index)

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()
        self.run_dock.show()  # folded away on a narrow window: an error brings it back

    def _fill_checkpoints(self) -> None:
        self.checkpoint_list.clear()
        if self.session is None:
            return
        for info in reversed(self.session.state.checkpoints):
            item = QListWidgetItem(f"{info.name}   step {info.step}")
            item.setData(Qt.ItemDataRole.UserRole, info.name)
            self.checkpoint_list.addItem(item)
        if self.checkpoint_list.count():
            self.checkpoint_list.setCurrentRow(0)

    # ---- controls ----------------------------------------------------------------------------------------

    def send(self, command: Command | str, argument: str | None = None) -> None:
        if self.session is None:
            return
        self.session.state.add_log("info", f"sent {command}" + (f" {argument}" if argument else ""))
        self.session.control.send(command, argument)
        self._update_controls()

    def toggle_pause(self) -> None:
        if self.session is not None:
            self.send(Command.RESUME if self.session.state.state == "paused" else Command.PAUSE)

    def switch_stage(self, stage: int) -> None:
        self.send(Command.STAGE, str(stage))
        self._update_controls()  # the check mark moves when the trainer's stage event arrives

    def selected_checkpoint(self) -> str | None:
        item = self.checkpoint_list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def rollback_selected(self) -> None:
        name = self.selected_checkpoint()
        if name:
            self.send(Command.ROLLBACK, name)

    def inspect_selected(self) -> None:
        name = self.selected_checkpoint()
        if name and self.session is not None:
            self.tabs.setCurrentWidget(self.inspect)
            self.inspect.open_checkpoint(self.session.run_dir / "checkpoints" / name)

    def save_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save screenshot", str(Path.home() / "amt-studio.png"), "PNG (*.png)"
        )
        if path:
            self.grab().save(path)

    # ---- settings ----------------------------------------------------------------------------------------

    def recent_runs(self) -> list[str]:
        value = self.settings.value("recent_runs", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember_recent(self, run_dir: Path) -> None:
        runs = [str(run_dir)] + [r for r in self.recent_runs() if r != str(run_dir)]
        self.settings.setValue("recent_runs", runs[:MAX_RECENT])
        self.settings.sync()  # on disk now: a window that crashes later still finds the run it started
        self._fill_recent_menu()
        self.start_page.refresh()

    def known_runs(self) -> list[Path]:
        """Run directories the start page lists: recent ones (started or attached here), then those in runs_dir."""
        paths = [Path(p) for p in self.recent_runs()]
        seen = {p.resolve() for p in paths}
        for path in discover_runs(self.runs_dir):
            if path.resolve() not in seen:
                paths.append(path)
        return paths

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_runs():
            self.recent_menu.addAction(path, lambda p=path: self.attach(Path(p)))
        self.recent_menu.setEnabled(bool(self.recent_runs()))

    def fit_to_screen(self, first: bool = False) -> None:
        """Keep the window inside its screen's available area: a first window opens at `DEFAULT_SIZE` or 95 % of
        the area, centred; a remembered size larger than this screen shrinks and a position off it moves back."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        area = screen.availableGeometry()
        frame = self.frameGeometry()
        extra_w, extra_h = frame.width() - self.width(), frame.height() - self.height()  # title bar, borders
        if first:
            self.resize(int(min(DEFAULT_SIZE[0], 0.95 * area.width())), int(min(DEFAULT_SIZE[1], 0.95 * area.height())))
            frame = self.frameGeometry()
            self.move(area.center() - frame.center() + frame.topLeft())
        width = min(self.width(), area.width() - extra_w)
        height = min(self.height(), area.height() - extra_h)
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        frame = self.frameGeometry()
        x = min(max(frame.x(), area.x()), area.x() + area.width() - frame.width())
        y = min(max(frame.y(), area.y()), area.y() + area.height() - frame.height())
        if (x, y) != (frame.x(), frame.y()):
            self.move(x, y)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if not self._shown_once:  # the frame (title bar) is known only now
            self._shown_once = True
            self.fit_to_screen()
            if self.settings.value("window/state") is None:  # first start: the plots get the height, not the log
                self.resizeDocks([self.log_dock], [max(90, self.height() // 7)], Qt.Orientation.Vertical)
                self.resizeDocks([self.run_dock], [220], Qt.Orientation.Horizontal)
            self._adapt_to_width(self.width(), None)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._adapt_to_width(event.size().width(), event.oldSize().width())

    def _adapt_to_width(self, width: int, old: int | None) -> None:
        """Fold the Run panel away when the window gets narrower than `RUN_DOCK_BELOW` and bring it back when it
        gets wider; in between the toolbar's "Run panel" button shows or hides it."""
        narrow = width < RUN_DOCK_BELOW
        was_narrow = old < RUN_DOCK_BELOW if old is not None and old > 0 else None
        if narrow != was_narrow and not self.run_dock.isFloating():
            self.run_dock.setVisible(not narrow)

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        splitter = self.settings.value("window/training_splitter")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        if splitter is not None:
            self.training_splitter.restoreState(splitter)

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("window/training_splitter", self.training_splitter.saveState())
        self.settings.sync()

    # ---- closing -----------------------------------------------------------------------------------------

    def ask_live_run(self) -> str:
        """'stop', 'leave' (keep it training headless) or 'cancel'."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("A run is training")
        box.setText("The run started from this window is still training.")
        box.setInformativeText("Stop it (a checkpoint is saved first), or leave it running headless?")
        stop = box.addButton("Stop run", QMessageBox.ButtonRole.DestructiveRole)
        leave = box.addButton("Leave running", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        return "stop" if clicked is stop else "leave" if clicked is leave else "cancel"

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.session is not None and self.session.owns_live_process:
            choice = self.ask_live_run()
            if choice == "cancel":
                event.ignore()
                return
            if choice == "stop":  # a detached stopper waits for the save: the window closes now
                self.session.state.add_log("info", "stopping the run (it saves first)")
                stop_detached(self.session.run_dir, self.session.process.popen.pid)
            else:
                self.session.state.add_log("info", f"left running headless: pid {self.session.process.popen.pid}")
        self.save_layout()
        self.timer.stop()
        self.inspect.shutdown()
        self.snapshots.shutdown()
        self.start_page.timer.stop()
        if self.session is not None:
            self.session.close()
        for overlay in self.overlays.values():
            overlay.close()
        event.accept()
