"""The speed model: decode and prompt tokens per second for a plan, from bytes, FLOPs and links.

Decode is memory-bound: every token reads the weights of every layer once (for a mixture of experts
only the experts it routes to) plus the KV cache of the context so far. Each device's share takes

    bytes read / (memory bandwidth x efficiency) + layers x per-layer overhead

and with the ``layer`` split the devices run one after the other (the token passes GPU 0's layers,
then GPU 1's...), so their times add up, plus one activation hop per GPU boundary. With ``tensor``
(and ``row``) split every GPU reads its share of every layer at the same time, so the slowest GPU
sets the pace, plus two all-reduces per layer over NVLink or PCIe. Layers left on the CPU run at
system-RAM bandwidth (or the CPU's arithmetic rate when that is lower).

Prompt processing is compute-bound: FLOPs / (FP16 tensor throughput x efficiency) plus a per-layer
cost per micro-batch and a fixed cost per prompt. Only the last token's logits are computed, so the
output layer counts once, not once per token. Layers left in system RAM are, for micro-batches of at
least 32 tokens (``op_offload``), computed by GPU 0 on copies of their weights that cross from
pageable (memory-mapped) host memory for every micro-batch, plus a CPU-side cost per host layer;
smaller micro-batches (and ``op_offload`` off) leave them to the CPU.

Every constant is calibrated on real runs; ``docs/speed-model.md`` says how, with the commands and
the prediction next to each measurement. The model is a planning tool (which rig, which split, is
it worth it), not a benchmark: expect tens of percent, not single digits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from app.core.layout import model_gpus, offload_gpu
from app.core.memory import OP_OFFLOAD_MIN_BATCH, kv_row_bytes, profile, tensor_bytes
from app.core.model_spec import ModelSpec
from app.core.plan import STATUS_NO, Plan
from app.core.rig import Gpu, Host, Rig
from app.core.settings import Settings
from app.core.speccache import SpecCache

FloatArray = npt.NDArray[np.float64]

# --- GPU, calibrated on the H200 runs of DEVICE.md and docs/validation.md (docs/speed-model.md) -----
GPU_BANDWIDTH_EFFICIENCY = 0.611  # share of the datasheet memory bandwidth decode reaches
GPU_DECODE_LAYER_S = 47.4e-6  # per layer (output layer included) and token: launches, synchronisation
GPU_DECODE_TOKEN_S = 0.0  # per token besides the layers: fits give -82 to +110 us, within noise, so pinned
GPU_FLOPS_EFFICIENCY = 0.212  # share of the dense FP16 tensor throughput prompt processing reaches
GPU_PROMPT_LAYER_S = 0.321e-3  # per layer (output layer included) and micro-batch of a prompt
GPU_PROMPT_FIXED_S = 12.4e-3  # per prompt
# op_offload (layers in system RAM, micro-batches of >= 32 tokens): the host layers' weights are
# copied to GPU 0 for every micro-batch from the memory-mapped file, i.e. pageable memory, which
# crosses much slower than the slot's PCIe bandwidth; plus a CPU-side cost per host layer (the
# scheduler's per-split synchronisation and copies, the KV cache writes in host memory).
OFFLOAD_COPY_GBPS = 7.67  # effective host -> GPU bandwidth of those copies (H200, Gen5 x16 slot)
OFFLOAD_HOST_LAYER_S = 4.85e-3  # per host layer and offloaded micro-batch
PROMPT_OUTPUTS = 1  # logits rows a prompt computes: the last token's (llama_batch_get_one, Llama.eval)
# --- CPU, calibrated on the development machine (docs/speed-model.md) --------------------------------
CPU_BANDWIDTH_EFFICIENCY = 1.0  # share of the RAM read bandwidth (numpy, one thread) decode reaches
CPU_DECODE_LAYER_S = 0.126e-3  # per layer (output layer included) and token: the backend's thread barriers
CPU_DECODE_GFLOPS_PER_CORE = 60.0  # arithmetic rate of one core on decode's dot products (Q4_0, AVX-512)
CPU_PROMPT_GFLOPS_PER_CORE = 153.0  # ... on prompt processing's matrix products
CPU_PROMPT_LAYER_S = 9.7e-3  # per layer (output layer included) and micro-batch of a prompt
# A host whose RAM bandwidth is not known: dual-channel DDR5-5600 (89.6 GB/s on paper) reads about
# 60 GB/s in practice; 8 cores, as the planned host of app.hardware.catalog.
DEFAULT_RAM_BANDWIDTH_GBPS = 60.0
DEFAULT_CPU_CORES = 8
# A GPU whose figures are not known (a detected card NVML and the catalog say nothing about).
DEFAULT_GPU_BANDWIDTH_GBPS = 500.0
DEFAULT_GPU_FP16_TFLOPS = 50.0
# --- links between GPUs: per-transfer latency (not measured: no multi-GPU machine was lent) ----------
PCIE_LATENCY_S = 10e-6  # a peer copy or a copy through host memory, including its synchronisation
NVLINK_LATENCY_S = 5e-6
ACTIVATION_BYTES_PER_VALUE = 4  # activations travel between devices as f32
# --- remote devices (llama.cpp RPC), calibrated on the H200 with two RPC servers on loopback -------
# (docs/validation.md, tests/fixtures/rpc/h200-rpc.json). A token through remote devices pays a
# fixed cost once (the scheduler's RPC round of the split graph) and one per remote device holding
# layers (its graph serialised and sent, its events): 8B shape, one server 0.89 ms, two 1.36 ms,
# whatever their layer counts (3:2:1 and 1:1:1 ran alike). RPC moves tensors at about 0.55 GB/s
# even over loopback (one TCP stream, serialised copies on both sides): that rate is in series
# with the wire's. A tensor-parallel all-reduce step through a server is one synchronous exchange.
RPC_TOKEN_S = 0.42e-3  # per token (and prompt micro-batch) when any remote device holds layers
RPC_DEVICE_TOKEN_S = 0.47e-3  # per remote device holding layers, per token (and micro-batch)
RPC_COPY_GBPS = 0.62  # RPC's own tensor rate, in series with the link (loopback at 5 GB/s: 0.55 in all)
RPC_EXCHANGE_S = 0.65e-3  # one synchronous request and answer with a server (an all-reduce step)

PROMPT_TOKENS = 512  # the prompt length prompt tok/s are given for (llama-bench's pp512)
GBPS = 1e9


# ------------------------------------------------------------------------------------------------
# per-model arrays
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SpeedProfile:
    """Per-layer bytes and FLOPs one token costs, computed once per :class:`ModelSpec`.

    ``layer_read_bytes[l]`` is what decoding one token reads from layer ``l``'s weights (a mixture of
    experts reads only ``n_expert_used`` of ``n_expert`` experts); ``layer_flops[l]`` the matmul FLOPs
    (2 per active weight). ``kv_attn_flops[l]`` is the attention FLOPs per token per cached token.
    """

    spec: ModelSpec
    n_layer: int
    n_embd: int
    layer_read_bytes: FloatArray
    layer_flops: FloatArray
    output_read_bytes: float
    output_flops: float
    kv_k_width: npt.NDArray[np.int64]
    kv_v_width: npt.NDArray[np.int64]
    kv_attn_flops: FloatArray
    is_swa: npt.NDArray[np.bool_]
    n_swa: int
    layer_cum_bytes: FloatArray  # cumulative layer_read_bytes, n_layer + 1 entries
    layer_cum_flops: FloatArray

    def kv_read_bytes(self, settings: Settings, depth_tokens: float) -> FloatArray:
        """KV bytes each layer reads per decoded token with ``depth_tokens`` already in the cache."""
        k = kv_row_bytes(settings.type_k, self.kv_k_width).astype(np.float64)
        v = kv_row_bytes(settings.type_v, self.kv_v_width).astype(np.float64)
        return np.asarray((k + v) * self.cells(depth_tokens), dtype=np.float64)

    def cells(self, depth_tokens: float) -> FloatArray:
        """Cached tokens attention reads per layer (sliding-window layers read at most their window)."""
        depth = float(max(0.0, depth_tokens))
        if self.n_swa > 0:
            return np.where(self.is_swa, min(depth, float(self.n_swa)), depth).astype(np.float64)
        return np.full(self.n_layer, depth, dtype=np.float64)


def speed_profile(spec: ModelSpec) -> SpeedProfile:
    """The :class:`SpeedProfile` of a model, cached per spec object (like ``memory.profile``)."""
    return _SPEED_PROFILES.get(spec)


def _build_speed_profile(spec: ModelSpec) -> SpeedProfile:
    mem = profile(spec)  # raises RigfitError for a spec without tensors
    n_layer = spec.n_layer
    read = np.zeros(n_layer, dtype=np.float64)
    flops = np.zeros(n_layer, dtype=np.float64)
    used = spec.n_expert_used / spec.n_expert if spec.n_expert > 0 and spec.n_expert_used > 0 else 1.0
    out_bytes = 0.0
    out_flops = 0.0
    token_embd = None
    has_output = False
    for t in spec.tensors:
        il = t.layer
        nbytes = float(tensor_bytes(t))
        # Routed experts are stored stacked in one tensor per projection (ffn_*_exps); a token reads
        # only the experts it is routed to. Shared experts (ffn_*_shexp) always run.
        share = used if "_exps" in t.name else 1.0
        if il is not None and 0 <= il < n_layer:
            read[il] += nbytes * share
            if len(t.shape) >= 2:
                flops[il] += 2.0 * t.n_elements * share
        elif t.name == "output.weight":
            has_output = True
            out_bytes += nbytes
            out_flops += 2.0 * t.n_elements
        elif t.name == "token_embd.weight":
            token_embd = t
    if not has_output and token_embd is not None:
        out_bytes = float(tensor_bytes(token_embd))
        out_flops = 2.0 * token_embd.n_elements
    n_head = mem.n_head.astype(np.float64)
    has_kv = mem.kv_k_width > 0
    # QK^T and softmax(QK^T)V per cached token: 2 FLOPs per value of K and of V per head.
    head_v = mem.head_dim_v if not mem.uses_mla else mem.head_dim_k
    attn = np.where(has_kv, 2.0 * n_head * (mem.head_dim_k + head_v), 0.0).astype(np.float64)
    cum_b = np.concatenate(([0.0], np.cumsum(read)))
    cum_f = np.concatenate(([0.0], np.cumsum(flops)))
    return SpeedProfile(
        spec=spec,
        n_layer=n_layer,
        n_embd=spec.n_embd,
        layer_read_bytes=read,
        layer_flops=flops,
        output_read_bytes=out_bytes,
        output_flops=out_flops,
        kv_k_width=mem.kv_k_width,
        kv_v_width=mem.kv_v_width,
        kv_attn_flops=attn,
        is_swa=mem.is_swa,
        n_swa=mem.n_swa,
        layer_cum_bytes=cum_b,
        layer_cum_flops=cum_f,
    )


# ------------------------------------------------------------------------------------------------
# hardware figures
# ------------------------------------------------------------------------------------------------


def gpu_bandwidth_gbps(gpu: Gpu) -> float:
    """A GPU's memory bandwidth in GB/s (a documented default when the driver and catalog are silent).

    A CPU-backed RPC device (``HOST:PORT=CPU``) reads its host's RAM: its ``bandwidth_gbps`` is that
    RAM's read bandwidth (this computer's measured one for a server on loopback; else
    :data:`DEFAULT_RAM_BANDWIDTH_GBPS`), returned scaled so that the GPU formula's bandwidth term
    equals the CPU one (``CPU_BANDWIDTH_EFFICIENCY`` instead of ``GPU_BANDWIDTH_EFFICIENCY``). Without
    this, a CPU server counted as a 500 GB/s GPU: 10× too fast on loopback (docs/speed-model.md)."""
    if gpu.on_cpu:
        ram = float(gpu.bandwidth_gbps) if gpu.bandwidth_gbps else DEFAULT_RAM_BANDWIDTH_GBPS
        return ram * CPU_BANDWIDTH_EFFICIENCY / GPU_BANDWIDTH_EFFICIENCY
    return float(gpu.bandwidth_gbps) if gpu.bandwidth_gbps else DEFAULT_GPU_BANDWIDTH_GBPS


def gpu_tflops(gpu: Gpu) -> float:
    """A GPU's dense FP16 tensor throughput in TFLOPS (default when unknown). A CPU-backed RPC device
    computes at :data:`DEFAULT_CPU_CORES` cores' prompt rate, scaled as in :func:`gpu_bandwidth_gbps`."""
    if gpu.on_cpu:
        return DEFAULT_CPU_CORES * CPU_PROMPT_GFLOPS_PER_CORE / 1000.0 / GPU_FLOPS_EFFICIENCY
    return float(gpu.fp16_tflops) if gpu.fp16_tflops else DEFAULT_GPU_FP16_TFLOPS


