"""The worker on a real CUDA GPU (GPU machine only): offload, per-device buffers, NVML's increase, speed.

    source .device/build.sh && python3 -m pytest tests/runner/test_worker_gpu.py -q -s -m gpu

A synthetic llama GGUF (tests/synth_gguf.py: real shapes, random weights) stands in for a model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.runner import protocol as P
from app.runner.client import RunnerClient
from tests.synth_gguf import SynthShape, write_llama_gguf

pytestmark = pytest.mark.gpu

# DEVICE.md's 1B-shaped row: 16 layers, 2048 wide, GQA 32/8, Q4_0.
SHAPE = SynthShape(
    n_layer=16, n_embd=2048, n_ff=8192, n_head=32, n_head_kv=8, n_vocab=49152, weight_type="Q4_0"
)
N_CTX = 4096


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_llama_gguf(tmp_path_factory.mktemp("gpu") / "synth-1b.gguf", SHAPE).path)


@pytest.fixture(scope="module")
def client() -> Iterator[RunnerClient]:
    with RunnerClient() as c:
        c.start()
        yield c


def test_the_worker_sees_the_gpu(client: RunnerClient) -> None:
    ready = client.start()
    assert ready.gpu_offload
    assert ready.gpus and ready.gpus[0].name == "CUDA0"


def test_full_offload_puts_every_layer_and_its_buffers_on_the_gpu(
    client: RunnerClient, model_path: str
) -> None:
    loaded = client.load_sync(
        P.LoadSettings(model_path=model_path, n_ctx=N_CTX, n_gpu_layers=-1), timeout=300
    )
    print("\nloaded:", loaded.buffers, loaded.layers, loaded.vram)
    buffers = {(b.device, b.buffer): b.mib for b in loaded.buffers}
    assert loaded.offloaded_layers == loaded.offloadable_layers == SHAPE.n_layer + 1
    assert loaded.layers == {"CUDA0": SHAPE.n_layer + 1}
    assert ("CUDA0", "model") in buffers and ("CUDA0", "compute") in buffers
    # KV: n_ctx x layers x (8 KV heads x 64) x 2 bytes x K and V.
    assert buffers[("CUDA0", "KV")] == N_CTX * SHAPE.n_layer * 8 * 64 * 2 * 2 / 2**20
    assert not loaded.on_cpu_only
    if loaded.vram:  # NVML works on the GPU machine; the increase also holds the CUDA context
        allocated = sum(mib for (device, _), mib in buffers.items() if device == "CUDA0")
        increase = loaded.vram[0].increase_mib
        print(
            f"NVML increase {increase:.1f} MiB (before the first decode "
            f"{(loaded.vram[0].after_load_mib or 0) - loaded.vram[0].before_mib:.1f}), "
            f"llama.cpp's CUDA0 buffers {allocated:.1f} MiB"
        )
        assert allocated < increase < allocated + 2048


def test_generation_and_bench_run_on_the_gpu(client: RunnerClient, model_path: str) -> None:
    client.load_sync(P.LoadSettings(model_path=model_path, n_ctx=N_CTX), timeout=300)
    events = list(
        client.chat_stream(
            P.ChatRequest(
                messages=(P.ChatMessage("user", "hi"),), temperature=0, max_tokens=64, ignore_eos=True
            ),
            timeout=120,
        )
    )
    done = events[-1]
    assert isinstance(done, P.DoneEvent) and done.completion_tokens == 64
    bench = client.bench_sync(512, 128, timeout=120)
    print(
        f"\nchat: {done.gen_tok_s} tok/s; bench: pp512 {bench.pp_tok_s} tok/s, tg128 {bench.tg_tok_s} tok/s"
    )
    assert bench.pp_tok_s and bench.tg_tok_s and bench.pp_tok_s > bench.tg_tok_s


def test_a_context_larger_than_the_gpu_is_a_plain_error_and_the_worker_goes_on(
    client: RunnerClient, model_path: str
) -> None:
    # 8M tokens of KV: 16 layers x 2 KiB per token (K and V, 8 heads x 64, f16) = 250 GiB; an H200 has 139.
    try:
        loaded = client.load_sync(P.LoadSettings(model_path=model_path, n_ctx=8_000_000), timeout=300)
    except P.RunnerError as exc:
        print("\nhuge context:", exc.event.kind, exc.event.message)
        assert exc.event.kind in (P.ERR_CONTEXT_FAILED, P.ERR_CRASHED), "\n".join(exc.event.log_tail)
    else:
        pytest.fail(f"an 8M-token context loaded: {loaded}\n" + "\n".join(client.log_tail(60)))
    loaded = client.load_sync(P.LoadSettings(model_path=model_path, n_ctx=N_CTX), timeout=300)
    assert loaded.buffers


@pytest.mark.parametrize(
    ("split_mode", "tensor_split"), [("none", None), ("layer", (1.0,)), ("row", (1.0,)), ("tensor", None)]
)
def test_each_split_mode_loads_on_one_gpu_or_says_why_not(
    client: RunnerClient, model_path: str, split_mode: str, tensor_split: tuple[float, ...] | None
) -> None:
    settings = P.LoadSettings(
        model_path=model_path, n_ctx=N_CTX, split_mode=split_mode, tensor_split=tensor_split
    )
    try:
        loaded = client.load_sync(settings, timeout=300)
    except P.RunnerError as exc:
        # llama-cpp-python 0.3.36's CUDA backend has no row split buffers (tensor mode replaced them).
        print(f"\n{split_mode}: {exc.event.kind}: {exc.event.message}")
        assert (
            split_mode == "row" and exc.event.kind == P.ERR_LOAD_FAILED and "split mode 'tensor'" in str(exc)
        )
        assert client.alive
        return
    print(f"\n{split_mode}: {[(b.device, b.buffer, b.mib) for b in loaded.buffers]} layers {loaded.layers}")
    assert any(not b.device.startswith("CPU") and b.device != "CUDA_Host" for b in loaded.buffers)


def test_the_comparison_with_the_planner_covers_the_gpu(client: RunnerClient, model_path: str) -> None:
    try:
        from app.core.model_source import load_model_spec
        from app.core.placement import plan
        from app.core.settings import Settings
        from app.hardware.probe import detect_rig
    except ImportError as exc:
        pytest.skip(f"planner not available: {exc}")
    settings = Settings(ctx=N_CTX)
    the_plan = plan(detect_rig(), load_model_spec(model_path), settings)
    loaded = client.load_sync(P.LoadSettings.from_settings(model_path, settings), plan=the_plan, timeout=300)
    from app.runner.compare import format_table

    print("\n" + format_table(loaded.compare))
    rows = {(r.device, r.buffer): r for r in loaded.compare}
    assert ("CUDA0", "weights") in rows and ("CUDA0", "kv") in rows and ("host", "weights") in rows
    assert rows[("CUDA0", "kv")].measured_mib == rows[("CUDA0", "kv")].predicted_mib


def test_a_killed_worker_leaves_no_vram_held(model_path: str) -> None:
    from app.hardware.probe import vram_used_mib

    before = vram_used_mib()
    if not before:
        pytest.skip("NVML does not report used memory here")
    victim = RunnerClient()
    victim.load_sync(P.LoadSettings(model_path=model_path, n_ctx=N_CTX), timeout=300)
    loaded_mib = (vram_used_mib() or {})[0]
    assert loaded_mib > before[0] + 500
    victim.kill()
    deadline = time.monotonic() + 10
    while (vram_used_mib() or {})[0] > before[0] + 16 and time.monotonic() < deadline:
        time.sleep(0.1)
    after = (vram_used_mib() or {})[0]
    print(f"\nVRAM used: before {before[0]:.1f}, loaded {loaded_mib:.1f}, after SIGKILL {after:.1f} MiB")
    assert after <= before[0] + 16
    victim.close()
