"""Running a llama.cpp RPC server for this machine's devices, in its own process.

An RPC server makes a machine's devices (a GPU, or its CPU) usable by llama.cpp on another machine
over TCP. The server is llama.cpp's own (``ggml_backend_rpc_start_server`` in libggml-rpc), run by
:mod:`app.runner.rpc_server` in a child process, so no extra binary is needed and a crash there
never takes the window down. Asking a server what it exposes is :mod:`app.hardware.rpc`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.core import limits
from app.core.errors import RigfitError
from app.hardware.rpc import (
    DEFAULT_PORT,
    HOST_RE,
    MAX_HOST_CHARS,
    RpcError,
    ServerInfo,
    is_loopback,
    query_server,
)

DEFAULT_HOST = "127.0.0.1"
PREFIX_FROM_SERVER = "rigfit rpc-server: "  # how the server process starts a line about its own problem

# The words llama.cpp's rpc-server prints when it binds anything but 127.0.0.1 (tools/rpc/rpc-server.cpp).
NETWORK_WARNING = (
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    "WARNING: Host ('{host}') is != '127.0.0.1'\n"
    "         Never expose the RPC server to an open network!\n"
    "         This is an experimental feature and is not secure!\n"
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
)


# ---------------------------------------------------------------------------------------------------
# Running a server in its own process


def llama_cache_dir() -> Path:
    """llama.cpp's RPC tensor cache, where its rpc-server keeps it (shared with llama.cpp's own tool)."""
    env = os.environ.get("LLAMA_CACHE")
    if env:
        base = Path(env)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "llama.cpp"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "llama.cpp"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llama.cpp"
    return base / "rpc"


def resolve_bind_host(host: str) -> str:
    """The IPv4 address to bind: llama.cpp's server takes a dotted address only (``inet_addr``)."""
    try:
        ipaddress.IPv4Address(host)
        return host
    except ValueError:
        pass
    try:
        return socket.gethostbyname(host)
    except OSError:
        raise RigfitError(f"cannot bind '{host}': not an IPv4 address or a known host name") from None


def check_port_free(host: str, port: int) -> None:
    """Raise a plain-words error when ``host:port`` cannot be bound (taken, or not this machine's)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # llama.cpp's server sets SO_REUSEADDR too: a port in TIME_WAIT is not "taken".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise RigfitError(
                f"port {port} on {host} is already in use (another rpc-server?); choose another with --port"
            ) from None
        if exc.errno in (99, 49, 10049):  # EADDRNOTAVAIL
            raise RigfitError(f"{host} is not an address of this machine") from None
        if exc.errno == 13:
            raise RigfitError(f"port {port} needs administrator rights; use one above 1023") from None
        raise RigfitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    finally:
        probe.close()


@dataclass(frozen=True)
class ServerOptions:
    """How to start a server: where it listens, which devices it exposes, whether it caches tensors."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    devices: tuple[str, ...] = ()  # () = llama.cpp's choice: every GPU, else the CPU
    cache: bool = False
    threads: int | None = None
    allow_network: bool = False  # needed for any address but loopback

    def validate(self) -> None:
        """Plain-words errors for what the server would refuse or what must be asked for explicitly."""
        limits.PORT_RANGE.check(self.port)
        if len(self.host) > MAX_HOST_CHARS or not HOST_RE.fullmatch(self.host):
            raise RigfitError(f"'{self.host}' is not a host name or address to listen on")
        if not is_loopback(self.host) and not self.allow_network:
            raise RigfitError(
                f"listening on {self.host} lets other machines use this computer's devices with no "
                "password; add --allow-network if this network is yours alone"
            )
        if self.threads is not None:
            limits.THREADS_RANGE.check(self.threads)
        for name in self.devices:
            if not name or any(ch.isspace() or ch == "," for ch in name):
                raise RigfitError(f"'{name}' is not a device name (use names like CUDA0 or CPU)")

    def argv(self) -> list[str]:
        """The arguments of :mod:`app.runner.rpc_server` for these options."""
        args = ["--host", self.host, "--port", str(self.port)]
        if self.devices:
            args += ["--device", ",".join(self.devices)]
        if self.cache:
            args.append("--cache")
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        if self.allow_network:
            args.append("--allow-network")
        return args


def server_command(options: ServerOptions) -> list[str]:
    """How to start the server process: this interpreter with ``-m``, or the frozen app with a switch."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--rigfit-rpc-server", *options.argv()]
    return [sys.executable, "-m", "app.runner.rpc_server", *options.argv()]


class ServerProcess:
    """One RPC server child process: start, read its output, stop (terminate, then kill), reap.

    The output is read on a thread into a ring; ``on_line`` (if given) is called on that thread.
    Used by ``rigfit rpc-server`` and by the window; stopping it never blocks more than a few seconds.
    """

    def __init__(self, options: ServerOptions, on_line: Callable[[str], None] | None = None) -> None:
        options.validate()
        self.options = options
        self._on_line = on_line
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.lines: deque[str] = deque(maxlen=200)

    @property
    def endpoint(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def start(self, env: dict[str, str] | None = None) -> None:
        from app.runner.client import worker_environment

        if self.running:
            return
        try:
            self._proc = subprocess.Popen(
                server_command(self.options),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=worker_environment(env),
                close_fds=True,
            )
        except OSError as exc:
            raise RigfitError(f"could not start the RPC server: {exc}") from None
        self._reader = threading.Thread(target=self._read, name="rigfit-rpc-server-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self._on_line is not None:
                # A broken consumer must not stop the reading.
                with contextlib.suppress(Exception):
                    self._on_line(line)
        proc.stdout.close()

    def wait_serving(self, timeout_s: float = 30.0) -> ServerInfo:
        """Wait until the server answers a query; raises with its own words when it exits first."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                self.join_output()
                raise RigfitError(self.failure_text())
            # llama.cpp prints the transport line just before it binds; until then the port may
            # still be answered by someone else (the child checked that it was free).
            if any(line.startswith("  transport") for line in list(self.lines)):
                try:
                    return query_server(self.endpoint, timeout_s=1.0)
                except RpcError:
                    pass
            if time.monotonic() >= deadline:
                raise RigfitError(f"the RPC server on {self.endpoint} did not start within {timeout_s:g} s")
            time.sleep(0.05)

    def failure_text(self) -> str:
        """Why the server ended: the line of its own that says so, else its exit code."""
        for line in reversed(self.lines):
            if line.startswith(PREFIX_FROM_SERVER):
                return line[len(PREFIX_FROM_SERVER) :]
        tail = [ln for ln in self.lines if ln.strip()][-1:] or [""]
        return f"the RPC server stopped (exit code {self.exit_code}){': ' + tail[0] if tail[0] else ''}"

    def join_output(self, timeout_s: float = 2.0) -> None:
        if self._reader is not None:
            self._reader.join(timeout_s)

    def stop(self, timeout_s: float = 3.0) -> int | None:
        """End the server (SIGTERM, then SIGKILL) and reap it; returns its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.join_output()
        return proc.returncode


def start_local_servers(
    count: int, devices: Sequence[str] = ("CPU",), threads: int | None = 1, first_port: int = 0
) -> list[ServerProcess]:
    """Start ``count`` loopback servers on free ports and wait until each answers (tests and checks)."""
    servers: list[ServerProcess] = []
    try:
        for k in range(count):
            port = first_port + k if first_port else free_port()
            server = ServerProcess(ServerOptions(port=port, devices=tuple(devices), threads=threads))
            server.start()
            servers.append(server)
        for server in servers:
            server.wait_serving()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port the system just said is free (bind to 0); another program may take it first, rarely."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
