"""The HTTP side of the local server: OpenAI's endpoints over the standard library's ThreadingHTTPServer.

Why the standard library: the server is one process's side door to a model that generates at most a
few hundred tokens per second, for a handful of local clients. ``http.server`` with a thread per
connection does that with no new dependency in a desktop package; server-sent events are plain
chunked writes; a blocking thread per client makes "stop generating when the client goes away" a
simple check between tokens. An async framework (aiohttp, Starlette with uvicorn) would add several
packages and an event loop beside Qt's for no throughput this use can measure (the benchmark in
tests/bench/test_serve_bench.py compares the server with the worker alone).

Every answer is JSON or an event stream; every error, down to a malformed request line, is an OpenAI
error object, never a traceback. The model never runs here: requests go to the worker process
through the :class:`~app.serve.dispatch.Dispatcher`.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import ipaddress
import json
import select
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.core.errors import RigfitError
from app.runner import protocol as P
from app.serve import api
from app.serve.dispatch import READY, Dispatcher, Job, RequestRecord, Unavailable

DEFAULT_HOST = "127.0.0.1"
# Away from the usual local-LLM ports (LM Studio 1234, koboldcpp 5001, SillyTavern 8000, llama-server
# and Open WebUI 8080, Ollama 11434), so Rigfit can run beside them.
DEFAULT_PORT = 8484
MAX_BODY_BYTES = 16 * 1024 * 1024
# How often a request waiting for its turn (or for a slow prompt) checks that its client is still there.
POLL_S = 0.2
# An idle keep-alive connection, or a client that stops reading a stream, is dropped after this.
SOCKET_TIMEOUT_S = 120.0

Log = Callable[[str], None]


class ServeError(RigfitError):
    """The server cannot start: the port is taken, the address is not this computer's..."""


def is_loopback(host: str) -> bool:
    """Whether only programs on this computer can reach ``host``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning for an address other computers can reach (``None`` for loopback)."""
    if is_loopback(host):
        return None
    text = f"listening on {host}: other computers that can reach this one on the network can use the model"
    return text + (" (they need the API key)" if api_key else ", and no API key is set (--api-key)")


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads must not keep a closing window or CLI alive; close() shuts their sockets and
    # joins them (block_on_close) all the same.
    daemon_threads = True
    # SO_REUSEADDR lets a restarted server bind while old connections linger; on Windows it would let
    # two servers share a port, so the port-taken check would never fire there.
    allow_reuse_address = sys.platform != "win32"
    # socketserver's default backlog of 5 resets a burst of clients (a front end opening several
    # connections at once); the kernel caps this at its own somaxconn.
    request_queue_size = 128

    def __init__(self, address: tuple[Any, ...], family: socket.AddressFamily, owner: OpenAIServer) -> None:
        self.address_family = family
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up in DNS (getfqdn), which can stall without a network.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # a client that went away
        self.owner.log(f"internal error while answering {client_address[0]}: {type(exc).__name__}: {exc}")


