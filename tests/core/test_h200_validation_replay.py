"""Issue 8's H200 runs replayed without a GPU: the planner and the speed model against what was measured.

``tests/fixtures/validation/h200-runner.jsonl`` holds the records of ``tests/gpu/test_h200_validation.py``
on one NVIDIA H200 (driver 580.159.04, CUDA 13.0, llama-cpp-python 0.3.36; docs/validation.md). Every
"load" record is re-planned here from the same synthetic shape on a rig made from the recorded
``rigfit detect --json`` (``h200-detect.json``), with issue 8's tolerances, so a change of the memory
model or of a constant that would break agreement with real llama.cpp fails in CI, not on the next
GPU run. ``python -m tests.core.test_h200_validation_replay`` prints the tables of docs/validation.md.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.core import perf
from app.core.memory import (
    DEFAULT_GPU_OVERHEAD_MIB,
    GPU_OVERHEAD_AFTER_LOAD_MIB,
    GPU_OVERHEAD_WARMUP_MIB,
)
from app.core.model_spec import ModelSpec
from app.core.placement import plan
from app.core.plan import STATUS_FITS, STATUS_OFFLOAD, Plan
from app.core.rig import Gpu, Host, PcieLink, Rig
from app.core.settings import Settings
from tests.gpu.test_h200_validation import BIG, FULL_OFFLOAD, PARTIAL, SHAPES, LoadCase
from tests.synth_gguf import shape_model_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "validation"

# Issue 8's tolerances (the same as the GPU test's).
WEIGHTS_KV_PCT = 1.0
COMPUTE_PCT, COMPUTE_MIB = 10.0, 32.0
NVML_TOTAL_PCT = 3.0
# Speed: the refitted model's decode residuals on these runs are at most 5.5%, and the same model at
# two contexts or the runner against a bare loop moves by up to 5% between runs (988 vs 973 tok/s,
# 292-308 tok/s), so 10% flags a constant that drifted without flagging noise. Partial offload also
# rests on the host's RAM bandwidth, which was not measured there (the 60 GB/s default is assumed):
# 15%. Prompt: residuals up to 13% on the 1B shape (two contexts of one model differ by 12-16%): 20%.
DECODE_FULL_PCT = 10.0
DECODE_PARTIAL_PCT = 15.0
PROMPT_PCT = 20.0


def read_records(kind: str) -> list[dict[str, Any]]:
    """The records of one kind ("load", "telemetry", ...) from the H200 run, in file order."""
    lines = (FIXTURES / "h200-runner.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in (json.loads(line) for line in lines if line.strip()) if r["kind"] == kind]


def rig_from_detect_json(data: dict[str, Any]) -> Rig:
    """The :class:`Rig` that ``rigfit detect --json`` described (the fields the planner reads)."""
    gpus = []
    for g in data["gpus"]:
        pcie = g.get("pcie") or {}
        gpus.append(
            Gpu(
                index=int(g["index"]),
                name=str(g["name"]),
                vram_total_mib=float(g["vram_total_mib"]),
                vram_free_mib=g.get("vram_free_mib"),
                vram_used_mib=g.get("vram_used_mib"),
                bandwidth_gbps=g.get("bandwidth_gbps"),
                fp16_tflops=g.get("fp16_tflops"),
                power_limit_w=g.get("power_limit_w"),
                pcie=PcieLink(
                    **{
                        k: pcie.get(k)
                        for k in ("gen", "width", "max_gen", "max_width", "gpu_max_gen", "gpu_max_width")
                    }
                ),
            )
        )
    host = data.get("host") or {}
    return Rig(
        gpus=tuple(gpus),
        host=Host(
            cpu_name=host.get("cpu_name"),
            cores_physical=host.get("cores_physical"),
            cores_logical=host.get("cores_logical"),
            ram_total_mib=host.get("ram_total_mib"),
            ram_available_mib=host.get("ram_available_mib"),
        ),
        source="detected",
        driver=data.get("driver"),
        cuda=data.get("cuda"),
    )


@functools.cache
def h200_rig() -> Rig:
    """The H200 machine as Rigfit detected it there."""
    return rig_from_detect_json(json.loads((FIXTURES / "h200-detect.json").read_text(encoding="utf-8")))


def parse_case(case_id: str) -> LoadCase:
    """``8b-Q4_0-8192-ngl16`` -> the GPU test's :class:`LoadCase`."""
    parts = case_id.split("-")
    ngl = int(parts[3].removeprefix("ngl")) if len(parts) > 3 else -1
    return LoadCase(parts[0], parts[1], int(parts[2]), ngl)


