"""The speed model: what it predicts for plans, and how its constants were measured.

Pure tests pin the model's behaviour (more bytes -> slower, a slow card's share, MoE reads only the
used experts, tensor split over NVLink vs PCIe, layers on the CPU, op_offload's weight copies). The
calibration lives here too:

    .venv/bin/python -m tests.core.test_perf --gpu      # fit the GPU constants to every H200 run
    .venv/bin/python -m tests.core.test_perf --cpu      # measure this machine with llama-cpp-python
    .venv/bin/python -m tests.core.test_perf --cpu-doc  # refit the CPU constants on the recorded runs

``docs/speed-model.md`` records both outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from app.core import perf
from app.core.model_spec import ModelSpec
from app.core.placement import plan
from app.core.rig import Gpu, Host, PcieLink, Rig
from app.core.settings import Settings
from tests.core import test_h200_validation_replay as replay
from tests.synth_gguf import SynthShape, shape_model_spec, write_llama_gguf

# ------------------------------------------------------------------------------------------------
# calibration data and procedures
# ------------------------------------------------------------------------------------------------

# DEVICE.md, nvidia-h200: (layers, embd, ffn, heads, kv heads), ctx, pp tok/s (201-token prompt,
# the process's first), tg tok/s (200 tokens generated after it, through llama-cpp-python's
# sampling loop). Q4_0, vocabulary 49152, flash attention, all layers on the GPU.
H200_RUNS: tuple[tuple[tuple[int, int, int, int, int], int, float, float], ...] = (
    ((16, 2048, 8192, 32, 8), 4096, 4137.0, 951.0),
    ((32, 4096, 14336, 32, 8), 8192, 2570.0, 325.0),
    ((80, 8192, 28672, 64, 8), 8192, 974.0, 58.0),
    ((80, 8192, 28672, 64, 8), 32768, 964.0, 58.0),
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


@dataclass(frozen=True)
class H200Run:
    """One measured H200 run, in the terms the speed model needs."""

    source: str  # "DEVICE.md" or the validation record's case id
    spec: ModelSpec
    settings: Settings
    prompt_tokens: int
    depth_tokens: float  # mean cached tokens over the measured decode
    pp_tok_s: float
    tg_tok_s: float
    warm: bool  # the prompt ran after a warm-up decode (the validation runs) or first (DEVICE.md)


def h200_runs() -> list[H200Run]:
    """Every H200 run with speeds: DEVICE.md's four, then the twelve loads of docs/validation.md."""
    runs = [
        H200Run(
            f"DEVICE.md {dims[0]}x{dims[1]} ctx {ctx}",
            shape_model_spec(_h200_shape(dims), model_id=f"h200-{dims[0]}"),
            Settings(ctx=ctx),
            H200_PROMPT,
            H200_DEPTH,
            pp,
            tg,
            warm=False,
        )
        for dims, ctx, pp, tg in H200_RUNS
    ]
    for r in replay.LOADS:
        case = replay.parse_case(r["case"])
        runs.append(
            H200Run(
                r["case"],
                replay.case_spec(case.model, case.weights),
                replay.case_settings(case),
                int(r["pp"]),
                int(r["tg"]) / 2,  # bench decodes tg tokens from an empty cache
                float(r["pp_tok_s"]),
                float(r["tg_tok_s"]),
                warm=True,
            )
        )
    return runs


def h200_predictions() -> list[dict[str, float | str]]:
    """The model's figures for every H200 run, beside the measurements."""
    rig = replay.h200_rig()
    out: list[dict[str, float | str]] = []
    for run in h200_runs():
        p = plan(rig, run.spec, run.settings)
        est = perf.estimate_speed(
            rig, run.spec, p, depth_tokens=int(run.depth_tokens), prompt_tokens=run.prompt_tokens
        )
        assert est.decode_tok_s is not None and est.prompt_tok_s is not None
        out.append(
            {
                "run": run.source,
                "tg_measured": run.tg_tok_s,
                "tg_predicted": est.decode_tok_s,
                "pp_measured": run.pp_tok_s,
                "pp_predicted": est.prompt_tok_s,
            }
        )
    return out


