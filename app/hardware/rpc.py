"""Remote devices: asking a llama.cpp RPC server what it exposes, and adding its devices to a rig.

An RPC server (``rigfit rpc-server``, or llama.cpp's own ``rpc-server``) makes a machine's devices
usable by llama.cpp on another machine over TCP. To Rigfit such a device is a :class:`Gpu` of the
rig with a :class:`Remote`: where it lives (the server's ``HOST:PORT``) and the link to it.

Asking a server (:func:`query_server`) speaks llama.cpp's RPC protocol in Python, three commands:
HELLO, DEVICE_COUNT and GET_DEVICE_MEMORY. It is written here rather than called in libggml-rpc
because llama.cpp's client aborts the whole process when a server cannot be reached and has no
timeouts, and no Python package speaks this protocol. The wire format (ggml-rpc.cpp, protocol
7.0.0, the version llama-cpp-python 0.3.36 vendors): a request is ``cmd:u8, size:u64, payload``, a
reply ``size:u64, payload``, little-endian packed structs. The tests run it against the real server.

The protocol has no device names: a server answers with each device's free and total memory only.
A spec can say what the device is: ``HOST:PORT=RTX 4090`` (a catalog GPU: its speed figures) or
``HOST:PORT=CPU`` (a CPU-backed server), and the link: ``@10GbE``.

A server serves one client at a time: while a model is loaded through it, another client's HELLO
waits. :func:`query_server` reports that as :class:`RpcBusy` after its timeout, never hangs.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from app.core.errors import RigfitError
from app.core.limits import MAX_GPUS
from app.core.rig import Gpu, NetworkLink, Remote, Rig
from app.core.rpc import DEFAULT_LINK, NETWORK_LINKS, parse_link
from app.core.rules import RuleError, rpc_unreachable

DEFAULT_PORT = 50052
QUERY_TIMEOUT_S = 3.0
# A host name (RFC 1035: at most 253 characters of letters, digits, '-', '.'; '_' as some local
# names have) or an IPv4 address. Anything else (a NUL, non-ASCII or non-UTF-8 bytes, a 5000-character
# name) would fail in getaddrinfo's IDNA codec or C string, not as "unknown host".
MAX_HOST_CHARS = 253
HOST_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
# Each server adds at least one device; a rig holds at most this many (app/core/limits.py).
MAX_RPC_SERVERS = MAX_GPUS

# llama.cpp's RPC protocol (ggml-rpc.h / ggml-rpc.cpp)
PROTO_MAJOR = 7
PROTO_MINOR = 0
_CMD_GET_DEVICE_MEMORY = 11
_CMD_HELLO = 14
_CMD_DEVICE_COUNT = 15
_CONN_CAPS_SIZE = 24  # transport.h: RPC_CONN_CAPS_SIZE; all zero = plain TCP, no RDMA upgrade
_MIB = 1024 * 1024


class RpcError(RigfitError):
    """A server could not be asked: unreachable, busy or speaking another protocol version."""


class RpcUnreachable(RpcError):
    pass


class RpcBusy(RpcError):
    pass


class RpcProtocolMismatch(RpcError):
    pass


# ---------------------------------------------------------------------------------------------------
# Endpoints


@dataclass(frozen=True)
class Endpoint:
    """``HOST:PORT`` of an RPC server, as llama.cpp's ``--rpc`` takes it."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)


def _quote(text: str, n: int = 60) -> str:
    """What the user gave, quoted, and cut short: a 5000-character host must not hide the reason."""
    return f"'{text}'" if len(text) <= n else f"'{text[: n - 3]}...'"


def parse_endpoint(text: str) -> Endpoint:
    """``"192.168.1.20:50052"`` → an :class:`Endpoint`; a plain-words error for anything else.

    llama.cpp splits at the first ``:`` and connects over IPv4, so IPv6 addresses are refused here.
    """
    raw = text.strip()
    if raw.startswith("rpc://"):
        raw = raw[len("rpc://") :]
    raw = raw.rstrip("/")
    host, sep, port_text = raw.partition(":")
    if not sep or not host or not port_text:
        raise RigfitError(f"{_quote(text)} is not HOST:PORT (for example 192.168.1.20:50052)")
    if ":" in port_text or host.startswith("["):
        raise RigfitError(
            f"{_quote(text)}: llama.cpp's RPC backend speaks IPv4 only; give an IPv4 address or a name"
        )
    # ASCII digits only: str.isdigit() takes '²' (int() refuses it) and '５' (a port nobody meant).
    digits = port_text.isascii() and port_text.isdigit() and len(port_text.lstrip("0")) <= 5
    if not digits or not 1 <= int(port_text) <= 65535:
        raise RigfitError(f"{_quote(text)}: the port must be a number from 1 to 65535")
    if len(host) > MAX_HOST_CHARS or not HOST_RE.fullmatch(host):
        raise RigfitError(f"{_quote(text)}: {_quote(host)} is not a host name or address")
    return Endpoint(host=host, port=int(port_text))


