"""Sharing the one worker between HTTP requests (and the window's chat): admission, order, cancellation.

The model lives once, in the worker process, which answers its requests strictly in the order they
arrive. The dispatcher sends each admitted HTTP request to the worker at once, on the shared
:class:`~app.runner.client.RunnerClient`, with a callback of its own, so the request's tokens come
straight from the client's reader thread to the HTTP thread waiting for them: no GUI thread and no
extra hop on the token path. The worker's queue is the queue; the dispatcher bounds it (a request
beyond ``1 + max_waiting`` outstanding ones gets a 503) and cancels one request by id when its
client goes away, which leaves the other requests and the window's chat alone.

The dispatcher does not load models. Its owner says what is served (:meth:`Dispatcher.set_model`):
``rigfit serve`` after its load and reload, the window when the Run tab loads or unloads. When the
worker dies, the waiting requests get a 503 and the dispatcher refuses new ones until the owner
serves a model again.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.runner import protocol as P

if TYPE_CHECKING:
    from app.runner.client import RunnerClient

# Waiting requests beyond the running one. A chat front end sends one request at a time per user;
# a longer queue only makes clients wait minutes before they learn the server is busy.
DEFAULT_MAX_WAITING = 16

READY = "ready"
LOADING = "loading"
NO_MODEL = "no_model"
DOWN = "down"  # the worker stopped; the owner may be loading the model again
CLOSED = "closed"


@dataclass(frozen=True)
class ServedModel:
    """What the server answers with: the name clients use, the GGUF, its context, when it was loaded."""

    id: str
    path: str
    n_ctx: int
    created: int


@dataclass(frozen=True)
class RequestRecord:
    """One finished HTTP request, for the log line and the window's counters."""

    endpoint: str  # "chat" or "completion"
    status: int  # the HTTP status the client got (200 for a stream that started)
    outcome: str  # "ok", "cancelled" (the client went away), "failed"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    gen_tok_s: float | None = None
    ttft_s: float | None = None  # from the worker taking the request to its first token
    wall_s: float = 0.0  # from the request's arrival to its last byte, queueing included
    finish_reason: str | None = None
    message: str = ""


@dataclass(frozen=True)
class ServeStatus:
    """A snapshot for ``/health``, the CLI and the window."""

    state: str  # READY, LOADING, NO_MODEL, DOWN, CLOSED
    model: ServedModel | None
    message: str  # why it is not READY, in the user's words
    outstanding: int  # HTTP requests the worker has and has not finished (running + waiting)
    served: int  # requests answered in full
    failed: int  # requests answered with an error after they were admitted, or cut by the client
    refused: int  # requests turned away with 503 before they reached the worker
    last: RequestRecord | None  # the last request answered in full

    @property
    def waiting(self) -> int:
        return max(0, self.outstanding - 1)