def _relative_lstsq(a: list[list[float]], t: list[float]) -> npt.NDArray[np.float64]:
    # Least squares on relative errors: a 1B's millisecond counts as much as a 70B's 17.
    am, tm = np.array(a, dtype=np.float64), np.array(t, dtype=np.float64)
    x, *_ = np.linalg.lstsq(am / tm[:, None], np.ones_like(tm), rcond=None)
    return np.asarray(x, dtype=np.float64)


def fit_gpu_constants() -> dict[str, float]:
    """Least-squares fit of the GPU constants to the H200 runs (what perf.py's values came from).

    Decode, every full-offload run (DEVICE.md's and the validation loads): 1/tg = bytes / (4814 GB/s x
    eff) + (layers + 1) x c_layer; a per-token constant fits to -82 (DEVICE.md alone) or +110 us
    (validation runs alone), within noise, so it is left out. Prompt, the warm full-offload validation
    loads (DEVICE.md's prompts were each process's first and carry 29-42 ms of first-call costs):
    pp/pp_tok_s = FLOPs / (989 TFLOPS x eff) + (layers + 1) x micro-batches x c_layer + c_fixed.
    op_offload, the two partial-offload loads, with the prompt constants above: the rest of their time
    = micro-batches x (host-layer bytes / copy GB/s + host layers x c_host_layer), solved exactly.
    """
    rig = replay.h200_rig()
    gpu = rig.gpus[0]
    bw = perf.gpu_bandwidth_gbps(gpu) * 1e9
    tf = perf.gpu_tflops(gpu) * 1e12
    a_dec: list[list[float]] = []
    t_dec: list[float] = []
    a_pp: list[list[float]] = []
    t_pp: list[float] = []
    partial: list[tuple[H200Run, int]] = []
    for run in h200_runs():
        sp = perf.speed_profile(run.spec)
        h = plan(rig, run.spec, run.settings).host.layers
        if h:
            partial.append((run, h))
            continue
        read = (
            sp.layer_cum_bytes[-1]
            + sp.output_read_bytes
            + sp.kv_read_bytes(run.settings, run.depth_tokens).sum()
        )
        a_dec.append([read / bw, sp.n_layer + 1])
        t_dec.append(1.0 / run.tg_tok_s)
        if run.warm:
            a_pp.append([_prompt_flops(sp, run.prompt_tokens) / tf, (sp.n_layer + 1) * _n_ub(run), 1.0])
            t_pp.append(run.prompt_tokens / run.pp_tok_s)
    x = _relative_lstsq(a_dec, t_dec)
    y = _relative_lstsq(a_pp, t_pp)
    rows, rest = [], []
    for run, h in partial:
        sp = perf.speed_profile(run.spec)
        n_ub = _n_ub(run)
        gpu_s = _prompt_flops(sp, run.prompt_tokens) / tf * y[0] + (sp.n_layer + 1) * n_ub * y[1] + y[2]
        rows.append([n_ub * float(sp.layer_cum_bytes[h]), n_ub * h])
        rest.append(run.prompt_tokens / run.pp_tok_s - gpu_s)
    z = np.linalg.solve(np.array(rows), np.array(rest))
    return {
        "GPU_BANDWIDTH_EFFICIENCY": 1.0 / x[0],
        "GPU_DECODE_LAYER_S": x[1],
        "GPU_FLOPS_EFFICIENCY": 1.0 / y[0],
        "GPU_PROMPT_LAYER_S": y[1],
        "GPU_PROMPT_FIXED_S": y[2],
        "OFFLOAD_COPY_GBPS": 1.0 / z[0] / 1e9,
        "OFFLOAD_HOST_LAYER_S": z[1],
    }


