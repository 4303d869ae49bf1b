"""Issue 13 on the GPU machine: several llama.cpp devices on one H200 through RPC servers, measured.

Two RPC servers exposing CUDA0 plus the worker's own CUDA0 are three real CUDA devices (RPC0, RPC1,
CUDA0 in llama.cpp's layer order). For each configuration below, in order (cheapest and most
telling first, so a run cut short still brings back the most): fresh servers and a fresh worker,
load, every buffer llama.cpp logged per device, NVML's memory per process (each server process is
one device's total, the worker the local one), then one llama-bench style run (pp512, tg64).
Models are sparse GGUFs written on the machine (header + truncate: zeros that take no disk).

    source .device/build.sh && python3 -m tests.gpu.rpc_measure --out $OUT/rpc-h200.json --budget-s 270

Without a GPU, ``--cpu`` runs the same loop with CPU-backed servers and tiny models (a check of the
script itself). The JSON is replayed in CI by tests/core/test_rpc_replay.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType, GGUFWriter

from app.core.arch import ArchParams, build_spec, per_layer
from app.core.model_spec import ModelSpec
from app.core.quant import file_type, tensor_nbytes
from app.core.quantizer import apply_file_type

LLAMA_8B = ArchParams(
    architecture="llama",
    n_layer=32,
    n_embd=4096,
    n_vocab=128256,
    n_head=per_layer(32, 32),
    n_head_kv=per_layer(8, 32),
    n_ff=per_layer(14336, 32),
    head_dim_k=128,
    head_dim_v=128,
    n_ctx_train=131072,
)
LLAMA_70B = ArchParams(
    architecture="llama",
    n_layer=80,
    n_embd=8192,
    n_vocab=128256,
    n_head=per_layer(64, 80),
    n_head_kv=per_layer(8, 80),
    n_ff=per_layer(28672, 80),
    head_dim_k=128,
    head_dim_v=128,
    n_ctx_train=131072,
)
# DeepSeek-V2-Lite: the smallest deepseek2 (MLA + shared experts); no catalog entry has its size.
DEEPSEEK_V2_LITE = ArchParams(
    architecture="deepseek2",
    n_layer=27,
    n_embd=2048,
    n_vocab=102400,
    n_head=per_layer(16, 27),
    n_head_kv=per_layer(1, 27),
    n_ff=per_layer(10944, 27),
    head_dim_k=512 + 64,
    head_dim_v=512,
    n_ctx_train=163840,
    n_expert=64,
    n_expert_used=6,
    n_ff_expert=1408,
    n_expert_shared=2,
    n_layer_dense_lead=1,
    kv_lora_rank=512,
    qk_rope_head_dim=64,
    head_dim_k_mla=128 + 64,
    head_dim_v_mla=128,
)
TINY = ArchParams(
    architecture="llama",
    n_layer=8,
    n_embd=256,
    n_vocab=2048,
    n_head=per_layer(4, 8),
    n_head_kv=per_layer(2, 8),
    n_ff=per_layer(768, 8),
    head_dim_k=64,
    head_dim_v=64,
    n_ctx_train=4096,
)


def model_spec(name: str) -> ModelSpec:
    """The spec of a measured model as its file holds it (the same in the GPU run and in CI's
    replay): tensors in :func:`write_sparse_gguf`'s order, with the data offsets it gives them."""
    if name in MODEL_PARAMS:
        params, ftype = MODEL_PARAMS[name]
        spec = apply_file_type(build_spec(params, id=name, name=name, source="config"), ftype)
    else:
        from app.core.catalog import catalog_spec

        model_id, quant = CATALOG_MODELS[name]
        spec = catalog_spec(model_id, quant)
    return as_written(spec)


def as_written(spec: ModelSpec) -> ModelSpec:
    """``spec`` as read back from the file :func:`write_sparse_gguf` writes: GGUF offsets (32-byte
    aligned, in the spec's order), so the planner sizes the mapped span exactly as llama.cpp does."""
    offset = 0
    tensors = []
    for t in spec.tensors:
        tensors.append(replace(t, offset=offset))
        offset += GGUFWriter.ggml_pad(tensor_nbytes(t.ggml_type, t.shape), 32)
    return replace(spec, tensors=tuple(tensors), source="gguf")


