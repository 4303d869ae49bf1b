"""The speed model: what it predicts for plans, and how its constants were measured.

Pure tests pin the model's behaviour (more bytes -> slower, a slow card's share, MoE reads only the
used experts, tensor split over NVLink vs PCIe, layers on the CPU). The calibration lives here too:

    .venv/bin/python -m tests.core.test_perf --gpu      # fit the GPU constants to DEVICE.md's H200 runs
    .venv/bin/python -m tests.core.test_perf --cpu      # measure this machine with llama-cpp-python

``docs/speed-model.md`` records both outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from app.core import perf
from app.core.placement import plan
from app.core.rig import Gpu, Host, PcieLink, Rig
from app.core.settings import Settings
from tests.synth_gguf import SynthShape, shape_model_spec, write_llama_gguf

# ------------------------------------------------------------------------------------------------
# calibration data and procedures
# ------------------------------------------------------------------------------------------------

# DEVICE.md, nvidia-h200: (layers, embd, ffn, heads, kv heads), ctx, pp tok/s (201-token prompt),
# tg tok/s (200 tokens generated after it). Q4_0, vocabulary 49152, flash attention, all layers on
# the GPU.
H200_RUNS: tuple[tuple[tuple[int, int, int, int, int], int, float, float], ...] = (
    ((16, 2048, 8192, 32, 8), 4096, 4137.0, 951.0),
    ((32, 4096, 14336, 32, 8), 8192, 2570.0, 325.0),
    ((80, 8192, 28672, 64, 8), 8192, 974.0, 58.0),
    ((80, 8192, 28672, 64, 8), 32768, 964.0, 58.0),
)
H200 = Gpu(
    index=0,
    name="H200",
    vram_total_mib=143771.0,
    bandwidth_gbps=4800.0,
    fp16_tflops=989.0,
    pcie=PcieLink(gen=5, width=16, max_gen=5, max_width=16),
)
H200_PROMPT = 201
H200_DEPTH = 301  # the middle of the 200 generated tokens


def _h200_shape(dims: tuple[int, int, int, int, int]) -> SynthShape:
    n_layer, n_embd, n_ff, n_head, n_head_kv = dims
    return SynthShape(
        n_layer=n_layer,
        n_embd=n_embd,
        n_ff=n_ff,
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_vocab=49152,
        weight_type="Q4_0",
    )


def h200_predictions() -> list[dict[str, float]]:
    """The model's figures for DEVICE.md's four H200 runs, beside the measurements."""
    rig = Rig(gpus=(H200,), host=Host(ram_available_mib=1 << 20))
    out = []
    for dims, ctx, pp, tg in H200_RUNS:
        spec = shape_model_spec(_h200_shape(dims), model_id=f"h200-{dims[0]}")
        p = plan(rig, spec, Settings(ctx=ctx))
        est = perf.estimate_speed(rig, spec, p, depth_tokens=H200_DEPTH, prompt_tokens=H200_PROMPT)
        assert est.decode_tok_s is not None and est.prompt_tok_s is not None
        out.append(
            {
                "layers": dims[0],
                "ctx": ctx,
                "tg_measured": tg,
                "tg_predicted": est.decode_tok_s,
                "pp_measured": pp,
                "pp_predicted": est.prompt_tok_s,
            }
        )
    return out


def fit_gpu_constants() -> dict[str, float]:
    """Least-squares fit of the GPU constants to DEVICE.md's runs (what perf.py's values came from).

    Decode: 1/tg = bytes / (4.8 TB/s x eff) + (layers + 1) x c_layer (a per-token constant came out
    negative, so it is left out). Prompt: 201/pp = FLOPs / (989 TFLOPS x eff) + (layers + 1) x
    c_layer + c_fixed.
    """
    a_dec, b_dec, a_pp, b_pp = [], [], [], []
    for dims, ctx, pp, tg in H200_RUNS:
        sp = perf.speed_profile(shape_model_spec(_h200_shape(dims)))
        s = Settings(ctx=ctx)
        read = sp.layer_cum_bytes[-1] + sp.output_read_bytes + sp.kv_read_bytes(s, H200_DEPTH).sum()
        a_dec.append([read / 4.8e12, dims[0] + 1])
        b_dec.append(1.0 / tg)
        p = H200_PROMPT
        flops = (sp.layer_cum_flops[-1] + sp.output_flops) * p + (
            sp.kv_attn_flops * sp.cells(p / 2) * p
        ).sum()
        a_pp.append([flops / 989e12, dims[0] + 1, 1.0])
        b_pp.append(p / pp)
    x, *_ = np.linalg.lstsq(np.array(a_dec), np.array(b_dec), rcond=None)
    y, *_ = np.linalg.lstsq(np.array(a_pp), np.array(b_pp), rcond=None)
    return {
        "GPU_BANDWIDTH_EFFICIENCY": 1.0 / x[0],
        "GPU_DECODE_LAYER_S": x[1],
        "GPU_FLOPS_EFFICIENCY": 1.0 / y[0],
        "GPU_PROMPT_LAYER_S": y[1],
        "GPU_PROMPT_FIXED_S": y[2],
    }


# Synthetic CPU models: (name, shape). Thin-and-deep ones expose the per-layer cost, wide ones the
# bandwidth; Q4_0, Q8_0 and F16 the per-type arithmetic.
CPU_SHAPES: tuple[tuple[str, SynthShape], ...] = (
    ("q4-8x2048", SynthShape(n_layer=8, n_embd=2048, n_ff=5632, n_head=16, n_head_kv=4, n_vocab=32000)),
    (
        "q8-8x2048",
        SynthShape(
            n_layer=8, n_embd=2048, n_ff=5632, n_head=16, n_head_kv=4, n_vocab=32000, weight_type="Q8_0"
        ),
    ),
    (
        "f16-8x2048",
        SynthShape(
            n_layer=8, n_embd=2048, n_ff=5632, n_head=16, n_head_kv=4, n_vocab=32000, weight_type="F16"
        ),
    ),
    ("q4-4x4096", SynthShape(n_layer=4, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8, n_vocab=32000)),
    (
        "q8-48x512",
        SynthShape(
            n_layer=48, n_embd=512, n_ff=1536, n_head=8, n_head_kv=2, n_vocab=8192, weight_type="Q8_0"
        ),
    ),
)
CPU_PROMPT = 256
CPU_GEN = 32
CPU_REPEATS = 3

_CHILD = r"""
import json, sys, time
import llama_cpp
a = json.loads(sys.argv[1])
llm = llama_cpp.Llama(model_path=a["path"], n_ctx=2048, n_threads=a["threads"], n_threads_batch=a["threads"],
                      flash_attn=True, n_batch=512, n_ubatch=512, verbose=False)