def check_server_count(n: int, text: str) -> None:
    if n > MAX_RPC_SERVERS:
        raise RigfitError(
            f"bad --rpc {_quote(text)}: {n} servers; at most {MAX_RPC_SERVERS} (each is at least one device)"
        )


def parse_endpoints(text: str) -> tuple[Endpoint, ...]:
    """``--rpc A:1,B:2`` → endpoints in order, each once (llama.cpp registers each server once)."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise RigfitError(f"bad --rpc {_quote(text)}: give HOST:PORT entries separated by commas")
    check_server_count(len(parts), text)
    out: list[Endpoint] = []
    for part in parts:
        endpoint = parse_endpoint(part)
        if endpoint in out:
            raise RigfitError(f"bad --rpc {_quote(text)}: {endpoint} is given twice")
        out.append(endpoint)
    return tuple(out)


def is_loopback(host: str) -> bool:
    """True for 127.x.x.x and ``localhost``: a server there is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------
# Asking a server


@dataclass(frozen=True)
class RemoteDevice:
    """One device an RPC server exposes, with its memory as the server reports it (MiB)."""

    endpoint: str
    index: int  # the device's number on that server
    free_mib: float
    total_mib: float


@dataclass(frozen=True)
class ServerInfo:
    """What a server answered: its protocol version, its devices, how long the round trips took."""

    endpoint: str
    version: tuple[int, int, int]
    devices: tuple[RemoteDevice, ...]
    rtt_ms: float  # the mean of the command round trips after HELLO


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _command(sock: socket.socket, cmd: int, payload: bytes, reply_size: int) -> bytes:
    sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv_exact(sock, 8))
    if size != reply_size:
        raise RpcProtocolMismatch(f"unexpected reply size {size} to command {cmd} (expected {reply_size})")
    return _recv_exact(sock, size)


def query_server(endpoint: Endpoint | str, timeout_s: float = QUERY_TIMEOUT_S) -> ServerInfo:
    """Connect, say HELLO, ask for every device's memory, disconnect; at most about ``timeout_s``.

    Raises :class:`RpcUnreachable` (nothing listens, no route, unknown name, timeout while
    connecting), :class:`RpcBusy` (connected, but no HELLO answer within the timeout: the server is
    serving another client, such as a loaded model), :class:`RpcProtocolMismatch`.
    """
    ep = parse_endpoint(endpoint) if isinstance(endpoint, str) else endpoint
    deadline = time.monotonic() + timeout_s
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout_s)
    except socket.gaierror:
        raise RpcUnreachable(f"{ep}: unknown host '{ep.host}'") from None
    except TimeoutError:
        raise RpcUnreachable(
            f"{ep}: no answer within {timeout_s:g} s (is the machine on this network?)"
        ) from None
    except ConnectionRefusedError:
        raise RpcUnreachable(f"{ep}: nothing is listening there (is the RPC server running?)") from None
    except OSError as exc:
        raise RpcUnreachable(f"{ep}: {exc.strerror or exc}") from None
    with sock:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            hello = _command(sock, _CMD_HELLO, bytes(_CONN_CAPS_SIZE), 4 + _CONN_CAPS_SIZE)
        except TimeoutError:
            raise RpcBusy(
                f"{ep}: the server accepted the connection but did not answer within {timeout_s:g} s "
                "(it serves one client at a time: is a model loaded through it?)"
            ) from None
        except (ConnectionError, OSError) as exc:
            raise RpcProtocolMismatch(
                f"{ep}: the connection closed during the greeting ({exc}); "
                "is it a llama.cpp RPC server of a matching version?"
            ) from None
        major, minor, patch = hello[0], hello[1], hello[2]
        if major != PROTO_MAJOR or minor > PROTO_MINOR:
            raise RpcProtocolMismatch(
                f"{ep}: the server speaks RPC protocol {major}.{minor}.{patch}; this llama.cpp speaks "
                f"{PROTO_MAJOR}.{PROTO_MINOR}.x (run the same llama.cpp version on both machines)"
            )
        try:
            t0 = time.perf_counter()
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            (count,) = struct.unpack("<I", _command(sock, _CMD_DEVICE_COUNT, b"", 4))
            trips = 1
            devices = []
            for index in range(count):
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                free, total = struct.unpack(
                    "<QQ", _command(sock, _CMD_GET_DEVICE_MEMORY, struct.pack("<I", index), 16)
                )
                trips += 1
                devices.append(RemoteDevice(str(ep), index, round(free / _MIB, 2), round(total / _MIB, 2)))
            rtt_ms = (time.perf_counter() - t0) * 1000.0 / trips
        except TimeoutError:
            raise RpcUnreachable(f"{ep}: the server stopped answering") from None
        except (ConnectionError, OSError) as exc:
            raise RpcUnreachable(f"{ep}: the connection broke ({exc})") from None
    return ServerInfo(str(ep), (major, minor, patch), tuple(devices), round(rtt_ms, 3))