def host_bandwidth_gbps(host: Host) -> float:
    """System-RAM read bandwidth in GB/s (default when not measured)."""
    return float(host.ram_bandwidth_gbps) if host.ram_bandwidth_gbps else DEFAULT_RAM_BANDWIDTH_GBPS


def host_cores(host: Host) -> int:
    """Physical cores llama.cpp's CPU backend can use."""
    return int(host.cores_physical or host.cores_logical or DEFAULT_CPU_CORES)


def link(rig: Rig, i: int, j: int) -> tuple[float, float]:
    """(GB/s per direction, latency in s) between GPUs ``i`` and ``j``: NVLink when bridged, else PCIe;
    the network when either is a remote (RPC) device.

    Over PCIe the slower of the two slots sets the bandwidth (the copy goes through host memory
    when peer access is unavailable, which the latency constant covers). Between two remote devices
    the data goes through this computer: both links, one after the other.
    """
    gi, gj = rig.gpus[i], rig.gpus[j]
    remote = [g.remote for g in (gi, gj) if g.remote is not None]
    if remote:
        bw = rpc_gbps(min(r.link.bandwidth_gbps for r in remote))
        return bw / len(remote), sum(r.link.rtt_ms for r in remote) / 1000.0
    if rig.nvlinked(i, j):
        bw = min(gi.nvlink.bandwidth_gbps, gj.nvlink.bandwidth_gbps)
        if bw > 0:
            return bw, NVLINK_LATENCY_S
    return min(pcie_gbps(gi), pcie_gbps(gj)), PCIE_LATENCY_S


