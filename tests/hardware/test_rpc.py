"""Remote devices: RPC specs, the Python query client against real llama.cpp servers and fakes,
remote devices in rig expressions and rig files."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.core.errors import RigfitError
from app.core.rpc import NETWORK_LINKS
from app.hardware.catalog import parse_rig_expression
from app.hardware.rigfile import rig_from_toml, rig_to_toml
from app.hardware.rpc import (
    Endpoint,
    RpcBusy,
    RpcProtocolMismatch,
    RpcUnreachable,
    add_rpc_servers,
    parse_endpoint,
    parse_spec,
    parse_specs,
    query_server,
)
from app.runner.rpc import free_port


# ------------------------------------------------------------------------------------------ specs
def test_endpoints_and_specs_parse() -> None:
    assert parse_endpoint("10.0.0.5:50052") == Endpoint("10.0.0.5", 50052)
    assert parse_endpoint("rpc://box.lan:1") == Endpoint("box.lan", 1)
    spec = parse_spec("rpc://10.0.0.5:50052=RTX 4090@10GbE")
    assert spec.endpoint == Endpoint("10.0.0.5", 50052)
    assert spec.what == "RTX 4090" and spec.link == NETWORK_LINKS["10GbE"]
    assert parse_spec("127.0.0.1:50052=CPU").what == "CPU"
    assert [s.endpoint.port for s in parse_specs("a:1, b:2=CPU")] == [1, 2]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("10.0.0.5", "HOST:PORT"),
        ("10.0.0.5:0", "port must be"),
        ("10.0.0.5:70000", "port must be"),
        ("10.0.0.5:x", "port must be"),
        ("[::1]:50052", "IPv4"),
        ("fe80::1:50052", "IPv4"),
        ("10.0.0.5:50052=", "say what the device is"),
        ("10.0.0.5:50052@9000 baud", "unknown network link"),
    ],
)
def test_bad_specs_say_why(text: str, words: str) -> None:
    with pytest.raises(RigfitError, match=words):
        parse_spec(text)


def test_a_server_given_twice_is_refused() -> None:
    with pytest.raises(RigfitError, match="given twice"):
        parse_specs("a:1,a:1")


# ------------------------------------------------------------------------------------------ query
def test_query_real_cpu_servers(rpc_cpu_servers: list[Any]) -> None:
    for server in rpc_cpu_servers:
        info = query_server(server.endpoint)
        assert info.version[0] == 7
        assert len(info.devices) == 1
        device = info.devices[0]
        assert device.endpoint == server.endpoint and device.index == 0
        assert 0 < device.free_mib <= device.total_mib


def test_nothing_listening_is_unreachable() -> None:
    with pytest.raises(RpcUnreachable, match="nothing is listening"):
        query_server(f"127.0.0.1:{free_port()}", timeout_s=2.0)


def test_unknown_host_is_unreachable() -> None:
    with pytest.raises(RpcUnreachable, match="unknown host"):
        query_server("no-such-host.invalid:50052", timeout_s=2.0)


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """A one-connection TCP server on 127.0.0.1 that runs ``handler`` on the accepted socket."""
    threads: list[threading.Thread] = []
    sockets: list[socket.socket] = []

    def start(handler: Callable[[socket.socket], None]) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sockets.append(listener)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            sockets.append(conn)
            handler(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return f"127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for s in sockets:
        s.close()
    for t in threads:
        t.join(5)


def test_a_server_that_never_answers_is_busy_not_a_hang(fake_server: Any) -> None:
    release = threading.Event()
    endpoint = fake_server(lambda conn: release.wait(10))
    try:
        with pytest.raises(RpcBusy, match="one client at a time"):
            query_server(endpoint, timeout_s=0.5)
    finally:
        release.set()


def test_another_protocol_version_is_named(fake_server: Any) -> None:
    def old_server(conn: socket.socket) -> None:
        conn.recv(1 + 8 + 24)
        conn.sendall(struct.pack("<Q", 28) + bytes([6, 1, 0, 0]) + bytes(24))

    endpoint = fake_server(old_server)
    with pytest.raises(RpcProtocolMismatch, match=r"6\.1\.0"):
        query_server(endpoint, timeout_s=2.0)


def test_a_server_that_hangs_up_is_not_mistaken_for_llama_cpp(fake_server: Any) -> None:
    endpoint = fake_server(lambda conn: conn.close())
    with pytest.raises(RpcProtocolMismatch):
        query_server(endpoint, timeout_s=2.0)


# ------------------------------------------------------------------------------------------ rigs
def test_planned_remote_devices_follow_local_gpus() -> None:
    rig = parse_rig_expression("rpc(RTX 4090 @ 10GbE) + 2x RTX 3090 nvlink")
    assert [g.name for g in rig.gpus] == ["RTX 3090", "RTX 3090", "RTX 4090"]
    assert [g.index for g in rig.gpus] == [0, 1, 2]
    remote = rig.gpus[2].remote
    assert remote is not None and remote.endpoint is None and remote.link.name == "10GbE"
    assert rig.nvlinked(0, 1) and rig.link_label(0, 2) == "NET"
    assert rig.name == "2x RTX 3090 nvlink + rpc(RTX 4090 @ 10GbE)"
    assert parse_rig_expression(rig.name).gpus == rig.gpus


def test_planned_remote_machine_with_two_gpus() -> None:
    rig = parse_rig_expression("RTX 3090 + rpc(2x RTX 3060 @ wifi)")
    assert [g.remote.device for g in rig.remote_gpus if g.remote] == [0, 1]
    assert rig.name == "RTX 3090 + rpc(2x RTX 3060 12GB @ Wi-Fi)"


def test_bad_remote_terms_say_why() -> None:
    with pytest.raises(RigfitError, match=r"rpc\(RTX 4090 @ 1GbE\)"):
        parse_rig_expression("RTX 3090 + rpcx")
    with pytest.raises(RigfitError, match="unknown network link"):
        parse_rig_expression("rpc(RTX 4090 @ carrier pigeon)")
    with pytest.raises(RigfitError, match="nothing is listening"):
        parse_rig_expression(f"RTX 3090 + rpc://127.0.0.1:{free_port()}")


def test_rpc_url_terms_ask_the_server(rpc_cpu_servers: list[Any]) -> None:
    a, b = (s.endpoint for s in rpc_cpu_servers)
    rig = parse_rig_expression(f"RTX 3090 + rpc://{a}=CPU + rpc://{b}=RTX 4090@10GbE")
    assert [g.index for g in rig.gpus] == [0, 1, 2]
    cpu, gpu = rig.gpus[1], rig.gpus[2]
    assert cpu.on_cpu and cpu.name == f"CPU @ {a}" and cpu.vram_total_mib > 0
    assert gpu.catalog_id == "rtx-4090" and not gpu.on_cpu and gpu.remote is not None
    assert gpu.vram_total_mib == cpu.vram_total_mib  # memory comes from the server, not the catalog
    assert gpu.remote.link.name == "10GbE" and cpu.remote is not None and cpu.remote.link.name == "loopback"
    assert rig.rpc_endpoints() == (a, b)


def test_add_rpc_servers_names_every_server_that_did_not_answer(rpc_cpu_servers: list[Any]) -> None:
    base = parse_rig_expression("RTX 3090")
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(RigfitError, match=dead):
        add_rpc_servers(base, parse_specs(f"{rpc_cpu_servers[0].endpoint},{dead}"), timeout_s=2.0)


def test_rig_files_keep_remote_devices(rpc_cpu_servers: list[Any]) -> None:
    a = rpc_cpu_servers[0].endpoint
    rig = parse_rig_expression(f"2x RTX 3090 + rpc(RTX 4090 @ 2.5GbE) + rpc://{a}=CPU")
    text = rig_to_toml(rig)
    assert 'rpc = "planned"' in text and f'rpc = "{a}"' in text and 'backend = "cpu"' in text
    assert rig_from_toml(text).gpus == rig.gpus


def test_rig_file_with_own_link_figures() -> None:
    text = """
format = 1
[[gpu]]
catalog = "rtx-3090"
[[gpu]]
catalog = "rtx-4090"
rpc = "planned"
link = "my switch"
link_gbps = 0.5
link_rtt_ms = 0.2
"""
    link = rig_from_toml(text).gpus[1].remote.link  # type: ignore[union-attr]
    assert (link.name, link.bandwidth_gbps, link.rtt_ms) == ("my switch", 0.5, 0.2)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('link = "1GbE"', "only apply to a remote device"),
        ('rpc = "nowhere"', "HOST:PORT"),
        ('rpc = "planned"\nbackend = "tpu"', "backend must be"),
        ('rpc = "planned"\nrpc_device = -1', "rpc_device"),
        ('rpc = "planned"\nlink = "smoke signals"', "unknown network link"),
    ],
)
def test_bad_remote_keys_in_rig_files(extra: str, words: str) -> None:
    text = f'format = 1\n[[gpu]]\ncatalog = "rtx-3090"\n{extra}\n'
    with pytest.raises(RigfitError, match=words):
        rig_from_toml(text)
