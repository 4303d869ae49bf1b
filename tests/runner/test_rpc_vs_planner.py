"""Multi-device truth without a GPU: two CPU-backed RPC servers on 127.0.0.1 plus the local CPU are
three real llama.cpp devices. The demo model and synthetic GGUFs load with layer splits 1:1 and 3:1,
a partial offload and a tensor split; the planner's layers, weights, KV and compute per device must
match llama.cpp's logged buffers (weights and KV within 1%, compute within 10% or 32 MiB).

The rig is the one ``rigfit run --rpc A=CPU,B=CPU`` plans with: this computer plus the servers'
devices asked over the network. Synthetic models use F16 weights where layers stay on the host:
no CPU weight repacking (AMX, CPU_REPACK) to account for, on any host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.core.model_source import load_model_spec
from app.core.placement import plan
from app.core.rig import Rig
from app.core.rpc import llama_device_names
from app.core.settings import Settings
from app.hardware.probe import detect_rig
from app.hardware.rpc import add_rpc_servers, parse_specs
from app.runner import protocol as P
from app.runner.client import RunnerClient
from app.runner.ggml import rpc_available
from tests.synth_gguf import SynthShape, write_llama_gguf

pytestmark = pytest.mark.skipif(not rpc_available(), reason="llama-cpp-python without the RPC backend")
WEIGHTS_KV_PCT = 1.0
COMPUTE_PCT, COMPUTE_MIB = 10.0, 32.0
N_CTX = 1024

SMALL_F16 = SynthShape(
    n_layer=6, n_embd=384, n_ff=1024, n_head=6, n_head_kv=2, n_vocab=4096, weight_type="F16", tied=False
)
SMALL_Q8 = SynthShape(
    n_layer=5, n_embd=512, n_ff=1536, n_head=8, n_head_kv=8, n_vocab=8192, weight_type="Q8_0"
)


@pytest.fixture(scope="module")
def rig(rpc_cpu_servers: list[Any]) -> Rig:
    """Asked once, before any load: a server serves one client at a time, and a loaded model is one."""
    specs = parse_specs(",".join(f"{s.endpoint}=CPU" for s in rpc_cpu_servers))
    found = add_rpc_servers(detect_rig(), specs)
    if found.local_gpus:
        pytest.skip("this machine has a GPU: the CPU-only multi-device case does not apply")
    return found


@pytest.fixture(scope="module")
def client(rig: Rig) -> Iterator[RunnerClient]:
    c = RunnerClient()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, demo_model_path: str) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("rpc-models")
    return {
        "demo": demo_model_path,
        "f16": str(write_llama_gguf(folder / "f16.gguf", SMALL_F16).path),
        "q8": str(write_llama_gguf(folder / "q8.gguf", SMALL_Q8).path),
    }


CASES = [
    ("demo", Settings(ctx=N_CTX, tensor_split=(1.0, 1.0))),
    ("demo", Settings(ctx=N_CTX, tensor_split=(3.0, 1.0))),
    ("q8", Settings(ctx=N_CTX, tensor_split=(1.0, 1.0))),
    ("f16", Settings(ctx=N_CTX, tensor_split=(3.0, 1.0))),
    ("f16", Settings(ctx=N_CTX, tensor_split=(1.0, 1.0), n_gpu_layers=4)),  # 3 layers stay on the CPU
    ("demo", Settings(ctx=N_CTX, split_mode="tensor", tensor_split=(1.0, 1.0))),
]


def _id(case: tuple[str, Settings]) -> str:
    model, s = case
    split = ":".join(f"{r:g}" for r in s.tensor_split or ())
    ngl = "" if s.n_gpu_layers < 0 else f"-ngl{s.n_gpu_layers}"
    return f"{model}-{s.split_mode}-{split}{ngl}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_planner_matches_llama_cpp_per_device(
    case: tuple[str, Settings], client: RunnerClient, models: dict[str, str], rig: Rig
) -> None:
    model, settings = case
    path = models[model]
    predicted = plan(rig, load_model_spec(path), settings)
    from app.core.rpc import to_llama_split

    load = P.LoadSettings.from_settings(
        path,
        settings,
        n_threads=1,
        rpc_servers=rig.rpc_endpoints(),
        tensor_split=to_llama_split(rig, settings.split_mode, settings.tensor_split),
    )
    loaded = client.load_sync(load, timeout=180)
    logged = {d.name: d for d in loaded.devices}
    tensor = settings.split_mode == "tensor"
    assert set(logged) == ({"Meta", "CPU"} if tensor else {"RPC0", "RPC1", "CPU"})
    for device, name in zip(predicted.devices, llama_device_names(rig), strict=True):
        got = logged["Meta" if tensor else name]
        assert device.layers + int(device.has_output) == got.layers, (name, device, got)
        _close(device.weights_mib, got.buffers.get("model", 0.0), WEIGHTS_KV_PCT, 0.006, name, "weights")
        _close(device.kv_mib, got.buffers.get("KV", 0.0), WEIGHTS_KV_PCT, 0.006, name, "KV")
        _close_compute(device.compute_mib, got.buffers.get("compute", 0.0), name)
    host = logged["CPU"]
    host_weights = sum(b.mib for b in predicted.buffers if b.gpu is None and b.kind == "model")
    if not any(b.device == "AMX" for b in loaded.buffers):
        # An AMX host repacks host-layer weights in a buffer of its own; the planner models AVX2/AVX-512
        # repacking only (tests/core/test_memory_vs_llama.py has the same limit).
        _close(host_weights, host.buffers.get("model", 0.0), WEIGHTS_KV_PCT, 0.006, "host", "weights")
    _close(predicted.host.kv_mib, host.buffers.get("KV", 0.0), WEIGHTS_KV_PCT, 0.006, "host", "KV")
    _close_compute(predicted.host.compute_mib, host.buffers.get("compute", 0.0), "host")
    if settings.n_gpu_layers >= 0:
        assert host.layers == predicted.host.layers == 3


def _close(predicted: float, measured: float, pct: float, abs_mib: float, device: str, kind: str) -> None:
    assert abs(predicted - measured) <= max(abs_mib, measured * pct / 100), (
        device,
        kind,
        predicted,
        measured,
    )


def _close_compute(predicted: float, measured: float, device: str) -> None:
    assert abs(predicted - measured) <= max(COMPUTE_MIB, measured * COMPUTE_PCT / 100), (
        device,
        "compute",
        predicted,
        measured,
    )


def test_the_plan_names_llama_cpps_buffers(
    rig: Rig, rpc_cpu_servers: list[Any], demo_model_path: str
) -> None:
    p = plan(rig, load_model_spec(demo_model_path), Settings(ctx=N_CTX, tensor_split=(1.0, 1.0)))
    names = {b.name for b in p.buffers if b.gpu is not None}
    assert names == {f"RPC0[{s.endpoint}]" for s in rpc_cpu_servers}