def rpc_gbps(link_gbps: float) -> float:
    """What llama.cpp's RPC moves tensors at over a link of ``link_gbps`` (its own rate in series)."""
    return 1.0 / (1.0 / max(link_gbps, 1e-9) + 1.0 / RPC_COPY_GBPS)


def pcie_gbps(gpu: Gpu) -> float:
    """A GPU's PCIe bandwidth per direction in GB/s (Gen4 x8 when the link is not reported)."""
    bw = gpu.pcie.bandwidth_gbps
    return float(bw) if bw else 15.75  # Gen4 x8 when the link is not reported


# ------------------------------------------------------------------------------------------------
# the model proper: array functions shared by plans and the fit table
# ------------------------------------------------------------------------------------------------


def gpu_decode_seconds(
    read_bytes: npt.ArrayLike, layers: npt.ArrayLike, bandwidth_gbps: npt.ArrayLike
) -> FloatArray:
    """Seconds one GPU spends per decoded token on ``read_bytes`` over ``layers`` layers (broadcasts)."""
    rb = np.asarray(read_bytes, dtype=np.float64)
    ly = np.asarray(layers, dtype=np.float64)
    bw = np.asarray(bandwidth_gbps, dtype=np.float64) * GBPS * GPU_BANDWIDTH_EFFICIENCY
    return np.where(ly > 0, rb / bw + ly * GPU_DECODE_LAYER_S, 0.0)


