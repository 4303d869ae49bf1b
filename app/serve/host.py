"""``rigfit serve``'s model: one worker loaded with the user's settings, and loaded again after a crash.

The window does not use this: there the Run tab loads the model and the serve panel tells the
dispatcher what is served. Here nothing else would, so when the worker dies the host starts a fresh
one and loads the same file with the same settings, while the server answers 503 in the meantime.
A model that keeps crashing is not reloaded for ever: after ``MAX_RELOADS`` crashes within
``RELOAD_WINDOW_S`` the server stays up, answering 503 with the reason.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from app.runner import protocol as P
from app.runner.client import RunnerClient
from app.serve.api import model_id_for
from app.serve.dispatch import DEFAULT_MAX_WAITING, DOWN, LOADING, Dispatcher, RequestRecord, ServedModel

MAX_RELOADS = 3
RELOAD_WINDOW_S = 300.0
_LOAD_TIMEOUT_S = 600.0
_RELOAD_GRACE_S = 0.5

Notice = Callable[[str], None]


class Stopped(Exception):
    """The load was given up because the user asked to stop."""


class ModelHost:
    """Owns the worker for ``rigfit serve``: first load, crash detection, reload."""

    def __init__(
        self,
        settings: P.LoadSettings,
        *,
        model_id: str | None = None,
        max_waiting: int = DEFAULT_MAX_WAITING,
        on_record: Callable[[RequestRecord], None] | None = None,
        on_notice: Notice | None = None,
        on_loaded: Callable[[P.LoadedEvent], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.model_id = model_id or model_id_for(settings.model_path)
        self._notice = on_notice or (lambda _line: None)
        self._on_loaded = on_loaded
        self.client = RunnerClient(on_event=self._on_event, queue_events=False, env=env)
        self.dispatcher = Dispatcher(self.client, max_waiting=max_waiting, on_record=on_record)
        self._serving = False  # the first load succeeded: crashes from now on are reloaded
        self._closing = threading.Event()
        self._stop_requested = False  # set by a signal handler, which must not take locks
        self._crashes: deque[float] = deque()
        self._reloader: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> P.ReadyEvent:
        """Start the worker (llama.cpp's import takes a few seconds); raises RunnerError."""
        return self.client.start()

    def load(self, on_progress: Callable[[P.ProgressEvent], None] | None = None) -> P.LoadedEvent:
        """Load the model and serve it; raises RunnerError (the reason and log tail) or :class:`Stopped`."""
        self.dispatcher.set_model(None, LOADING, f"{self.model_id} is loading")
        finished = threading.Event()
        outcome: list[P.LoadedEvent | P.ErrorEvent] = []

        def on_event(event: P.Event) -> None:
            if isinstance(event, P.ProgressEvent):
                if on_progress is not None:
                    on_progress(event)
            elif isinstance(event, (P.LoadedEvent, P.ErrorEvent)):
                outcome.append(event)
                finished.set()

        req_id = self.client.load(self.settings, on_event=on_event)
        deadline = time.monotonic() + _LOAD_TIMEOUT_S
        while not finished.wait(0.2):
            if self._closing.is_set() or self._stop_requested:
                self.client.cancel(req_id)
                raise Stopped()
            if time.monotonic() > deadline:
                raise P.RunnerError(
                    P.ErrorEvent(
                        message=f"the model did not load within {_LOAD_TIMEOUT_S:g} s", kind=P.ERR_LOAD_FAILED
                    )
                )
        result = outcome[0]
        if isinstance(result, P.ErrorEvent):
            self.dispatcher.set_model(None, DOWN, f"{self.model_id} could not be loaded: {result.message}")
            raise P.RunnerError(result)
        self.dispatcher.set_model(
            ServedModel(
                id=self.model_id, path=result.model_path, n_ctx=result.n_ctx, created=int(time.time())
            )
        )
        self._serving = True
        if self._on_loaded is not None:
            self._on_loaded(result)
        return result

    def stop(self) -> None:
        """Ask a load in progress to give up; safe in a signal handler (Ctrl+C): it takes no lock."""
        self._stop_requested = True

    def close(self) -> None:
        """Answer what is outstanding with 503, shut the worker down, wait for a reload to give up."""
        self._closing.set()
        self.dispatcher.close()
        with self._lock:
            reloader = self._reloader
        if reloader is not None:
            reloader.join(30.0)
        self.client.close()

    # -- crashes ----------------------------------------------------------------------------------

    def _on_event(self, event: P.Event) -> None:  # the client's reader thread
        if not (isinstance(event, P.ErrorEvent) and event.kind == P.ERR_CRASHED):
            return
        if not self._serving or self._closing.is_set() or self._stop_requested:
            return
        now = time.monotonic()
        with self._lock:
            if self._reloader is not None and self._reloader.is_alive():
                return  # a crash during a reload: that reload fails and says so
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > RELOAD_WINDOW_S:
                self._crashes.popleft()
            if len(self._crashes) > MAX_RELOADS:
                message = (
                    f"{event.message}; it stopped {len(self._crashes)} times in {RELOAD_WINDOW_S / 60:g} minutes, "
                    "so Rigfit does not load it again (restart rigfit serve)"
                )
                self.dispatcher.set_model(None, DOWN, message)
                self._notice(f"rigfit: {message}")
                return
            self.dispatcher.set_model(None, LOADING, f"{event.message}; the model is loading again")
            self._notice(f"rigfit: {event.message}; loading {Path(self.settings.model_path).name} again")
            self._reloader = threading.Thread(target=self._reload, name="rigfit-serve-reload", daemon=True)
            self._reloader.start()

    def _reload(self) -> None:
        # A SIGTERM to the whole process group (a service manager, `timeout`) ends the worker and
        # this process together: give the signal a moment to reach the main thread before loading.
        time.sleep(_RELOAD_GRACE_S)
        if self._closing.is_set() or self._stop_requested:
            return
        try:
            self.start()
            loaded = self.load()
        except Stopped:
            return
        except P.RunnerError as exc:
            if not self._closing.is_set():
                self.dispatcher.set_model(None, DOWN, f"{self.model_id} could not be loaded again: {exc}")
                self._notice(f"rigfit: loading again failed: {exc}")
            return
        self._notice(f"rigfit: {self.model_id} loaded again in {loaded.load_s:.2f} s; serving")
