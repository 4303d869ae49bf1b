"""The main window: one tab per task — Hardware, Fit, Split, Run, Monitor — around one shared state.

The window owns the :class:`~app.ui.state.AppState` (rig, model, settings, plan) that every tab reads
and changes, and a :class:`~app.ui.tasks.TaskRunner` for background work: detection, GGUF reading,
the fit table and the version report run on its thread pool and come back as signals carrying frozen
values; the GUI thread only paints and reacts.

Tabs whose modules are heavy to import (the Monitor tab's pyqtgraph, the Run tab's runner) are built
the first time they are shown or asked for (:class:`LazyTab`), so the window is on screen quickly.
What the user chose — window geometry, tab, rig, model, quant, split and settings — is saved on close
and read back on the next start (:mod:`app.ui.settings_store`); a value that no longer makes sense
(a model file that is gone, a split for another number of GPUs) is ignored.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import QtCore, QtGui, QtWidgets

from app import __version__
from app.core.errors import one_line
from app.core.files import path_exists
from app.core.rig import Rig
from app.ui.settings_store import KEEP_MODEL, KEEP_RIG, RIG_DETECTED, RIG_PLANNED, Session, SettingsStore
from app.ui.state import AppState, ModelChoice
from app.ui.tasks import Task, TaskRunner, TaskSignals
from app.versions import describe_llama_build

if TYPE_CHECKING:
    from app.ui.fit.view import FitView
    from app.ui.hardware.view import HardwareView
    from app.ui.split.view import SplitView

log = logging.getLogger(__name__)

TAB_HARDWARE = "hardware"
TAB_FIT = "fit"
TAB_SPLIT = "split"
TAB_RUN = "run"
TAB_MONITOR = "monitor"
TAB_NAMES: tuple[str, ...] = (TAB_HARDWARE, TAB_FIT, TAB_SPLIT, TAB_RUN, TAB_MONITOR)
NOTICE_KEY = "notice/told"  # digest of the last settings notice, so it is given once


def _detect() -> Rig:
    from app.hardware.probe import detect_rig

    return detect_rig()


def _discover_local(folders: Sequence[str]) -> list[str]:
    """GGUF files in the usual caches and ``folders`` (complete ones: every part of a split model)."""
    from app.runner.discovery import discover_models

    return [m.path for m in discover_models(extra_folders=folders).models if m.complete]


def _versions() -> dict[str, object]:
    from app.ui.qtinfo import qt_version
    from app.versions import version_info

    return version_info(qt_version())


def model_choice_for(ref: str, quant: str | None = None) -> ModelChoice:
    """Build the :class:`ModelChoice` for a reference (catalog id, GGUF path, config.json, "demo").

    Reads GGUF headers and applies quantization rules: call it off the GUI thread.
    """
    from app.core.model_source import load_model_spec
    from app.hub.refs import is_hub_ref

    if is_hub_ref(ref):  # planned from its header on the hub (app/hub), marked as remote
        from app.hub.remote import hub_model_spec

        spec = hub_model_spec(ref, quant)
        return ModelChoice(
            ref=ref,
            spec=spec,
            quant=spec.file_type or (quant or ""),
            label=f"{spec.name} (on the hub, not downloaded)" if spec.remote else spec.name,
        )
    spec = load_model_spec(ref, quant)
    label = spec.name
    if spec.source == "catalog":
        try:
            from app.core.catalog import find_entry

            label = find_entry(spec.id).name
        except Exception:  # the label is cosmetic; the spec already loaded
            label = spec.name
    return ModelChoice(ref=ref, spec=spec, quant=spec.file_type or (quant or ""), label=label)


# The window's first size, when no size is remembered: roomy on a desktop screen, never larger than
# the screen it opens on (a 1366x768 laptop leaves about 1366x730 to a window).
PREFERRED_SIZE = (1280, 860)


def _initial_size() -> QtCore.QSize:
    width, height = PREFERRED_SIZE
    screen = QtGui.QGuiApplication.primaryScreen()
    if screen is not None:
        available = screen.availableGeometry()
        # The window manager's title bar and frame come on top of the size set here.
        width = min(width, available.width() - 16)
        height = min(height, available.height() - 48)
    return QtCore.QSize(max(width, 640), max(height, 480))


class LazyTab(QtWidgets.QWidget):
    """A tab whose content is built the first time it is shown or asked for (:meth:`content`)."""

    created = QtCore.Signal(object)

    def __init__(
        self,
        factory: Callable[[], QtWidgets.QWidget],
        parent: QtWidgets.QWidget | None = None,
        defer_first_show: bool = False,
    ) -> None:
        super().__init__(parent)
        self._factory = factory
        # The tab on screen at start-up is built right after the first paint instead of before it.
        self._defer = defer_first_show
        self._content: QtWidgets.QWidget | None = None
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

    @property
    def is_created(self) -> bool:
        return self._content is not None

    def content_if_created(self) -> QtWidgets.QWidget | None:
        return self._content

    def content(self) -> QtWidgets.QWidget:
        if self._content is None:
            widget = self._factory()
            self._content = widget
            layout = self.layout()
            assert layout is not None
            # A tab whose panels need more room than a small screen has scrolls inside its own area:
            # its minimum size never makes the window bigger than a 1366x768 laptop's screen.
            scroll = QtWidgets.QScrollArea()
            scroll.setObjectName(f"{widget.objectName() or 'tab'}Scroll")
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
            scroll.setWidget(widget)
            layout.addWidget(scroll)
            self.created.emit(widget)
        return self._content

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        if self._defer:
            self._defer = False  # the window builds it once exposed (MainWindow._after_first_show)
        else:
            self.content()
        super().showEvent(event)


class MainWindow(QtWidgets.QMainWindow):
    """Rigfit's window. ``planned_rig`` opens on that planned rig (``rigfit --rig EXPR``).

    ``store`` is where the session is remembered (default: the user's settings); ``restore`` reads the last session back at start. ``discover(folders)``
    lists the local GGUF files to show in the fit table, run on the pool once the window is shown
    (default: :func:`app.runner.discovery.discover_models`; None: no search).
    """

    detection_finished = QtCore.Signal(object)  # the detected Rig, or None when detection failed
    versions_ready = QtCore.Signal(dict)
    model_failed = QtCore.Signal(str)  # a model could not be opened (one line, the user's words)
    settings_notice = QtCore.Signal(str)  # remembered settings that could not be used (told once)

    def __init__(
        self,
        planned_rig: Rig | None = None,
        pool: QtCore.QThreadPool | None = None,
        detect: Callable[[], Rig] = _detect,
        store: SettingsStore | None = None,
        restore: bool = True,
        discover: Callable[[Sequence[str]], Sequence[str]] | None = _discover_local,
    ) -> None:
        super().__init__()
        self.setWindowTitle("Rigfit")
        self.setObjectName("mainWindow")
        self.resize(_initial_size())
        self.setAcceptDrops(True)
        self.tasks = TaskRunner(pool or QtCore.QThreadPool(self), self)
        self._pool = self.tasks.pool
        self._detect_fn = detect
        self._detecting = False
        self._detected_once = False
        self._versions: dict[str, object] | None = None
        self._about_wanted = False
        self._closed = False
        self.store = store if store is not None else SettingsStore.default()
        self._pending_split: tuple[float, ...] | None = None
        self._discover = discover
        self._shown_once = False
        self._started_background = False
        # Starts the background work once the window is on screen; a timer of the window's own, so
        # closing the window stops it (a bare single shot would outlive a window closed at once).
        self._first_show_timer = QtCore.QTimer(self)
        self._first_show_timer.setObjectName("firstShowTimer")
        self._first_show_timer.setSingleShot(True)
        self._first_show_timer.timeout.connect(self._after_first_show)
        self._run_folders: tuple[str, ...] = ()
        self._predicted_vram: dict[int, float] | None = None

        self.state = AppState(self)
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setObjectName("mainTabs")
        self.tabs.setDocumentMode(True)
        self.setCentralWidget(self.tabs)
        self._tab_index: dict[str, QtWidgets.QWidget] = {}

        # Every tab is built when first shown or asked for (the Hardware tab right after the first
        # paint): the window is on screen sooner, and the views read the shared state when built.
        self._initial_planned: Rig | None = None
        self._hardware_tab = LazyTab(self._make_hardware_view, defer_first_show=True)
        self._add_named_tab(TAB_HARDWARE, self._hardware_tab, "Hardware")
        self._fit_tab = self.add_lazy_tab(TAB_FIT, "Fit", self._make_fit_view)
        self._split_tab = self.add_lazy_tab(TAB_SPLIT, "Split", self._make_split_view)
        self._run_tab: LazyTab | None = None
        if _run_view_available():
            self._run_tab = LazyTab(self._make_run_view)
            self._add_named_tab(TAB_RUN, self._run_tab, "Run")
        # Samples NVML only once the tab is first shown (or the Run tab starts it); pyqtgraph is
        # imported then too, not at start-up.
        self._monitor_tab = LazyTab(self._make_monitor_view)
        self._add_named_tab(TAB_MONITOR, self._monitor_tab, "Monitor")

        self.state.model_changed.connect(self._on_model_changed)
        self.state.plan_changed.connect(self._update_plan_status)

        self.status_text = QtWidgets.QLabel("Detecting GPUs…")
        self.status_text.setObjectName("statusText")
        self.statusBar().addWidget(self.status_text, 1)
        self.plan_status = QtWidgets.QLabel("")
        self.plan_status.setObjectName("planStatus")
        self.statusBar().addPermanentWidget(self.plan_status)
        self._build_menus()
        from app.ui.hub.hooks import HubHooks

        self.hub = HubHooks(self)  # "Get this model", downloads (app/ui/hub)

        session = self.store.load_session() if restore else Session()
        self._problems: list[str] = list(session.problems)
        # What the window could not use from the remembered session: kept in the store, as it was,
        # until the user chooses something new for it (see save_session).
        self._rig_unreadable = bool({"rig/mode", "rig/planned"} & self.store.kept_keys)
        self._model_unread = False
        self._notice_box: QtWidgets.QMessageBox | None = None
        self._run_folders = session.run_folders or ()
        if planned_rig is not None:
            self._initial_planned = planned_rig
        else:
            self._restore_rig(session)
        if self._initial_planned is not None:
            # The Hardware tab shows it once built; the other tabs plan for it from the start.
            self.state.set_rig(self._initial_planned)
        self._restore_settings(session)
        self._session = session
        if restore:
            self._restore_window(session)

    # ------------------------------------------------------------------------------------------ layout
    def add_tab(self, widget: QtWidgets.QWidget, title: str) -> int:
        """Add a task tab; returns its index."""
        return self.tabs.addTab(widget, title)

    def _add_named_tab(self, name: str, widget: QtWidgets.QWidget, title: str) -> int:
        self._tab_index[name] = widget
        widget.setObjectName(widget.objectName() or f"{name}Tab")
        return self.add_tab(widget, title)

    def add_lazy_tab(self, name: str, title: str, factory: Callable[[], QtWidgets.QWidget]) -> LazyTab:
        """Add a tab built on first use (see :class:`LazyTab`)."""
        tab = LazyTab(factory)
        self._add_named_tab(name, tab, title)
        return tab

    def tab_name(self, index: int | None = None) -> str | None:
        """The name (``hardware``, ``fit``...) of tab ``index`` (default: the current one)."""
        widget = self.tabs.widget(self.tabs.currentIndex() if index is None else index)
        for name, w in self._tab_index.items():
            if w is widget:
                return name
        return None

    def show_tab(self, name: str) -> bool:
        """Switch to the tab called ``name``; False when there is no such tab."""
        widget = self._tab_index.get(name)
        if widget is None:
            return False
        self.tabs.setCurrentWidget(widget)
        return True

    @property
    def hardware(self) -> HardwareView:
        """The Hardware tab's view (built now if it was not yet)."""
        return self._hardware_tab.content()  # type: ignore[return-value]

    def _make_hardware_view(self) -> QtWidgets.QWidget:
        from app.ui.hardware.view import HardwareView

        view = HardwareView(populate=False)
        view.detect_requested.connect(self.start_detection)
        view.rig_changed.connect(self._on_rig_shown)
        if self._initial_planned is not None:
            view.set_planned_rig(self._initial_planned)
        else:
            view.populate()
        return view

    @property
    def fit_view(self) -> FitView:
        """The Fit tab's view (built now if it was not yet)."""
        return self._fit_tab.content()  # type: ignore[return-value]

    @property
    def split_view(self) -> SplitView:
        """The Split tab's view (built now if it was not yet)."""
        return self._split_tab.content()  # type: ignore[return-value]

    def _make_fit_view(self) -> QtWidgets.QWidget:
        from app.ui.fit.view import FitView

        view = FitView(self.state, self.tasks)
        view.rig_link_activated.connect(lambda: self.show_tab(TAB_HARDWARE))
        view.model_chosen.connect(self._on_fit_choice)
        if self._shown_once:
            view.activate()
        return view

    def _make_split_view(self) -> QtWidgets.QWidget:
        from app.ui.split.view import SplitView

        view = SplitView(self.state)
        view.rig_link_activated.connect(lambda: self.show_tab(TAB_HARDWARE))
        view.model_link_activated.connect(lambda: self.show_tab(TAB_FIT))
        return view

    @property
    def monitor(self) -> QtWidgets.QWidget:
        """The Monitor tab's view (built now if it was not yet)."""
        return self._monitor_tab.content()

    @property
    def run_view(self) -> QtWidgets.QWidget | None:
        """The Run tab's view (built now if it was not yet), or None without a Run tab."""
        return self._run_tab.content() if self._run_tab is not None else None

    def _make_monitor_view(self) -> QtWidgets.QWidget:
        from app.ui.monitor.view import MonitorView

        view = MonitorView(pool=self._pool)
        if self._predicted_vram is not None:
            view.set_predicted_vram(self._predicted_vram)
        return view

    def _make_run_view(self) -> QtWidgets.QWidget:
        from app.ui.run.view import RunView

        view = RunView(self.state, tasks=self.tasks, extra_folders=self._run_folders)
        view.predicted_vram_changed.connect(self.set_predicted_vram)
        view.models_discovered.connect(self.fit_view.add_local_models)
        view.extra_folders_changed.connect(self._on_run_folders)
        return view

    def _on_run_folders(self, folders: list[str]) -> None:
        self._run_folders = tuple(folders)

    def set_predicted_vram(self, predicted_mib: dict[int, float] | None) -> None:
        """Tell the Monitor tab what the loaded model should use per GPU (kept until it is built)."""
        self._predicted_vram = dict(predicted_mib) if predicted_mib else None
        monitor = self._monitor_tab.content_if_created()
        if monitor is not None:
            monitor.set_predicted_vram(self._predicted_vram)  # type: ignore[attr-defined]

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_model = QtGui.QAction("&Open model…", self)
        open_model.setObjectName("openModelAction")
        open_model.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        open_model.setShortcutContext(QtCore.Qt.ShortcutContext.ApplicationShortcut)
        open_model.triggered.connect(self.open_model_dialog)
        file_menu.addAction(open_model)
        self.open_model_action = open_model
        file_menu.addSeparator()
        detect = QtGui.QAction("&Detect hardware again", self)
        detect.setShortcut(QtGui.QKeySequence.StandardKey.Refresh)
        detect.triggered.connect(self.start_detection)
        file_menu.addAction(detect)
        load = QtGui.QAction("&Load rig…", self)
        load.setShortcut(QtGui.QKeySequence("Ctrl+Shift+O"))
        load.triggered.connect(lambda: self.hardware._on_load_clicked())
        file_menu.addAction(load)
        save = QtGui.QAction("&Save rig…", self)
        save.setShortcut(QtGui.QKeySequence.StandardKey.Save)
        save.triggered.connect(lambda: self.hardware._on_save_clicked())
        file_menu.addAction(save)
        file_menu.addSeparator()
        quit_action = QtGui.QAction("&Quit", self)
        quit_action.setShortcut(QtGui.QKeySequence("Ctrl+Q"))
        quit_action.setShortcutContext(QtCore.Qt.ShortcutContext.ApplicationShortcut)
        quit_action.setMenuRole(QtGui.QAction.MenuRole.QuitRole)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        self.quit_action = quit_action

        view_menu = self.menuBar().addMenu("&View")
        titles = {
            TAB_HARDWARE: "&Hardware",
            TAB_FIT: "&Fit",
            TAB_SPLIT: "&Split",
            TAB_RUN: "&Run",
            TAB_MONITOR: "&Monitor",
        }
        for n, name in enumerate(name for name in TAB_NAMES if name in self._tab_index):
            action = QtGui.QAction(titles[name], self)
            action.setShortcut(QtGui.QKeySequence(f"Ctrl+{n + 1}"))
            action.triggered.connect(lambda _=False, name=name: self.show_tab(name))
            view_menu.addAction(action)

        help_menu = self.menuBar().addMenu("&Help")
        about = QtGui.QAction("&About Rigfit", self)
        about.setMenuRole(QtGui.QAction.MenuRole.AboutRole)
        about.triggered.connect(self.show_about)
        help_menu.addAction(about)
        self.about_action = about

    # ------------------------------------------------------------------------------------------ background
    def _submit(
        self, fn: Callable[[], Any], done: Callable[[Any], None], failed: Callable[[str], None]
    ) -> None:
        self.tasks.submit(fn, done, failed)

    @property
    def detection_done(self) -> bool:
        """True once a detection has reported back (successfully or not) and none is running."""
        return self._detected_once and not self._detecting

    @property
    def busy(self) -> bool:
        """True while a background task (detection, a model, the fit table...) has not reported back."""
        return self.tasks.busy

    def start_detection(self) -> None:
        """Detect the hardware on the pool; the Hardware tab updates when it is done."""
        if self._detecting:
            return
        self._detecting = True
        self.hardware.set_detecting()
        self.status_text.setText("Detecting GPUs…")
        self.tasks.submit(self._detect_fn, self._on_detected, self._on_detection_failed)

    def _on_detected(self, rig: object) -> None:
        self._detecting = False
        self._detected_once = True
        assert isinstance(rig, Rig)
        self.hardware.set_detected(rig)
        self.status_text.setText(_status_line(rig))
        self._pending_split = None  # detection settled the rig: a stored split that did not match is stale
        self.detection_finished.emit(rig)

    def _on_detection_failed(self, message: str) -> None:
        self._detecting = False
        self._detected_once = True
        self.hardware.set_detection_failed(message)
        self.status_text.setText(f"Detection failed: {message}")
        self._pending_split = None
        self.detection_finished.emit(None)

    # ------------------------------------------------------------------------------------------ state
    def _on_rig_shown(self, rig: object) -> None:
        assert isinstance(rig, Rig)
        self.state.set_rig(rig)
        pending = self._pending_split
        if pending is not None and len(pending) == rig.n_gpus and rig.n_gpus > 0:
            self._pending_split = None
            self.state.update_settings(tensor_split=pending)

    def _on_model_changed(self, model: object) -> None:
        if isinstance(model, ModelChoice) and model.is_file:
            # A file the user opened shows up in the fit table too.
            self.fit_view.add_local_models([model.spec])

    def _on_fit_choice(self, ref: str, quant: str) -> None:
        self.load_model(ref, quant or None, then_show=TAB_SPLIT)

    def _update_plan_status(self, plan: object) -> None:
        model = self.state.model
        if model is None or plan is None:
            self.plan_status.setText(model.label if model is not None else "")
            return
        from app.ui.theme import STATUS_WORDS

        status = getattr(plan, "status", "")
        self.plan_status.setText(
            f"{model.label or model.spec.name} {model.quant}: {STATUS_WORDS.get(status, status)}"
        )

    def load_model(self, ref: str, quant: str | None = None, then_show: str | None = None) -> None:
        """Read a model (catalog id, GGUF path, config.json, "demo") off the GUI thread and select it."""
        self.status_text.setText(f"Opening {Path(ref).name if '/' in ref else ref}…")

        def done(choice: object) -> None:
            assert isinstance(choice, ModelChoice)
            self.state.set_model(choice)
            self.status_text.setText(_status_line(self.hardware.detected_rig))
            if then_show:
                self.show_tab(then_show)

        def failed(message: str) -> None:
            self.status_text.setText(f"Could not open the model: {message}")
            self.model_failed.emit(message)

        self.tasks.submit(lambda: model_choice_for(ref, quant), done, failed, key="model")

    def open_model_dialog(self) -> None:
        """Ctrl+O: the Run tab's "Open file…" when there is a Run tab, else a file dialog here."""
        view = self.run_view
        opener = getattr(view, "open_model_dialog", None)
        if callable(opener):
            self.show_tab(TAB_RUN)
            opener()
            return
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open a model", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.load_model(path, then_show=TAB_SPLIT)

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if _gguf_urls(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        paths = _gguf_urls(event.mimeData())
        if not paths:
            super().dropEvent(event)
            return
        event.acceptProposedAction()
        view = self.run_view
        opener = getattr(view, "open_model_file", None)
        if callable(opener):
            self.show_tab(TAB_RUN)
            opener(paths[0])
        else:
            self.load_model(paths[0], then_show=TAB_SPLIT)

    # ------------------------------------------------------------------------------------------ session
    def _restore_rig(self, session: Session) -> None:
        if session.rig_mode != RIG_PLANNED or not session.planned_rig_toml:
            return
        from app.core.errors import RigfitError
        from app.hardware.rigfile import rig_from_toml

        try:
            rig = rig_from_toml(session.planned_rig_toml, "the remembered rig")
        except RigfitError as exc:
            log.info("ignoring the remembered rig: %s", exc)
            self._rig_unreadable = True
            self._problems.append(
                f"The remembered rig could not be read ({one_line(str(exc).removeprefix('the remembered rig: '), 200)}); "
                "it is kept as it was, "
                "and a demo rig is shown until you choose one."
            )
            return
        self._initial_planned = rig

    def _restore_settings(self, session: Session) -> None:
        stored = session.settings
        if stored is None:
            return
        rig = self.state.rig
        n = rig.n_gpus if rig is not None else 0
        split = stored.tensor_split
        settings = replace(stored, tensor_split=None)
        if settings.main_gpu >= max(n, 1):
            settings = replace(settings, main_gpu=0)
        self.state.set_settings(settings)
        if split is not None:
            if len(split) == n and n > 0:
                self.state.update_settings(tensor_split=split)
            elif not self._detected_once:
                # The detected rig is not known yet: keep the split until a rig of its size shows up.
                self._pending_split = split

    def _restore_model(self, session: Session) -> None:
        ref = session.model_ref
        if not ref:
            return
        looks_like_file = ref.lower().endswith((".gguf", ".json")) or "/" in ref or "\\" in ref
        if looks_like_file and not path_exists(Path(ref).expanduser()):
            log.info("the remembered model %s is gone", ref)
            self._model_unread = True  # kept for when its drive is back
            self._tell_once(
                [f"The remembered model {one_line(ref, 200)} is not there now; it is kept for when it is."]
            )
            return

        def done(choice: object) -> None:
            # The user may have picked another model while this one was read.
            if self.state.model is None and isinstance(choice, ModelChoice):
                self.state.set_model(choice)

        def failed(message: str) -> None:
            log.info("ignoring the remembered model %s: %s", ref, message)
            self._model_unread = True
            self._tell_once(
                [f"The remembered model could not be opened ({one_line(message, 200)}); it is kept."]
            )

        self.tasks.submit(lambda: model_choice_for(ref, session.model_quant), done, failed, key="model")

    def _restore_window(self, session: Session) -> None:
        geometry = self.store.window_blob("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.store.window_blob("state")
        if state is not None:
            self.restoreState(state)
        if session.tab in (TAB_HARDWARE, TAB_FIT, TAB_SPLIT):
            # Run and Monitor are built on first show; they start on Split rather than at start-up.
            self.show_tab(session.tab)
        elif session.tab in (TAB_RUN, TAB_MONITOR):
            self.show_tab(TAB_SPLIT)

    def current_session(self) -> Session:
        """What would be remembered if the window closed now."""
        from app.hardware.rigfile import rig_to_toml

        planned_text: str | None
        try:
            planned_text = rig_to_toml(self.hardware.planned_rig) if self.hardware.planned_rig.gpus else None
        except Exception:  # a rig the file format cannot hold is simply not remembered
            log.exception("cannot remember the planned rig")
            planned_text = None
        model = self.state.model
        return Session(
            rig_mode=RIG_DETECTED if self.hardware.mode == "detected" else RIG_PLANNED,
            planned_rig_toml=planned_text,
            model_ref=model.ref if model is not None else None,
            model_quant=(model.quant or None) if model is not None and not model.is_file else None,
            settings=self.state.settings,
            tab=self.tab_name(),
            run_folders=self._run_folders,
        )

    def _kept_entries(self) -> set[str]:
        """Remembered entries the window could not use and the user has not replaced: kept as stored."""
        keep: set[str] = set()
        if self._rig_unreadable:
            from app.hardware.catalog import parse_rig_expression
            from app.hardware.rigfile import rig_to_toml
            from app.ui.hardware.view import DEMO_RIG_EXPRESSION

            planned = self.hardware.planned_rig
            untouched = not planned.gpus or rig_to_toml(planned) == rig_to_toml(
                parse_rig_expression(DEMO_RIG_EXPRESSION)
            )
            if untouched:
                keep.add(KEEP_RIG)
        if self._model_unread and self.state.model is None:
            keep.add(KEEP_MODEL)
        return keep

    def _tell_once(self, problems: Sequence[str]) -> None:
        """Say, in one notice, what of the remembered session could not be used.

        Problems found later (a remembered model that fails to open) join the notice still open; a
        notice already given at an earlier start is not given again (the store keeps its digest).
        """
        if not problems:
            return
        log.warning("remembered settings: %s", " ".join(problems))
        box = self._notice_box
        if box is not None:
            box.setText(box.text() + "\n" + "\n".join(problems))
            self.settings_notice.emit(box.text())
            return
        text = "\n".join(problems)
        digest = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:16]
        if self.store.get_text(NOTICE_KEY) == digest:
            return
        self.store.set_text(NOTICE_KEY, digest)
        self.settings_notice.emit(text)
        box = QtWidgets.QMessageBox(self)
        box.setObjectName("settingsNotice")
        box.setIcon(QtWidgets.QMessageBox.Icon.Information)
        box.setWindowTitle("Remembered settings")
        box.setText(text)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(self._notice_closed)
        self._notice_box = box
        box.open()

    def _notice_closed(self) -> None:
        self._notice_box = None

    def save_session(self) -> None:
        """Remember the window and the session (called on close)."""
        try:
            self.store.set_window_blob("geometry", self.saveGeometry())
            self.store.set_window_blob("state", self.saveState())
            self.store.save_session(self.current_session(), keep=self._kept_entries())
        except Exception:  # a settings file that cannot be written must not stop the window closing
            log.exception("cannot save the settings")

    # ------------------------------------------------------------------------------------------ about
    def show_about(self) -> None:
        """Help > About: versions are collected off the GUI thread once, then cached."""
        if self._versions is not None:
            self._open_about(self._versions)
            return
        self._about_wanted = True
        self.status_text.setText("Collecting version information…")
        self.tasks.submit(_versions, self._on_versions, lambda msg: self._on_versions({"error": msg}))

    def _on_versions(self, info: object) -> None:
        assert isinstance(info, dict)
        self._versions = info
        self.versions_ready.emit(info)
        if self._about_wanted:
            self._about_wanted = False
            self._open_about(info)

    def about_text(self, info: dict[str, object]) -> str:
        llama = info.get("llama_cpp")
        llama_text = describe_llama_build(llama) if isinstance(llama, dict) else "not installed"
        rows = [
            ("Rigfit", info.get("rigfit", __version__)),
            ("Python", info.get("python")),
            ("Qt / PySide6", f"{info.get('qt') or '?'} / {info.get('pyside6') or '?'}"),
            ("pyqtgraph", info.get("pyqtgraph") or "not installed"),
            ("llama-cpp-python", llama_text),
            ("NVML", info.get("nvml") or "not found"),
            ("NVIDIA driver", info.get("driver") or "not found"),
        ]
        body = "".join(f"<tr><td>{k}</td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in rows)
        return (
            "<h3>Rigfit</h3><p>See how a local LLM fits across your GPUs, tune the split, "
            f"and run it with llama.cpp.</p><table>{body}</table>"
        )

    def _open_about(self, info: dict[str, object]) -> None:
        self.status_text.setText(_status_line(self.hardware.detected_rig))
        box = QtWidgets.QMessageBox(self)
        box.setObjectName("aboutBox")
        box.setWindowTitle("About Rigfit")
        box.setTextFormat(QtCore.Qt.TextFormat.RichText)
        box.setText(self.about_text(info))
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if self._shown_once:
            return
        self._shown_once = True
        # The fit table, the remembered model and the search for local models start once the window
        # is exposed (painted): they must not delay the first paint. A window that is never exposed
        # (minimised at start) gets them after half a second anyway.
        handle = self.windowHandle()
        if handle is not None and not handle.isExposed():
            handle.installEventFilter(self)
            self._first_show_timer.start(500)
        else:
            self._first_show_timer.start(0)

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        handle = self.windowHandle()
        exposed = event.type() == QtCore.QEvent.Type.Expose and handle is not None and handle.isExposed()
        if watched is handle and exposed and handle is not None:
            handle.removeEventFilter(self)
            self._first_show_timer.start(0)
        return super().eventFilter(watched, event)

    def _after_first_show(self) -> None:
        self._first_show_timer.stop()
        if self._closed or self._started_background:
            return
        self._started_background = True
        self.hardware.populate()
        self._restore_model(self._session)
        problems, self._problems = self._problems, []
        self._tell_once(problems)
        self.fit_view.activate()
        self._discover_local_models()

    def _discover_local_models(self) -> None:
        discover = self._discover
        if discover is None or self._closed:
            return
        folders = list(self._run_folders)
        self.tasks.submit(
            lambda: list(discover(folders)),
            lambda paths: self.fit_view.add_local_models(paths) if paths else None,
            lambda message: log.info("the search for local models failed: %s", message),
            key="discover-local",
        )

    # ------------------------------------------------------------------------------------------ closing
    def wait_for_tasks(self, timeout_ms: int = 15000) -> bool:
        """Block until background tasks finish (detection may be inside a slow NVML call)."""
        return self.tasks.wait(timeout_ms)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if not self._closed:
            self._closed = True
            self._first_show_timer.stop()
            self.save_session()
            monitor = self._monitor_tab.content_if_created()
            if monitor is not None:
                monitor.shutdown()  # type: ignore[attr-defined]
            run = self._run_tab.content_if_created() if self._run_tab is not None else None
            shutdown = getattr(run, "shutdown", None)
            if callable(shutdown):
                shutdown()
            for tab in (self._fit_tab, self._split_tab):
                view = tab.content_if_created()
                if view is not None:
                    view.shutdown()  # type: ignore[attr-defined]
            self.hub.shutdown()
            self.tasks.shutdown()
        self.wait_for_tasks()
        super().closeEvent(event)


def _status_line(rig: Rig | None) -> str:
    return rig.status if rig is not None else ""


def _gguf_urls(mime: QtCore.QMimeData) -> list[str]:
    if not mime.hasUrls():
        return []
    return [
        u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile().lower().endswith(".gguf")
    ]


def _run_view_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("app.ui.run.view") is not None
    except (ImportError, ValueError):
        return False


__all__ = [
    "TAB_NAMES",
    "LazyTab",
    "MainWindow",
    "Task",
    "TaskRunner",
    "TaskSignals",
    "model_choice_for",
]