def host_decode_seconds(
    read_bytes: npt.ArrayLike, flops: npt.ArrayLike, layers: npt.ArrayLike, host: Host
) -> FloatArray:
    """Seconds the CPU spends per decoded token on layers left in system RAM (broadcasts).

    The slower of reading the bytes at RAM bandwidth and doing the arithmetic on all cores.
    """
    rb = np.asarray(read_bytes, dtype=np.float64)
    fl = np.asarray(flops, dtype=np.float64)
    ly = np.asarray(layers, dtype=np.float64)
    memory = rb / (host_bandwidth_gbps(host) * GBPS * CPU_BANDWIDTH_EFFICIENCY)
    compute = fl / (host_cores(host) * CPU_DECODE_GFLOPS_PER_CORE * GBPS)
    return np.where(rb > 0, np.maximum(memory, compute) + ly * CPU_DECODE_LAYER_S, 0.0)


def gpu_prompt_seconds(
    flops: npt.ArrayLike, layers: npt.ArrayLike, tflops: npt.ArrayLike, n_ubatches: int
) -> FloatArray:
    """Seconds one GPU spends on a prompt's ``flops`` over ``layers`` layers (broadcasts)."""
    fl = np.asarray(flops, dtype=np.float64)
    ly = np.asarray(layers, dtype=np.float64)
    rate = np.asarray(tflops, dtype=np.float64) * 1e12 * GPU_FLOPS_EFFICIENCY
    return np.where(ly > 0, fl / rate + ly * n_ubatches * GPU_PROMPT_LAYER_S, 0.0)


def host_prompt_seconds(
    flops: npt.ArrayLike, layers: npt.ArrayLike, host: Host, n_ubatches: int
) -> FloatArray:
    """Seconds the CPU spends computing a prompt's ``flops`` itself (no GPU, or op_offload off)."""
    fl = np.asarray(flops, dtype=np.float64)
    ly = np.asarray(layers, dtype=np.float64)
    rate = host_cores(host) * CPU_PROMPT_GFLOPS_PER_CORE * GBPS
    return np.where(ly > 0, fl / rate + ly * n_ubatches * CPU_PROMPT_LAYER_S, 0.0)


def hop_seconds(n_bytes: float, bandwidth_gbps: float, latency_s: float) -> float:
    """One transfer of ``n_bytes`` over a link."""
    return latency_s + n_bytes / (max(bandwidth_gbps, 1e-9) * GBPS)


def allreduce_seconds(n_bytes: float, n_gpus: int, bandwidth_gbps: float, latency_s: float) -> float:
    """A ring all-reduce of ``n_bytes`` over ``n_gpus``: 2(n-1) steps moving 2(n-1)/n of the data."""
    if n_gpus <= 1:
        return 0.0
    steps = 2 * (n_gpus - 1)
    return steps * latency_s + steps / n_gpus * n_bytes / (max(bandwidth_gbps, 1e-9) * GBPS)