@functools.cache
def case_spec(model: str, weights: str) -> ModelSpec:
    """The spec of the synthetic GGUF the GPU test wrote for a shape and weight type."""
    return shape_model_spec(replace(SHAPES[model], weight_type=weights), model_id=f"{model}-{weights}")


def case_settings(case: LoadCase) -> Settings:
    """The settings the GPU test loaded with."""
    return Settings(ctx=case.ctx, n_gpu_layers=case.n_gpu_layers, flash_attn=True)


def replan(record: dict[str, Any]) -> tuple[LoadCase, ModelSpec, Plan]:
    case = parse_case(record["case"])
    spec = case_spec(case.model, case.weights)
    return case, spec, plan(h200_rig(), spec, case_settings(case))


def logged(record: dict[str, Any]) -> dict[tuple[str, str], float]:
    """llama.cpp's logged buffers of a load: (device, buffer) -> MiB."""
    return {(b["device"], b["buffer"]): float(b["mib"]) for b in record["buffers"]}


def cuda0_logged_mib(record: dict[str, Any]) -> float:
    return sum(mib for (device, _), mib in logged(record).items() if device == "CUDA0")


def speed(record: dict[str, Any]) -> perf.SpeedEstimate:
    """The speed model for a load at what ``bench`` measured: pp tokens of prompt, tg tokens from an
    empty cache (so the decode figure is taken at the middle, tg/2 cached tokens)."""
    _, spec, p = replan(record)
    return perf.estimate_speed(
        h200_rig(), spec, p, depth_tokens=int(record["tg"]) // 2, prompt_tokens=int(record["pp"])
    )


def pct(predicted: float, measured: float) -> float:
    return (predicted / measured - 1.0) * 100.0 if measured else 0.0


LOADS = read_records("load")
IDS = [str(r["case"]) for r in LOADS]
FULL = [r for r in LOADS if parse_case(r["case"]).n_gpu_layers < 0]
PARTIAL_LOADS = [r for r in LOADS if parse_case(r["case"]).n_gpu_layers >= 0]

# --- the records themselves -----------------------------------------------------------------------


def test_every_load_case_of_the_gpu_test_was_recorded_once() -> None:
    expected = sorted(c.id for c in (*FULL_OFFLOAD, *PARTIAL, *BIG))
    assert sorted(IDS) == expected


def test_the_rig_is_the_detected_h200() -> None:
    rig = h200_rig()
    assert rig.n_gpus == 1
    gpu = rig.gpus[0]
    assert gpu.name == "NVIDIA H200" and gpu.vram_total_mib == 143771.0
    assert gpu.pcie.bandwidth_gbps == pytest.approx(63.0, abs=0.1)  # Gen5 x16
    assert gpu.bandwidth_gbps == pytest.approx(4814.3)  # NVML: 6016-bit bus x 3201 MHz x 2


# --- memory: every buffer llama.cpp logged --------------------------------------------------------


@pytest.mark.parametrize("record", LOADS, ids=IDS)
def test_planned_weights_and_kv_match_the_h200_within_1_percent(record: dict[str, Any]) -> None:
    _, _, p = replan(record)
    measured = logged(record)
    planned = {(b.name, b.kind): b.mib for b in p.buffers}
    for key in [k for k in measured if k[1] in ("model", "KV")]:
        got, want = planned.get(key, 0.0), measured[key]
        assert abs(got - want) <= max(WEIGHTS_KV_PCT / 100 * want, 0.01), (key, got, want)
    # ... and nothing planned that llama.cpp did not allocate.
    assert {k for k in planned if k[1] in ("model", "KV")} == {k for k in measured if k[1] in ("model", "KV")}


