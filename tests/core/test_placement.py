"""Placement and memory model, pure: llama.cpp's layer rule, per-device sums, statuses, validation,
and the CUDA figures measured on an H200 (../shared/DEVICE.md and tests/fixtures/placement/)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import RigfitError
from app.core.memory import (
    DEFAULT_GPU_OVERHEAD_MIB,
    GPU_OVERHEAD_AFTER_LOAD_MIB,
    MIB,
    cuda_tensor_bytes,
    kv_cells,
    profile,
)
from app.core.model_spec import ModelSpec, TensorInfo
from app.core.placement import TENSOR_SPLIT_UNSUPPORTED_ARCHS, layer_assignment, plan
from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT, Plan
from app.core.rig import VENDOR_INTEL, Gpu, Host, Rig
from app.core.settings import Settings
from tests.synth_gguf import SynthShape, shape_model_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "placement"
H200_MIB = 143771.0


def gpus(*vram_mib: float, **kw: object) -> Rig:
    return Rig(
        gpus=tuple(Gpu(index=i, name=f"GPU{i}", vram_total_mib=v, **kw) for i, v in enumerate(vram_mib)),  # type: ignore[arg-type]
        host=Host(ram_available_mib=65536.0),
    )


def buffers(p: Plan) -> dict[tuple[str, str], float]:
    return {(b.name, b.kind): b.mib for b in p.buffers}


def counts(slots: tuple[int, ...], n_dev: int) -> list[int]:
    return [sum(1 for s in slots if s == d) for d in range(n_dev)]


SMALL = shape_model_spec(SynthShape(n_layer=8, n_embd=1024, n_ff=2816, n_head=16, n_head_kv=4, n_vocab=8192))
L8B = shape_model_spec(
    SynthShape(
        n_layer=32, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8, n_vocab=128256, weight_type="Q4_0"
    )
)


# --- llama.cpp's layer rule ------------------------------------------------------------------------


def test_equal_split_of_32_layers_gives_the_first_gpu_17_slots_and_the_second_the_output() -> None:
    slots = layer_assignment(32, [1.0, 1.0], -1)
    assert len(slots) == 33
    assert slots[:17] == (0,) * 17 and slots[17:] == (1,) * 16
    assert slots[32] == 1  # the output layer is the last slot


def test_uneven_split_three_to_one_puts_25_slots_on_the_first_gpu() -> None:
    # 32/33 slots: slot il goes to GPU 0 while il/33 < 0.75, i.e. il <= 24.
    assert counts(layer_assignment(32, [3.0, 1.0], -1), 2) == [25, 8]


def test_float32_ties_at_split_points_go_to_the_next_gpu() -> None:
    # 27/81 equals the float32 split point 1/3 exactly; upper_bound sends the slot onwards.
    slots = layer_assignment(80, [1.0, 1.0, 1.0], -1)
    assert counts(slots, 3) == [27, 27, 27]
    assert slots[26] == 0 and slots[27] == 1 and slots[54] == 2


def test_zero_ratio_gpu_gets_no_layers() -> None:
    assert set(layer_assignment(16, [1.0, 0.0], -1)) == {0}
    assert set(layer_assignment(16, [0.0, 1.0], -1)) == {1}
    assert counts(layer_assignment(16, [1.0, 0.0, 1.0], -1), 3)[1] == 0


def test_partial_offload_keeps_the_first_layers_on_the_cpu_and_the_output_on_the_gpu() -> None:
    slots = layer_assignment(32, [1.0], 10)
    assert slots[:23] == (-1,) * 23  # i_gpu_start = 33 - 10
    assert slots[23:] == (0,) * 10
    assert layer_assignment(32, [1.0], 1) == (-1,) * 32 + (0,)
    assert layer_assignment(32, [1.0], 0) == (-1,) * 33


def test_partial_offload_splits_only_the_offloaded_slots_between_gpus() -> None:
    slots = layer_assignment(32, [1.0, 1.0], 10)
    assert slots[:23] == (-1,) * 23
    assert slots[23:28] == (0,) * 5 and slots[28:] == (1,) * 5


def test_more_gpu_layers_than_slots_offloads_everything() -> None:
    assert layer_assignment(4, [1.0], 100) == (0,) * 5


@pytest.mark.parametrize("split", [[-1.0, 2.0], [0.0, 0.0], [float("nan"), 1.0]])
def test_bad_split_ratios_are_refused(split: list[float]) -> None:
    with pytest.raises(RigfitError):
        layer_assignment(8, split, -1)


@settings(max_examples=200, deadline=None)
@given(
    n_layer=st.integers(1, 130),
    ratios=st.lists(st.floats(0.0, 100.0), min_size=1, max_size=8).filter(lambda r: sum(r) > 0.01),
    ngl=st.integers(-1, 140),
)
def test_layer_assignment_is_ordered_and_respects_n_gpu_layers(
    n_layer: int, ratios: list[float], ngl: int
) -> None:
    slots = layer_assignment(n_layer, ratios, ngl)
    assert len(slots) == n_layer + 1
    on_gpu = [s for s in slots if s >= 0]
    expected = n_layer + 1 if ngl < 0 else min(ngl, n_layer + 1)
    assert len(on_gpu) == expected
    assert on_gpu == sorted(on_gpu)  # devices take contiguous runs in order
    assert all(ratios[s] > 0 for s in on_gpu)
    if on_gpu:
        assert slots[-1] >= 0  # the output slot is the first to be offloaded


# --- DEVICE.md: H200 figures reproduced exactly ------------------------------------------------------

# ../shared/DEVICE.md "What was measured there": synthetic llama shapes, Q4_0, vocabulary 49152,
# flash attention, all layers offloaded, n_batch 512: CPU_Mapped model, CUDA0 model, CUDA0 KV,
# CUDA0 compute, CUDA_Host compute (MiB) and NVML's used-VRAM increase right after the load (before
# any decode: the planner's default overhead adds the first decode's 66 MiB, so these NVML figures
# are compared with the after-load overhead, GPU_OVERHEAD_AFTER_LOAD_MIB).
DEVICE_MD = [
    ((16, 2048, 8192, 32, 8), 4096, (54.00, 576.26, 128.00, 100.00, 12.01), 1331.6),
    ((32, 4096, 14336, 32, 8), 8192, (108.00, 3853.02, 1024.00, 116.01, 24.01), 5521.6),
    ((80, 8192, 28672, 64, 8), 8192, (216.00, 36941.03, 2560.00, 224.01, 40.01), 40253.6),
    ((80, 8192, 28672, 64, 8), 32768, (216.00, 36941.03, 10240.00, 248.01, 64.01), 47957.6),
]


@pytest.mark.parametrize(
    ("shape", "ctx", "logged", "nvml"), DEVICE_MD, ids=["1B-4k", "8B-8k", "70B-8k", "70B-32k"]
)
def test_planner_reproduces_the_h200_buffers_of_device_md(
    shape: tuple[int, ...], ctx: int, logged: tuple[float, ...], nvml: float
) -> None:
    n_layer, n_embd, n_ff, n_head, n_kv = shape
    spec = shape_model_spec(
        SynthShape(n_layer=n_layer, n_embd=n_embd, n_ff=n_ff, n_head=n_head, n_head_kv=n_kv, n_vocab=49152)
    )
    p = plan(gpus(H200_MIB), spec, Settings(ctx=ctx, overhead_mib=GPU_OVERHEAD_AFTER_LOAD_MIB))
    b = buffers(p)
    got = tuple(
        round(b[k], 2)
        for k in (
            ("CPU_Mapped", "model"),
            ("CUDA0", "model"),
            ("CUDA0", "KV"),
            ("CUDA0", "compute"),
            ("CUDA_Host", "compute"),
        )
    )
    assert got == logged
    assert p.devices[0].total_mib == pytest.approx(nvml, abs=2.0)  # the after-load overhead is measured there
    assert p.status == STATUS_FITS


def _fixture_rows(name: str) -> list[dict[str, object]]:
    path = FIXTURES / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _case_settings(raw: dict[str, object]) -> Settings:
    """A fixture row's settings, with the after-load overhead: tests/gpu/test_placement_cuda.py read
    NVML right after the load, before any decode."""
    settings = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})  # type: ignore[arg-type]
    return replace(settings, overhead_mib=GPU_OVERHEAD_AFTER_LOAD_MIB)


CUDA_ROWS = _fixture_rows("cuda_h200.jsonl")
OFFLOAD_ROWS = _fixture_rows("cuda_h200_offload.jsonl")


def _replay(row: dict[str, object]) -> tuple[Plan, dict[tuple[str, str], float], dict[str, float]]:
    spec = shape_model_spec(SynthShape(**row["shape"]))  # type: ignore[arg-type]
    p = plan(gpus(H200_MIB), spec, _case_settings(row["settings"]))  # type: ignore[arg-type]
    return p, buffers(p), row["measured"]  # type: ignore[return-value]


@pytest.mark.parametrize("row", CUDA_ROWS, ids=[str(r["case"]) for r in CUDA_ROWS])
def test_planner_matches_every_buffer_of_a_real_h200_load(row: dict[str, object]) -> None:
    """tests/fixtures/placement/cuda_h200.jsonl: loads measured with tests/gpu/test_placement_cuda.py."""
    p, predicted, measured = _replay(row)
    if row["error"]:
        assert p.status == STATUS_NO
        assert any("split buffers" in n for n in p.notes)
        return
    for key, value in measured.items():
        name, kind = key.split("/")
        name = "CUDA0" if name == "Meta()" else name  # tensor split logs the meta device
        # Logged with two decimals (four for compute buffers): equal to the last digit.
        assert predicted.get((name, kind), 0.0) == pytest.approx(value, abs=0.011), key
    nvml = row["nvml_delta_mib"][0]  # type: ignore[index]
    assert p.devices[0].total_mib == pytest.approx(nvml, abs=5.0)


@pytest.mark.parametrize("row", OFFLOAD_ROWS, ids=[str(r["case"]) for r in OFFLOAD_ROWS])
def test_planner_matches_h200_partial_offload_loads(row: dict[str, object]) -> None:
    """tests/fixtures/placement/cuda_h200_offload.jsonl: layers left on the host (op_offload)."""
    p, predicted, measured = _replay(row)
    for key, value in measured.items():
        name, kind = key.split("/")
        got = predicted.get((name, kind), 0.0)
        if kind == "compute":
            assert abs(got - value) <= max(0.10 * value, 32.0), key
        else:
            assert got == pytest.approx(value, abs=0.011), key
    nvml = row["nvml_delta_mib"][0]  # type: ignore[index]
    assert p.devices[0].total_mib == pytest.approx(nvml, abs=32.0)


# --- per-device sums ---------------------------------------------------------------------------------


def test_layer_split_weights_and_kv_add_up_to_the_single_gpu_figures() -> None:
    one = plan(gpus(H200_MIB), L8B, Settings(ctx=8192))
    two = plan(gpus(H200_MIB, H200_MIB), L8B, Settings(ctx=8192, tensor_split=(3.0, 1.0)))
    assert sum(d.weights_mib for d in two.devices) == pytest.approx(one.devices[0].weights_mib)
    assert sum(d.kv_mib for d in two.devices) == pytest.approx(one.devices[0].kv_mib)
    assert [d.layers for d in two.devices] == [25, 7]
    assert [d.has_output for d in two.devices] == [False, True]
    assert two.devices[1].first_layer == 25
    assert two.host.weights_mib == pytest.approx(one.host.weights_mib)
    assert two.tensor_split == pytest.approx((0.75, 0.25))


def test_only_the_gpu_holding_the_output_layer_pays_for_the_logits() -> None:
    p = plan(gpus(H200_MIB, H200_MIB), L8B, Settings(ctx=8192, tensor_split=(1.0, 1.0)))
    logits_mib = 128256 * 512 * 4 / MIB
    assert p.devices[1].compute_mib > logits_mib
    assert p.devices[0].compute_mib < logits_mib


def test_default_split_follows_free_vram() -> None:
    rig = Rig(
        gpus=(
            Gpu(index=0, name="a", vram_total_mib=24576, vram_free_mib=20000),
            Gpu(index=1, name="b", vram_total_mib=24576, vram_free_mib=10000),
        )
    )
    p = plan(rig, L8B, Settings(ctx=2048))
    assert p.tensor_split == pytest.approx((2 / 3, 1 / 3))
    assert [d.layers for d in p.devices] == [22, 10]
    assert [d.capacity_mib for d in p.devices] == [20000, 10000]


def test_tied_embeddings_put_a_copy_of_token_embd_on_the_output_gpu() -> None:
    tied = shape_model_spec(
        SynthShape(n_layer=4, n_embd=1024, n_ff=2816, n_head=16, n_head_kv=4, n_vocab=32000, tied=True)
    )
    untied = shape_model_spec(
        SynthShape(n_layer=4, n_embd=1024, n_ff=2816, n_head=16, n_head_kv=4, n_vocab=32000)
    )
    emb = next(t for t in tied.tensors if t.name == "token_embd.weight")
    p_tied = plan(gpus(H200_MIB), tied, Settings(ctx=2048))
    p_untied = plan(gpus(H200_MIB), untied, Settings(ctx=2048))
    assert p_tied.devices[0].weights_mib == pytest.approx(p_untied.devices[0].weights_mib)
    assert buffers(p_tied)[("CUDA0", "model")] * MIB >= cuda_tensor_bytes(emb)
    # Host keeps only the token embeddings either way.
    assert buffers(p_tied)[("CPU_Mapped", "model")] == pytest.approx(
        buffers(p_untied)[("CPU_Mapped", "model")]
    )


def test_cuda_pads_quantized_rows_to_512_values() -> None:
    t = TensorInfo("blk.0.attn_q.weight", (2304, 2304), 2)  # Q4_0, 2304 % 512 = 256
    unpadded = 2304 * 2304 // 32 * 18 + 256 // 32 * 18  # one extra row of 256 values
    assert cuda_tensor_bytes(t) == (unpadded + 127) // 128 * 128  # then aligned to 128 bytes
    f16 = TensorInfo("blk.0.attn_q.weight", (2304, 2304), 1)
    assert cuda_tensor_bytes(f16) == 2304 * 2304 * 2  # only quantized types are padded


def test_none_mode_puts_everything_on_the_main_gpu_and_leaves_the_others_untouched() -> None:
    p = plan(gpus(H200_MIB, H200_MIB), L8B, Settings(ctx=4096, split_mode="none", main_gpu=1))
    assert p.devices[0].total_mib == 0.0
    assert p.devices[1].layers == 32 and p.devices[1].has_output
    assert p.tensor_split == (0.0, 1.0)


def test_pipeline_parallelism_keeps_input_copies_on_every_gpu() -> None:
    # Two GPUs, every layer offloaded: llama.cpp enables pipeline parallelism (4 input copies).
    full = plan(gpus(H200_MIB, H200_MIB), L8B, Settings(ctx=8192, tensor_split=(1.0, 1.0)))
    partial = plan(
        gpus(H200_MIB, H200_MIB), L8B, Settings(ctx=8192, tensor_split=(1.0, 1.0), n_gpu_layers=32)
    )
    assert full.devices[0].compute_mib > partial.devices[0].compute_mib
    assert full.host.compute_mib > partial.host.compute_mib


# --- KV cache ------------------------------------------------------------------------------------------


def test_kv_cache_context_is_padded_to_256_cells() -> None:
    cells = kv_cells(Settings(ctx=1000))
    assert cells.n_ctx_seq == 1024
    p1000 = plan(gpus(H200_MIB), SMALL, Settings(ctx=1000))
    p1024 = plan(gpus(H200_MIB), SMALL, Settings(ctx=1024))
    assert p1000.devices[0].kv_mib == p1024.devices[0].kv_mib == 8 * 1024 * 256 * 2 * 2 / MIB


def test_q8_0_kv_cache_is_34_64ths_of_f16() -> None:
    f16 = plan(gpus(H200_MIB), SMALL, Settings(ctx=4096)).devices[0].kv_mib
    q8 = plan(gpus(H200_MIB), SMALL, Settings(ctx=4096, type_k="q8_0", type_v="q8_0")).devices[0].kv_mib
    q4 = plan(gpus(H200_MIB), SMALL, Settings(ctx=4096, type_k="q4_0", type_v="q4_0")).devices[0].kv_mib
    assert q8 == pytest.approx(f16 * 34 / 64)
    assert q4 == pytest.approx(f16 * 18 / 64)


def test_kv_of_cpu_layers_stays_on_the_host_and_offload_kqv_false_moves_all_of_it() -> None:
    partial = plan(gpus(H200_MIB), SMALL, Settings(ctx=4096, n_gpu_layers=5))
    per_layer = 4096 * 256 * 2 * 2 / MIB
    assert partial.host.kv_mib == pytest.approx(4 * per_layer)
    assert partial.devices[0].kv_mib == pytest.approx(4 * per_layer)
    off = plan(gpus(H200_MIB), SMALL, Settings(ctx=4096, offload_kqv=False))
    assert off.devices[0].kv_mib == 0 and off.host.kv_mib == pytest.approx(8 * per_layer)


def _tiny_spec(**kw: object) -> ModelSpec:
    n_layer = int(kw.pop("n_layer", 4))  # type: ignore[call-overload]
    tensors = [TensorInfo("token_embd.weight", (256, 1000), 1), TensorInfo("output.weight", (256, 1000), 1)]
    for il in range(n_layer):
        tensors.append(TensorInfo(f"blk.{il}.attn_q.weight", (256, 256), 1))
        tensors.append(TensorInfo(f"blk.{il}.ffn_up.weight", (256, 512), 1))
    base: dict[str, object] = {
        "id": "tiny",
        "name": "tiny",
        "architecture": "llama",
        "n_layer": n_layer,
        "n_embd": 256,
        "n_vocab": 1000,
        "n_head": (4,) * n_layer,
        "n_head_kv": (4,) * n_layer,
        "n_ff": (512,) * n_layer,
        "head_dim_k": 64,
        "head_dim_v": 64,
        "tensors": tuple(tensors),
    }
    base.update(kw)
    return ModelSpec(**base)  # type: ignore[arg-type]


def test_sliding_window_layers_are_capped_at_window_plus_ubatch_unless_swa_full() -> None:
    spec = _tiny_spec(sliding_window=1024, swa_layers=(True, True, True, False))
    capped = plan(gpus(H200_MIB), spec, Settings(ctx=32768, swa_full=False))
    full = plan(gpus(H200_MIB), spec, Settings(ctx=32768))
    per_cell_layer = 256 * 2 * 2  # K and V rows, f16
    # SWA cache: GGML_PAD(min(32768, 1024 + 512), 256) = 1536 cells.
    assert capped.devices[0].kv_mib * MIB == 3 * 1536 * per_cell_layer + 32768 * per_cell_layer
    assert full.devices[0].kv_mib * MIB == 4 * 32768 * per_cell_layer


def test_mla_caches_the_compressed_latent_and_no_v() -> None:
    spec = _tiny_spec(
        architecture="deepseek2",
        kv_lora_rank=512,
        qk_rope_head_dim=64,
        n_head_kv=(1,) * 4,
        head_dim_k=576,
        head_dim_v=512,
        head_dim_k_mla=192,
        head_dim_v_mla=128,
    )
    p = plan(gpus(H200_MIB), spec, Settings(ctx=4096))
    assert p.devices[0].kv_mib * MIB == 4 * 4096 * 576 * 2


def test_without_flash_attention_v_rows_are_padded_to_the_widest_layer() -> None:
    spec = _tiny_spec(n_head_kv=(4, 2, 4, 1))
    fa = plan(gpus(H200_MIB), spec, Settings(ctx=1024)).devices[0].kv_mib * MIB
    nofa = plan(gpus(H200_MIB), spec, Settings(ctx=1024, flash_attn=False)).devices[0].kv_mib * MIB
    k = (4 + 2 + 4 + 1) * 64 * 1024 * 2
    assert fa == 2 * k
    assert nofa == k + 4 * 4 * 64 * 1024 * 2


# --- statuses --------------------------------------------------------------------------------------------


def test_status_tight_when_a_gpu_keeps_less_than_ten_percent_free() -> None:
    need = plan(gpus(H200_MIB), L8B, Settings(ctx=8192)).devices[0].total_mib
    assert plan(gpus(need * 1.5), L8B, Settings(ctx=8192)).status == STATUS_FITS
    assert plan(gpus(need * 1.05), L8B, Settings(ctx=8192)).status == STATUS_TIGHT


def test_model_too_big_for_the_gpus_is_offload_with_the_largest_fitting_n_gpu_layers() -> None:
    p = plan(gpus(3000.0), L8B, Settings(ctx=8192))
    assert p.status == STATUS_OFFLOAD
    assert p.fit_n_gpu_layers is not None and 0 < p.fit_n_gpu_layers < 33
    assert any("n_gpu_layers=" in n for n in p.notes)
    fitted = plan(gpus(3000.0), L8B, Settings(ctx=8192, n_gpu_layers=p.fit_n_gpu_layers))
    assert all(d.fits for d in fitted.devices)
    one_more = plan(gpus(3000.0), L8B, Settings(ctx=8192, n_gpu_layers=p.fit_n_gpu_layers + 1))
    assert not all(d.fits for d in one_more.devices)
    # The plan still shows the requested placement, overflowing.
    assert not p.devices[0].fits and p.layers_on_cpu == 0


def test_no_when_even_the_host_cannot_hold_the_layers_left_over() -> None:
    rig = replace(gpus(3000.0), host=Host(ram_available_mib=1000.0))
    p = plan(rig, L8B, Settings(ctx=8192))
    assert p.status == STATUS_NO
    assert p.fit_n_gpu_layers is None


def test_requested_partial_offload_that_fits_is_offload() -> None:
    p = plan(gpus(H200_MIB), L8B, Settings(ctx=8192, n_gpu_layers=20))
    assert p.status == STATUS_OFFLOAD
    assert p.layers_on_cpu == 13 and p.host.layers == 13
    assert any("13 of 32 layers" in n for n in p.notes)


def test_zero_gpu_rig_plans_everything_on_the_host() -> None:
    rig = Rig(gpus=(), host=Host(ram_available_mib=65536.0))
    p = plan(rig, L8B, Settings(ctx=4096))
    assert p.devices == () and p.status == STATUS_FITS
    assert p.host.layers == 32
    b = buffers(p)
    assert ("CPU", "KV") in b and ("CPU", "compute") in b and ("CPU", "output") in b
    assert p.host.weights_mib == pytest.approx(
        sum(t for t in profile(L8B).layer_host_bytes) / MIB
        + profile(L8B).input_host_bytes / MIB
        + profile(L8B).output_host_bytes / MIB
    )
    small_ram = plan(replace(rig, host=Host(ram_available_mib=1024.0)), L8B, Settings(ctx=4096))
    assert small_ram.status == STATUS_NO


# --- overhead ------------------------------------------------------------------------------------------


def test_overhead_default_gpu_value_and_setting_override_in_that_order() -> None:
    assert plan(gpus(H200_MIB), SMALL, Settings()).devices[0].overhead_mib == DEFAULT_GPU_OVERHEAD_MIB
    rig = gpus(H200_MIB, overhead_mib=300.0)
    assert plan(rig, SMALL, Settings()).devices[0].overhead_mib == 300.0
    assert plan(rig, SMALL, Settings(overhead_mib=123.0)).devices[0].overhead_mib == 123.0


# --- row and tensor split ------------------------------------------------------------------------------


def test_row_split_spreads_matmul_weights_by_ratio_and_refuses_cuda() -> None:
    layer = plan(gpus(H200_MIB, H200_MIB), L8B, Settings(ctx=4096, tensor_split=(1.0, 1.0)))
    row = plan(gpus(H200_MIB, H200_MIB), L8B, Settings(ctx=4096, split_mode="row", tensor_split=(1.0, 1.0)))
    total_layer = sum(d.weights_mib for d in layer.devices)
    total_row = sum(d.weights_mib for d in row.devices)
    assert total_row == pytest.approx(total_layer, rel=0.001)
    assert row.devices[0].weights_mib == pytest.approx(row.devices[1].weights_mib, rel=0.05)
    assert row.status == STATUS_NO and any("split buffers" in n for n in row.notes)
    sycl = Rig(
        gpus=tuple(Gpu(index=i, name="Arc", vram_total_mib=H200_MIB, vendor=VENDOR_INTEL) for i in range(2))
    )
    assert plan(sycl, L8B, Settings(ctx=4096, split_mode="row")).status == STATUS_FITS


def test_tensor_split_halves_heads_ffn_and_kv_between_two_gpus() -> None:
    p = plan(gpus(H200_MIB, H200_MIB), L8B, Settings(ctx=8192, split_mode="tensor"))
    one = plan(gpus(H200_MIB), L8B, Settings(ctx=8192))
    w0, w1 = (d.weights_mib for d in p.devices)
    assert w0 == pytest.approx(w1, rel=0.01)
    assert w0 + w1 == pytest.approx(one.devices[0].weights_mib, rel=0.01)  # only norms are mirrored
    assert p.devices[0].kv_mib == pytest.approx(one.devices[0].kv_mib / 2)
    assert all(d.layers == 32 and d.has_output for d in p.devices)


def test_tensor_split_rounds_kv_heads_to_whole_heads_and_rotates_the_remainder() -> None:
    # 8 KV heads over three GPUs at 1:1:1: per layer whole heads 2+3+3, and the GPU that gets only
    # two rotates from layer to layer (llama_meta_device_get_split_state's rotation).
    p = plan(gpus(H200_MIB, H200_MIB, H200_MIB), L8B, Settings(ctx=4096, split_mode="tensor"))
    per_layer_head = 4096 * 128 * 2 * 2 / MIB
    heads = [d.kv_mib / per_layer_head for d in p.devices]  # head-layers per GPU
    assert sum(heads) == pytest.approx(8 * 32)
    assert all(h == pytest.approx(round(h)) for h in heads)  # whole heads per layer
    # rotation il % 3 gives the two-head share to 11, 11 and 10 layers: 85, 85, 86 head-layers.
    assert sorted(round(h) for h in heads) == [85, 85, 86]


# --- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_kw", "message"),
    [
        ({"tensor_split": (1.0,)}, "one ratio per GPU"),
        ({"tensor_split": (1.0, -1.0)}, "zero or positive"),
        ({"tensor_split": (0.0, 0.0)}, "all zero"),
        ({"main_gpu": 2}, "does not exist"),
        ({"ctx": 0}, "at least 1"),
        ({"split_mode": "columns"}, "unknown split mode"),
        ({"type_k": "q5_1"}, "unknown K cache type"),
        ({"type_v": "q8_0", "flash_attn": False}, "needs flash attention"),
        ({"split_mode": "tensor", "flash_attn": False}, "needs flash attention"),
        ({"n_gpu_layers": -2}, "n_gpu_layers"),
        ({"overhead_mib": -5.0}, "overhead"),
        ({"n_seq_max": 0}, "parallel sequences"),
    ],
)
def test_bad_settings_raise_a_clear_error(settings_kw: dict[str, object], message: str) -> None:
    with pytest.raises(RigfitError, match=message):
        plan(gpus(H200_MIB, H200_MIB), SMALL, Settings(**settings_kw))  # type: ignore[arg-type]


def test_tensor_split_is_refused_for_architectures_llama_cpp_lacks_it_for() -> None:
    assert "deepseek2" in TENSOR_SPLIT_UNSUPPORTED_ARCHS
    spec = replace(SMALL, architecture="deepseek2")
    with pytest.raises(RigfitError, match="deepseek2"):
        plan(gpus(H200_MIB, H200_MIB), spec, Settings(split_mode="tensor"))


def test_a_spec_without_tensors_is_refused() -> None:
    with pytest.raises(RigfitError, match="tensor list"):
        plan(gpus(H200_MIB), replace(SMALL, tensors=()), Settings())


def test_profile_is_computed_once_per_spec() -> None:
    assert profile(SMALL) is profile(SMALL)
    assert profile(replace(SMALL, id="other")) is not profile(SMALL)
    prof = profile(SMALL)
    assert isinstance(prof.layer_gpu_bytes, np.ndarray) and prof.layer_gpu_bytes.shape == (8,)


# --- vectorised context sweep (for the fit table) -------------------------------------------------------


@pytest.mark.parametrize(
    "settings_kw",
    [
        {},
        {"flash_attn": False},
        {"n_gpu_layers": 20},
        {"type_k": "q8_0", "type_v": "q8_0", "n_ubatch": 256},
        {"split_mode": "tensor"},
        {"split_mode": "none", "main_gpu": 1},
    ],
)
def test_context_sweep_equals_plan_at_every_context(settings_kw: dict[str, object]) -> None:
    from app.core.placement import context_sweep

    rig = gpus(12288.0, 8192.0)
    ctxs = [100, 512, 1000, 4096, 30000]
    base = Settings(**settings_kw)  # type: ignore[arg-type]
    sweep = context_sweep(rig, profile(L8B), base, ctxs)
    for i, ctx in enumerate(ctxs):
        p = plan(rig, L8B, replace(base, ctx=ctx))
        assert list(sweep.gpu_total_mib[i]) == pytest.approx([d.total_mib for d in p.devices])
        assert sweep.host_total_mib[i] == pytest.approx(p.host.total_mib)
        assert bool(sweep.gpu_fits[i]) == all(d.fits for d in p.devices)


def test_largest_fitting_ctx_is_the_last_multiple_of_256_that_fits() -> None:
    from app.core.placement import largest_fitting_ctx

    spec = replace(L8B, n_ctx_train=131072)
    rig = gpus(9000.0)
    best = largest_fitting_ctx(rig, spec, Settings())
    assert best is not None and best % 256 == 0
    assert all(d.fits for d in plan(rig, spec, Settings(ctx=best)).devices)
    assert not all(d.fits for d in plan(rig, spec, Settings(ctx=best + 256)).devices)
    assert largest_fitting_ctx(gpus(1000.0), spec, Settings()) is None
    assert largest_fitting_ctx(gpus(H200_MIB), spec, Settings()) == 131072


def main() -> None:
    """Print the H200 measurements beside the planner's figures (the table in docs/placement.md)."""
    print("| case | buffer | llama.cpp MiB | planner MiB | NVML increase | planner total |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in CUDA_ROWS + OFFLOAD_ROWS:
        spec = shape_model_spec(SynthShape(**row["shape"]))  # type: ignore[arg-type]
        p = plan(gpus(H200_MIB), spec, _case_settings(row["settings"]))  # type: ignore[arg-type]
        if row["error"]:
            print(f"| {row['case']} | load fails: {row['error'][0]} | | status {p.status} | | |")  # type: ignore[index]
            continue
        predicted = buffers(p)
        nvml = row["nvml_delta_mib"][0]  # type: ignore[index]
        first = True
        for key, value in row["measured"].items():  # type: ignore[attr-defined]
            name, kind = key.split("/")
            pred = predicted.get(("CUDA0" if name == "Meta()" else name, kind), 0.0)
            tail = f"{nvml:.1f} | {p.devices[0].total_mib:.1f}" if first else " | "
            print(f"| {row['case'] if first else ''} | {key} | {value:.2f} | {pred:.2f} | {tail} |")
            first = False


if __name__ == "__main__":
    main()