# ------------------------------------------------------------------------------------------------
# estimates for a plan
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedEstimate:
    """Predicted speed of a plan. ``None`` figures: the plan does not load.

    ``decode_tok_s`` is the average over a conversation that fills the context (the speed at half
    the context: decode time grows linearly with the cache), ``decode_empty_tok_s`` the speed at an
    empty cache (what ``llama-bench -n`` reports). ``gpu_decode_s`` / ``host_decode_s`` /
    ``link_decode_s`` split one token's time (at ``depth_tokens``) between the devices and the links.
    """

    decode_tok_s: float | None
    decode_empty_tok_s: float | None
    prompt_tok_s: float | None
    depth_tokens: int
    prompt_tokens: int
    n_gpu_layers: int | None = None  # the offload the figures are for (the plan's fitting one)
    gpu_decode_s: tuple[float, ...] = ()
    host_decode_s: float = 0.0
    link_decode_s: float = 0.0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Placement:
    """Which layers each device runs, read back from a plan."""

    mode: str  # "layer" (devices one after the other) or "parallel" (tensor/row: all at once)
    gpu_ranges: tuple[tuple[int, int], ...]  # per rig GPU: [first, end) of its repeating layers
    gpu_output: tuple[bool, ...]
    gpu_share: tuple[float, ...]  # parallel mode: each GPU's share of every layer
    host_layers: int  # layers 0 .. host_layers-1 run on the CPU
    output_on_host: bool


def _placement(plan: Plan, n_layer: int) -> _Placement:
    mode = "parallel" if plan.settings.split_mode in ("tensor", "row") and len(plan.devices) > 1 else "layer"
    ranges: list[tuple[int, int]] = []
    for d in plan.devices:
        if d.layers > 0 and d.first_layer >= 0:
            ranges.append((d.first_layer, d.first_layer + d.layers))
        else:
            ranges.append((0, 0))
    outputs = tuple(d.has_output for d in plan.devices)
    host_layers = min(max(plan.host.layers, 0), n_layer) if plan.devices else n_layer
    return _Placement(
        mode=mode,
        gpu_ranges=tuple(ranges),
        gpu_output=outputs,
        gpu_share=tuple(plan.tensor_split) if plan.tensor_split else tuple(1.0 for _ in plan.devices),
        host_layers=host_layers,
        output_on_host=not any(outputs),
    )


def estimate_speed(
    rig: Rig,
    spec: ModelSpec,
    plan: Plan,
    *,
    depth_tokens: int | None = None,
    prompt_tokens: int = PROMPT_TOKENS,
) -> SpeedEstimate:
    """Decode and prompt tokens per second for ``plan`` of ``spec`` on ``rig``.

    A plan with status ``offload`` because the request overflowed is estimated at its fitting
    ``n_gpu_layers`` (what would actually run); a ``no`` plan gets ``None`` figures. ``depth_tokens``
    (default: half the context) is the cache fill the decode figure is for.
    """
    settings = plan.settings
    depth = settings.ctx // 2 if depth_tokens is None else max(0, int(depth_tokens))
    if plan.status == STATUS_NO:
        return SpeedEstimate(None, None, None, depth, prompt_tokens, notes=("the plan does not load",))
    notes: list[str] = []
    used = plan
    ngl: int | None = None
    if plan.fit_n_gpu_layers is not None:
        from app.core.placement import plan_profile

        ngl = plan.fit_n_gpu_layers
        used = plan_profile(rig, profile(spec), replace(settings, n_gpu_layers=ngl))
        notes.append(f"estimated with n_gpu_layers={ngl}, the offload that fits")
    sp = speed_profile(spec)
    place = _placement(used, sp.n_layer)
    if any(not g.bandwidth_gbps and not g.on_cpu for g in rig.gpus):
        notes.append(f"a GPU's memory bandwidth is unknown: {DEFAULT_GPU_BANDWIDTH_GBPS:.0f} GB/s assumed")
    if any(not g.bandwidth_gbps and g.on_cpu for g in rig.gpus):
        notes.append(
            f"a CPU RPC server's RAM bandwidth is unknown: {DEFAULT_RAM_BANDWIDTH_GBPS:.0f} GB/s and "
            f"{DEFAULT_CPU_CORES} cores assumed"
        )
    if not rig.host.ram_bandwidth_gbps and (place.host_layers > 0 or not rig.gpus):
        notes.append(f"system RAM bandwidth not measured: {DEFAULT_RAM_BANDWIDTH_GBPS:.0f} GB/s assumed")
    decode = _decode(rig, sp, settings, place, float(depth))
    empty = _decode(rig, sp, settings, place, 0.0)
    prompt_s = _prompt_seconds(rig, sp, settings, place, prompt_tokens)
    return SpeedEstimate(
        decode_tok_s=_per_second(1.0, decode[0]),
        decode_empty_tok_s=_per_second(1.0, empty[0]),
        prompt_tok_s=_per_second(prompt_tokens, prompt_s),
        depth_tokens=depth,
        prompt_tokens=prompt_tokens,
        n_gpu_layers=ngl,
        gpu_decode_s=decode[1],
        host_decode_s=decode[2],
        link_decode_s=decode[3],
        notes=tuple(notes),
    )