prompt = [1] + [300 + (i * 7) % 200 for i in range(a["prompt"] - 1)]
best_pp = best_tg = 0.0
for _ in range(a["repeats"]):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    for i in range(a["gen"]):
        llm.eval([350 + i % 100])
    t2 = time.perf_counter()
    best_pp = max(best_pp, a["prompt"] / (t1 - t0))
    best_tg = max(best_tg, a["gen"] / (t2 - t1))
print(json.dumps({"pp": best_pp, "tg": best_tg}))
"""


def _run_child(path: Path, threads: int) -> dict[str, float]:
    args = {
        "path": str(path),
        "threads": threads,
        "prompt": CPU_PROMPT,
        "gen": CPU_GEN,
        "repeats": CPU_REPEATS,
    }
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def ram_read_gbps(n_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """System-RAM read bandwidth as numpy sees it (one thread summing a 1 GiB array, best of 5)."""
    a = np.ones(n_bytes // 8)
    a.sum()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best / 1e9


def measure_cpu(threads: tuple[int, ...] = (2, 1)) -> dict[str, object]:
    """Run the demo model and the synthetic shapes with llama-cpp-python on this machine's CPU."""
    from app.core.demo import demo_model_path

    models: list[tuple[str, Path, object]] = []
    tmp = Path(tempfile.mkdtemp(prefix="rigfit-perf-"))
    demo = demo_model_path()
    if demo is not None:
        models.append(("demo (SmolLM2-135M Q4_1)", demo, None))
    for name, shape in CPU_SHAPES:
        path = tmp / f"{name}.gguf"
        write_llama_gguf(path, shape)
        models.append((name, path, shape))
    rows = []
    for name, path, _ in models:
        row: dict[str, object] = {"model": name, "path": str(path), "mib": path.stat().st_size / 2**20}
        for t in threads:
            r = _run_child(path, t)
            row[f"pp_t{t}"] = r["pp"]
            row[f"tg_t{t}"] = r["tg"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"ram_read_gbps": ram_read_gbps(), "runs": rows}


def _cpu_spec(name: str) -> object:
    from app.core.model_source import load_model_spec

    for shape_name, shape in CPU_SHAPES:
        if shape_name == name:
            return shape_model_spec(shape, model_id=name)
    return load_model_spec("demo")