def _n_ub(run: H200Run) -> int:
    return -(-run.prompt_tokens // min(run.settings.n_ubatch, run.settings.n_batch))


def _prompt_flops(sp: perf.SpeedProfile, p: int) -> float:
    """A prompt's FLOPs as the model counts them: every layer per token, attention over half the
    prompt on average, the output layer once (only the last token's logits are computed)."""
    attn = float((sp.kv_attn_flops * sp.cells(p / 2) * p).sum())
    return float(sp.layer_cum_flops[-1]) * p + attn + sp.output_flops * perf.PROMPT_OUTPUTS


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
# The --cpu run docs/speed-model.md's CPU constants come from (the first, quieter one of the two
# there): best of three, tok/s with 2 and 1 threads; RAM read bandwidth as numpy measured it.
CPU_RUN_RECORDED: dict[str, object] = {
    "ram_read_gbps": 31.3,
    "runs": [
        {"model": "demo (SmolLM2-135M Q4_1)", "tg_t2": 126.0, "pp_t2": 341.0, "tg_t1": 81.4, "pp_t1": 174.0},
        {"model": "q4-8x2048", "tg_t2": 93.7, "pp_t2": 390.0, "tg_t1": 66.4, "pp_t1": 191.0},
        {"model": "q8-8x2048", "tg_t2": 60.3, "pp_t2": 306.0, "tg_t1": 48.5, "pp_t1": 159.0},
        {"model": "f16-8x2048", "tg_t2": 35.7, "pp_t2": 271.0, "tg_t1": 31.1, "pp_t1": 133.0},
        {"model": "q4-4x4096", "tg_t2": 54.3, "pp_t2": 185.0, "tg_t1": 30.7, "pp_t1": 94.0},
        {"model": "q8-48x512", "tg_t2": 93.3, "pp_t2": 496.0, "tg_t1": 88.8, "pp_t1": 284.0},
    ],
}

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


def ram_read_gbps(threads: int = 2) -> float:
    """System-RAM read bandwidth as Rigfit's probe measures it (app.hardware.membw: ``threads`` threads
    summing a 512 MiB array, best of 5) — the figure the CPU constants are calibrated against."""
    from app.hardware.membw import measure_ram_read_gbps

    return measure_ram_read_gbps(threads=threads)


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
        a_pp.append([_prompt_flops(sp, p) / 2e9, sp.n_layer + 1])
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


def test_perf_constants_are_the_fit_of_the_recorded_h200_runs() -> None:
    # perf.py's GPU constants are this fit, rounded to three figures: a new measurement (or a change
    # of the model's form) that moves the fit fails here until the constants are refitted.
    for name, value in fit_gpu_constants().items():
        assert getattr(perf, name) == pytest.approx(value, rel=0.005), name


def test_perf_cpu_constants_are_the_fit_of_the_recorded_cpu_run() -> None:
    fitted = fit_cpu_constants(CPU_RUN_RECORDED)
    for name in ("CPU_PROMPT_GFLOPS_PER_CORE", "CPU_PROMPT_LAYER_S", "CPU_DECODE_LAYER_S"):
        assert getattr(perf, name) == pytest.approx(fitted[name], rel=0.01), name
    # Rounded on purpose: 1.0 for a fitted 0.998, 60 for one-thread rates of 58 and 62 GFLOPS.
    assert abs(perf.CPU_BANDWIDTH_EFFICIENCY - fitted["CPU_BANDWIDTH_EFFICIENCY"]) <= 0.01
    assert abs(perf.CPU_DECODE_GFLOPS_PER_CORE / fitted["CPU_DECODE_GFLOPS_PER_CORE"] - 1) <= 0.05


def test_the_calibrated_model_reproduces_the_h200_decode_runs_of_device_md() -> None:
    # DEVICE.md's prompts were each process's first (first-call costs the warm model leaves out), so
    # only their decode is held to the model here; tests/core/test_h200_validation_replay.py holds
    # the validation runs, prompt included.
    for row in h200_predictions()[: len(H200_RUNS)]:
        assert abs(float(row["tg_predicted"]) / float(row["tg_measured"]) - 1) < 0.05, row
        assert float(row["pp_predicted"]) > float(row["pp_measured"]), row


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


def test_a_cpu_rpc_server_reads_at_ram_speed_not_as_a_gpu() -> None:
    # `rigfit bench --rpc 127.0.0.1:P=CPU` measured 20-30 tok/s where a CPU server counted as a
    # 500 GB/s GPU predicted 318 (docs/speed-model.md).
    from app.core.rig import Remote
    from app.core.rpc import NETWORK_LINKS

    spec = _spec(4)
    host = Host(cores_physical=2, ram_bandwidth_gbps=30.0, ram_available_mib=8192.0)
    cpu_alone = _estimate(Rig(gpus=(), host=host), spec, Settings(ctx=2048))

    def server(bandwidth: float | None) -> Gpu:
        remote = Remote(link=NETWORK_LINKS["loopback"], endpoint="127.0.0.1:50052", backend="cpu")
        return Gpu(0, "CPU @ 127.0.0.1:50052", 8192.0, vendor="cpu", bandwidth_gbps=bandwidth, remote=remote)

    measured = _estimate(Rig(gpus=(server(30.0),), host=host), spec, Settings(ctx=2048))
    assert measured.decode_tok_s is not None and cpu_alone.decode_tok_s is not None
    # All layers on the server: about the host's own speed (the same RAM), less RPC's round trips.
    assert 0.5 * cpu_alone.decode_tok_s < measured.decode_tok_s < 1.6 * cpu_alone.decode_tok_s
    assert perf.gpu_bandwidth_gbps(server(30.0)) * perf.GPU_BANDWIDTH_EFFICIENCY == pytest.approx(
        30.0 * perf.CPU_BANDWIDTH_EFFICIENCY
    )
    unknown = _estimate(Rig(gpus=(server(None),), host=host), spec, Settings(ctx=2048))
    assert any("CPU RPC server's RAM bandwidth is unknown" in n for n in unknown.notes)
    # Unknown: the 60 GB/s default host, not a 500 GB/s GPU (at most twice the 30 GB/s host's speed).
    assert unknown.decode_tok_s is not None and unknown.decode_tok_s < 2.2 * cpu_alone.decode_tok_s
    assert not any("GPU's memory bandwidth is unknown" in n for n in unknown.notes)


def test_prompt_speed_counts_flops_and_per_layer_costs() -> None:
    rig = Rig(gpus=(_gpu(0, vram=81920.0),), host=HOST)
    short = _estimate(rig, _spec(), prompt_tokens=128)
    long = _estimate(rig, _spec(), prompt_tokens=2048)
    assert short.prompt_tok_s is not None and long.prompt_tok_s is not None
    # Fixed and per-micro-batch costs weigh less on a longer prompt.
    assert long.prompt_tok_s > short.prompt_tok_s


def _offload_rig(pcie: PcieLink, vram_mib: float = 4096.0) -> Rig:
    return Rig(
        gpus=(Gpu(0, "RTX 4090", vram_mib, bandwidth_gbps=1008.0, fp16_tflops=165.0, pcie=pcie),),
        host=HOST,
    )


PCIE5 = PcieLink(gen=5, width=16, max_gen=5, max_width=16, gpu_max_gen=5, gpu_max_width=16)
PCIE3_X4 = PcieLink(gen=3, width=4, max_gen=3, max_width=4, gpu_max_gen=4, gpu_max_width=16)


def test_host_layers_are_copied_to_the_gpu_for_every_prompt_micro_batch() -> None:
    spec = _spec()
    s = Settings(ctx=4096, n_gpu_layers=17)  # 16 repeating layers stay on the host
    rig = _offload_rig(PCIE5)
    sp = perf.speed_profile(spec)  # type: ignore[arg-type]
    host_bytes = float(sp.layer_cum_bytes[16])
    one = _estimate(rig, spec, s, prompt_tokens=512)
    four = _estimate(rig, spec, s, prompt_tokens=2048)
    assert one.prompt_tok_s is not None and four.prompt_tok_s is not None
    copy_s = host_bytes / (perf.OFFLOAD_COPY_GBPS * 1e9) + 16 * perf.OFFLOAD_HOST_LAYER_S
    # Four micro-batches pay four copies: at least three more than one micro-batch does.
    assert 2048 / four.prompt_tok_s - 512 / one.prompt_tok_s > 3 * copy_s
    # The copy dominates: with half the layers on the host the prompt is read several times slower.
    big = Rig(gpus=(replace(rig.gpus[0], vram_total_mib=24576.0),), host=HOST)
    full = _estimate(big, spec, Settings(ctx=4096), prompt_tokens=512)
    assert full.prompt_tok_s is not None and full.prompt_tok_s > 2 * one.prompt_tok_s


def test_the_weight_copy_runs_at_the_pageable_rate_or_the_slower_slot() -> None:
    spec = _spec()
    s = Settings(ctx=4096, n_gpu_layers=17)
    fast = _estimate(_offload_rig(PCIE5), spec, s, prompt_tokens=512)
    slow = _estimate(_offload_rig(PCIE3_X4), spec, s, prompt_tokens=512)
    assert fast.prompt_tok_s is not None and slow.prompt_tok_s is not None
    host_bytes = float(perf.speed_profile(spec).layer_cum_bytes[16])  # type: ignore[arg-type]
    # Gen5 x16 (63 GB/s) is faster than the pageable copy; Gen3 x4 (3.94 GB/s) is slower than it.
    extra = host_bytes / (PCIE3_X4.bandwidth_gbps * 1e9) - host_bytes / (perf.OFFLOAD_COPY_GBPS * 1e9)  # type: ignore[operator]
    assert 512 / slow.prompt_tok_s - 512 / fast.prompt_tok_s == pytest.approx(extra, rel=1e-9)


def test_micro_batches_under_32_tokens_leave_host_layers_to_the_cpu() -> None:
    spec = _spec()
    s = Settings(ctx=4096, n_gpu_layers=17)
    short_fast = _estimate(_offload_rig(PCIE5), spec, s, prompt_tokens=16)
    short_slow = _estimate(_offload_rig(PCIE3_X4), spec, s, prompt_tokens=16)
    # No copy at all below op_offload's threshold: the slot does not matter, the CPU does the work.
    assert short_fast.prompt_tok_s == pytest.approx(short_slow.prompt_tok_s, rel=1e-12)
    no_offload = _estimate(_offload_rig(PCIE5), spec, replace(s, op_offload=False), prompt_tokens=16)
    assert short_fast.prompt_tok_s == pytest.approx(no_offload.prompt_tok_s, rel=1e-12)
    # A 40-token prompt in micro-batches of 32 offloads the first (32 tokens) but not the rest (8).
    mixed = _estimate(_offload_rig(PCIE5), spec, replace(s, n_batch=32, n_ubatch=32), prompt_tokens=40)
    mixed_slow = _estimate(
        _offload_rig(PCIE3_X4), spec, replace(s, n_batch=32, n_ubatch=32), prompt_tokens=40
    )
    assert mixed.prompt_tok_s is not None and mixed_slow.prompt_tok_s is not None
    host_bytes = float(perf.speed_profile(spec).layer_cum_bytes[16])  # type: ignore[arg-type]
    one_copy_extra = host_bytes / (PCIE3_X4.bandwidth_gbps * 1e9) - host_bytes / (
        perf.OFFLOAD_COPY_GBPS * 1e9
    )  # type: ignore[operator]
    assert 40 / mixed_slow.prompt_tok_s - 40 / mixed.prompt_tok_s == pytest.approx(one_copy_extra, rel=1e-9)


def test_a_prompt_computes_the_output_layer_once_not_per_token() -> None:
    rig = Rig(gpus=(_gpu(0, vram=81920.0),), host=HOST)
    small, big = (
        shape_model_spec(
            SynthShape(n_layer=8, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8, n_vocab=v),
            model_id=f"vocab-{v}",
        )
        for v in (32000, 128000)
    )
    a = _estimate(rig, small, prompt_tokens=512)
    b = _estimate(rig, big, prompt_tokens=512)
    assert a.prompt_tok_s is not None and b.prompt_tok_s is not None
    extra_flops = 2 * (128000 - 32000) * 4096  # one row of logits more per prompt, not 512
    rate = 71.0e12 * perf.GPU_FLOPS_EFFICIENCY
    assert 512 / b.prompt_tok_s - 512 / a.prompt_tok_s == pytest.approx(extra_flops / rate, rel=1e-6)


def _rounded(row: dict[str, float | str]) -> dict[str, float | str]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}


def _main(argv: list[str]) -> None:
    if "--gpu" in argv:
        print(json.dumps(fit_gpu_constants(), indent=1))
        for row in h200_predictions():
            print(json.dumps(_rounded(row)))
    if "--cpu-doc" in argv:
        print(json.dumps(fit_cpu_constants(CPU_RUN_RECORDED), indent=1))
        for row in cpu_predictions(CPU_RUN_RECORDED):
            print(json.dumps(_rounded(row)))
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