def _range_sum(cum: FloatArray, lo: int, hi: int) -> float:
    return float(cum[hi] - cum[lo]) if hi > lo else 0.0


def _per_second(amount: float, seconds: float) -> float | None:
    # A plan that reads nothing per token has no meaningful speed (and 1/0 is no answer).
    return amount / seconds if seconds > 0 and math.isfinite(seconds) else None


def _decode(
    rig: Rig, sp: SpeedProfile, s: Settings, place: _Placement, depth: float
) -> tuple[float, tuple[float, ...], float, float]:
    """(seconds per token, per-GPU seconds, host seconds, link seconds)."""
    kv = sp.kv_read_bytes(s, depth)
    attn = sp.kv_attn_flops * sp.cells(depth)
    kv_cum = np.concatenate(([0.0], np.cumsum(kv)))
    attn_cum = np.concatenate(([0.0], np.cumsum(attn)))
    n = rig.n_gpus
    h = place.host_layers
    host_bytes = _range_sum(sp.layer_cum_bytes, 0, h)
    host_flops = _range_sum(sp.layer_cum_flops, 0, h) + _range_sum(attn_cum, 0, h)
    if s.offload_kqv or n == 0:
        host_bytes += _range_sum(kv_cum, 0, h)
    if place.output_on_host:
        host_bytes += sp.output_read_bytes
        host_flops += sp.output_flops
    if not s.offload_kqv and n > 0:
        # The whole KV cache stays in system RAM: the CPU runs every layer's attention.
        host_bytes += float(kv_cum[-1] - kv_cum[h])
    host_s = float(host_decode_seconds(host_bytes, host_flops, h + int(place.output_on_host), rig.host))
    gpu_s: list[float] = []
    link_s = 0.0
    act = sp.n_embd * ACTIVATION_BYTES_PER_VALUE
    if place.mode == "parallel":
        gpu_layers = sp.n_layer - h
        weights = _range_sum(sp.layer_cum_bytes, h, sp.n_layer) + (
            0.0 if place.output_on_host else sp.output_read_bytes
        )
        kv_gpu = _range_sum(kv_cum, h, sp.n_layer) if s.offload_kqv else 0.0
        for g, gpu in enumerate(rig.gpus):
            share = place.gpu_share[g]
            gpu_s.append(
                float(
                    gpu_decode_seconds(
                        (weights + kv_gpu) * share, gpu_layers if share > 0 else 0, gpu_bandwidth_gbps(gpu)
                    )
                )
            )
        active = [g for g in range(n) if place.gpu_share[g] > 0]
        bw, lat = _group_link(rig, active)
        link_s = 2 * gpu_layers * allreduce_seconds(act, len(active), bw, lat)
        link_s += _remote_token_s(rig, sp, place, act, prompt=False)
        total = max(gpu_s, default=0.0) + host_s + link_s
    else:
        for g, gpu in enumerate(rig.gpus):
            lo, hi = place.gpu_ranges[g]
            read = _range_sum(sp.layer_cum_bytes, lo, hi)
            if s.offload_kqv:
                read += _range_sum(kv_cum, lo, hi)
            if place.gpu_output[g]:
                read += sp.output_read_bytes
            layers = (hi - lo) + int(place.gpu_output[g])
            gpu_s.append(float(gpu_decode_seconds(read, layers, gpu_bandwidth_gbps(gpu))))
        # The token crosses from each device to the next in layer order (the host first).
        order = _layer_order(place, sp.n_layer)
        link_s = layer_link_seconds(rig, order, h > 0, not place.output_on_host, sp.n_embd, sp.spec.n_vocab)
        total = sum(gpu_s) + host_s + link_s
    total += GPU_DECODE_TOKEN_S if n else 0.0
    return total, tuple(gpu_s), host_s, link_s


def _layer_order(place: _Placement, n_layer: int) -> list[int]:
    """The devices holding slots of a layer split, in layer order (the order a token crosses them:
    llama.cpp's device order, remote devices first)."""
    order = [g for g, (lo, hi) in enumerate(place.gpu_ranges) if (hi - lo) + int(place.gpu_output[g]) > 0]
    order.sort(key=lambda g: place.gpu_ranges[g][0] if place.gpu_ranges[g][1] > 0 else n_layer)
    return order