@pytest.mark.parametrize("record", LOADS, ids=IDS)
def test_planned_compute_buffers_match_within_10_percent_or_32_mib(record: dict[str, Any]) -> None:
    _, _, p = replan(record)
    measured = logged(record)
    planned = {(b.name, b.kind): b.mib for b in p.buffers}
    for key in [k for k in measured if k[1] in ("compute", "output")]:
        got, want = planned.get(key, 0.0), measured[key]
        assert abs(got - want) <= max(COMPUTE_PCT / 100 * want, COMPUTE_MIB), (key, got, want)


@pytest.mark.parametrize("record", LOADS, ids=IDS)
def test_planned_gpu_total_with_overhead_matches_nvmls_increase_within_3_percent(
    record: dict[str, Any],
) -> None:
    _, _, p = replan(record)
    increase = float(record["vram"][0]["increase_mib"])  # after the load and the warm-up decode
    assert abs(pct(p.devices[0].total_mib, increase)) <= NVML_TOTAL_PCT


@pytest.mark.parametrize("record", LOADS, ids=IDS)
def test_planned_layers_and_status_are_what_llama_cpp_placed(record: dict[str, Any]) -> None:
    case, _, p = replan(record)
    gpu = p.devices[0]
    assert gpu.layers + int(gpu.has_output) == record["layers"]["CUDA0"]
    assert p.host.layers == record["layers"].get("CPU", 0)
    assert p.status == (STATUS_FITS if case.n_gpu_layers < 0 else STATUS_OFFLOAD)


@pytest.mark.parametrize("record", LOADS, ids=IDS)
def test_overhead_constants_are_what_nvml_showed_after_the_load_and_after_the_first_decode(
    record: dict[str, Any],
) -> None:
    vram = record["vram"][0]
    buffers = cuda0_logged_mib(record)
    after_load = vram["after_load_mib"] - vram["before_mib"] - buffers
    steady = vram["after_mib"] - vram["before_mib"] - buffers
    # cudaMalloc rounds each buffer to 2 MiB pages, hence about a MiB of spread.
    assert after_load == pytest.approx(GPU_OVERHEAD_AFTER_LOAD_MIB, abs=1.0)
    assert vram["after_mib"] - vram["after_load_mib"] == pytest.approx(GPU_OVERHEAD_WARMUP_MIB, abs=0.5)
    assert steady == pytest.approx(DEFAULT_GPU_OVERHEAD_MIB, abs=1.0)


def test_the_default_overhead_is_the_after_load_figure_plus_the_warm_up() -> None:
    assert DEFAULT_GPU_OVERHEAD_MIB == GPU_OVERHEAD_AFTER_LOAD_MIB + GPU_OVERHEAD_WARMUP_MIB
    rig = h200_rig()
    spec = case_spec("8b", "Q4_0")
    default = plan(rig, spec, Settings(ctx=4096)).devices[0]
    after_load = plan(rig, spec, Settings(ctx=4096, overhead_mib=GPU_OVERHEAD_AFTER_LOAD_MIB)).devices[0]
    assert default.total_mib - after_load.total_mib == pytest.approx(GPU_OVERHEAD_WARMUP_MIB)


# --- speed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("record", FULL, ids=[str(r["case"]) for r in FULL])
def test_decode_prediction_for_full_offload_is_within_10_percent(record: dict[str, Any]) -> None:
    est = speed(record)
    assert est.decode_tok_s is not None
    assert abs(pct(est.decode_tok_s, record["tg_tok_s"])) <= DECODE_FULL_PCT


@pytest.mark.parametrize("record", PARTIAL_LOADS, ids=[str(r["case"]) for r in PARTIAL_LOADS])
def test_decode_prediction_with_layers_on_the_host_is_within_15_percent(record: dict[str, Any]) -> None:
    est = speed(record)
    assert est.decode_tok_s is not None and est.host_decode_s > 0
    assert abs(pct(est.decode_tok_s, record["tg_tok_s"])) <= DECODE_PARTIAL_PCT


@pytest.mark.parametrize("record", LOADS, ids=IDS)
def test_prompt_prediction_is_within_20_percent(record: dict[str, Any]) -> None:
    est = speed(record)
    assert est.prompt_tok_s is not None
    assert abs(pct(est.prompt_tok_s, record["pp_tok_s"])) <= PROMPT_PCT