class Unavailable(Exception):
    """The request cannot be taken now (503): ``code`` is ``model_not_loaded``, ``queue_full``..."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Job:
    """One admitted request: its events arrive on :attr:`events` (token…, then done or error)."""

    def __init__(self, dispatcher: Dispatcher, model: ServedModel) -> None:
        self.model = model
        self.req_id: int | None = None
        self.events: queue.Queue[P.Event] = queue.Queue()
        self.cancelled = False
        self.finished = False  # the worker has answered it (done or error)
        self.arrived_s = time.monotonic()
        self._dispatcher = dispatcher

    def feed(self, event: P.Event) -> None:
        """The client's reader thread hands over this request's events."""
        if isinstance(event, (P.DoneEvent, P.ErrorEvent)):
            self._dispatcher._ended(self, event)
        self.events.put(event)

    def next_event(self, timeout_s: float) -> P.Event | None:
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None


class Dispatcher:
    """Admits HTTP requests to the shared worker, in order, with a bound; see the module's note."""

    def __init__(
        self,
        client: RunnerClient,
        *,
        max_waiting: int = DEFAULT_MAX_WAITING,
        on_record: Callable[[RequestRecord], None] | None = None,
        on_status: Callable[[ServeStatus], None] | None = None,
    ) -> None:
        if max_waiting < 0:
            raise ValueError("max_waiting must be 0 or more")
        self.client = client
        self.max_waiting = max_waiting
        self._on_record = on_record
        self._on_status = on_status
        self._lock = threading.Lock()
        self._state = NO_MODEL
        self._message = "no model is loaded"
        self._model: ServedModel | None = None
        self._jobs: set[Job] = set()  # sent to the worker, not answered yet
        self._served = 0
        self._failed = 0
        self._refused = 0
        self._last: RequestRecord | None = None

    # -- what is served ---------------------------------------------------------------------------

    def set_model(self, model: ServedModel | None, state: str | None = None, message: str = "") -> None:
        """Serve ``model`` (``None``: nothing, with ``state`` LOADING, NO_MODEL or DOWN and why)."""
        with self._lock:
            if self._state == CLOSED:
                return
            self._model = model
            self._state = READY if model is not None else (state or NO_MODEL)
            self._message = "" if model is not None else (message or _DEFAULT_MESSAGES[self._state])
        self._status_changed()

    @property
    def model(self) -> ServedModel | None:
        return self._model

    def status(self) -> ServeStatus:
        with self._lock:
            return ServeStatus(
                state=self._state,
                model=self._model,
                message=self._message,
                outstanding=len(self._jobs),
                served=self._served,
                failed=self._failed,
                refused=self._refused,
                last=self._last,
            )

    # -- requests ---------------------------------------------------------------------------------

    def submit(self, request: P.ChatRequest) -> Job:
        """Send ``request`` to the worker behind those already there; raises :class:`Unavailable`."""
        with self._lock:
            model = self._model
            if self._state != READY or model is None:
                self._refused += 1
                raise Unavailable(self._message, _CODES.get(self._state, "model_not_loaded"))
            if len(self._jobs) >= 1 + self.max_waiting:
                self._refused += 1
                raise Unavailable(
                    f"the server is busy: {len(self._jobs)} requests are running or waiting; try again shortly",
                    "queue_full",
                )
            job = Job(self, model)
            self._jobs.add(job)
            try:
                # Under the lock: requests reach the worker in the order they were admitted.
                job.req_id = self.client.chat(request, on_event=job.feed)
            except P.RunnerError as exc:
                self._jobs.discard(job)
                self._refused += 1
                self._state, self._model = DOWN, None
                self._message = f"{exc}; the model is not loaded"
                raise Unavailable(self._message, "model_not_loaded") from None
        self._status_changed()
        return job

    def cancel(self, job: Job) -> None:
        """The client went away: stop its generation within a token, or skip it if it waits.

        Its place in the queue is free at once: a waiting request the worker will skip, or a running
        one it stops within a token, is no reason to turn the next client away.
        """
        with self._lock:
            if job.finished or job.cancelled or job.req_id is None:
                return
            job.cancelled = True
            self._jobs.discard(job)
        with contextlib.suppress(P.RunnerError):  # no worker: nothing runs that could be stopped
            self.client.cancel(job.req_id)

    def finish(self, job: Job | None, record: RequestRecord) -> None:
        """The HTTP side is done with a request: count it and tell the owner (log line, window).

        ``job`` is ``None`` for a request refused at :meth:`submit` (already counted there).
        """
        with self._lock:
            if job is not None:
                if record.outcome == "ok":
                    self._served += 1
                    self._last = record
                else:
                    self._failed += 1
        if self._on_record is not None:
            self._on_record(record)
        self._status_changed()

    def close(self, message: str = "the server is shutting down") -> None:
        """Refuse new requests and end the ones still outstanding (their clients get a 503)."""
        with self._lock:
            self._state, self._model, self._message = CLOSED, None, message
            jobs = list(self._jobs)
        for job in jobs:
            self.cancel(job)
            job.events.put(P.ErrorEvent(message=message, kind=P.ERR_SHUT_DOWN, id=job.req_id))
        self._status_changed()

    # -- internals --------------------------------------------------------------------------------

    def _ended(self, job: Job, event: P.DoneEvent | P.ErrorEvent) -> None:  # the reader thread
        changed = False
        with self._lock:
            job.finished = True
            self._jobs.discard(job)
            if isinstance(event, P.ErrorEvent) and event.kind == P.ERR_CRASHED and self._state == READY:
                self._state, self._model = DOWN, None
                self._message = event.message
                changed = True
        if changed:
            self._status_changed()

    def _status_changed(self) -> None:
        if self._on_status is not None:
            self._on_status(self.status())


_DEFAULT_MESSAGES = {
    NO_MODEL: "no model is loaded",
    LOADING: "the model is loading",
    DOWN: "the model process stopped",
    READY: "",
    CLOSED: "the server is shutting down",
}
_CODES = {
    LOADING: "model_loading",
    NO_MODEL: "model_not_loaded",
    DOWN: "model_not_loaded",
    CLOSED: "shutting_down",
}