def remote_chain_seconds(
    rig: Rig, order: Sequence[int], host_holds_layers: bool, output_on_gpu: bool, act: float, logits: float
) -> float:
    """What remote (RPC) devices add to a token of a layer split (or, with ``act`` and ``logits`` of a
    micro-batch, to that batch): each one's RPC exchange, the token's way in from this computer (the
    token embeddings live here) to the first device when that one is remote and the host holds no
    layer, and the ``logits`` bytes back from a remote device that holds the output layer.

    ``order``: the devices holding slots, in layer order (the output layer is on the last one).
    """
    total = 0.0
    any_remote = False
    for k, g in enumerate(order):
        remote = rig.gpus[g].remote
        if remote is None:
            continue
        if not any_remote:
            total += RPC_TOKEN_S
            any_remote = True
        total += RPC_DEVICE_TOKEN_S
        if output_on_gpu and k == len(order) - 1:
            total += hop_seconds(logits, rpc_gbps(remote.link.bandwidth_gbps), remote.link.rtt_ms / 1000.0)
    if order and not host_holds_layers:
        entry = rig.gpus[order[0]].remote
        if entry is not None:
            total += hop_seconds(act, rpc_gbps(entry.link.bandwidth_gbps), entry.link.rtt_ms / 1000.0)
    return total


def layer_link_seconds(
    rig: Rig, order: Sequence[int], host_holds_layers: bool, output_on_gpu: bool, n_embd: int, n_vocab: int
) -> float:
    """Link seconds per decoded token of a layer split whose devices holding slots are ``order`` (in
    layer order): an activation hop between consecutive devices, one from the host into the first
    (local) device when the host holds layers, and what remote devices add
    (:func:`remote_chain_seconds`). The fit table adds exactly this for its rows."""
    act = n_embd * ACTIVATION_BYTES_PER_VALUE
    total = 0.0
    for a, b in itertools.pairwise(order):
        bw, lat = link(rig, a, b)
        total += hop_seconds(act, bw, lat)
    if host_holds_layers and order and rig.gpus[order[0]].remote is None:
        total += hop_seconds(act, pcie_gbps(rig.gpus[order[0]]), PCIE_LATENCY_S)
    logits = float(n_vocab * ACTIVATION_BYTES_PER_VALUE)
    return total + remote_chain_seconds(rig, order, host_holds_layers, output_on_gpu, act, logits)


def _remote_token_s(rig: Rig, sp: SpeedProfile, place: _Placement, act: float, prompt: bool) -> float:
    """What remote (RPC) devices add to a token (or, ``prompt``, to a micro-batch whose activations
    are ``act`` bytes); see :func:`remote_chain_seconds`. Under tensor (or row) parallelism every
    member holds every GPU layer, and the logits come back through the all-reduce."""
    logits = float(sp.spec.n_vocab * ACTIVATION_BYTES_PER_VALUE * (PROMPT_OUTPUTS if prompt else 1))
    if place.mode != "parallel":
        order = _layer_order(place, sp.n_layer)
        return remote_chain_seconds(rig, order, place.host_layers > 0, not place.output_on_host, act, logits)
    gpu_layers = sp.n_layer - place.host_layers
    members = [g for g in range(rig.n_gpus) if place.gpu_share[g] > 0 and gpu_layers > 0]
    total = 0.0
    remote = [g for g in members if rig.gpus[g].remote is not None]
    if remote:
        total += RPC_TOKEN_S + RPC_DEVICE_TOKEN_S * len(remote)
    if members and place.host_layers == 0:
        entry = rig.gpus[members[0]].remote
        if entry is not None:
            total += hop_seconds(act, rpc_gbps(entry.link.bandwidth_gbps), entry.link.rtt_ms / 1000.0)
    return total


def _group_link(rig: Rig, gpus: list[int]) -> tuple[float, float]:
    """Bandwidth and latency of the slowest link inside a group of GPUs (what a ring all-reduce sees);
    a step through an RPC server waits for its answer too."""
    if len(gpus) < 2:
        return 1.0, 0.0
    links = [link(rig, a, b) for a in gpus for b in gpus if a < b]
    exchange = RPC_EXCHANGE_S if any(rig.gpus[g].remote is not None for g in gpus) else 0.0
    return min(bw for bw, _ in links), max(lat for _, lat in links) + exchange


def _offload_gpu(rig: Rig, s: Settings) -> Gpu | None:
    """The GPU op_offload sends host-layer work to (:func:`app.core.layout.offload_gpu`: the first
    local GPU of the model's devices; the main GPU with split mode ``none``, which keeps only that
    one); ``None`` when the model has no local GPU."""
    if s.split_mode == "none" and not 0 <= s.main_gpu < rig.n_gpus:
        return rig.gpus[0] if rig.n_gpus and rig.gpus[0].remote is None else None
    g = offload_gpu(rig, model_gpus(rig, s))
    return None if g is None else rig.gpus[g]