MODEL_PARAMS: dict[str, tuple[ArchParams, str]] = {
    "llama-8b-q4_0": (LLAMA_8B, "Q4_0"),
    "llama-70b-q4_0": (LLAMA_70B, "Q4_0"),
    "deepseek-v2-lite-q4_k_m": (DEEPSEEK_V2_LITE, "Q4_K_M"),
    "tiny-q8_0": (TINY, "Q8_0"),
}
CATALOG_MODELS: dict[str, tuple[str, str]] = {
    "qwen3-30b-a3b-q4_k_m": ("qwen3-30b-a3b", "Q4_K_M"),
    "gpt-oss-20b-mxfp4": ("gpt-oss-20b", "MXFP4"),
    "gemma-3-12b-q4_k_m": ("gemma-3-12b", "Q4_K_M"),
}


def write_sparse_gguf(path: Path, spec: ModelSpec) -> Path:
    """Header and tensor table only, then truncate to the full size: the data reads as zeros and
    takes no disk (DEVICE.md). llama.cpp loads and runs it like any file."""
    from tests.core.gguf_builders import _meta

    w = GGUFWriter(str(path), spec.architecture)
    w.add_name(spec.name)
    w.add_file_type(file_type(spec.file_type or "F16").ftype)
    _meta(w, spec, None)
    total = 0
    for t in spec.tensors:
        nbytes = tensor_nbytes(t.ggml_type, t.shape)
        w.add_tensor_info(
            t.name, tuple(reversed(t.shape)), _dtype(), nbytes, raw_dtype=GGMLQuantizationType(t.ggml_type)
        )
        total += GGUFWriter.ggml_pad(nbytes, w.data_alignment)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())
    start = fout.tell()
    w.close()
    os.truncate(path, start + total)
    return path


def _dtype() -> Any:
    import numpy as np

    return np.dtype(np.float32)  # anything but uint8: the shape is the element shape, as given


# ---------------------------------------------------------------------------------------------------
# Configurations (llama.cpp's order: RPC0, RPC1 first, then the local CUDA0; tensor mode: CUDA0 first)


@dataclass(frozen=True)
class Config:
    case: str
    model: str
    servers: int  # RPC servers, each exposing the local GPU (or the CPU with --cpu)
    split_mode: str = "layer"
    tensor_split: tuple[float, ...] | None = None  # in llama.cpp's order
    n_gpu_layers: int = -1
    ctx: int = 8192
    bench: bool = True


GPU_CONFIGS: tuple[Config, ...] = (
    Config("8b-single", "llama-8b-q4_0", 0),
    Config("8b-layer-1-1", "llama-8b-q4_0", 1, tensor_split=(1.0, 1.0)),
    Config("8b-layer-1-1-1", "llama-8b-q4_0", 2, tensor_split=(1.0, 1.0, 1.0)),
    Config("8b-layer-3-2-1", "llama-8b-q4_0", 2, tensor_split=(3.0, 2.0, 1.0)),
    Config("8b-partial-ngl20-1-1-1", "llama-8b-q4_0", 2, tensor_split=(1.0, 1.0, 1.0), n_gpu_layers=20),
    Config("8b-tensor-1-1", "llama-8b-q4_0", 1, split_mode="tensor", tensor_split=(1.0, 1.0)),
    Config("qwen3moe-single", "qwen3-30b-a3b-q4_k_m", 0),
    Config("qwen3moe-layer-1-1-1", "qwen3-30b-a3b-q4_k_m", 2, tensor_split=(1.0, 1.0, 1.0)),
    Config("gptoss-single", "gpt-oss-20b-mxfp4", 0),
    Config("gptoss-layer-1-1-1", "gpt-oss-20b-mxfp4", 2, tensor_split=(1.0, 1.0, 1.0)),
    Config("deepseek2-single", "deepseek-v2-lite-q4_k_m", 0),
    Config("deepseek2-layer-1-1-1", "deepseek-v2-lite-q4_k_m", 2, tensor_split=(1.0, 1.0, 1.0)),
    Config("gemma3-single", "gemma-3-12b-q4_k_m", 0),
    Config("gemma3-layer-1-1-1", "gemma-3-12b-q4_k_m", 2, tensor_split=(1.0, 1.0, 1.0)),
    Config("70b-layer-1-1-1", "llama-70b-q4_0", 2, tensor_split=(1.0, 1.0, 1.0), bench=False),
)
CPU_CONFIGS: tuple[Config, ...] = (
    Config("tiny-layer-1-1", "tiny-q8_0", 2, tensor_split=(1.0, 1.0), ctx=512),
    Config("tiny-tensor-1-1", "tiny-q8_0", 2, split_mode="tensor", tensor_split=(1.0, 1.0), ctx=512),
)


# ---------------------------------------------------------------------------------------------------
# Measuring


