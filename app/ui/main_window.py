"""The main window: one tab per task (Hardware now; Fit, Split, Run and Monitor join later).

Add a tab with :meth:`MainWindow.add_tab`. Detection and the version report run on a thread pool and
come back as signals carrying frozen values; the GUI thread only paints and reacts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app import __version__
from app.core.errors import RigfitError
from app.core.rig import Rig
from app.ui.hardware_view import HardwareView

log = logging.getLogger(__name__)


class TaskSignals(QtCore.QObject):
    finished = QtCore.Signal(object)
    failed = QtCore.Signal(str)


class Task(QtCore.QRunnable):
    """Runs ``fn()`` on a pool thread; the result (or a one-line error) comes back as a signal.

    The signals object is created on the GUI thread, so its slots run there (queued connection).
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.signals = TaskSignals()

    def run(self) -> None:
        try:
            result = self.fn()
        except RigfitError as exc:
            self.signals.failed.emit(str(exc))
        except Exception as exc:  # a bug below the UI must not take the window down
            log.exception("background task failed")
            self.signals.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.signals.finished.emit(result)


def _detect() -> Rig:
    from app.hardware.probe import detect_rig

    return detect_rig()


def _versions() -> dict[str, object]:
    from app.versions import version_info

    return version_info()


class MainWindow(QtWidgets.QMainWindow):
    """Rigfit's window. ``planned_rig`` opens the Hardware tab on that rig (``rigfit --rig EXPR``)."""

    detection_finished = QtCore.Signal(object)  # the detected Rig, or None when detection failed
    versions_ready = QtCore.Signal(dict)

    def __init__(
        self,
        planned_rig: Rig | None = None,
        pool: QtCore.QThreadPool | None = None,
        detect: Callable[[], Rig] = _detect,
    ) -> None:
        super().__init__()
        self.setWindowTitle("Rigfit")
        self.resize(1180, 820)
        self._pool = pool or QtCore.QThreadPool(self)
        self._detect_fn = detect
        self._tasks: set[TaskSignals] = set()
        self._detecting = False
        self._versions: dict[str, object] | None = None
        self._about_wanted = False

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setObjectName("mainTabs")
        self.tabs.setDocumentMode(True)
        self.setCentralWidget(self.tabs)
        self.hardware = HardwareView()
        self.hardware.detect_requested.connect(self.start_detection)
        self.add_tab(self.hardware, "Hardware")
        if planned_rig is not None:
            self.hardware.set_planned_rig(planned_rig)

        self.status_text = QtWidgets.QLabel("Detecting GPUs…")
        self.status_text.setObjectName("statusText")
        self.statusBar().addWidget(self.status_text, 1)
        self._build_menus()

    # ------------------------------------------------------------------------------------------ layout
    def add_tab(self, widget: QtWidgets.QWidget, title: str) -> int:
        """Add a task tab; returns its index. Later tabs (Fit, Split, Run, Monitor) use this."""
        return self.tabs.addTab(widget, title)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        detect = QtGui.QAction("&Detect hardware again", self)
        detect.setShortcut(QtGui.QKeySequence.StandardKey.Refresh)
        detect.triggered.connect(self.start_detection)
        file_menu.addAction(detect)
        load = QtGui.QAction("&Load rig…", self)
        load.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        load.triggered.connect(self.hardware._on_load_clicked)
        file_menu.addAction(load)
        save = QtGui.QAction("&Save rig…", self)
        save.setShortcut(QtGui.QKeySequence.StandardKey.Save)
        save.triggered.connect(self.hardware._on_save_clicked)
        file_menu.addAction(save)
        file_menu.addSeparator()
        quit_action = QtGui.QAction("&Quit", self)
        quit_action.setShortcut(QtGui.QKeySequence("Ctrl+Q"))
        quit_action.setShortcutContext(QtCore.Qt.ShortcutContext.ApplicationShortcut)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        self.quit_action = quit_action
        help_menu = self.menuBar().addMenu("&Help")
        about = QtGui.QAction("&About Rigfit", self)
        about.triggered.connect(self.show_about)
        help_menu.addAction(about)
        self.about_action = about

    # ------------------------------------------------------------------------------------------ background
    def _submit(
        self, fn: Callable[[], Any], done: Callable[[Any], None], failed: Callable[[str], None]
    ) -> None:
        task = Task(fn)
        signals = task.signals
        self._tasks.add(signals)

        def finish(result: object) -> None:
            self._tasks.discard(signals)
            done(result)

        def fail(message: str) -> None:
            self._tasks.discard(signals)
            failed(message)

        signals.finished.connect(finish)
        signals.failed.connect(fail)
        self._pool.start(task)

    @property
    def busy(self) -> bool:
        """True while a background task has not reported back."""
        return bool(self._tasks)

    def start_detection(self) -> None:
        """Detect the hardware on the pool; the Hardware tab updates when it is done."""
        if self._detecting:
            return
        self._detecting = True
        self.hardware.set_detecting()
        self.status_text.setText("Detecting GPUs…")
        self._submit(self._detect_fn, self._on_detected, self._on_detection_failed)

    def _on_detected(self, rig: object) -> None:
        self._detecting = False
        assert isinstance(rig, Rig)
        self.hardware.set_detected(rig)
        self.status_text.setText(rig.status)
        self.detection_finished.emit(rig)

    def _on_detection_failed(self, message: str) -> None:
        self._detecting = False
        self.hardware.set_detection_failed(message)
        self.status_text.setText(f"Detection failed: {message}")
        self.detection_finished.emit(None)

    # ------------------------------------------------------------------------------------------ about
    def show_about(self) -> None:
        """Help > About: versions are collected off the GUI thread once, then cached."""
        if self._versions is not None:
            self._open_about(self._versions)
            return
        self._about_wanted = True
        self.status_text.setText("Collecting version information…")
        self._submit(_versions, self._on_versions, lambda msg: self._on_versions({"error": msg}))

    def _on_versions(self, info: object) -> None:
        assert isinstance(info, dict)
        self._versions = info
        self.versions_ready.emit(info)
        if self._about_wanted:
            self._about_wanted = False
            self._open_about(info)

    def about_text(self, info: dict[str, object]) -> str:
        llama = info.get("llama_cpp")
        llama_text = "not installed"
        if isinstance(llama, dict) and llama.get("version"):
            llama_text = f"{llama['version']} ({'CUDA' if llama.get('gpu_offload') else 'CPU only'})"
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
        self.status_text.setText(self.hardware.detected_rig.status if self.hardware.detected_rig else "")
        box = QtWidgets.QMessageBox(self)
        box.setObjectName("aboutBox")
        box.setWindowTitle("About Rigfit")
        box.setTextFormat(QtCore.Qt.TextFormat.RichText)
        box.setText(self.about_text(info))
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ------------------------------------------------------------------------------------------ closing
    def wait_for_tasks(self, timeout_ms: int = 15000) -> bool:
        """Block until background tasks finish (detection may be inside a slow NVML call)."""
        return bool(self._pool.waitForDone(timeout_ms))

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.wait_for_tasks()
        super().closeEvent(event)