def test_partial_offload_prompts_are_an_order_of_magnitude_slower_as_measured() -> None:
    # The weight copies dominate: 8B with 17 layers on the host reads prompts 7.6x slower than with
    # none there, 70B with 41 on the host 16x slower (measured); the model must show the same cliff.
    by_case = {r["case"]: r for r in LOADS}
    for partial, full in (("8b-Q4_0-8192-ngl16", "8b-Q4_0-4096"), ("70b-Q4_0-8192-ngl40", "70b-Q4_0-4096")):
        measured = by_case[full]["pp_tok_s"] / by_case[partial]["pp_tok_s"]
        predicted_full = speed(by_case[full]).prompt_tok_s
        predicted_partial = speed(by_case[partial]).prompt_tok_s
        assert predicted_full is not None and predicted_partial is not None
        assert predicted_full / predicted_partial == pytest.approx(measured, rel=0.25)


# --- tables for docs/validation.md ----------------------------------------------------------------


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct_text(predicted: float, measured: float) -> str:
    value = round(pct(predicted, measured), 2)
    return f"{value + 0.0:+.2f}%"  # + 0.0 turns -0.0 into 0.0


_ORDER = {"model": 0, "KV": 1, "compute": 2, "output": 3}


def main() -> None:
    """Print the per-load tables and the speed table of docs/validation.md."""
    for record in LOADS:
        case, spec, p = replan(record)
        planned = {(b.name, b.kind): b.mib for b in p.buffers}
        measured = logged(record)
        gpu = p.devices[0]
        offload = "all layers on the GPU" if case.n_gpu_layers < 0 else f"n_gpu_layers {case.n_gpu_layers}"
        print(
            f"\n#### {case.id}: {spec.n_layer} x {spec.n_embd}, {case.weights}, ctx {case.ctx}, {offload} "
            f"(layer slots, llama.cpp: {', '.join(f'{d} {n}' for d, n in record['layers'].items())}; "
            f"plan: CUDA0 {gpu.layers} + output, "
            f"CPU {p.host.layers})\n"
        )
        print("| buffer | planned MiB | llama.cpp MiB | error |")
        print("| --- | --- | --- | --- |")
        gpu_keys = sorted((k for k in measured if k[0] == "CUDA0"), key=lambda k: _ORDER[k[1]])
        host_keys = sorted((k for k in measured if k[0] != "CUDA0"), key=lambda k: (_ORDER[k[1]], k[0]))
        for key in gpu_keys:
            got, want = planned.get(key, 0.0), measured[key]
            print(f"| {key[0]} {key[1]} | {got:.2f} | {want:.2f} | {_pct_text(got, want)} |")
        buffers_planned = gpu.weights_mib + gpu.kv_mib + gpu.compute_mib
        buffers_logged = sum(measured[k] for k in gpu_keys)
        print(
            f"| CUDA0 buffers | {buffers_planned:.2f} | {buffers_logged:.2f} | "
            f"{_pct_text(buffers_planned, buffers_logged)} |"
        )
        increase = float(record["vram"][0]["increase_mib"])
        print(
            f"| CUDA0 + {gpu.overhead_mib:.1f} overhead vs NVML increase | {gpu.total_mib:.2f} | {increase:.2f} | "
            f"{_pct_text(gpu.total_mib, increase)} |"
        )
        for key in host_keys:
            got, want = planned.get(key, 0.0), measured[key]
            print(f"| {key[0]} {key[1]} | {got:.2f} | {want:.2f} | {_pct_text(got, want)} |")
        host_logged = sum(measured[k] for k in host_keys)
        print(
            f"| host buffers | {p.host.total_mib:.2f} | {host_logged:.2f} | {_pct_text(p.host.total_mib, host_logged)} |"
        )
    print("\n| case | pp/tg | decode measured | predicted | error | prompt measured | predicted | error |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for record in LOADS:
        est = speed(record)
        tg, pp = record["tg_tok_s"], record["pp_tok_s"]
        print(
            f"| {record['case']} | {record['pp']}/{record['tg']} | {tg:.1f} | {_fmt(est.decode_tok_s, 1)} | "
            f"{pct(est.decode_tok_s or 0, tg):+.1f}% | {pp:.0f} | {_fmt(est.prompt_tok_s, 0)} | "
            f"{pct(est.prompt_tok_s or 0, pp):+.1f}% |"
        )


if __name__ == "__main__":
    main()
    sys.exit(0)