def wait_until_serving(endpoint: Endpoint | str, timeout_s: float = 30.0) -> ServerInfo:
    """Query until the server answers (a server just started needs a moment to listen)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return query_server(
                endpoint, timeout_s=min(QUERY_TIMEOUT_S, max(0.2, deadline - time.monotonic()))
            )
        except RpcUnreachable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------
# Remote devices in a rig


@dataclass(frozen=True)
class RpcSpec:
    """``HOST:PORT[=WHAT][@LINK]``: a server, what its devices are, and the link to it.

    ``what`` is a catalog GPU name (its speed figures are used; memory comes from the server),
    ``CPU`` for a CPU-backed server, or ``None`` (an unnamed GPU).
    """

    endpoint: Endpoint
    what: str | None = None
    link: NetworkLink | None = None

    def describe(self) -> str:
        text = f"rpc://{self.endpoint}"
        if self.what:
            text += f"={self.what}"
        if self.link is not None:
            text += f"@{self.link.name}"
        return text


def parse_spec(text: str) -> RpcSpec:
    """``10.0.0.5:50052``, ``rpc://10.0.0.5:50052=RTX 4090@10GbE``, ``127.0.0.1:50052=CPU``."""
    raw = text.strip()
    if raw.startswith("rpc://"):
        raw = raw[len("rpc://") :]
    body, at, link_text = raw.partition("@")
    address, eq, what = body.partition("=")
    endpoint = parse_endpoint(address)
    link = parse_link(link_text) if at else None
    name = " ".join(what.split()) if eq else None
    if eq and not name:
        raise RigfitError(
            f"{_quote(text)}: say what the device is after '=' (a GPU name such as RTX 4090, or CPU)"
        )
    return RpcSpec(endpoint=endpoint, what=name, link=link)


def parse_specs(text: str) -> tuple[RpcSpec, ...]:
    """``--rpc A:1,B:2=CPU`` → specs in order, each server once."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise RigfitError(f"bad --rpc {_quote(text)}: give HOST:PORT entries separated by commas")
    check_server_count(len(parts), text)
    specs: list[RpcSpec] = []
    for part in parts:
        spec = parse_spec(part)
        if any(s.endpoint == spec.endpoint for s in specs):
            raise RigfitError(f"bad --rpc {_quote(text)}: {spec.endpoint} is given twice")
        specs.append(spec)
    return tuple(specs)


def default_link(endpoint: Endpoint) -> NetworkLink:
    """Loopback for a server on this machine, else gigabit Ethernet (the common case, and the slow one)."""
    return NETWORK_LINKS["loopback" if endpoint.is_loopback else DEFAULT_LINK]


def remote_devices(spec: RpcSpec, info: ServerInfo) -> tuple[Gpu, ...]:
    """The rig devices for a server's answer: memory from the server, speed figures from ``spec.what``."""
    from app.hardware.catalog import find_gpu

    link = spec.link or default_link(spec.endpoint)
    out = []
    for dev in info.devices:
        suffix = f"/{dev.index}" if len(info.devices) > 1 else ""
        where = f"{spec.endpoint}{suffix}"
        free = min(dev.free_mib, dev.total_mib)
        if spec.what is not None and spec.what.lower() == "cpu":
            gpu = Gpu(
                index=0,
                name=f"CPU @ {where}",
                vram_total_mib=dev.total_mib,
                vram_free_mib=free,
                vendor="cpu",
                overhead_mib=0.0,
                remote=Remote(link=link, endpoint=str(spec.endpoint), device=dev.index, backend="cpu"),
            )
        elif spec.what is not None:
            entry = find_gpu(spec.what)
            gpu = replace(
                entry.to_gpu(0),
                name=f"{entry.name} @ {where}",
                vram_total_mib=dev.total_mib,
                vram_free_mib=free,
                planned=False,
                remote=Remote(link=link, endpoint=str(spec.endpoint), device=dev.index),
            )
        else:
            gpu = Gpu(
                index=0,
                name=f"RPC device @ {where}",
                vram_total_mib=dev.total_mib,
                vram_free_mib=free,
                remote=Remote(link=link, endpoint=str(spec.endpoint), device=dev.index),
            )
        out.append(gpu)
    return tuple(out)