def cpu_predictions(measured: dict[str, object], threads: int = 2) -> list[dict[str, float | str]]:
    """The model's CPU figures for measured runs (a host of ``threads`` cores with the measured RAM
    read bandwidth), beside the measurements."""
    bw = float(measured["ram_read_gbps"])  # type: ignore[arg-type]
    host = Host(cores_physical=threads, ram_bandwidth_gbps=bw, ram_available_mib=1 << 20)
    rig = Rig(gpus=(), host=host)
    out: list[dict[str, float | str]] = []
    for row in measured["runs"]:  # type: ignore[attr-defined]
        spec = _cpu_spec(row["model"])
        p = plan(rig, spec, Settings(ctx=2048))  # type: ignore[arg-type]
        est = perf.estimate_speed(
            rig, spec, p, depth_tokens=CPU_PROMPT + CPU_GEN // 2, prompt_tokens=CPU_PROMPT
        )  # type: ignore[arg-type]
        out.append(
            {
                "model": row["model"],
                "tg_measured": row[f"tg_t{threads}"],
                "tg_predicted": est.decode_tok_s or 0.0,
                "pp_measured": row[f"pp_t{threads}"],
                "pp_predicted": est.prompt_tok_s or 0.0,
            }
        )
    return out


def fit_cpu_constants(measured: dict[str, object]) -> dict[str, float]:
    """Least-squares fit of the CPU constants to a --cpu measurement (two threads; the decode FLOP
    rate per core from the one-thread Q4_0 runs, where decode is compute-bound).

    Decode: 1/tg = bytes / (RAM read bandwidth x eff) + (layers + 1) x c_layer.
    Prompt: 256/pp = FLOPs / (2 cores x rate) + (layers + 1) x c_layer (one micro-batch).
    """
    bw = float(measured["ram_read_gbps"]) * 1e9  # type: ignore[arg-type]
    a_dec, b_dec, a_pp, b_pp, rates = [], [], [], [], []
    s = Settings(ctx=2048)
    depth = CPU_PROMPT + CPU_GEN // 2
    for row in measured["runs"]:  # type: ignore[attr-defined]
        sp = perf.speed_profile(_cpu_spec(row["model"]))  # type: ignore[arg-type]
        read = sp.layer_cum_bytes[-1] + sp.output_read_bytes + sp.kv_read_bytes(s, depth).sum()
        flops = sp.layer_cum_flops[-1] + sp.output_flops + (sp.kv_attn_flops * sp.cells(depth)).sum()
        a_dec.append([read / bw, sp.n_layer + 1])
        b_dec.append(1.0 / row["tg_t2"])
        p = CPU_PROMPT
        pflops = (sp.layer_cum_flops[-1] + sp.output_flops) * p + (
            sp.kv_attn_flops * sp.cells(p / 2) * p
        ).sum()
        a_pp.append([pflops / 2e9, sp.n_layer + 1])
        b_pp.append(p / row["pp_t2"])
        if str(row["model"]).startswith("q4-"):
            rates.append(flops * row["tg_t1"] / 1e9)
    x, *_ = np.linalg.lstsq(np.array(a_dec), np.array(b_dec), rcond=None)
    y, *_ = np.linalg.lstsq(np.array(a_pp), np.array(b_pp), rcond=None)
    return {
        "CPU_BANDWIDTH_EFFICIENCY": 1.0 / x[0],
        "CPU_DECODE_LAYER_S": x[1],
        "CPU_DECODE_GFLOPS_PER_CORE": float(np.median(rates)) if rates else float("nan"),
        "CPU_PROMPT_GFLOPS_PER_CORE": 1.0 / y[0],
        "CPU_PROMPT_LAYER_S": y[1],
    }


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------

PCIE4 = PcieLink(gen=4, width=16, max_gen=4, max_width=16, gpu_max_gen=4, gpu_max_width=16)
HOST = Host(cores_physical=8, ram_available_mib=128 * 1024.0, ram_bandwidth_gbps=60.0)


def _gpu(
    index: int, name: str = "RTX 3090", vram: float = 24576.0, bw: float = 936.0, tflops: float = 71.0
) -> Gpu:
    return Gpu(index=index, name=name, vram_total_mib=vram, bandwidth_gbps=bw, fp16_tflops=tflops, pcie=PCIE4)


def _spec(n_layer: int = 32, weight_type: str = "Q4_0") -> object:
    shape = SynthShape(
        n_layer=n_layer,
        n_embd=4096,
        n_ff=14336,
        n_head=32,
        n_head_kv=8,
        n_vocab=32000,
        weight_type=weight_type,
    )
    return shape_model_spec(shape, model_id=f"llama-{n_layer}-{weight_type}")


