"""Measured buffers beside the planner's prediction."""

from __future__ import annotations

from app.core.plan import DevicePlan, HostPlan, Plan
from app.core.settings import Settings
from app.runner.compare import compare_load, error_pct, format_table
from app.runner.logparse import BufferSize
from app.runner.protocol import CompareRow, LoadedEvent, VramDelta


def _plan() -> Plan:
    return Plan(
        model="8b",
        quant="Q4_0",
        settings=Settings(),
        devices=(DevicePlan(0, "NVIDIA H200", 32, True, 3850.0, 1024.0, 110.0, 528.6, 139000.0),),
        host=HostPlan(
            layers=0, weights_mib=108.0, kv_mib=0.0, compute_mib=24.0, output_mib=0.19, available_mib=None
        ),
        status="fits",
        tensor_split=(1.0,),
        n_layer=32,
        layers_on_cpu=0,
    )


def _loaded() -> LoadedEvent:
    return LoadedEvent(
        model_path="/m.gguf",
        buffers=(
            BufferSize("CPU_Mapped", "model", 108.00),
            BufferSize("CUDA0", "model", 3853.02),
            BufferSize("CUDA_Host", "output", 0.19),
            BufferSize("CUDA0", "KV", 1024.00),
            BufferSize("CUDA0", "compute", 116.01),
            BufferSize("CUDA_Host", "compute", 24.01),
        ),
        load_s=2.0,
        n_ctx=8192,
        n_layer=32,
        vram=(VramDelta(gpu=0, before_mib=0.0, after_mib=5521.6),),
    )


def test_error_is_relative_to_the_measurement() -> None:
    assert error_pct(110.0, 100.0) == 10.0
    assert error_pct(90.0, 100.0) == -10.0
    assert error_pct(0.0, 0.0) == 0.0
    assert error_pct(5.0, 0.0) is None
    assert error_pct(None, 5.0) is None


def test_gpu_rows_compare_each_buffer_and_the_nvml_total() -> None:
    rows = {(r.device, r.buffer): r for r in compare_load(_loaded(), _plan())}
    assert rows[("CUDA0", "weights")] == CompareRow("CUDA0", "weights", 3850.0, 3853.02, -0.08)
    assert rows[("CUDA0", "kv")] == CompareRow("CUDA0", "kv", 1024.0, 1024.0, 0.0)
    assert rows[("CUDA0", "compute")].error_pct == round((110.0 - 116.01) / 116.01 * 100, 2)
    assert rows[("CUDA0", "total")].measured_mib == round(3853.02 + 1024.0 + 116.01, 2)
    nvml = rows[("CUDA0", "nvml_total")]
    assert nvml.predicted_mib == round(3850.0 + 1024.0 + 110.0 + 528.6, 2) and nvml.measured_mib == 5521.6


def test_host_rows_collect_mapped_pinned_and_cpu_buffers() -> None:
    rows = {(r.device, r.buffer): r for r in compare_load(_loaded(), _plan())}
    assert rows[("host", "weights")].measured_mib == 108.0
    assert rows[("host", "compute")].measured_mib == 24.01
    assert rows[("host", "output")].measured_mib == 0.19
    assert rows[("host", "kv")] == CompareRow("host", "kv", 0.0, 0.0, 0.0)
    assert rows[("host", "total")].measured_mib == round(108.0 + 24.01 + 0.19, 2)


def test_a_gpu_the_plan_did_not_expect_shows_with_zero_predicted() -> None:
    loaded = _loaded()
    extra = LoadedEvent(
        **{**loaded.__dict__, "buffers": (*loaded.buffers, BufferSize("CUDA1", "model", 10.0))}
    )
    rows = {(r.device, r.buffer): r for r in compare_load(extra, _plan())}
    assert rows[("CUDA1", "weights")] == CompareRow("CUDA1", "weights", 0.0, 10.0, -100.0)


def test_no_nvml_row_without_a_measurement_and_table_renders() -> None:
    loaded = LoadedEvent(**{**_loaded().__dict__, "vram": ()})
    rows = compare_load(loaded, _plan())
    assert all(r.buffer != "nvml_total" for r in rows)
    table = format_table(rows)
    assert "CUDA0" in table and "-0.1%" in table