class OpenAIServer:
    """OpenAI's endpoints for the model the dispatcher serves, on ``host:port`` (port 0: any free one).

    :meth:`start` binds (raising :class:`ServeError` with a one-line reason) and answers on a thread
    of its own; :meth:`close` stops listening, drops open connections (their generations stop) and
    joins every thread. ``log`` receives a line per finished request and per internal error.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        api_key: str | None = None,
        log: Log | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ServeError(f"port {port} does not exist: use a number from 1 to 65535 (0 picks a free one)")
        if api_key is not None and not api_key.strip():
            raise ServeError("the API key is empty: give one, or leave the key out")
        self.dispatcher = dispatcher
        self.host = host
        self.api_key = api_key
        self._requested_port = port
        self._log = log
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._httpd is not None:
            return
        family, address = self._address()
        try:
            httpd = _HTTPServer(address, family, self)
        except OSError as exc:
            raise ServeError(self._bind_problem(exc)) from None
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="rigfit-serve", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        self._httpd = None
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join()
        with httpd.connections_lock:
            connections = list(httpd.connections)
        for conn in connections:
            # Wakes the handler threads: a waiting request sees its client gone and cancels its job.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()  # joins the handler threads

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        return self._httpd.server_port if self._httpd is not None else self._requested_port

    @property
    def url(self) -> str:
        """The base URL clients are given (``…/v1``); a wildcard address is shown as loopback."""
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    def _address(self) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
        try:
            infos = socket.getaddrinfo(
                self.host or None, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except (socket.gaierror, UnicodeError):
            raise ServeError(
                f"cannot listen on '{self.host}': it is not an IP address or a name this computer knows"
            ) from None
        family, _type, _proto, _name, address = infos[0]
        return socket.AddressFamily(family), address

    def _bind_problem(self, exc: OSError) -> str:
        where = f"port {self._requested_port} on {self.host}"
        if exc.errno == errno.EADDRINUSE:
            return f"{where} is already in use (another server?): choose another port"
        if exc.errno == errno.EACCES:
            return f"not allowed to listen on {where}: ports below 1024 need administrator rights; choose a higher one"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"cannot listen on {self.host}: it is not an address of this computer"
        return f"cannot listen on {where}: {exc.strerror or exc}"


class _Handler(BaseHTTPRequestHandler):
    """One connection: requests one after the other (HTTP/1.1 keep-alive), each answered in JSON or SSE."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "rigfit"
    disable_nagle_algorithm = True  # one small write per token must leave at once
    timeout = SOCKET_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)
        self._started = False  # the status line of the current answer has been sent
        self._chunked = True

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # -- routing ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Callable[[str], None]) -> None:
        self._started = False
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            route(path)
        except api.ApiError as exc:
            self._error(exc)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # never a traceback for the client; one line in the log
            self.server.owner.log(
                f"internal error answering {self.command} {path}: {type(exc).__name__}: {exc}"
            )
            if not self._started:
                self._error(api.ApiError(500, "Internal server error.", type=api.SERVER_ERROR))
            self.close_connection = True

    def _get(self, path: str) -> None:
        if path in ("/health", "/v1/health"):
            self._health()
            return
        self._authorize()
        model = self.server.owner.dispatcher.model
        if path in ("/v1/models", "/models"):
            self._json(
                200, api.models_list(model and model.id, model.created if model else 0, model and model.n_ctx)
            )
            return
        for prefix in ("/v1/models/", "/models/"):
            if path.startswith(prefix):
                name = path[len(prefix) :]
                if model is None or name != model.id:
                    raise api.ApiError(404, f"The model '{name}' does not exist.", code="model_not_found")
                self._json(200, api.model_object(model.id, model.created, model.n_ctx))
                return
        self._not_found(path)

    def _post(self, path: str) -> None:
        endpoint = {
            "/v1/chat/completions": api.CHAT,
            "/chat/completions": api.CHAT,
            "/v1/completions": api.COMPLETION,
            "/completions": api.COMPLETION,
        }.get(path)
        if endpoint is None:
            self._discard_body()
            self._not_found(path)
            return
        self._authorize()
        body = api.parse_json(self._body())
        dispatcher = self.server.owner.dispatcher
        model = dispatcher.model
        if model is None:
            status = dispatcher.status()
            raise api.unavailable(_sentence(status.message), _unavailable_code(status.state))
        name = api.check_model(body, model.id)
        call = (
            api.parse_chat(body, name, model.n_ctx)
            if endpoint == api.CHAT
            else api.parse_completion(body, name)
        )
        self._generate(call)

    # -- generation -------------------------------------------------------------------------------

    def _generate(self, call: api.Call) -> None:
        dispatcher = self.server.owner.dispatcher
        arrived = time.monotonic()
        try:
            job = dispatcher.submit(call.request)
        except Unavailable as exc:
            self._error(api.unavailable(_sentence(exc.message), exc.code), retry_after_s=1)
            self._record(None, RequestRecord(call.endpoint, 503, "failed", message=exc.message), arrived)
            return
        reply_id = api.new_id(call.endpoint)
        created = int(time.time())
        record = RequestRecord(call.endpoint, 500, "failed", message="no answer")
        try:
            record = (self._stream if call.stream else self._whole)(job, call, reply_id, created)
        finally:
            self._record(job, record, arrived)

    def _whole(self, job: Job, call: api.Call, reply_id: str, created: int) -> RequestRecord:
        while True:
            event = self._next(job)
            if event is None:
                return RequestRecord(call.endpoint, 499, "cancelled", message="the client went away")
            if isinstance(event, P.ErrorEvent):
                return self._failed(call, api.worker_error(event, call.endpoint))
            if isinstance(event, P.DoneEvent):
                self._json(200, api.response(call, reply_id, created, event))
                return _done_record(call, 200, event)

    def _stream(self, job: Job, call: api.Call, reply_id: str, created: int) -> RequestRecord:
        # The status line waits for the first event: an error before any token (the context is too
        # small, the model stopped) is then still an HTTP error the client can read.
        event = self._next(job)
        if event is None:
            return RequestRecord(call.endpoint, 499, "cancelled", message="the client went away")
        if isinstance(event, P.ErrorEvent):
            return self._failed(call, api.worker_error(event, call.endpoint))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        # HTTP/1.0 has no chunked encoding: the stream ends when the connection closes.
        self._chunked = self.request_version != "HTTP/1.0"
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        self.end_headers()
        self._started = True
        try:
            if call.endpoint == api.CHAT:
                self._chunk(api.sse(api.chunk(call, reply_id, created, role=True)))
            while True:
                if isinstance(event, P.TokenEvent):
                    if event.text:
                        if self._peer_gone():
                            raise ConnectionResetError("the client went away")
                        self._chunk(api.sse(api.chunk(call, reply_id, created, text=event.text)))
                elif isinstance(event, P.DoneEvent):
                    finish = api.finish_reason(event.stop_reason)
                    tail = api.sse(api.chunk(call, reply_id, created, finish=finish))
                    if call.include_usage:
                        tail += api.sse(api.usage_chunk(call, reply_id, created, event))
                    self._chunk(tail + api.sse("[DONE]"))
                    self._end_chunks()
                    return _done_record(call, 200, event)
                elif isinstance(event, P.ErrorEvent):
                    problem = api.worker_error(event, call.endpoint)
                    self._chunk(api.sse(problem.body()))
                    self._end_chunks()
                    return RequestRecord(call.endpoint, 200, "failed", message=problem.message)
                next_event = self._next(job)
                if next_event is None:
                    raise ConnectionResetError("the client went away")
                event = next_event
        except (ConnectionError, TimeoutError, OSError):
            self.server.owner.dispatcher.cancel(job)
            self.close_connection = True
            return RequestRecord(call.endpoint, 200, "cancelled", message="the client went away")

    def _next(self, job: Job) -> P.Event | None:
        """The job's next event; ``None`` when the client went away first (the job is cancelled)."""
        while True:
            event = job.next_event(POLL_S)
            if event is not None:
                return event
            if self._peer_gone():
                self.server.owner.dispatcher.cancel(job)
                self.close_connection = True
                return None

    def _peer_gone(self) -> bool:
        """The client closed its side (a read would return end-of-file), checked without blocking."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _failed(self, call: api.Call, problem: api.ApiError) -> RequestRecord:
        self._error(problem)
        return RequestRecord(call.endpoint, problem.status, "failed", message=problem.message)

    def _record(self, job: Job | None, record: RequestRecord, arrived: float) -> None:
        from dataclasses import replace

        record = replace(record, wall_s=round(time.monotonic() - arrived, 4))
        self.server.owner.dispatcher.finish(job, record)
        self.server.owner.log(describe_record(record, self.client_address[0]))

    # -- pieces -----------------------------------------------------------------------------------

    def _health(self) -> None:
        status = self.server.owner.dispatcher.status()
        body: dict[str, Any] = {
            "status": "ok" if status.state == READY else status.state,
            "model": status.model.id if status.model else None,
            "running": min(status.outstanding, 1),
            "waiting": status.waiting,
            "served": status.served,
        }
        if status.state != READY:
            body["message"] = status.message
        self._json(200 if status.state == READY else 503, body)

    def _authorize(self) -> None:
        key = self.server.owner.api_key
        if key is None:
            return
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
            self._discard_body()
            raise api.ApiError(
                401,
                "Incorrect or missing API key: send it as 'Authorization: Bearer KEY'.",
                code="invalid_api_key",
            )

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise api.ApiError(411, "Send the request body with a Content-Length header.")
        length = self.headers.get("Content-Length")
        if length is None:
            raise api.ApiError(411, "Send the request body with a Content-Length header.")
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise api.ApiError(400, "The Content-Length header is not a number.") from None
        if n < 0 or n > MAX_BODY_BYTES:
            self.close_connection = True
            raise api.ApiError(413, f"The request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB.")
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionResetError("the client closed the connection mid-body")
        return data

    def _discard_body(self) -> None:
        """Read an unwanted body, so the next request on this connection starts where it should."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if 0 <= n <= MAX_BODY_BYTES:
            self.rfile.read(n)
        else:
            self.close_connection = True

    def _not_found(self, path: str) -> None:
        raise api.ApiError(
            404,
            f"Unknown request URL: {self.command} {path}. This server answers GET /v1/models, "
            "POST /v1/chat/completions, POST /v1/completions and GET /health.",
            code="unknown_url",
        )

    def _json(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._started = True
        self.wfile.write(data)

    def _error(self, problem: api.ApiError, retry_after_s: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        if problem.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        self._json(problem.status, problem.body(), headers)

    def _chunk(self, data: bytes) -> None:
        # One write per chunk: header, data and trailer leave in a single segment.
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)

    def _end_chunks(self) -> None:
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")

    # -- BaseHTTPRequestHandler's own answers and logging ------------------------------------------

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed request lines, unknown methods, oversized headers: an OpenAI error object too."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            # An unreadable request line leaves the default, HTTP/0.9, which has no status line or
            # headers; nobody speaks it, and the client should see a status and a JSON body.
            self.request_version = "HTTP/1.0"
        body = api.error_body(
            f"{message or phrase}.", api.INVALID_REQUEST if code < 500 else api.SERVER_ERROR
        )
        data = json.dumps(body).encode("utf-8")
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(data)

    def version_string(self) -> str:
        return self.server_version  # no Python version on the wire

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request comes from _record, in the user's words


def describe_record(record: RequestRecord, client: str = "") -> str:
    """``rigfit: 127.0.0.1 chat 200 ok: 12+32 tokens, 95.1 tok/s, first token 0.08 s, 0.41 s``."""
    text = f"rigfit: {client + ' ' if client else ''}{record.endpoint} {record.status} {record.outcome}"
    if record.outcome == "ok":
        text += f": {record.prompt_tokens}+{record.completion_tokens} tokens"
        if record.gen_tok_s is not None:
            text += f", {record.gen_tok_s:.1f} tok/s"
        if record.ttft_s is not None:
            text += f", first token {record.ttft_s:.2f} s"
        text += f", {record.wall_s:.2f} s"
    elif record.message:
        text += f": {record.message}"
    return text


def _done_record(call: api.Call, status: int, done: P.DoneEvent) -> RequestRecord:
    return RequestRecord(
        endpoint=call.endpoint,
        status=status,
        outcome="cancelled" if done.stop_reason == "stopped" else "ok",
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        gen_tok_s=done.gen_tok_s,
        ttft_s=done.ttft_s,
        finish_reason=api.finish_reason(done.stop_reason),
    )


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else "Unavailable."


def _unavailable_code(state: str) -> str:
    return {"loading": "model_loading", "closed": "shutting_down"}.get(state, "model_not_loaded")
