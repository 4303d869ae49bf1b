"""The Qt side of the model process: a :class:`RunnerAdapter` owns one :class:`RunnerClient`.

The client calls back on its reader thread; the adapter re-emits every event through a private signal
with a queued connection, so :meth:`RunnerAdapter._dispatch` and every public signal run on the GUI
thread, where the adapter also keeps its state (idle, starting, loading, loaded, generating...). No
method blocks the GUI thread on the worker: starting the worker (importing llama.cpp takes seconds)
runs on a short-lived thread; requests are one line written to a pipe.

At most one request is in flight (the state machine refuses a second load or chat), so events are
matched to requests by state and id. Reports of a worker that has already been replaced (its crash
reported after the next load began) are dropped.

The worker must never outlive the window: :meth:`close` shuts it down (terminate, then kill) and
joins every thread; the Run tab calls it when its window closes, and ``QCoreApplication.aboutToQuit``
calls it as a backstop. The worker also exits by itself when this process dies (its stdin closes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import shiboken6
from PySide6 import QtCore

from app.core.errors import RigfitError
from app.runner import protocol as P
from app.runner.options import unsupported_problem

if TYPE_CHECKING:
    from app.core.plan import Plan
    from app.runner.client import RunnerClient

log = logging.getLogger(__name__)

STATE_IDLE = "idle"  # no model loaded (a worker may be running)
STATE_STARTING = "starting"  # the worker process is starting (llama.cpp is being imported)
STATE_LOADING = "loading"
STATE_CANCELLING = "cancelling"  # a stop was sent to a load in progress
STATE_LOADED = "loaded"
STATE_GENERATING = "generating"
STATE_UNLOADING = "unloading"
STATE_CLOSED = "closed"
BUSY_STATES = frozenset({STATE_STARTING, STATE_LOADING, STATE_CANCELLING, STATE_GENERATING, STATE_UNLOADING})

ClientFactory = Callable[[Callable[[P.Event], None]], "RunnerClient"]


@dataclass(frozen=True)
class _StartFailed:
    """Posted by the starter thread when the worker did not come up."""

    event: P.ErrorEvent
    pid: int | None


def _default_factory(on_event: Callable[[P.Event], None]) -> RunnerClient:
    from app.runner.client import RunnerClient

    return RunnerClient(on_event=on_event, queue_events=False)


class RunnerAdapter(QtCore.QObject):
    """One model process for the window: load, chat, stop, unload, with events as Qt signals.

    ``client_factory(on_event)`` makes the client (tests pass one with a test environment).
    """

    ready = QtCore.Signal(object)  # ReadyEvent: the worker is up (llama.cpp version, devices)
    progress = QtCore.Signal(int)  # load progress, 0-100
    loaded = QtCore.Signal(object)  # LoadedEvent (with compare rows when a plan was given)
    token = QtCore.Signal(object)  # TokenEvent of the current chat
    done = QtCore.Signal(object)  # DoneEvent of the current chat
    error = QtCore.Signal(object)  # ErrorEvent: a failed request, a cancelled load, a crash
    log = QtCore.Signal(object)  # LogEvent
    exited = QtCore.Signal(object)  # ExitedEvent: the worker process is gone (reaped)
    unloaded = QtCore.Signal()
    state_changed = QtCore.Signal(str)

    _posted = QtCore.Signal(object)  # any thread -> GUI thread

    def __init__(
        self, parent: QtCore.QObject | None = None, *, client_factory: ClientFactory | None = None
    ) -> None:
        super().__init__(parent)
        self._factory = client_factory or _default_factory
        self._client: RunnerClient | None = None
        self._state = STATE_IDLE
        self._closing = False  # read by the reader thread: plain bool, set once
        self._starters: list[threading.Thread] = []  # the newest last; all are joined at close
        self._pending: tuple[P.LoadSettings, Plan | None, int] | None = None
        self._load_id: int | None = None
        self._chat_id: int | None = None
        self._ready: P.ReadyEvent | None = None
        self._loaded: P.LoadedEvent | None = None
        self._retired: set[int] = set()  # workers known dead: their late reports are stale
        self._posted.connect(self._dispatch, QtCore.Qt.ConnectionType.QueuedConnection)
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.close)

    # ------------------------------------------------------------------------------------------ reading
    @property
    def state(self) -> str:
        return self._state

    @property
    def busy(self) -> bool:
        return self._state in BUSY_STATES

    @property
    def pid(self) -> int | None:
        """The worker's process id while one runs."""
        client = self._client
        return client.pid if client is not None and client.alive else None

    @property
    def ready_info(self) -> P.ReadyEvent | None:
        """What the worker reported when it started (llama.cpp version, GPU offload, devices)."""
        return self._ready

    @property
    def loaded_event(self) -> P.LoadedEvent | None:
        """The ``loaded`` event of the model loaded now, ``None`` when none is."""
        return self._loaded

    def log_tail(self, n: int = P.LOG_TAIL_LINES) -> tuple[str, ...]:
        return self._client.log_tail(n) if self._client is not None else ()

    def shared_client(self) -> RunnerClient:
        """The client of this window's worker, for the local server (app/serve) to send its requests
        to the same model; their events never reach this adapter (they are routed by request)."""
        if self._state == STATE_CLOSED:
            raise RigfitError("the model process has been shut down")
        return self._ensure_client()

    # ------------------------------------------------------------------------------------------ requests
    def load(self, settings: P.LoadSettings, plan: Plan | None = None, remote_devices: int = 0) -> None:
        """Load a model; starts the worker first when none runs. Progress and the outcome come as signals.

        ``remote_devices``: how many devices the settings' RPC servers add to the GPUs the worker sees
        (the split counts them too).

        Raises :class:`RigfitError` for settings llama.cpp would reject, or while another request runs.
        """
        if self._state == STATE_CLOSED:
            raise RigfitError("the model process has been shut down")
        if self._state not in (STATE_IDLE, STATE_LOADED):
            raise RigfitError(f"cannot load now: the model process is {self._state}")
        settings.validate()
        self._pending = (settings, plan, remote_devices)
        client = self._ensure_client()
        if client.alive and client.ready_info is not None:
            self._send_load()
            return
        if not client.alive and client.pid is not None:
            # The last worker is gone; its crash may not have been reported yet, and must not be
            # taken for the new worker's.
            self._retired.add(client.pid)
        self._set_state(STATE_STARTING)
        self._starters = [t for t in self._starters if t.is_alive()]
        if self._starters and client.alive:
            # This worker is still starting (a load was cancelled while it started): its ready event
            # sends the load.
            return
        starter = threading.Thread(target=self._start_worker, name="rigfit-run-starter", daemon=True)
        self._starters.append(starter)
        starter.start()

    def cancel_load(self) -> None:
        """Cancel a load: at once while the worker starts, through llama.cpp's progress callback after."""
        if self._state == STATE_STARTING:
            # The worker keeps starting (it is reused by the next load); the load is simply not sent.
            self._pending = None
            self._set_state(STATE_IDLE)
            self.error.emit(P.ErrorEvent(message="loading was cancelled", kind=P.ERR_CANCELLED))
        elif self._state == STATE_LOADING and self._client is not None:
            # By id: the local server's requests share this worker and must not be stopped with it.
            if self._load_id is not None:
                self._client.cancel(self._load_id)
            else:
                self._client.cancel_load()
            self._set_state(STATE_CANCELLING)

    def chat(self, request: P.ChatRequest) -> int:
        """Start a chat turn on the loaded model; tokens and the done event come as signals."""
        if self._state != STATE_LOADED or self._client is None:
            raise RigfitError("no model is loaded: load one first")
        request.validate()
        req_id = self._client.chat(request)
        self._chat_id = req_id
        self._set_state(STATE_GENERATING)
        return req_id

    def stop(self) -> None:
        """Stop what runs: the generation (within one token) or a load."""
        if self._state == STATE_GENERATING and self._client is not None:
            if self._chat_id is not None:
                self._client.cancel(self._chat_id)  # only this chat, not the server's requests
            else:
                self._client.stop()
        elif self._state in (STATE_STARTING, STATE_LOADING):
            self.cancel_load()

    def unload(self) -> None:
        """Free the model (the worker keeps running for the next load)."""
        if self._state == STATE_LOADED and self._client is not None:
            self._client.unload()
            self._set_state(STATE_UNLOADING)

    def kill(self) -> None:
        """End the worker at once (SIGKILL); the next load starts a fresh one."""
        if self._client is not None:
            self._client.kill()
        self._join_starters()

    def close(self) -> None:
        """Shut the worker down and join every thread; the adapter takes no request after this."""
        if self._state == STATE_CLOSED:
            return
        self._closing = True
        self._pending = None
        client = self._client
        if client is not None:
            client.close()
        self._join_starters()
        if client is not None:
            client.close()  # a starter that spawned a worker just after the first close
        self._loaded = None
        self._set_state(STATE_CLOSED)

    # ------------------------------------------------------------------------------------------ internals
    def _ensure_client(self) -> RunnerClient:
        if self._client is None:
            self._client = self._factory(self._on_event)
        return self._client

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    def _join_starters(self) -> None:
        for starter in self._starters:
            if starter is not threading.current_thread():
                starter.join(30.0)
        self._starters = []

    def _start_worker(self) -> None:  # starter thread
        client = self._client
        if client is None:
            return
        try:
            client.start()
        except P.RunnerError as exc:
            self._post(_StartFailed(exc.event, client.pid))
        except Exception as exc:  # a bug below must not leave the tab waiting forever
            log.exception("starting the model process failed")
            self._post(
                _StartFailed(
                    P.ErrorEvent(
                        message=f"could not start the model process: {exc}", kind=P.ERR_START_FAILED
                    ),
                    None,
                )
            )

    def _on_event(self, event: P.Event) -> None:  # the client's reader thread
        self._post(event)

    def _post(self, item: object) -> None:
        if self._closing or not shiboken6.isValid(self):
            return
        self._posted.emit(item)

    def _send_load(self) -> None:
        pending, self._pending = self._pending, None
        client = self._client
        if pending is None or client is None:
            return
        settings, plan, remote_devices = pending
        ready = client.ready_info
        n_gpus = (len(ready.gpus) if ready is not None else 0) + remote_devices
        refused = unsupported_problem(settings.split_mode, settings.tensor_split, settings.main_gpu, n_gpus)
        if refused is not None:
            self._set_state(STATE_LOADED if self._loaded is not None else STATE_IDLE)
            self.error.emit(P.ErrorEvent(message=refused.message, kind=P.ERR_BAD_REQUEST, code=refused.code))
            return
        try:
            self._load_id = client.load(settings, plan)
        except P.RunnerError as exc:
            self._set_state(STATE_IDLE)
            self.error.emit(exc.event)
            return
        self._loaded = None  # the worker frees the loaded model before it loads the next
        self._set_state(STATE_LOADING)

    def _stale(self, pid: int | None) -> bool:
        """An event of a worker that has been replaced by a newer one."""
        if pid is None:
            return False
        if pid in self._retired:
            return True
        client = self._client
        return client is not None and client.pid is not None and pid != client.pid

    @QtCore.Slot(object)
    def _dispatch(self, item: object) -> None:  # GUI thread
        if self._state == STATE_CLOSED:
            return
        if isinstance(item, _StartFailed):
            if self._state == STATE_STARTING and not self._stale(item.pid):
                self._pending = None
                self._set_state(STATE_IDLE)
                self.error.emit(item.event)
            return
        if isinstance(item, P.LogEvent):
            self.log.emit(item)
        elif isinstance(item, P.ReadyEvent):
            self._ready = item
            self.ready.emit(item)
            if self._state == STATE_STARTING:
                self._send_load()
        elif isinstance(item, P.ProgressEvent):
            if self._state in (STATE_LOADING, STATE_CANCELLING) and item.id == self._load_id:
                self.progress.emit(item.percent)
        elif isinstance(item, P.LoadedEvent):
            if self._state in (STATE_LOADING, STATE_CANCELLING) and item.id == self._load_id:
                self._loaded = item
                self._set_state(STATE_LOADED)
                self.loaded.emit(item)
        elif isinstance(item, P.TokenEvent):
            if self._state == STATE_GENERATING and item.id == self._chat_id:
                self.token.emit(item)
        elif isinstance(item, P.DoneEvent):
            if item.id == self._chat_id and self._state == STATE_GENERATING:
                self._set_state(STATE_LOADED)
                self.done.emit(item)
        elif isinstance(item, P.UnloadedEvent):
            self._loaded = None
            if self._state == STATE_UNLOADING:
                self._set_state(STATE_IDLE)
            self.unloaded.emit()
        elif isinstance(item, P.ErrorEvent):
            self._on_error(item)
        elif isinstance(item, P.ExitedEvent):
            if self._stale(item.pid):
                return
            self._loaded = None
            if self._state != STATE_STARTING:
                self._set_state(STATE_IDLE)
            self.exited.emit(item)

    def _on_error(self, event: P.ErrorEvent) -> None:
        if event.kind == P.ERR_CRASHED:
            if self._stale(event.pid):
                return
            self._loaded = None
            self._pending = None
            self._set_state(STATE_IDLE)
        elif (
            event.id is not None
            and event.id == self._load_id
            and self._state in (STATE_LOADING, STATE_CANCELLING)
        ):
            self._loaded = None
            self._set_state(STATE_IDLE)
        elif event.id is not None and event.id == self._chat_id and self._state == STATE_GENERATING:
            self._set_state(STATE_IDLE if event.kind == P.ERR_NOT_LOADED else STATE_LOADED)
        elif self._state == STATE_UNLOADING:
            self._set_state(STATE_IDLE)
        self.error.emit(event)