def _estimate(rig: Rig, spec: object, settings: Settings | None = None, **kw: object) -> perf.SpeedEstimate:
    p = plan(rig, spec, settings or Settings())  # type: ignore[arg-type]
    return perf.estimate_speed(rig, spec, p, **kw)  # type: ignore[arg-type]


def test_the_calibrated_model_reproduces_the_h200_runs() -> None:
    for row in h200_predictions():
        assert abs(row["tg_predicted"] / row["tg_measured"] - 1) < 0.03, row
        assert abs(row["pp_predicted"] / row["pp_measured"] - 1) < 0.01, row


def test_decode_slows_with_the_bytes_each_token_reads() -> None:
    rig = Rig(gpus=(_gpu(0, vram=81920.0),), host=HOST)
    q4 = _estimate(rig, _spec(weight_type="Q4_0"))
    q8 = _estimate(rig, _spec(weight_type="Q8_0"))
    f16 = _estimate(rig, _spec(weight_type="F16"))
    assert q4.decode_tok_s is not None and q8.decode_tok_s is not None and f16.decode_tok_s is not None
    assert q4.decode_tok_s > q8.decode_tok_s > f16.decode_tok_s
    # Bandwidth-bound: Q8_0 reads ~1.9x the bytes of Q4_0, so it is nearly that much slower.
    assert 1.5 < q4.decode_tok_s / q8.decode_tok_s < 1.9


def test_decode_gets_slower_as_the_cache_fills() -> None:
    rig = Rig(gpus=(_gpu(0, vram=81920.0),), host=HOST)
    spec = _spec()
    est = _estimate(rig, spec, Settings(ctx=65536))
    assert est.decode_empty_tok_s is not None and est.decode_tok_s is not None
    assert est.depth_tokens == 32768
    assert est.decode_tok_s < est.decode_empty_tok_s
    # 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes per cached token, read once per new token.
    extra = 32 * 8 * 128 * 2 * 2 * 32768 / (936e9 * perf.GPU_BANDWIDTH_EFFICIENCY)
    assert 1 / est.decode_tok_s - 1 / est.decode_empty_tok_s == pytest.approx(extra, rel=1e-6)


def test_a_mixture_of_experts_reads_only_its_used_experts() -> None:
    from app.core.catalog import catalog_spec
    from app.core.quant import spec_nbytes

    spec = catalog_spec("qwen3-30b-a3b", "Q4_K_M")
    sp = perf.speed_profile(spec)
    total = spec_nbytes(spec)
    read = sp.layer_cum_bytes[-1] + sp.output_read_bytes
    # 8 of 128 experts per token: about a tenth of the weights.
    assert 0.05 < read / total < 0.2
    dense = catalog_spec("qwen3-32b", "Q4_K_M")
    rig = Rig(gpus=(_gpu(0, vram=81920.0),), host=HOST)
    moe_speed = _estimate(rig, spec).decode_tok_s
    dense_speed = _estimate(rig, dense).decode_tok_s
    assert moe_speed is not None and dense_speed is not None and moe_speed > 4 * dense_speed


def test_layer_split_adds_each_gpus_time_and_a_hop_per_boundary() -> None:
    spec = _spec()
    one = Rig(gpus=(_gpu(0),), host=HOST)
    two = Rig(gpus=(_gpu(0), _gpu(1)), host=HOST)
    e1 = _estimate(one, spec)
    e2 = _estimate(two, spec)
    assert e1.decode_tok_s is not None and e2.decode_tok_s is not None
    assert len(e2.gpu_decode_s) == 2 and all(t > 0 for t in e2.gpu_decode_s)
    assert e2.link_decode_s == pytest.approx(perf.PCIE_LATENCY_S + 4096 * 4 / (31.504 * 1e9), rel=1e-3)
    # Same bytes and layers in total, plus the hop: spreading is a little slower, never faster.
    assert 1 / e2.decode_tok_s == pytest.approx(sum(e2.gpu_decode_s) + e2.link_decode_s, rel=1e-9)
    assert e2.decode_tok_s < e1.decode_tok_s