@dataclass(frozen=True)
class ServerAnswer:
    """One server of an ``--rpc`` list: its devices, or why it could not be asked."""

    spec: RpcSpec
    info: ServerInfo | None
    error: str | None


def ask_servers(
    specs: Sequence[RpcSpec],
    timeout_s: float = QUERY_TIMEOUT_S,
    query: Callable[[Endpoint, float], ServerInfo] | None = None,
) -> tuple[ServerAnswer, ...]:
    """Ask every server, all at once (one thread each), each within ``timeout_s``."""
    from concurrent.futures import ThreadPoolExecutor

    ask = query or (lambda ep, t: query_server(ep, t))

    def one(spec: RpcSpec) -> ServerAnswer:
        try:
            return ServerAnswer(spec, ask(spec.endpoint, timeout_s), None)
        except RpcError as exc:
            return ServerAnswer(spec, None, str(exc))

    if not specs:
        return ()
    with ThreadPoolExecutor(max_workers=min(8, len(specs)), thread_name_prefix="rigfit-rpc-query") as pool:
        return tuple(pool.map(one, specs))


def with_remote_devices(rig: Rig, devices: Sequence[Gpu]) -> Rig:
    """The rig with ``devices`` added after its local GPUs (and after the remote ones it has)."""
    gpus = [*rig.gpus, *devices]
    local = [g for g in gpus if g.remote is None]
    remote = [g for g in gpus if g.remote is not None]
    # Local GPUs keep their index (NVML's); remote ones are numbered after them.
    ordered = (*local, *(g.with_index(len(local) + k) for k, g in enumerate(remote)))
    size = len(ordered)
    topology = rig.topology
    if topology and len(topology) != size:
        topology = tuple(
            tuple(
                (topology[i][j] if i < len(topology) and j < len(topology) else ("X" if i == j else "NET"))
                for j in range(size)
            )
            for i in range(size)
        )
    name = rig.name
    added = " + ".join(describe_remote(g) for g in devices)
    if added:
        name = f"{name} + {added}" if name else added
    return replace(rig, gpus=ordered, topology=topology, name=name)


def describe_remote(gpu: Gpu) -> str:
    """A rig-expression term for a remote device: ``rpc(RTX 4090 @ 1GbE)``, ``rpc://h:p=CPU@loopback``."""
    remote = gpu.remote
    if remote is None:
        return gpu.name
    if remote.endpoint is None:
        base = gpu.name.split(" @ ")[0]
        return f"rpc({base} @ {remote.link.name})"
    if remote.backend == "cpu":
        what = "=CPU"
    elif gpu.catalog_id:
        what = "=" + gpu.name.split(" @ ")[0]
    else:
        what = ""
    return f"rpc://{remote.endpoint}{what}@{remote.link.name}"


def add_rpc_servers(rig: Rig, specs: Sequence[RpcSpec], timeout_s: float = QUERY_TIMEOUT_S) -> Rig:
    """The rig plus every server's devices (asked now); raises naming the servers that did not answer."""
    answers = ask_servers(specs, timeout_s)
    failed = [a.error for a in answers if a.error]
    if failed:
        raise RuleError(rpc_unreachable("; ".join(str(f) for f in failed)))
    devices: list[Gpu] = []
    for answer in answers:
        assert answer.info is not None
        if not answer.info.devices:
            raise RigfitError(f"{answer.spec.endpoint}: the server exposes no devices")
        found = remote_devices(answer.spec, answer.info)
        if answer.spec.endpoint.is_loopback and rig.host.ram_bandwidth_gbps:
            # A CPU server on this computer reads this computer's RAM, whose bandwidth was measured.
            found = tuple(
                replace(d, bandwidth_gbps=rig.host.ram_bandwidth_gbps) if d.on_cpu else d for d in found
            )
        devices.extend(found)
    return with_remote_devices(rig, devices)