def _prompt_seconds(rig: Rig, sp: SpeedProfile, s: Settings, place: _Placement, n_tokens: int) -> float:
    p = max(1, int(n_tokens))
    ub = max(1, min(s.n_ubatch, s.n_batch))
    n_full, rest = divmod(p, ub)
    n_ub = n_full + int(rest > 0)
    # Attention of a prompt: each token attends to the tokens before it (p/2 on average).
    attn = sp.kv_attn_flops * sp.cells(p / 2.0) * p
    attn_cum = np.concatenate(([0.0], np.cumsum(attn)))
    # llama.cpp computes logits only for the rows it outputs: the prompt's last token.
    out_flops = sp.output_flops * PROMPT_OUTPUTS
    n = rig.n_gpus
    h = place.host_layers
    total = 0.0 if n == 0 else GPU_PROMPT_FIXED_S
    if h > 0:
        host_flops = _range_sum(sp.layer_cum_flops, 0, h) * p + _range_sum(attn_cum, 0, h)
        # op_offload moves an op to the GPU when its batch has at least 32 rows (ggml-cuda.cu
        # ggml_backend_cuda_device_offload_op); a prompt's last, shorter micro-batch may stay on the CPU.
        n_off = tok_off = 0
        g0 = _offload_gpu(rig, s)
        if g0 is not None and s.op_offload:
            if ub >= OP_OFFLOAD_MIN_BATCH:
                n_off, tok_off = n_full, n_full * ub
            if rest >= OP_OFFLOAD_MIN_BATCH:
                n_off, tok_off = n_off + 1, tok_off + rest
        share = tok_off / p
        if n_off and g0 is not None:
            # Every offloaded micro-batch copies every host-layer weight in again, from the mmap'd
            # (pageable) file: slower than the slot unless the slot itself is slower.
            copy_gbps = min(OFFLOAD_COPY_GBPS, pcie_gbps(g0))
            host_bytes = _range_sum(sp.layer_cum_bytes, 0, h)
            total += n_off * (host_bytes / (copy_gbps * GBPS) + h * OFFLOAD_HOST_LAYER_S)
            total += float(gpu_prompt_seconds(host_flops * share, h, gpu_tflops(g0), n_off))
        if n_off < n_ub:
            total += float(host_prompt_seconds(host_flops * (1.0 - share), h, rig.host, n_ub - n_off))
    if place.output_on_host:
        # One output row: below op_offload's threshold, so the CPU computes it, once per prompt.
        total += float(host_prompt_seconds(out_flops, 1, rig.host, 1))
    act = sp.n_embd * ACTIVATION_BYTES_PER_VALUE * p
    if place.mode == "parallel":
        gpu_layers = sp.n_layer - h
        flops = _range_sum(sp.layer_cum_flops, h, sp.n_layer) * p + _range_sum(attn_cum, h, sp.n_layer)
        if not place.output_on_host:
            flops += out_flops
        times = [
            float(gpu_prompt_seconds(flops * place.gpu_share[g], gpu_layers, gpu_tflops(gpu), n_ub))
            for g, gpu in enumerate(rig.gpus)
            if place.gpu_share[g] > 0
        ]
        active = [g for g in range(n) if place.gpu_share[g] > 0]
        bw, lat = _group_link(rig, active)
        total += max(times, default=0.0) + 2 * gpu_layers * allreduce_seconds(act, len(active), bw, lat)
    else:
        order: list[int] = []
        for g, gpu in enumerate(rig.gpus):
            lo, hi = place.gpu_ranges[g]
            flops = _range_sum(sp.layer_cum_flops, lo, hi) * p + _range_sum(attn_cum, lo, hi)
            if place.gpu_output[g]:
                flops += out_flops
            layers = (hi - lo) + int(place.gpu_output[g])
            total += float(gpu_prompt_seconds(flops, layers, gpu_tflops(gpu), n_ub))
            if layers > 0:
                order.append(g)
        order.sort(key=lambda g: place.gpu_ranges[g][0] if place.gpu_ranges[g][1] > 0 else sp.n_layer)
        for a, b in itertools.pairwise(order):
            bw, lat = link(rig, a, b)
            total += n_ub * lat + act / (bw * GBPS)
    if any(g.remote is not None for g in rig.gpus):
        total += n_ub * _remote_token_s(rig, sp, place, act / n_ub, prompt=True)
    return total


__all__ = [
    "PROMPT_TOKENS",
    "SpeedEstimate",
    "SpeedProfile",
    "allreduce_seconds",
    "estimate_speed",
    "gpu_decode_seconds",
    "gpu_prompt_seconds",
    "host_decode_seconds",
    "host_prompt_seconds",
    "layer_link_seconds",
    "link",
    "remote_chain_seconds",
    "speed_profile",
]


_SPEED_PROFILES: SpecCache[SpeedProfile] = SpecCache(_build_speed_profile, 4096)
