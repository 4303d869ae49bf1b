"""The worker with llama.cpp RPC devices: two CPU-backed servers on 127.0.0.1 and the local CPU.

Registration before the load, every device named in the ``loaded`` event with its buffers, a server
that cannot be reached or disappears mid-generation as a clear error, and a load again after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.core import rules
from app.runner import protocol as P
from app.runner.client import RunnerClient
from app.runner.ggml import rpc_available
from app.runner.rpc import ServerOptions, ServerProcess, free_port, start_local_servers

pytestmark = pytest.mark.skipif(not rpc_available(), reason="llama-cpp-python without the RPC backend")
N_CTX = 512


def _settings(model: str, servers: list[Any] | tuple[str, ...], **kw: Any) -> P.LoadSettings:
    endpoints = tuple(s if isinstance(s, str) else s.endpoint for s in servers)
    return P.LoadSettings(model_path=model, n_ctx=N_CTX, n_threads=1, rpc_servers=endpoints, **kw)


@pytest.fixture
def client() -> Iterator[RunnerClient]:
    c = RunnerClient()
    try:
        yield c
    finally:
        c.close()


def test_loaded_names_every_device_with_its_buffers(
    client: RunnerClient, rpc_cpu_servers: list[Any], demo_model_path: str
) -> None:
    loaded = client.load_sync(
        _settings(demo_model_path, rpc_cpu_servers, tensor_split=(3.0, 1.0)), timeout=120
    )
    by_name = {d.name: d for d in loaded.devices}
    assert list(by_name) == ["RPC0", "RPC1", "CPU"]
    rpc0, rpc1, cpu = by_name["RPC0"], by_name["RPC1"], by_name["CPU"]
    assert (rpc0.endpoint, rpc1.endpoint) == (rpc_cpu_servers[0].endpoint, rpc_cpu_servers[1].endpoint)
    assert rpc0.kind == rpc1.kind == "rpc" and cpu.kind == "cpu"
    # 30 layers + output at 3:1: llama.cpp's cumulative split gives 24 slots and 7
    assert (rpc0.layers, rpc1.layers) == (24, 7)
    for d in (rpc0, rpc1):
        assert d.buffers["model"] > 0 and d.buffers["KV"] > 0 and d.buffers["compute"] > 0
    # RPC buffers are named by the device's number on its server: both servers' are "RPC0[...]"
    raw = {b.device for b in loaded.buffers if b.buffer == "model"}
    assert f"RPC0[{rpc_cpu_servers[1].endpoint}]" in raw
    assert rpc0.buffers["KV"] == pytest.approx(4 * rpc1.buffers["KV"], rel=0.2)
    assert cpu.buffers["model"] > 0  # token embeddings stay on the host
    message = P.event_to_message(loaded)
    assert message["devices"][0]["name"] == "RPC0" and message["devices"][0]["total_mib"] > 0
    assert P.parse_event(message) == loaded
    done = next(
        e
        for e in client.chat_stream(
            P.ChatRequest(messages=(P.ChatMessage("user", "Hi"),), temperature=0, max_tokens=4), timeout=60
        )
        if isinstance(e, P.DoneEvent)
    )
    assert done.completion_tokens >= 1


def test_an_unreachable_server_fails_the_load_not_the_worker(
    client: RunnerClient, demo_model_path: str
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(P.RunnerError) as info:
        client.load_sync(_settings(demo_model_path, (dead,)), timeout=60)
    assert info.value.event.kind == P.ERR_RPC
    assert info.value.event.code == rules.CODE_RPC_UNREACHABLE
    assert dead in info.value.event.message and "nothing is listening" in info.value.event.message
    assert client.alive  # llama.cpp would have aborted the process; the worker asked first


def test_a_server_lost_during_generation_is_named_and_the_model_loads_again(
    client: RunnerClient, demo_model_path: str
) -> None:
    servers = start_local_servers(2, devices=("CPU",), threads=1)
    try:
        settings = _settings(demo_model_path, servers, tensor_split=(1.0, 1.0))
        client.load_sync(settings, timeout=120)
        request = P.ChatRequest(
            messages=(P.ChatMessage("user", "Count to a thousand"),),
            temperature=0,
            max_tokens=400,
            ignore_eos=True,
        )
        with pytest.raises(P.RunnerError) as info:
            for n, _event in enumerate(client.chat_stream(request, timeout=60)):
                if n == 3:
                    servers[1].stop()
        event = info.value.event
        assert event.kind == P.ERR_CRASHED
        assert f"the RPC server {servers[1].endpoint}: nothing is listening there" in event.message
        assert "load the model again" in event.message
        servers[1].start()
        servers[1].wait_serving()
        loaded = client.load_sync(settings, timeout=120)
        assert [d.name for d in loaded.devices] == ["RPC0", "RPC1", "CPU"]
    finally:
        for s in servers:
            s.stop()


def test_other_servers_get_a_fresh_worker(
    client: RunnerClient, rpc_cpu_servers: list[Any], demo_model_path: str
) -> None:
    first = client.load_sync(_settings(demo_model_path, rpc_cpu_servers[:1]), timeout=120)
    pid = client.pid
    assert [d.name for d in first.devices] == ["RPC0", "CPU"]
    # ggml cannot unregister a server: loading without it needs a new model process
    second = client.load_sync(_settings(demo_model_path, rpc_cpu_servers[1:]), timeout=120)
    assert client.pid != pid
    assert (second.devices[0].name, second.devices[0].endpoint) == ("RPC0", rpc_cpu_servers[1].endpoint)


def test_servers_added_to_the_same_worker_keep_their_numbers(
    client: RunnerClient, rpc_cpu_servers: list[Any], demo_model_path: str
) -> None:
    client.load_sync(_settings(demo_model_path, rpc_cpu_servers[:1]), timeout=120)
    pid = client.pid
    both = client.load_sync(_settings(demo_model_path, rpc_cpu_servers, tensor_split=(1.0, 1.0)), timeout=120)
    assert client.pid == pid
    assert [(d.name, d.endpoint) for d in both.devices if d.kind == "rpc"] == [
        ("RPC0", rpc_cpu_servers[0].endpoint),
        ("RPC1", rpc_cpu_servers[1].endpoint),
    ]


def test_load_settings_check_the_servers() -> None:
    with pytest.raises(Exception, match="HOST:PORT"):
        P.LoadSettings(model_path="x.gguf", rpc_servers=("nowhere",)).validate()
    with pytest.raises(Exception, match="once"):
        P.LoadSettings(model_path="x.gguf", rpc_servers=("a:1", "a:1")).validate()
    assert P.LoadSettings.from_message({"model_path": "x", "rpc_servers": ["a:1"]}).rpc_servers == ("a:1",)


def test_a_server_process_can_start_again_on_its_port() -> None:
    server = ServerProcess(ServerOptions(port=free_port(), devices=("CPU",), threads=1))
    server.start()
    server.wait_serving()
    server.stop()
    server.start()
    try:
        assert server.wait_serving().devices
    finally:
        server.stop()
