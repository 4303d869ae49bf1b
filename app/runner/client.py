"""The parent's side of the worker: start it, send requests, receive events, survive its death.

Used by the CLI (blocking helpers: :meth:`RunnerClient.load_sync`, :meth:`RunnerClient.chat_stream`,
:meth:`RunnerClient.bench_sync`) and by the GUI through a thin Qt adapter (pass ``on_event`` and
``queue_events=False``; the callback runs on the client's reader thread, so the adapter re-emits it as
a queued Qt signal). No Qt here, and llama_cpp is never imported in this process.

When the worker dies (a llama.cpp abort, a segfault, the out-of-memory killer, SIGKILL) the client
reaps it, reports ``the model process stopped (signal N)`` as an error event with the last log lines,
and the next :meth:`RunnerClient.load` starts a fresh worker.

Several users may share one worker (the window's chat and the local server, app/serve): each passes
``on_event`` to :meth:`RunnerClient.chat` or :meth:`RunnerClient.load`, gets that request's events
(and, if the worker dies or shuts down first, one error) on its own callback, and cancels only its
own request with :meth:`RunnerClient.cancel`. The worker answers requests in the order they arrive.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.runner import protocol as P

if TYPE_CHECKING:
    from app.core.plan import Plan

_LOG_RING = 400
_START_TIMEOUT_S = P.START_LIMIT_S
_CLOSE_TIMEOUT_S = 5.0


def worker_command() -> list[str]:
    """How to start the worker: this interpreter with ``-m``, or the frozen binary with a switch."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--rigfit-worker"]
    return [sys.executable, "-m", "app.runner.worker"]