def test_tensor_split_over_nvlink_beats_pcie_and_beats_the_layer_split() -> None:
    from app.core.catalog import catalog_spec
    from app.hardware.catalog import parse_rig_expression

    spec = catalog_spec("llama-3.1-8b", "Q4_K_M")
    tensor = Settings(split_mode="tensor")
    nvlink = _estimate(parse_rig_expression("2x RTX 3090 nvlink"), spec, tensor)
    pcie = _estimate(parse_rig_expression("2x RTX 3090"), spec, tensor)
    layer = _estimate(parse_rig_expression("2x RTX 3090 nvlink"), spec)
    assert nvlink.decode_tok_s and pcie.decode_tok_s and layer.decode_tok_s
    assert pcie.link_decode_s > nvlink.link_decode_s > 0
    assert nvlink.decode_tok_s > pcie.decode_tok_s
    assert nvlink.decode_tok_s > layer.decode_tok_s  # both GPUs read their half at once


def test_the_slower_card_takes_more_time_per_layer() -> None:
    spec = _spec()
    rig = Rig(gpus=(_gpu(0), _gpu(1, "RTX 3060", 12288.0, 360.0, 25.0)), host=HOST)
    p = plan(rig, spec, Settings(tensor_split=(1.0, 1.0)))  # type: ignore[arg-type]
    est = perf.estimate_speed(rig, spec, p)  # type: ignore[arg-type]
    per_layer = [t / max(1, d.layers) for t, d in zip(est.gpu_decode_s, p.devices, strict=True)]
    assert per_layer[1] > 2 * per_layer[0]


def test_layers_on_the_cpu_run_at_system_ram_bandwidth() -> None:
    spec = _spec()
    small = Rig(gpus=(_gpu(0, vram=3072.0),), host=HOST)
    est = _estimate(small, spec)
    p = plan(small, spec, Settings())  # type: ignore[arg-type]
    assert p.status == "offload" and est.n_gpu_layers == p.fit_n_gpu_layers
    assert est.host_decode_s > 0
    faster_ram = _estimate(
        Rig(
            gpus=small.gpus,
            host=Host(cores_physical=8, ram_available_mib=128 * 1024.0, ram_bandwidth_gbps=120.0),
        ),
        spec,
    )
    assert faster_ram.host_decode_s < est.host_decode_s
    assert faster_ram.decode_tok_s is not None and est.decode_tok_s is not None
    assert faster_ram.decode_tok_s > est.decode_tok_s


def test_a_plan_that_does_not_load_has_no_speed() -> None:
    spec = _spec(80)
    rig = Rig(gpus=(_gpu(0, vram=4096.0),), host=Host(ram_available_mib=1024.0))
    est = _estimate(rig, spec)
    assert est.decode_tok_s is None and est.prompt_tok_s is None


def test_cpu_only_rig_gets_a_cpu_estimate() -> None:
    spec = _spec(4)
    host = Host(cores_physical=2, ram_bandwidth_gbps=30.0, ram_available_mib=8192.0)
    est = _estimate(Rig(gpus=(), host=host), spec, Settings(ctx=2048))
    assert est.decode_tok_s is not None and est.prompt_tok_s is not None
    assert est.host_decode_s > 0 and est.gpu_decode_s == ()


def test_prompt_speed_counts_flops_and_per_layer_costs() -> None:
    rig = Rig(gpus=(_gpu(0, vram=81920.0),), host=HOST)
    short = _estimate(rig, _spec(), prompt_tokens=128)
    long = _estimate(rig, _spec(), prompt_tokens=2048)
    assert short.prompt_tok_s is not None and long.prompt_tok_s is not None
    # Fixed and per-micro-batch costs weigh less on a longer prompt.
    assert long.prompt_tok_s > short.prompt_tok_s


def _rounded(row: dict[str, float | str]) -> dict[str, float | str]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}


def _main(argv: list[str]) -> None:
    if "--gpu" in argv:
        print(json.dumps(fit_gpu_constants(), indent=1))
        for row in h200_predictions():
            print(json.dumps({k: round(v, 1) for k, v in row.items()}))
    if "--cpu" in argv:
        out = (
            Path(argv[argv.index("--cpu") + 1])
            if len(argv) > argv.index("--cpu") + 1
            else Path("perf-cpu.json")
        )
        measured = measure_cpu()
        out.write_text(json.dumps(measured, indent=1))
        print(json.dumps({"ram_read_gbps": measured["ram_read_gbps"], "saved": str(out)}))
        argv = [*argv, "--predict", str(out)]
    if "--predict" in argv:
        measured = json.loads(Path(argv[argv.index("--predict") + 1]).read_text())
        print(json.dumps(fit_cpu_constants(measured), indent=1))
        for row in cpu_predictions(measured):
            print(json.dumps(_rounded(row)))


if __name__ == "__main__":
    _main(sys.argv[1:])
