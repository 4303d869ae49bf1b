"""The buffer lines llama.cpp logs for a load (``<name> <kind> buffer size = <mib> MiB``), as the
planner predicts them: what ``rigfit run`` compares with the real log, buffer by buffer."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.memory import (
    CPU_ALIGNMENT,
    MIB,
    ModelProfile,
    cpu_repack_types,
    mapped_span_bytes,
    pad,
    repackable,
    tensor_bytes,
    tensor_role,
)
from app.core.model_spec import TensorInfo
from app.core.plan import BufferPlan
from app.core.rig import VENDOR_AMD, VENDOR_INTEL, Gpu, Rig


def gpu_buffer_name(gpu: Gpu) -> str:
    """llama.cpp's device/buffer name for a GPU: CUDA0, ROCm1, SYCL0..., and for a remote device
    its RPC buffer type, named by the device's number on its server: ``RPC0[10.0.0.5:50052]``."""
    if gpu.remote is not None:
        return f"RPC{gpu.remote.device}[{gpu.remote.endpoint or 'planned'}]"
    prefix = {VENDOR_AMD: "ROCm", VENDOR_INTEL: "SYCL"}.get(gpu.vendor, "CUDA")
    return f"{prefix}{gpu.index}"


def logged_buffers(
    rig: Rig,
    prof: ModelProfile,
    model_gpus: Sequence[int],
    host_layers: Sequence[int],
    output_on_host: bool,
    *,
    weights: Sequence[float],
    kv: Sequence[float],
    compute: Sequence[float],
    host_output: float,
    host_kv: float,
    host_compute: float,
) -> list[BufferPlan]:
    """The buffer lines llama.cpp would log, in its order: model, output, KV, compute. ``weights``,
    ``kv`` and ``compute`` are bytes per rig GPU, the ``host_*`` bytes in system RAM; ``model_gpus``
    in llama.cpp's device order (the order of its log lines)."""
    out: list[BufferPlan] = []
    # A local GPU offers a host buffer type (CUDA_Host), which llama.cpp prefers for host tensors
    # over the CPU's repacking types; an RPC device offers none (make_cpu_buft_list).
    host_buffer = any(rig.gpus[g].remote is None for g in model_gpus)
    if host_buffer:
        # With a GPU backend the host buffer type takes the host tensors; with mmap they stay mapped.
        mapped = mapped_span_bytes(prof, host_layers, output_on_host)
        out.append(BufferPlan("CPU_Mapped", "model", mapped / MIB))
    else:
        # CPU only: the CPU backend moves the weights it can repack into a CPU_REPACK buffer.
        host_buffers = logged_model_buffers(
            prof, host_layers, output_on_host, cpu_repack_types(rig.host.cpu_flags)
        )
        out.extend(BufferPlan(name, "model", mib) for name, mib in host_buffers.items())
    for gi in model_gpus:
        if weights[gi] > 0:
            out.append(BufferPlan(gpu_buffer_name(rig.gpus[gi]), "model", weights[gi] / MIB, gi))
    host_name = "CUDA_Host" if host_buffer else "CPU"
    out_name = "CPU" if output_on_host else host_name
    out.append(BufferPlan(out_name, "output", host_output / MIB))
    if host_kv > 0:
        out.append(BufferPlan("CPU", "KV", host_kv / MIB))
    for gi in model_gpus:
        if kv[gi] > 0:
            out.append(BufferPlan(gpu_buffer_name(rig.gpus[gi]), "KV", kv[gi] / MIB, gi))
    for gi in model_gpus:
        if compute[gi] > 0:
            out.append(BufferPlan(gpu_buffer_name(rig.gpus[gi]), "compute", compute[gi] / MIB, gi))
    if host_compute > 0:
        out.append(BufferPlan(host_name, "compute", host_compute / MIB))
    return out


def logged_model_buffers(
    prof: ModelProfile,
    host_layers: Sequence[int],
    output_on_host: bool,
    repack_types: frozenset[int] = frozenset(),
) -> dict[str, float]:
    """Host model buffers as llama.cpp logs them, in MiB: ``CPU_Mapped`` span and ``CPU_REPACK``.

    ``repack_types`` are the ggml types the CPU backend repacks (``memory.CPU_REPACK_TYPES_AVX2`` on
    an x86 CPU with AVX2 and no GPU backend; empty with a GPU backend, whose host buffer type takes
    the host tensors and, with mmap, hands them back to ``CPU_Mapped``).
    """
    host_set = set(host_layers)
    mapped_lo: dict[int, int] = {}
    mapped_hi: dict[int, int] = {}
    repack = 0
    emb = None
    for t in prof.spec.tensors:
        role = tensor_role(t)
        if role == "layer":
            keep = t.layer in host_set
        elif role == "output":
            keep = output_on_host
        elif role == "per_device":
            keep = bool(host_set)
        else:
            keep = True
            if t.name == "token_embd.weight":
                emb = t
        if not keep:
            continue
        if role != "input" and repackable(t, repack_types):
            repack += pad(tensor_bytes(t), CPU_ALIGNMENT)
            continue
        start, end = t.offset, t.offset + tensor_bytes(t)
        fi = t.file_index
        mapped_lo[fi] = min(mapped_lo.get(fi, start), start)
        mapped_hi[fi] = max(mapped_hi.get(fi, end), end)
    if output_on_host and prof.spec.tied_embeddings and emb is not None:
        # The output copy of token_embd is created for a matmul: the repack buffer may take it.
        out_view = TensorInfo("output.weight", emb.shape, emb.ggml_type)
        if repackable(out_view, repack_types):
            repack += pad(tensor_bytes(emb), CPU_ALIGNMENT)
    if prof.has_offsets:
        mapped = sum(mapped_hi[f] - mapped_lo[f] for f in mapped_lo)
    else:
        mapped = mapped_span_bytes(prof, list(host_layers), output_on_host)
    result = {"CPU_Mapped": mapped / MIB}
    if repack:
        result["CPU_REPACK"] = repack / MIB
    return result