def worker_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: ours, CUDA numbered like NVML, and the app importable."""
    env = dict(os.environ)
    # CUDA's default order is fastest-first; NVML (and the planner's GPU indices) follow PCI bus order.
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if not getattr(sys, "frozen", False):
        root = str(Path(__file__).resolve().parents[2])
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in parts:
            env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    if extra:
        env.update(extra)
    return env


_RPC_FAILURE_MARKS = ("Remote RPC server crashed", "Failed to connect to", "RPC handshake failed")


def rpc_failure(log_tail: Sequence[str], rpc_servers: Sequence[str], timeout_s: float = 1.0) -> str | None:
    """When the worker died because an RPC server went away: which one, in plain words; else ``None``.

    llama.cpp aborts on a lost server without naming it, so each server is asked (briefly) whether
    it still answers; one that does not is the one that was lost.
    """
    if not rpc_servers or not any(mark in line for line in log_tail for mark in _RPC_FAILURE_MARKS):
        return None
    from app.hardware.rpc import RpcBusy, RpcError, query_server

    gone = []
    for endpoint in rpc_servers:
        try:
            query_server(endpoint, timeout_s=timeout_s)
        except RpcBusy:
            continue  # it answers TCP but serves someone else: not the lost one
        except RpcError as exc:
            gone.append(str(exc))
    if gone:
        return f"the RPC server {'; '.join(gone)}. Start it again, then load the model again"
    return (
        f"an RPC server ({', '.join(rpc_servers)}) dropped the connection. "
        "Check the servers, then load the model again"
    )


def describe_exit(code: int | None, log_tail: Sequence[str] = (), rpc_servers: Sequence[str] = ()) -> str:
    """``the model process stopped (signal 9)``, with the reason when the log names one."""
    lost = rpc_failure(log_tail, rpc_servers)
    if lost is not None:
        return f"the model process stopped: {lost}"
    if code is None:
        text = "the model process stopped"
    elif code < 0:
        text = f"the model process stopped (signal {-code})"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = ""
        if name == "SIGKILL":
            text += ": it was killed (by a user, or by the system when memory ran out)"
        elif name == "SIGSEGV":
            text += ": llama.cpp crashed"
    elif code > 0xFFFF:
        text = f"the model process stopped (exit code {code:#x})"
    else:
        text = f"the model process stopped (exit code {code})"
    for line in reversed(log_tail):
        if "GGML_ASSERT" in line or "GGML_ABORT" in line or "what():" in line or "out of memory" in line:
            text += f": {line.strip()}"
            break
    return text


def describe_silence(pid: int, limit_s: float) -> str:
    """Why a worker was ended for its silence, and what to do."""
    return (
        f"the model process (pid {pid}) gave no sign of life for {limit_s:g} s, so Rigfit ended it: "
        "it was stopped (kill -STOP, Ctrl+Z) or frozen, often by a machine out of memory. "
        "Try again; if it recurs, close other programs or pick a smaller model or context"
    )


class RunnerClient:
    """Starts the worker process and talks to it. All public methods may be called from any thread.

    Events go to ``on_event`` (called on the reader thread) and, with ``queue_events``, to a queue
    read by :meth:`next_event` and the blocking helpers.

    ``silence_limit_s``: a worker that sends no heartbeat for this long is ended, and every wait on it
    ends with a ``crashed`` error that says so (default :func:`~app.runner.protocol.silence_limit_s`,
    30 s; ``None`` turns the watchdog off).
    """

    def __init__(
        self,
        on_event: Callable[[P.Event], None] | None = None,
        *,
        queue_events: bool = True,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = _START_TIMEOUT_S,
        silence_limit_s: float | None = -1.0,
    ) -> None:
        self._on_event = on_event
        self._queue: queue.Queue[P.Event] | None = queue.Queue() if queue_events else None
        self._command = list(command) if command else worker_command()
        self._env = dict(env) if env else None
        self._start_timeout_s = start_timeout_s
        # -1: the default (30 s, or RIGFIT_WORKER_SILENCE_S); None: no watchdog.
        self._silence_limit_s = P.silence_limit_s() if silence_limit_s == -1.0 else silence_limit_s
        self._last_heard = 0.0  # monotonic time of the worker's last line
        self._heartbeats = False  # the running worker sends heartbeats (fakes in tests may not)
        self._silenced: int | None = None  # pid of a worker the watchdog ended for its silence
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._ready: P.ReadyEvent | None = None
        self._ready_flag = threading.Event()
        self._start_error: P.ErrorEvent | None = None
        self._expect_exit = False
        self._plans: dict[int, Plan] = {}
        # Requests whose events go to their own callback instead of on_event and the queue.
        self._routes: dict[int, Callable[[P.Event], None]] = {}
        self._routes_lock = threading.Lock()
        self._rpc_servers: tuple[str, ...] = ()  # what the running worker has registered
        self._log: deque[str] = deque(maxlen=_LOG_RING)
        self._log_lock = threading.Lock()
        self.last_exit_code: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def ready_info(self) -> P.ReadyEvent | None:
        """What the running worker reported at start: llama.cpp version, GPU offload, devices."""
        return self._ready

    def start(self) -> P.ReadyEvent:
        """Start a worker unless one is running; wait until it reports ready."""
        with self._lock:
            if self.alive and self._ready is not None:
                return self._ready
            if not self.alive:
                self._spawn()
        return self._await_ready()

    def _spawn(self) -> None:
        """Start a fresh worker process and its reader threads (the caller holds the lock)."""
        self._join_threads()
        self._ready = None
        self._ready_flag.clear()
        self._start_error = None
        self._expect_exit = False
        self._heartbeats = False
        self._silenced = None
        self._last_heard = time.monotonic()
        self._rpc_servers = ()
        try:
            proc = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=worker_environment(self._env),
                close_fds=True,
            )
        except OSError as exc:
            raise P.RunnerError(
                P.ErrorEvent(message=f"could not start the model process: {exc}", kind=P.ERR_START_FAILED)
            ) from None
        self._proc = proc
        ended = threading.Event()  # set by the reader once the process is gone and reaped
        reader = threading.Thread(
            target=self._read_events, args=(proc, ended), name="rigfit-runner-events", daemon=True
        )
        errors = threading.Thread(
            target=self._read_stderr, args=(proc,), name="rigfit-runner-stderr", daemon=True
        )
        self._threads = [reader, errors]
        if self._silence_limit_s is not None:
            self._threads.append(
                threading.Thread(
                    target=self._watch,
                    args=(proc, self._silence_limit_s, ended),
                    name="rigfit-runner-watchdog",
                    daemon=True,
                )
            )
        for thread in self._threads:
            thread.start()

    def _watch(self, proc: subprocess.Popen[bytes], limit_s: float, ended: threading.Event) -> None:
        """End a worker that stopped sending heartbeats: stopped (SIGSTOP), frozen or swapped out.

        Every wait on the worker (CLI and window alike) then ends with an error event that says so,
        instead of waiting forever. Armed once the worker has sent its first heartbeat.
        """
        while not ended.wait(min(1.0, limit_s / 4)):
            if not self._heartbeats or proc is not self._proc:
                continue
            silent_s = time.monotonic() - self._last_heard
            if silent_s > limit_s and proc.poll() is None:
                self._silenced = proc.pid
                proc.kill()
                return

    def _await_ready(self) -> P.ReadyEvent:
        if not self._ready_flag.wait(self._start_timeout_s):
            self.kill()
            raise P.RunnerError(
                P.ErrorEvent(
                    message=f"the model process did not start within {self._start_timeout_s:g} s",
                    kind=P.ERR_START_FAILED,
                    log_tail=self.log_tail(),
                )
            )
        if self._ready is None:
            event = self._start_error or P.ErrorEvent(
                message="the model process did not start", kind=P.ERR_START_FAILED, log_tail=self.log_tail()
            )
            raise P.RunnerError(event)
        return self._ready

    def close(self, timeout_s: float = _CLOSE_TIMEOUT_S) -> None:
        """Ask the worker to shut down; terminate, then kill it if it does not; reap it."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            self._expect_exit = True
            if proc.poll() is None:
                self._send({"type": P.REQ_SHUTDOWN})
                self._close_stdin(proc)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(2.0)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            self._join_threads()
            self._close_pipes(proc)

    def kill(self) -> None:
        """End the worker at once (SIGKILL) and reap it; the next load starts a fresh one."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            self._expect_exit = True
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            self._join_threads()
            self._close_pipes(proc)

    def __enter__(self) -> RunnerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------------

    def load(
        self,
        settings: P.LoadSettings,
        plan: Plan | None = None,
        on_event: Callable[[P.Event], None] | None = None,
    ) -> int:
        """Load a model (starting a worker if none runs). With ``plan``, the ``loaded`` event carries
        the comparison with the planner's prediction. Returns the request id.

        With ``on_event``, this load's events (progress, loaded or error) go to it, on the reader thread.
        """
        settings.validate()
        wanted = tuple(settings.rpc_servers)
        with self._lock:
            # ggml cannot unregister an RPC server: a worker that has others needs replacing.
            if self.alive and wanted[: len(self._rpc_servers)] != self._rpc_servers:
                self.close()
        self.start()
        with self._lock:
            if len(wanted) >= len(self._rpc_servers):
                self._rpc_servers = wanted
        req_id = next(self._ids)
        if plan is not None:
            self._plans[req_id] = plan
        self._send_routed({"type": P.REQ_LOAD, "id": req_id, "settings": settings.to_message()}, on_event)
        return req_id

    def chat(self, request: P.ChatRequest, on_event: Callable[[P.Event], None] | None = None) -> int:
        """Start a chat turn; tokens stream as events. Returns the request id.

        With ``on_event``, this chat's events (token…, then done or error) go to it, on the reader
        thread, and nowhere else; if the worker dies or is shut down first, it gets that error (kind
        ``crashed`` or ``shut_down``). Raises :class:`RunnerError` when no worker runs.
        """
        request.validate()
        req_id = next(self._ids)
        self._send_routed({"type": P.REQ_CHAT, "id": req_id, **request.to_message()}, on_event)
        return req_id

    def cancel(self, req_id: int) -> None:
        """Stop one request: its generation within one token, or skip it if it has not started.

        Unlike :meth:`stop` it leaves other requests alone (another user of this worker may have
        sent some). An unknown or finished id is ignored.
        """
        self._send({"type": P.REQ_CANCEL, "id": req_id})

    def bench(self, pp: int, tg: int, seed: int = 1234) -> int:
        """One llama-bench style repetition on the loaded model. Returns the request id."""
        req_id = next(self._ids)
        self._send({"type": P.REQ_BENCH, "id": req_id, "pp": pp, "tg": tg, "seed": seed})
        return req_id

    def stop(self) -> None:
        """Stop the generation (within one token), the benchmark or the load in progress."""
        self._send({"type": P.REQ_STOP})

    def cancel_load(self) -> None:
        """Cancel a load in progress (llama.cpp's progress callback returns false)."""
        self.stop()

    def unload(self) -> int:
        req_id = next(self._ids)
        self._send({"type": P.REQ_UNLOAD, "id": req_id})
        return req_id

    def abort_for_test(self) -> None:
        """Make the worker call os.abort() (honoured only with RIGFIT_WORKER_TEST=1 in its environment)."""
        self._send({"type": P.REQ_ABORT})

    # -- events -------------------------------------------------------------------------------

    def next_event(self, timeout: float | None = None) -> P.Event:
        """The next event in queue mode; raises ``queue.Empty`` after ``timeout`` seconds."""
        if self._queue is None:
            raise RuntimeError("this client delivers events to its callback only")
        return self._queue.get(timeout=timeout)

    def log_tail(self, n: int = P.LOG_TAIL_LINES) -> tuple[str, ...]:
        """The last lines the worker logged (llama.cpp's log and its standard error)."""
        with self._log_lock:
            return tuple(list(self._log)[-n:])

    # -- blocking helpers (queue mode) -----------------------------------------------------------

    def events_for(self, req_id: int, timeout: float | None = None) -> Iterator[P.Event]:
        """Events of one request as they come; its error, or the worker's death, is raised as RunnerError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pid = self.pid
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                event = self.next_event(left)
            except queue.Empty:
                raise P.RunnerError(
                    P.ErrorEvent(
                        message=f"no answer from the model process within {timeout:g} s", kind="timeout"
                    )
                ) from None
            if (
                isinstance(event, (P.ErrorEvent, P.ExitedEvent))
                and event.pid is not None
                and event.pid != pid
            ):
                continue  # left over from a worker that died before this request
            if isinstance(event, P.ErrorEvent) and (event.id == req_id or event.kind == P.ERR_CRASHED):
                raise P.RunnerError(event)
            if isinstance(event, P.ExitedEvent):
                raise P.RunnerError(
                    P.ErrorEvent(
                        message=describe_exit(event.exit_code, self.log_tail(), self._rpc_servers),
                        kind=P.ERR_CRASHED,
                        log_tail=self.log_tail(),
                        exit_code=event.exit_code,
                        pid=event.pid,
                    )
                )
            if getattr(event, "id", None) == req_id:
                yield event

    def load_sync(
        self,
        settings: P.LoadSettings,
        plan: Plan | None = None,
        on_progress: Callable[[P.ProgressEvent], None] | None = None,
        timeout: float | None = None,
    ) -> P.LoadedEvent:
        """Load and wait; raises RunnerError (message + log tail) when the load fails or is cancelled."""
        req_id = self.load(settings, plan)
        for event in self.events_for(req_id, timeout):
            if isinstance(event, P.ProgressEvent) and on_progress is not None:
                on_progress(event)
            elif isinstance(event, P.LoadedEvent):
                return event
        raise AssertionError("unreachable")  # pragma: no cover

    def chat_stream(
        self, request: P.ChatRequest, timeout: float | None = None
    ) -> Iterator[P.TokenEvent | P.DoneEvent]:
        """Token events as they come, then the done event; raises RunnerError on failure."""
        req_id = self.chat(request)
        for event in self.events_for(req_id, timeout):
            if isinstance(event, P.TokenEvent):
                yield event
            elif isinstance(event, P.DoneEvent):
                yield event
                return

    def bench_sync(self, pp: int, tg: int, seed: int = 1234, timeout: float | None = None) -> P.BenchEvent:
        req_id = self.bench(pp, tg, seed)
        for event in self.events_for(req_id, timeout):
            if isinstance(event, P.BenchEvent):
                return event
        raise AssertionError("unreachable")  # pragma: no cover

    def unload_sync(self, timeout: float | None = None) -> None:
        req_id = self.unload()
        for event in self.events_for(req_id, timeout):
            if isinstance(event, P.UnloadedEvent):
                return

    # -- internals ----------------------------------------------------------------------------

    def _send_routed(self, message: Mapping[str, Any], on_event: Callable[[P.Event], None] | None) -> None:
        if on_event is None:
            self._send(message)
            return
        req_id = int(message["id"])
        with self._routes_lock:
            self._routes[req_id] = on_event
        # Registered first, then checked: a worker that is not reaped yet will report its end to
        # this route; one already reaped never would, so the caller hears it now.
        if not self.alive:
            with self._routes_lock:
                self._routes.pop(req_id, None)
            raise P.RunnerError(
                P.ErrorEvent(message="the model process is not running", kind=P.ERR_NOT_LOADED, id=req_id)
            )
        self._send(message)

    def _route(self, event: P.Event) -> bool:
        """Hand a routed request's event to its callback; ``True`` when it had one."""
        req_id = getattr(event, "id", None)
        if req_id is None or isinstance(event, P.LogEvent):
            return False
        final = isinstance(event, (P.DoneEvent, P.ErrorEvent, P.LoadedEvent))
        with self._routes_lock:
            callback = self._routes.pop(req_id, None) if final else self._routes.get(req_id)
        if callback is None:
            return False
        self._call(callback, event)
        return True

    def _end_routes(self, event: P.ErrorEvent) -> None:
        """The worker is gone: every routed request still waiting gets ``event`` with its own id."""
        with self._routes_lock:
            routes, self._routes = self._routes, {}
        for req_id, callback in routes.items():
            self._call(callback, replace(event, id=req_id))

    @staticmethod
    def _call(callback: Callable[[P.Event], None], event: P.Event) -> None:
        try:
            callback(event)
        except Exception:  # a broken consumer must not kill the reader thread
            import traceback

            traceback.print_exc()

    def _send(self, message: Mapping[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise P.RunnerError(
                P.ErrorEvent(message="the model process is not running", kind=P.ERR_NOT_LOADED)
            )
        data = P.encode(message)
        with self._send_lock:
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                # The worker is gone; the reader thread reports how it ended.
                pass

    def _deliver(self, event: P.Event) -> None:
        if isinstance(event, P.LogEvent):
            with self._log_lock:
                self._log.extend(event.lines)
        if self._on_event is not None:
            self._call(self._on_event, event)
        if self._queue is not None:
            self._queue.put(event)

    def _read_events(self, proc: subprocess.Popen[bytes], ended: threading.Event) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self._last_heard = time.monotonic()
            if raw.startswith(P.HEARTBEAT_LINE_PREFIX):
                self._heartbeats = True
                continue
            try:
                event = P.parse_event_line(raw)
            except (ValueError, TypeError) as exc:
                with self._log_lock:
                    self._log.append(
                        f"rigfit: unreadable message from the model process ({exc}): {raw[:200]!r}"
                    )
                continue
            if isinstance(event, P.ReadyEvent):
                self._ready = event
                self._ready_flag.set()
            elif isinstance(event, P.ErrorEvent) and event.kind == P.ERR_START_FAILED:
                self._start_error = event
            elif isinstance(event, P.LoadedEvent) and event.id is not None:
                plan = self._plans.pop(event.id, None)
                if plan is not None:
                    event = self._with_compare(event, plan)
            if self._route(event):
                continue
            self._deliver(event)
        # The event stream closed: the worker exited (or is about to). Reap it, then say how it ended.
        try:
            code = proc.wait(10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        ended.set()
        for thread in self._threads:
            if thread.name == "rigfit-runner-stderr" and thread is not threading.current_thread():
                thread.join(2.0)
        self.last_exit_code = code
        expected = self._expect_exit or code == 0
        if not expected:
            tail = self.log_tail()
            silenced = self._silenced == proc.pid and self._silence_limit_s is not None
            crash = P.ErrorEvent(
                message=describe_silence(proc.pid, self._silence_limit_s or 0.0)
                if silenced
                else describe_exit(code, tail, self._rpc_servers),
                kind=P.ERR_CRASHED,
                log_tail=tail,
                exit_code=code,
                pid=proc.pid,
            )
            if silenced and self._ready is None:
                self._start_error = replace(crash, kind=P.ERR_START_FAILED)
            self._end_routes(crash)
            self._deliver(crash)
        else:
            self._end_routes(
                P.ErrorEvent(message="the model process was shut down", kind=P.ERR_SHUT_DOWN, pid=proc.pid)
            )
        self._ready_flag.set()  # wake a start() waiting on a worker that never became ready
        self._deliver(P.ExitedEvent(exit_code=code, expected=expected, pid=proc.pid))

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._deliver(P.LogEvent(lines=(line,), source="stderr"))

    @staticmethod
    def _with_compare(event: P.LoadedEvent, plan: Plan) -> P.LoadedEvent:
        from app.runner.compare import compare_load

        try:
            rows = compare_load(event, plan)
        except Exception:  # a comparison problem must not lose the loaded event
            return event
        return replace(event, compare=rows)

    def _join_threads(self) -> None:
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(15.0)
        self._threads = []

    def _close_stdin(self, proc: subprocess.Popen[bytes]) -> None:
        with self._send_lock:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass

    @staticmethod
    def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
