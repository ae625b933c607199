"""The studio's main window: the start page (what to do first, known runs with live ones marked), the training tab
(snapshot views and plots, with other runs overlaid for comparison), the inspector tab, the run dock (checkpoints,
roll back), the log dock, the status bar and a Help menu listing the shortcuts. Events are drained on a 20 Hz timer.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QWidget,
)

from amt_core.train.control import Command
from amt_studio.control_actions import CONTROL_ACTIONS, ControlAction
from amt_studio.lifecycle import LiveRunChoice, RunLifecycle
from amt_studio.session import RunSession
from amt_studio.startup import process_age_s, warm_up_in_background
from amt_studio.state.registry import discover_runs
from amt_studio.state.run import RunState
from amt_studio.state.status import RunStatus
from amt_studio.views import theme
from amt_studio.views.dialogs import DEFAULT_RUNS_DIR, NewRunDialog
from amt_studio.views.inspect import InspectPanel
from amt_studio.views.log_view import LogView
from amt_studio.views.notifier import Notifier
from amt_studio.views.plots import PlotsPanel
from amt_studio.views.run_dock import RunPanel
from amt_studio.views.start_page import StartPage
from amt_studio.views.training import SnapshotPanel

POLL_INTERVAL_MS = 50
"""Event drain period (20 Hz)."""
DEFAULT_SIZE = (1500, 920)
"""The first window's size where the screen has room; on a smaller screen it takes 95 % of what is available."""
RUN_DOCK_BELOW = 1400
"""The Run panel folds away (its toolbar button brings it back) when the window gets narrower than this."""
MAX_RECENT = 20
ORGANIZATION, APPLICATION = "amt-studio", "AMT Studio"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class MainWindow(QMainWindow):
    """One window, one run at a time (a new run or an attached one replaces the current one)."""

    def __init__(
        self, settings: QSettings | None = None, show_dialogs: bool = True, runs_dir: Path = DEFAULT_RUNS_DIR
    ) -> None:
        super().__init__()
        self.setWindowTitle("AMT Studio")
        self.settings = settings or QSettings(ORGANIZATION, APPLICATION)
        self.runs_dir = runs_dir
        """Where New run puts runs by default; the start page lists the runs found there too."""
        self.notifier = Notifier(self, show_dialogs=show_dialogs)
        self.lifecycle = RunLifecycle(self.notifier, ask_live_run=lambda: self.ask_live_run())
        self.tick_ms: list[float] = []
        """Duration of each event-drain tick, milliseconds (the bench reads it)."""
        self._build_tabs()
        self._build_docks()
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

    @property
    def session(self) -> RunSession | None:
        """The run shown."""
        return self.lifecycle.session

    @property
    def overlays(self) -> dict[str, RunSession]:
        """Runs overlaid on the plots for comparison, by label."""
        return self.lifecycle.overlays

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().paintEvent(event)
        if self.first_paint_s is None:
            self.first_paint_s = process_age_s()
            # Heavy imports start only now: importing torch holds the GIL for seconds and would delay this paint.
            if self.warm_up:
                QTimer.singleShot(100, warm_up_in_background)

    # ---- construction ------------------------------------------------------------------------------------

    def _build_tabs(self) -> None:
        """The Start, Training and Inspect tabs."""
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

    def _build_docks(self) -> None:
        """The Log dock (bottom) and the Run dock (right)."""
        self.log_view = LogView()
        self.log_dock = self._dock("Log", self.log_view, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.run_panel = RunPanel()
        self.run_panel.rollback_button.clicked.connect(self.rollback_selected)
        self.run_panel.inspect_button.clicked.connect(self.inspect_selected)
        self.checkpoint_list = self.run_panel.checkpoint_list
        self.error_label = self.run_panel.error_label
        self.run_dock = self._dock("Run", self.run_panel, Qt.DockWidgetArea.RightDockWidgetArea)

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
        self.quit_action = self._action("Quit", self.close, "Ctrl+Q")
        self._build_control_actions()
        self._build_toolbar()
        self._build_menus()

    def _build_control_actions(self) -> None:
        """The run's controls, from the one table (`CONTROL_ACTIONS`); the stage switches are an exclusive group."""
        self.control_actions: dict[ControlAction, QAction] = {}
        self.stage_group = QActionGroup(self)
        for control in CONTROL_ACTIONS:
            action = self._action(
                control.text,
                lambda _c=False, control=control: control.trigger(self),
                control.shortcut,
                control.tip,
                checkable=control.stage is not None,
            )
            self.control_actions[control] = action
            if control.stage is not None:
                self.stage_group.addAction(action)
        self.stage_group.setExclusive(True)
        by_name = {control.name: action for control, action in self.control_actions.items()}
        self.pause_action, self.stop_action = by_name["pause"], by_name["stop"]
        self.save_action, self.snapshot_action = by_name["save"], by_name["snapshot"]
        self.rollback_action = by_name["rollback"]
        self.stage_actions = [action for control, action in self.control_actions.items() if control.stage is not None]

    def _build_toolbar(self) -> None:
        toolbar = self.addToolBar("Controls")
        toolbar.setObjectName("toolbar_controls")
        toolbar.setMovable(False)
        for action in (self.new_action, self.attach_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        for control, action in self.control_actions.items():
            if control.stage is None:
                toolbar.addAction(action)
        toolbar.addSeparator()
        for action in self.stage_actions:
            toolbar.addAction(action)
        toolbar.addSeparator()
        self.run_dock_action = self.run_dock.toggleViewAction()
        self.run_dock_action.setText("Run panel")
        self.run_dock_action.setToolTip("show or hide the Run panel (checkpoints, roll back)")
        toolbar.addAction(self.run_dock_action)

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&Run")
        for action in (self.new_action, self.attach_action, self.compare_action, self.clear_compare_action):
            menu.addAction(action)
        self.recent_menu = menu.addMenu("Recent runs")
        menu.addSeparator()
        menu.addAction(self.quit_action)
        controls = self.menuBar().addMenu("&Control")
        for action in self.control_actions.values():
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
        self.status_state = QLabel(RunStatus.IDLE)
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
        session = self.lifecycle.start(argv, run_dir)
        if session is not None:
            self._show_session(session)
        return session

    def attach(self, run_dir: Path) -> RunSession | None:
        """Watch a run directory: a live headless run, or a finished run replayed from its events."""
        session = self.lifecycle.attach(run_dir)
        if session is not None:
            self._show_session(session)
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
        overlay = self.lifecycle.add_overlay(run_dir)
        if overlay is not None:
            self.plots.add_overlay(overlay.run_dir.name, overlay.state)
            if self.session is not None:
                self.tabs.setCurrentWidget(self.training_stack)
        return overlay

    def clear_overlays(self) -> None:
        for label in self.overlays:
            self.plots.remove_overlay(label)
        self.lifecycle.clear_overlays()

    def _show_session(self, session: RunSession) -> None:
        """Show a run the lifecycle now holds: its log, plots, snapshots, checkpoints and controls."""
        state = session.state
        self.log_view.clear_lines()
        self.run_panel.show_run(session.run_dir)
        for line in state.log:
            self.log_view.add(line)
        state.log_added.connect(self.log_view.add)
        state.error_raised.connect(lambda msg, trace: self.notifier.error("The trainer failed", msg, trace))
        state.checkpoints_changed.connect(self._fill_checkpoints)
        self.plots.set_state(state)
        self.snapshots.set_state(state)
        self.inspect.set_run_dir(session.run_dir)
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
            for result in self.lifecycle.poll():
                if not result.ok:
                    self.notifier.error(f"Command '{result.command}' failed", result.message)
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
        colour = {
            RunStatus.RUNNING: theme.OK,
            RunStatus.PAUSED: theme.WARNING,
            RunStatus.FAILED: theme.ERROR,
        }.get(state.state, theme.MUTED)
        self.status_state.setStyleSheet(f"color: {colour}; font-weight: bold;")
        self.status_stage.setText(f"stage {state.stage}" if state.stage else "stage –")
        total = f" / {state.max_steps}" if state.max_steps else ""
        self.status_step.setText(f"step {state.step}{total}")
        speed = f"{state.images_per_s:.1f} img/s" if state.images_per_s else "– img/s"
        if state.data_share is not None:  # how much of that time went to waiting for batches
            speed += f" · data wait {100 * state.data_share:.0f}%"
        self.status_speed.setText(speed)
        if state.state == RunStatus.PAUSED:
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
        paused = session is not None and session.state.state == RunStatus.PAUSED
        self.pause_action.setText("Resume" if paused else "Pause")
        has_checkpoints = self.run_panel.has_checkpoints()
        stage = session.state.stage if session is not None else None
        for control, action in self.control_actions.items():
            action.setEnabled(
                live and not pending & control.waits_on and (has_checkpoints or not control.needs_checkpoint)
            )
            if control.stage is not None and action.isChecked() != (stage == control.stage):
                action.setChecked(stage == control.stage)
        self.run_panel.enable(rollback=self.rollback_action.isEnabled())

    def _show_error(self, message: str) -> None:
        self.run_panel.show_error(message)
        self.run_dock.show()  # folded away on a narrow window: an error brings it back

    def _fill_checkpoints(self) -> None:
        self.run_panel.fill(self.session.state.checkpoints if self.session is not None else ())

    # ---- controls ----------------------------------------------------------------------------------------

    def send(self, command: Command | str, argument: str | None = None) -> None:
        if self.session is None:
            return
        self.session.state.add_log("info", f"sent {command}" + (f" {argument}" if argument else ""))
        self.session.control.send(command, argument)
        self._update_controls()

    def toggle_pause(self) -> None:
        if self.session is not None:
            self.send(Command.RESUME if self.session.state.state == RunStatus.PAUSED else Command.PAUSE)

    def switch_stage(self, stage: int) -> None:
        self.send(Command.STAGE, str(stage))
        self._update_controls()  # the check mark moves when the trainer's stage event arrives

    def selected_checkpoint(self) -> str | None:
        return self.run_panel.selected_checkpoint()

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

    def ask_live_run(self) -> LiveRunChoice:
        """Stop the run this window started, leave it training headless, or cancel?"""
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
        return (
            LiveRunChoice.STOP if clicked is stop else LiveRunChoice.LEAVE if clicked is leave else LiveRunChoice.CANCEL
        )

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.lifecycle.let_go_on_close():  # a live trainer is stopped by a detached stopper: no wait here
            event.ignore()
            return
        self.save_layout()
        self.timer.stop()
        self.inspect.shutdown()
        self.snapshots.shutdown()
        self.start_page.timer.stop()
        self.lifecycle.close()
        event.accept()
