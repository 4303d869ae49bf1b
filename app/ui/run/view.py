"""The Run tab: pick a model, load it with llama.cpp, chat, and compare plan and reality.

:class:`RunView` only lays out four panels and wires them to the shared state and the model runner:

* :class:`~app.ui.run.picker.ModelPicker` — which model (``state.model``);
* :class:`~app.ui.run.load_panel.LoadPanel` — Load / Cancel / Unload with ``state.settings``;
* :class:`~app.ui.run.chat.ChatPanel` — the conversation;
* :class:`~app.ui.run.memory.MemoryComparison` — ``state.plan`` beside what llama.cpp reports;

plus the :class:`~app.ui.run.problem.ProblemBar` across the top and the
:class:`~app.ui.run.serve_panel.ServePanel` (the loaded model served to other apps over HTTP). The model runs in a child process
(:class:`~app.ui.runner_adapter.RunnerAdapter`, shared by the load panel and the chat), so a llama.cpp
abort or an out-of-memory kill ends that process; the tab says so and loads again on request.

Signals for the window: :attr:`RunView.predicted_vram_changed` (GPU index → MiB NVML should show,
``{}`` when nothing is loaded) for the Monitor tab's plot; :attr:`RunView.models_discovered` (GGUF
paths) for the Fit tab's local rows; :attr:`RunView.extra_folders_changed` for the session store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from PySide6 import QtCore, QtGui, QtWidgets

from app.runner import protocol as P
from app.ui.run.chat import ChatPanel
from app.ui.run.load_panel import LoadContext, LoadPanel
from app.ui.run.memory import MemoryComparison, predicted_vram
from app.ui.run.picker import Discover, ModelPicker, dropped_model
from app.ui.run.problem import ProblemBar
from app.ui.run.serve_panel import ServePanel
from app.ui.runner_adapter import STATE_GENERATING, STATE_IDLE, STATE_LOADING, STATE_STARTING, RunnerAdapter
from app.ui.state import AppState
from app.ui.tasks import TaskRunner


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


class RunView(QtWidgets.QWidget):
    """The Run tab. ``state`` is the window's shared selection; the rest is for tests and embedding.

    ``adapter`` (default: a fresh :class:`RunnerAdapter`) runs the model; ``tasks`` reads headers and
    scans folders; ``discover(folders, should_stop)`` finds local models (default: every known
    cache plus ``folders``); ``n_threads`` is passed to llama.cpp (default: its choice).
    """

    # object, not dict: Qt converts a dict signal argument to a QVariantMap, which needs string keys.
    predicted_vram_changed = QtCore.Signal(object)  # dict: GPU index -> MiB NVML should show; {} unloaded
    models_discovered = QtCore.Signal(object)  # list of the paths of the local GGUF models found
    extra_folders_changed = QtCore.Signal(object)  # list: the user's added folders, for the session store

    def __init__(
        self,
        state: AppState,
        parent: QtWidgets.QWidget | None = None,
        *,
        adapter: RunnerAdapter | None = None,
        tasks: TaskRunner | None = None,
        discover: Discover | None = None,
        n_threads: int | None = None,
        extra_folders: Iterable[str] = (),
        scan_on_show: bool = True,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("runView")
        self.state = state
        self.adapter = adapter if adapter is not None else RunnerAdapter(self)
        if self.adapter.parent() is None:
            self.adapter.setParent(self)
        self.tasks = tasks if tasks is not None else TaskRunner(QtCore.QThreadPool(self), self)
        self._shut_down = False
        self.setAcceptDrops(True)

        self.problem = ProblemBar()
        self.picker = ModelPicker(
            state, self.tasks, discover=discover, extra_folders=extra_folders, scan_on_show=scan_on_show
        )
        self.load_panel = LoadPanel(state, self.adapter, n_threads=n_threads)
        self.chat = ChatPanel(self.adapter)
        self.memory = MemoryComparison()
        self.serve = ServePanel(self.adapter)
        self._lay_out()
        self._connect()

    def _lay_out(self) -> None:
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        # Across the top, where it cannot be missed: a failed load or a model process that stopped.
        outer.addWidget(self.problem)
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        outer.addWidget(self.splitter)

        top = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        top.setChildrenCollapsible(False)
        # The serve switch sits under the picker, whose list gives up the height; the load panel keeps its own.
        left = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.picker, 1)
        column.addWidget(self.serve)
        top.addWidget(left)
        top.addWidget(self.load_panel)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        self.splitter.addWidget(top)

        bottom = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        bottom.setChildrenCollapsible(False)
        bottom.addWidget(self.chat)
        bottom.addWidget(self.memory)
        bottom.setStretchFactor(0, 1)
        bottom.setStretchFactor(1, 1)
        bottom.setSizes([620, 580])  # the memory table needs its five columns readable
        self.splitter.addWidget(bottom)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)

    def _connect(self) -> None:
        self.picker.models_discovered.connect(self.models_discovered)
        self.picker.extra_folders_changed.connect(self.extra_folders_changed)
        self.load_panel.load_started.connect(self._on_load_started)
        self.load_panel.load_refused.connect(lambda message: self.problem.show_problem(message))
        self.chat.notice.connect(self.load_panel.set_status)

        escape = QtGui.QShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Escape), self)
        escape.setContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut)
        escape.activated.connect(self.stop)
        self.escape_shortcut = escape

        a = self.adapter
        a.loaded.connect(self._on_loaded)
        a.unloaded.connect(lambda: self.predicted_vram_changed.emit({}))
        a.done.connect(self.memory.show_speeds)
        a.error.connect(self._on_error)
        a.exited.connect(lambda _event: self.predicted_vram_changed.emit({}))

    # ------------------------------------------------------------------------------------------ the window's API
    @property
    def n_threads(self) -> int | None:
        """Threads llama.cpp uses (None: its choice)."""
        return self.load_panel.n_threads

    @n_threads.setter
    def n_threads(self, value: int | None) -> None:
        self.load_panel.n_threads = value

    def open_model_dialog(self) -> None:
        """Ctrl+O: the picker's "Open file…"."""
        self.picker.open_model_dialog()

    def open_model_file(self, path: str | os.PathLike[str]) -> None:
        """A model file dropped on the window or opened elsewhere."""
        self.picker.open_model_file(path)

    def stop(self) -> None:
        """Esc: end the reply (within one token), cancel a load in progress, or close the load question."""
        state = self.adapter.state
        if state == STATE_GENERATING:
            self.adapter.stop()
        elif state in (STATE_STARTING, STATE_LOADING):
            self.adapter.cancel_load()
        elif self.load_panel.confirm_pending:
            self.load_panel.hide_confirm()

    # ------------------------------------------------------------------------------------------ wiring
    def _on_load_started(self, context: LoadContext) -> None:
        self.problem.hide()
        self.memory.start_load(context)

    def _on_loaded(self, event: object) -> None:
        assert isinstance(event, P.LoadedEvent)
        self.memory.show_loaded(event)
        ctx = self.load_panel.context
        # The Monitor tab draws the prediction against what NVML measures on this computer's GPUs.
        if ctx is not None and ctx.rig is not None and ctx.rig.source == "detected":
            self.predicted_vram_changed.emit(predicted_vram(ctx.plan, event))
        else:
            self.predicted_vram_changed.emit({})

    def _on_error(self, event: object) -> None:
        assert isinstance(event, P.ErrorEvent)
        if event.kind == P.ERR_CANCELLED:
            self.memory.load_cancelled()
            return
        if event.kind == P.ERR_CRASHED:
            text = f"{_first_upper(event.message)}. Rigfit is fine: load the model again to continue."
            self.predicted_vram_changed.emit({})
        else:
            text = _first_upper(event.message)
            if self.adapter.state == STATE_IDLE:
                self.predicted_vram_changed.emit({})
        self.problem.show_problem(text, event.log_tail or self.adapter.log_tail())

    # ------------------------------------------------------------------------------------------ drops
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if dropped_model(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        path = dropped_model(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.picker.open_model_file(path)
        else:
            super().dropEvent(event)

    # ------------------------------------------------------------------------------------------ closing
    @property
    def busy(self) -> bool:
        """True while a header read or a scan has not reported back."""
        return self.tasks.busy

    def shutdown(self) -> None:
        """Stop the model process and background work; the window calls this when it closes."""
        if self._shut_down:
            return
        self._shut_down = True
        self.picker.shutdown()
        self.serve.shutdown()  # its requests end before the worker they run in
        self.adapter.close()
        self.tasks.wait()
        self.load_panel.shutdown()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        # A Run tab shown on its own (tests, embedding) cleans up like the window does.
        if self.isWindow():
            self.shutdown()
        super().closeEvent(event)


__all__ = ["RunView"]
