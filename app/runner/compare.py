"""Estimate against reality: what llama.cpp allocated beside what the planner predicted.

Input: the ``loaded`` event (buffers llama.cpp logged, NVML's VRAM increase) and the
:class:`~app.core.plan.Plan` for the same rig, model and settings. Output: one
:class:`~app.runner.protocol.CompareRow` per device and buffer kind, with the error in percent.
Pure: no llama_cpp, no NVML.

Device mapping: plan GPU ``i`` is llama.cpp's ``CUDA{i}`` (the worker runs with
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA numbers follow NVML's indices); buffers in system RAM
(``CPU``, ``CPU_Mapped``, ``CPU_REPACK``, ``CUDA_Host``) belong to the plan's host. A buffer type that
spans GPUs (``Meta(CUDA0,CUDA1)`` in tensor-parallel mode) has no per-GPU prediction and is reported
with ``predicted_mib = None``.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.core.plan import Plan
from app.runner.logparse import BufferSize, gpu_index, is_host_device
from app.runner.protocol import CompareRow, LoadedEvent

# llama.cpp's buffer kinds → the planner's names.
_KIND = {
    "model": "weights",
    "KV": "kv",
    "RS": "kv",
    "compute": "compute",
    "output": "output",
    "LoRA": "weights",
}
_ORDER = ("weights", "kv", "compute", "output", "total", "nvml_total")


def error_pct(predicted: float | None, measured: float | None) -> float | None:
    """``(predicted - measured) / measured × 100``, rounded to 0.01; ``None`` when undefined."""
    if predicted is None or measured is None:
        return None
    if measured == 0:
        return 0.0 if predicted == 0 else None
    return round((predicted - measured) / measured * 100.0, 2)


def _row(device: str, buffer: str, predicted: float | None, measured: float | None) -> CompareRow:
    return CompareRow(
        device=device,
        buffer=buffer,
        predicted_mib=None if predicted is None else round(predicted, 2),
        measured_mib=None if measured is None else round(measured, 2),
        error_pct=error_pct(predicted, measured),
    )


def _sum(buffers: Iterable[BufferSize]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in buffers:
        kind = _KIND.get(b.buffer)
        if kind is not None:
            out[kind] = out.get(kind, 0.0) + b.mib
    return out


def compare_load(loaded: LoadedEvent, plan: Plan) -> tuple[CompareRow, ...]:
    """Rows of predicted vs measured MiB for every GPU of the plan, the host, and NVML's totals.

    A plan device is matched by the buffer name the plan gives it (``CUDA0``, or an RPC device's
    ``RPC0[10.0.0.5:50052]``); NVML's increase is compared for local GPUs only (a remote device's
    memory is another machine's, or another process's).
    """
    rows: list[CompareRow] = []
    by_name: dict[str, list[BufferSize]] = {}
    host: list[BufferSize] = []
    for b in loaded.buffers:
        if is_host_device(b.device):
            host.append(b)
        else:
            by_name.setdefault(b.device, []).append(b)
    nvml = {v.gpu: v.increase_mib for v in loaded.vram}
    planned_names: set[str] = set()

    for i, dev in enumerate(plan.devices):
        name = next((b.name for b in plan.buffers if b.gpu == i), f"CUDA{dev.index}")
        planned_names.add(name)
        remote = name.startswith("RPC")
        measured = _sum(by_name.get(name, ()))
        predicted = {"weights": dev.weights_mib, "kv": dev.kv_mib, "compute": dev.compute_mib}
        for kind in ("weights", "kv", "compute"):
            rows.append(_row(name, kind, predicted[kind], measured.get(kind, 0.0)))
        if "output" in measured:
            rows.append(_row(name, "output", None, measured["output"]))
        allocated = sum(measured.values())
        rows.append(_row(name, "total", dev.weights_mib + dev.kv_mib + dev.compute_mib, allocated))
        if not remote and gpu_index(name) == dev.index and dev.index in nvml:
            # NVML also sees what the allocator does not log (CUDA context, cuBLAS): the planner's overhead.
            rows.append(_row(name, "nvml_total", dev.total_mib, nvml[dev.index]))

    # Devices llama.cpp used that the plan did not expect (a different split or rig than planned),
    # and buffer types spanning devices (Meta(...) in tensor-parallel mode): no per-device prediction.
    for name in sorted(set(by_name) - planned_names):
        measured = _sum(by_name[name])
        single = gpu_index(name) is not None or name.startswith("RPC")
        for kind in _ORDER:
            if kind in measured:
                rows.append(_row(name, kind, 0.0 if single else None, measured[kind]))

    hp = plan.host
    measured_host = _sum(host)
    # llama.cpp logs host weights as buffers (the mapped file span, a CPU_REPACK copy) that need not
    # add up to the tensors' bytes; the plan predicts those same buffers, so compare like with like.
    logged_host_weights = [b.mib for b in plan.buffers if b.gpu is None and b.kind == "model"]
    host_predicted = {
        "weights": sum(logged_host_weights) if logged_host_weights else hp.weights_mib,
        "kv": hp.kv_mib,
        "compute": hp.compute_mib,
        "output": hp.output_mib,
    }
    for kind in ("weights", "kv", "compute", "output"):
        rows.append(_row("host", kind, host_predicted[kind], measured_host.get(kind, 0.0)))
    rows.append(_row("host", "total", sum(host_predicted.values()), sum(measured_host.values())))
    return tuple(rows)


def format_table(rows: Iterable[CompareRow]) -> str:
    """A plain-text table for the terminal: device, buffer, predicted, measured, error."""
    lines = [f"{'device':<12} {'buffer':<10} {'predicted':>10} {'measured':>10} {'error':>8}"]
    for r in rows:
        pred = "-" if r.predicted_mib is None else f"{r.predicted_mib:.2f}"
        meas = "-" if r.measured_mib is None else f"{r.measured_mib:.2f}"
        err = "-" if r.error_pct is None else f"{r.error_pct:+.1f}%"
        lines.append(f"{r.device:<12} {r.buffer:<10} {pred:>10} {meas:>10} {err:>8}")
    return "\n".join(lines)