def nvml_processes() -> dict[int, float] | None:
    """Memory per process on GPU 0 (MiB), from NVML; None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        used = pynvml.nvmlDeviceGetMemoryInfo(handle).used
        out = {int(p.pid): round((p.usedGpuMemory or 0) / 2**20, 2) for p in procs}
        out[-1] = round(used / 2**20, 2)  # the whole GPU, under key -1
        return out
    except Exception:
        return None


@dataclass
class Result:
    config: dict[str, Any]
    ok: bool = False
    error: str | None = None
    loaded: dict[str, Any] | None = None
    nvml_after_load: dict[str, float] = field(default_factory=dict)
    nvml_after_bench: dict[str, float] = field(default_factory=dict)
    bench: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _by_role(procs: dict[int, float] | None, roles: dict[int, str]) -> dict[str, float]:
    if not procs:
        return {}
    out = {roles.get(pid, f"pid{pid}"): mib for pid, mib in procs.items() if pid != -1}
    if -1 in procs:
        out["gpu_used"] = procs[-1]
    return out


def measure(config: Config, model_path: Path, cpu: bool, threads: int | None) -> Result:
    from app.runner import protocol as P
    from app.runner.client import RunnerClient
    from app.runner.rpc import start_local_servers

    result = Result(config=asdict(config))
    t0 = time.perf_counter()
    servers = start_local_servers(config.servers, devices=("CPU",) if cpu else ("CUDA0",), threads=threads)
    result.seconds["servers"] = round(time.perf_counter() - t0, 2)
    client = RunnerClient()
    try:
        ready = client.start()
        roles = {s.pid: f"server{k}" for k, s in enumerate(servers) if s.pid is not None}
        roles[ready.pid] = "worker"
        settings = P.LoadSettings(
            model_path=str(model_path),
            split_mode=config.split_mode,
            tensor_split=config.tensor_split,
            n_gpu_layers=config.n_gpu_layers,
            n_ctx=config.ctx,
            n_threads=threads,
            rpc_servers=tuple(s.endpoint for s in servers),
        )
        t1 = time.perf_counter()
        loaded = client.load_sync(settings, timeout=600)
        result.seconds["load"] = round(time.perf_counter() - t1, 2)
        result.loaded = P.event_to_message(loaded)
        result.config["endpoints"] = [s.endpoint for s in servers]
        result.nvml_after_load = _by_role(nvml_processes(), roles)
        if config.bench:
            client.bench_sync(32, 2, timeout=300)  # warm-up, as llama-bench
            t2 = time.perf_counter()
            event = client.bench_sync(512 if not cpu else 64, 64 if not cpu else 8, timeout=600)
            result.seconds["bench"] = round(time.perf_counter() - t2, 2)
            result.bench = P.event_to_message(event)
        result.nvml_after_bench = _by_role(nvml_processes(), roles)
        result.ok = True
    except Exception as exc:  # keep going: a failed configuration is a result too
        result.error = f"{type(exc).__name__}: {exc}"
        result.config["log_tail"] = list(client.log_tail(30))
    finally:
        client.close()
        for s in servers:
            s.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=270.0)
    parser.add_argument("--cpu", action="store_true", help="CPU-backed servers and tiny models (no GPU)")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--skip", default="", help="comma-separated case names")
    parser.add_argument("--models", default="/tmp/rigfit-rpc-models")
    args = parser.parse_args(argv)
    configs = CPU_CONFIGS if args.cpu else GPU_CONFIGS
    if args.only:
        configs = tuple(c for c in configs if c.case in args.only.split(","))
    if args.skip:
        configs = tuple(c for c in configs if c.case not in args.skip.split(","))
    folder = Path(args.models)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    out: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "results": [], "skipped": []}
    try:
        import llama_cpp

        out["llama_cpp"] = llama_cpp.__version__
    except Exception:
        pass
    out["nvml_idle"] = nvml_processes()
    threads = 1 if args.cpu else None
    written: dict[str, Path] = {}
    for config in configs:
        if time.monotonic() - start > args.budget_s:
            out["skipped"].append(config.case)
            continue
        if config.model not in written:
            t = time.perf_counter()
            written[config.model] = write_sparse_gguf(
                folder / f"{config.model}.gguf", model_spec(config.model)
            )
            print(f"wrote {config.model} in {time.perf_counter() - t:.1f} s", flush=True)
        result = measure(config, written[config.model], args.cpu, threads)
        out["results"].append(asdict(result))
        summary = result.error or {
            d["name"]: d["total_mib"] for d in (result.loaded or {}).get("devices", [])
        }
        print(f"{config.case}: {summary} {result.seconds}", flush=True)
        Path(args.out).write_text(json.dumps(out, indent=1), encoding="utf-8")
    out["seconds"] = round(time.monotonic() - start, 1)
    Path(args.out).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
