"""``--rpc`` on detect, plan, fit, run and bench, as a user runs them (subprocesses), against two
CPU-backed llama.cpp RPC servers on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from app.runner.ggml import rpc_available
from app.runner.rpc import free_port
from tests.commands.cli import rigfit

pytestmark = pytest.mark.skipif(not rpc_available(), reason="llama-cpp-python without the RPC backend")


def _rpc(servers: list[Any]) -> str:
    return ",".join(f"{s.endpoint}=CPU" for s in servers)


def test_detect_lists_the_servers_devices_after_this_computers(rpc_cpu_servers: list[Any]) -> None:
    out = rigfit("detect", "--json", "--rpc", _rpc(rpc_cpu_servers))
    assert out.returncode == 0, out.stderr
    gpus = json.loads(out.stdout)["gpus"]
    remote = [g for g in gpus if g["remote"]]
    assert [g["remote"]["endpoint"] for g in remote] == [s.endpoint for s in rpc_cpu_servers]
    assert all(g["remote"]["backend"] == "cpu" and g["remote"]["link"] == "loopback" for g in remote)
    assert all(g["remote"] is None for g in gpus if g not in remote)


def test_plan_uses_llama_cpps_order_and_exports_rpc_commands(rpc_cpu_servers: list[Any]) -> None:
    out = rigfit(
        "plan", "--model", "llama-3.1-8b", "--quant", "Q4_K_M", "--rig", "RTX 3090",
        "--rpc", f"{rpc_cpu_servers[0].endpoint}=RTX 4090@10GbE", "--split", "1,1", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    local, remote = data["devices"]
    assert (local["llama_name"], remote["llama_name"]) == ("CUDA0", "RPC0")
    assert remote["remote"]["link"] == "10GbE"
    # llama.cpp gives the RPC device the first layers; -ts lists it first
    assert remote["first_layer"] == 0 and local["has_output"]
    assert data["llama_tensor_split"] == [remote["layers"], local["layers"] + 1]
    argv = data["command_argv"]["llama-server"]["argv"]
    assert argv[argv.index("--rpc") + 1] == rpc_cpu_servers[0].endpoint
    assert argv[argv.index("-ts") + 1] == ",".join(map(str, data["llama_tensor_split"]))
    assert data["recommended_split_mode"] == "layer"


def test_fit_takes_rpc_too(rpc_cpu_servers: list[Any]) -> None:
    out = rigfit("fit", "--rig", "RTX 3090", "--rpc", rpc_cpu_servers[0].endpoint, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"]


def test_run_json_names_every_device(rpc_cpu_servers: list[Any]) -> None:
    out = rigfit(
        "run", "--model", "demo", "--prompt", "Hi", "--max-tokens", "4", "--temperature", "0",
        "--ctx", "512", "--threads", "1", "--split", "3,1", "--rpc", _rpc(rpc_cpu_servers), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    loaded = next(e for e in events if e["type"] == "loaded")
    devices = {d["name"]: d for d in loaded["devices"]}
    assert list(devices) == ["RPC0", "RPC1", "CPU"]
    assert devices["RPC0"]["endpoint"] == rpc_cpu_servers[0].endpoint and devices["RPC0"]["layers"] == 24
    assert devices["RPC1"]["buffers"]["KV"] > 0
    # the comparison with the plan matches the RPC buffers by name
    rows = {(r["device"], r["buffer"]): r for r in loaded["compare"]}
    row = rows[(f"RPC0[{rpc_cpu_servers[0].endpoint}]", "weights")]
    assert row["predicted_mib"] == pytest.approx(row["measured_mib"], rel=0.01)
    assert events[-1]["type"] == "done"


def test_bench_over_rpc_devices(rpc_cpu_servers: list[Any]) -> None:
    out = rigfit(
        "bench", "--model", "demo", "--configs", "layer:1,1", "--pp", "16", "--tg", "4", "--repeat", "1",
        "--threads", "1", "--rpc", _rpc(rpc_cpu_servers), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[0])
    assert result["status"] == "ok" and result["tg_tok_s_mean"] > 0


def test_serve_answers_with_the_model_on_rpc_devices(rpc_cpu_servers: list[Any]) -> None:
    from tests.serve.serve_process import ServeProcess

    server = ServeProcess(
        "--model", "demo", "--ctx", "512", "--threads", "1", "--split", "3,1", "--rpc", _rpc(rpc_cpu_servers)
    )  # fmt: skip
    try:
        loaded = next(e for e in server.all_events if e["type"] == "loaded")
        assert [d["name"] for d in loaded["devices"]] == ["RPC0", "RPC1", "CPU"]
        body = json.dumps({"model": server.model, "prompt": "Hi", "max_tokens": 3, "temperature": 0}).encode()
        request = urllib.request.Request(
            server.url + "/completions", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            reply = json.loads(r.read())
        assert reply["usage"]["completion_tokens"] >= 1
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("detect", "--rpc", "nowhere"), "is not HOST:PORT"),
        (("detect", "--rpc", "127.0.0.1:1,127.0.0.1:1"), "given twice"),
        (("plan", "--model", "llama-3.1-8b", "--rpc", "127.0.0.1:PORT"), "nothing is listening"),
        (("run", "--model", "demo", "--prompt", "x", "--rpc", "127.0.0.1:PORT"), "nothing is listening"),
        (("serve", "--model", "demo", "--port", "0", "--rpc", "127.0.0.1:PORT"), "nothing is listening"),
    ],
)
def test_bad_or_dead_servers_are_one_line_and_exit_2(args: tuple[str, ...], words: str) -> None:
    port = str(free_port())
    out = rigfit(*(a.replace("PORT", port) for a in args))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rigfit: ") and words in lines[0], out.stderr


def test_version_says_rpc() -> None:
    out = rigfit("--version", "--long")
    assert ", RPC)" in out.stdout
