"""The Run tab's "Serve" switch: the model loaded here answers OpenAI's API for other apps.

The server (app/serve) runs on threads of its own and sends its requests to the Run tab's worker
through the adapter's client, so there is one copy of the model and the tab's chat and HTTP requests
queue behind each other in the worker. Nothing on the token path touches the GUI thread: this panel
only hears, through queued signals carrying frozen values, a status snapshot after each request and
the adapter's load, unload and crash (which decide what is served). Binding and closing the socket
run on the panel's pool, never on the GUI thread.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import shiboken6
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.runner import protocol as P
from app.serve.api import model_id_for
from app.serve.dispatch import DOWN, LOADING, NO_MODEL, READY, Dispatcher, ServedModel, ServeStatus
from app.serve.server import DEFAULT_PORT, OpenAIServer, exposure_warning
from app.ui.runner_adapter import (
    STATE_CLOSED,
    STATE_IDLE,
    STATE_LOADING,
    STATE_STARTING,
    STATE_UNLOADING,
    RunnerAdapter,
)
from app.ui.tasks import TaskRunner
from app.ui.theme import TEXT_ERROR, TEXT_MUTED, TEXT_NORMAL, TEXT_WARNING, fmt_tok_s, tint

LOOPBACK = "127.0.0.1"
ALL_ADDRESSES = "0.0.0.0"


class ServePanel(QtWidgets.QGroupBox):
    """Serve switch, port, network choice, API key; the URL to copy; requests served, last speed."""

    serving_changed = QtCore.Signal(bool)
    _status_posted = QtCore.Signal(object)  # ServeStatus, from any thread

    def __init__(
        self,
        adapter: RunnerAdapter,
        parent: QtWidgets.QWidget | None = None,
        *,
        port: int = DEFAULT_PORT,
        tasks: TaskRunner | None = None,
    ) -> None:
        super().__init__("Serve to other apps (OpenAI API)", parent)
        self.setObjectName("servePanel")
        self.adapter = adapter
        self.tasks = tasks if tasks is not None else TaskRunner(QtCore.QThreadPool(self), self)
        self._server: OpenAIServer | None = None  # listening
        self._binding: OpenAIServer | None = None  # being bound on the pool
        self._dispatcher: Dispatcher | None = None  # from the switch on to the switch off
        self._busy = False  # a start or stop is on the pool
        self._build(port)
        self._status_posted.connect(self._show_status, QtCore.Qt.ConnectionType.QueuedConnection)
        adapter.loaded.connect(self._on_loaded)
        adapter.state_changed.connect(self._on_runner_state)
        adapter.error.connect(self._on_runner_error)
        self._refresh()

    def _build(self, port: int) -> None:
        grid = QtWidgets.QGridLayout(self)
        self.switch = QtWidgets.QCheckBox("Serve")
        self.switch.setToolTip(
            "Answer OpenAI's API (/v1/chat/completions, /v1/completions, /v1/models) with the model "
            "loaded here, for Open WebUI, SillyTavern, editor plugins and scripts."
        )
        self.port = QtWidgets.QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        self.port.setValue(port)
        self.network = QtWidgets.QCheckBox("Open to the network")
        self.network.setToolTip(
            f"Listen on all addresses ({ALL_ADDRESSES}) instead of this computer only ({LOOPBACK})."
        )
        self.api_key = QtWidgets.QLineEdit()
        self.api_key.setPlaceholderText("API key (optional)")
        self.api_key.setToolTip(
            "Clients then send 'Authorization: Bearer KEY'; without a key anyone who reaches the port may use it."
        )
        self.api_key.setEchoMode(QtWidgets.QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.url = QtWidgets.QLineEdit()
        self.url.setReadOnly(True)
        self.url.setPlaceholderText("not serving")
        self.copy_button = QtWidgets.QPushButton("Copy")
        self.copy_button.setToolTip("Copy the base URL to give a chat app.")
        self.warning = QtWidgets.QLabel()
        self.warning.setWordWrap(True)
        self.status = QtWidgets.QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        # Three rows, so the load panel above keeps its room: the address, the URL, what happens.
        grid.addWidget(self.switch, 0, 0)
        grid.addWidget(QtWidgets.QLabel("Port"), 0, 1)
        grid.addWidget(self.port, 0, 2)
        grid.addWidget(self.network, 0, 3)
        grid.addWidget(self.api_key, 0, 4, 1, 2)
        grid.addWidget(self.url, 1, 0, 1, 5)
        grid.addWidget(self.copy_button, 1, 5)
        grid.addWidget(self.warning, 2, 0, 1, 6)
        grid.addWidget(self.status, 3, 0, 1, 6)
        grid.setColumnStretch(4, 1)

        self.switch.toggled.connect(self._on_switch)
        self.copy_button.clicked.connect(self.copy_url)
        self.network.toggled.connect(self._refresh)
        self.api_key.textChanged.connect(self._refresh)

    # ------------------------------------------------------------------------------------------ API
    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.running

    @property
    def host(self) -> str:
        return ALL_ADDRESSES if self.network.isChecked() else LOOPBACK

    def copy_url(self) -> str:
        """Put the base URL on the clipboard; returns it ('' when not serving)."""
        text = self.url.text()
        if text:
            QtGui.QGuiApplication.clipboard().setText(text)
        return text

    def start(self) -> None:
        self.switch.setChecked(True)

    def stop(self) -> None:
        self.switch.setChecked(False)

    def shutdown(self) -> None:
        """The window closes: answer what is in flight, close the socket, join every thread (blocking)."""
        self.tasks.shutdown()
        self._close_now()
        self._refresh()

    # ------------------------------------------------------------------------------------------ switching
    def _on_switch(self, on: bool) -> None:
        if self._busy:
            return
        if on and self._server is None:
            self._start()
        elif not on and self._server is not None:
            self._stop()
        self._refresh()

    def _start(self) -> None:
        try:
            client = self.adapter.shared_client()
        except RigfitError as exc:
            self._fail(str(exc))
            return
        key = self.api_key.text().strip() or None
        dispatcher = Dispatcher(client, on_status=self._post_status)
        try:
            server = OpenAIServer(dispatcher, host=self.host, port=self.port.value(), api_key=key)
        except RigfitError as exc:
            self._fail(str(exc))
            return
        # From now on the adapter's load, unload and crash reach this dispatcher, even mid-bind.
        self._dispatcher = dispatcher
        self._sync_model(dispatcher)
        self._binding = server
        self._busy = True

        def bind() -> OpenAIServer:
            server.start()  # a socket call, however quick: never on the GUI thread
            return server

        self.tasks.submit(bind, self._started, self._fail)

    def _started(self, server: Any) -> None:
        self._busy = False
        self._binding = None
        self._server = server
        if not self.switch.isChecked():  # switched off while it bound
            self._stop()
        else:
            self.serving_changed.emit(True)
        if self._dispatcher is not None:
            self._show_status(self._dispatcher.status())
        self._refresh()

    def _fail(self, message: str) -> None:
        self._busy = False
        self._binding = None
        if self._dispatcher is not None:
            self._dispatcher.close()
        self._server = self._dispatcher = None
        self.switch.blockSignals(True)
        self.switch.setChecked(False)
        self.switch.blockSignals(False)
        self.status.setText(message[:1].upper() + message[1:] + ".")
        tint(self.status, TEXT_ERROR)
        self._refresh(keep_status=True)

    def _stop(self) -> None:
        server, dispatcher = self._server, self._dispatcher
        self._server = self._dispatcher = None
        if server is None or dispatcher is None:
            return
        self._busy = True

        def close() -> None:
            dispatcher.close("the server was switched off in Rigfit")
            server.close()

        self.tasks.submit(close, lambda _result: self._stopped(), self._stopped_with_problem)

    def _stopped(self) -> None:
        self._busy = False
        self.serving_changed.emit(False)
        self._refresh()
        if self.switch.isChecked():  # switched on again while it closed
            self._start()
            self._refresh()

    def _stopped_with_problem(self, message: str) -> None:
        self._stopped()
        self.status.setText(f"The server did not close cleanly: {message}.")

    def _close_now(self) -> None:
        servers = [s for s in (self._server, self._binding) if s is not None]
        dispatcher = self._dispatcher
        self._server = self._binding = self._dispatcher = None
        self._busy = False
        if dispatcher is not None:
            dispatcher.close("Rigfit is closing")
        for server in servers:
            server.close()
        if servers:
            self.serving_changed.emit(False)

    def _post_status(self, status: ServeStatus) -> None:  # any thread
        # A request that ends while the window is being torn down must not touch a deleted object.
        if shiboken6.isValid(self):
            with contextlib.suppress(RuntimeError):
                self._status_posted.emit(status)

    # ------------------------------------------------------------------------------------------ what is served
    def _sync_model(self, dispatcher: Dispatcher) -> None:
        loaded = self.adapter.loaded_event
        if loaded is not None:
            dispatcher.set_model(_served(loaded))
        elif self.adapter.state in (STATE_STARTING, STATE_LOADING):
            dispatcher.set_model(None, LOADING, "a model is loading in Rigfit")
        else:
            dispatcher.set_model(None, NO_MODEL, "no model is loaded in Rigfit's Run tab")

    def _on_loaded(self, event: object) -> None:
        if self._dispatcher is not None and isinstance(event, P.LoadedEvent):
            self._dispatcher.set_model(_served(event))

    def _on_runner_state(self, state: str) -> None:
        dispatcher = self._dispatcher
        if state == STATE_CLOSED:
            self.shutdown()
        elif dispatcher is None:
            return
        elif state in (STATE_STARTING, STATE_LOADING):
            dispatcher.set_model(None, LOADING, "a model is loading in Rigfit")
        elif state in (STATE_UNLOADING, STATE_IDLE) and dispatcher.status().state in (READY, LOADING):
            dispatcher.set_model(None, NO_MODEL, "no model is loaded in Rigfit's Run tab")

    def _on_runner_error(self, event: object) -> None:
        if self._dispatcher is not None and isinstance(event, P.ErrorEvent) and event.kind == P.ERR_CRASHED:
            self._dispatcher.set_model(
                None, DOWN, f"{event.message}; load the model again in Rigfit's Run tab"
            )

    # ------------------------------------------------------------------------------------------ display
    def _show_status(self, status: object) -> None:
        if not isinstance(status, ServeStatus) or self._dispatcher is None:
            return
        served = f"{status.served} request{'s' if status.served != 1 else ''} served"
        if status.last is not None:
            served += f"; last: {status.last.completion_tokens} tokens at {fmt_tok_s(status.last.gen_tok_s)}"
        if status.outstanding:
            served += f"; {status.outstanding} in progress"
        if status.state == READY and status.model is not None:
            self.status.setText(f"Serving {status.model.id}. {served}.")
            tint(self.status, TEXT_NORMAL)
        else:
            reason = status.message[:1].upper() + status.message[1:]
            self.status.setText(f"{reason}: requests get 503 until a model is loaded. {served}.")
            tint(self.status, TEXT_WARNING if status.state == DOWN else TEXT_MUTED)

    def _refresh(self, *_: object, keep_status: bool = False) -> None:
        serving = self.serving
        editable = not serving and not self._busy
        for widget in (self.port, self.network, self.api_key):
            widget.setEnabled(editable)
        self.url.setText(self._server.url if serving and self._server is not None else "")
        self.copy_button.setEnabled(serving)
        warning = exposure_warning(self.host, self.api_key.text().strip() or None)
        self.warning.setVisible(warning is not None)
        if warning:
            self.warning.setText(f"Warning: {warning[:1].upper() + warning[1:]}.")
            tint(self.warning, TEXT_WARNING)
        if not serving and not self._busy and not keep_status:
            self.status.setText("Off: other apps cannot reach the model.")
            tint(self.status, TEXT_MUTED)


def _served(event: P.LoadedEvent) -> ServedModel:
    return ServedModel(
        id=model_id_for(event.model_path), path=event.model_path, n_ctx=event.n_ctx, created=int(time.time())
    )


__all__ = ["ServePanel"]
