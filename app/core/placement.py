"""Placement: where llama.cpp puts every layer and buffer of a model on a rig, per device.

The rules follow llama-cpp-python 0.3.36's vendored llama.cpp; ``docs/placement.md`` names the
source lines and lists the measurements that check them.

* ``layer`` (default): the repeating layers and the output layer form ``n_layer + 1`` slots; slot
  ``i`` goes to the first GPU whose cumulative, normalised ``tensor_split`` exceeds
  ``i / n_gpu_slots`` (``llama_model_base::load_tensors``). Without a ``tensor_split`` the ratios are
  each GPU's free memory at load time. Token embeddings always stay in host memory. The KV cache of
  a layer lives with the layer.
* partial offload: ``n_gpu_layers`` counts slots from the end, so the output layer is the first to
  go to a GPU and the first repeating layers are the ones left on the CPU.
* ``none``: llama.cpp keeps only ``main_gpu`` in its device list; everything offloaded goes there.
* ``row``: the 2-D matmul weights of offloaded layers go to a split buffer that spreads their rows
  over all GPUs by ``tensor_split`` (rounded to ``ROW_SPLIT_ROUNDING`` rows); the rest and the KV
  cache follow the layer split. This llama.cpp's CUDA backend no longer provides split buffers
  (``ggml_backend_split_buffer_type`` is only exported by SYCL and Hexagon), so on NVIDIA and AMD
  GPUs a row-split load fails: such a plan has status ``no`` and says why.
* ``tensor``: all GPUs form one "meta" device. Attention and FFN weights, the output weight and the
  KV cache are split between the GPUs by whole heads / aligned row blocks (``llama_meta_device_
  get_split_state``); everything else is mirrored on every GPU. Needs flash attention; not
  implemented for the architectures in :data:`TENSOR_SPLIT_UNSUPPORTED_ARCHS`.

:func:`plan` returns a :class:`~app.core.plan.Plan`. How ``offload`` is decided: when the requested
settings overflow a GPU, the planner finds the largest ``n_gpu_layers`` that fits (GPUs and host
RAM); if there is one, the status is ``offload``, ``plan.fit_n_gpu_layers`` holds it and a note
says how many layers would stay on the CPU; the devices still show the requested placement (so a
split slider shows the overflow). A plan whose requested settings already keep layers on the CPU
and fit is ``offload`` too. ``no`` when nothing fits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from app.core import limits
from app.core.errors import RigfitError
from app.core.memory import (
    BACKEND_CPU,
    BACKEND_CUDA,
    CPU_ALIGNMENT,
    DEFAULT_GPU_OVERHEAD_MIB,
    KV_CTX_PAD,
    LLAMA_MAX_SEQ,
    MATRIX_ROW_PADDING,
    MIB,
    OP_OFFLOAD_MIN_BATCH,
    PIPELINE_COPIES,
    ROW_SPLIT_ROUNDING,
    ComputeRole,
    KvCells,
    ModelProfile,
    compute_bytes_cells,
    cuda_tensor_bytes,
    is_matmul_weight,
    is_quantized,
    kv_cells,
    kv_cells_for_contexts,
    kv_row_bytes,
    kv_type_id,
    mapped_span_bytes,
    output_buffer_bytes,
    pad,
    profile,
    row_bytes,
    tensor_role,
)
from app.core.model_spec import ModelSpec, TensorInfo
from app.core.plan import (
    STATUS_FITS,
    STATUS_NO,
    STATUS_OFFLOAD,
    STATUS_TIGHT,
    BufferPlan,
    DevicePlan,
    HostPlan,
    Plan,
)
from app.core.rig import VENDOR_AMD, VENDOR_INTEL, VENDOR_NVIDIA, Gpu, Rig
from app.core.settings import KV_TYPES, SPLIT_MODES, Settings

TIGHT_FREE_FRACTION = 0.10  # a GPU left with less than 10% of its VRAM free makes a plan "tight"

# llm_arch_supports_sm_tensor (llama-arch.cpp): architectures LLAMA_SPLIT_MODE_TENSOR refuses, by
# their GGUF names (llm_arch_name).
TENSOR_SPLIT_UNSUPPORTED_ARCHS: frozenset[str] = frozenset(
    {
        "grok",
        "mpt",
        "plamo2",
        "minicpm3",
        "gemma3n",
        "mamba",
        "mamba2",
        "jamba",
        "falcon-h1",
        "olmo2",
        "olmoe",
        "deepseek2",
        "deepseek32",
        "hy_v4",
        "dots3note",
        "glm-dsa",
        "bitnet",
        "t5",
        "nemotron_h",
        "nemotron_h_moe",
        "granitehybrid",
        "minimax-01",
        "minimax-m2",
        "minimax-m3",
        "mistral4",
        "kimi-linear",
        "bailingmoe3",
        "kimi-k3",
        "glm5-next",
        "qwen3tts",
        "qwen4exp",
    }
)

# Backends without split buffers in this llama.cpp: row split fails to load on them.
_NO_ROW_SPLIT_VENDORS = frozenset({VENDOR_NVIDIA, VENDOR_AMD})


# ------------------------------------------------------------------------------------------------
# layer assignment
# ------------------------------------------------------------------------------------------------


def _cumulative_splits(ratios: Sequence[float]) -> np.ndarray:
    """Normalised cumulative split points in float32, as llama.cpp computes them."""
    splits = np.array(ratios, dtype=np.float32)
    running = np.float32(0.0)
    for i in range(splits.size):
        running = np.float32(running + splits[i])
        splits[i] = running
    return (splits / running).astype(np.float32)


def layer_assignment(n_layer: int, tensor_split: Sequence[float], n_gpu_layers: int) -> tuple[int, ...]:
    """llama.cpp's layer rule: for each of the ``n_layer + 1`` slots, the GPU index or -1 (CPU).

    Slot ``n_layer`` is the output layer. ``tensor_split`` has one non-negative ratio per GPU (not
    all zero); ``n_gpu_layers`` of -1 (or more than ``n_layer``) offloads every slot. Mirrors
    ``load_tensors``: ``i_gpu_start = n_layer + 1 - n_gpu_layers``; slot ``il`` goes to
    ``upper_bound(splits, float(il - i_gpu_start) / n_gpu_slots)``, in float32.
    """
    if n_layer < 0:
        raise RigfitError("a model needs at least one layer")
    n_slots = n_layer + 1
    if not tensor_split:
        return (-1,) * n_slots
    ratios = [float(r) for r in tensor_split]
    if any(not math.isfinite(r) or r < 0 for r in ratios):
        raise RigfitError("tensor split ratios must be non-negative numbers")
    if sum(ratios) <= 0:
        raise RigfitError("tensor split ratios are all zero: give at least one GPU a share")
    ngl = n_slots if n_gpu_layers < 0 else n_gpu_layers
    i_gpu_start = max(n_slots - ngl, 0)
    act = min(ngl, n_slots)
    out = np.full(n_slots, -1, dtype=np.int64)
    if act > 0:
        splits = _cumulative_splits(ratios)
        # float(il - i_gpu_start) / act in float32, then upper_bound over the split points.
        values = np.arange(act, dtype=np.float32) / np.float32(act)
        out[i_gpu_start : i_gpu_start + act] = np.searchsorted(splits, values, side="right")
    return tuple(int(v) for v in out)


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------


def validate_settings(rig: Rig, spec: ModelSpec, settings: Settings) -> None:
    """Raise :class:`RigfitError` with a plain message for settings llama.cpp would refuse."""
    s = settings
    if s.split_mode not in SPLIT_MODES:
        raise RigfitError(f"unknown split mode '{s.split_mode}' (use one of {', '.join(SPLIT_MODES)})")
    if not isinstance(s.ctx, int) or s.ctx < 1:
        raise RigfitError(f"the context must be at least 1 token (got {s.ctx})")
    if s.n_batch < 1 or s.n_ubatch < 1:
        raise RigfitError("the batch and micro-batch sizes must be at least 1")
    if not 1 <= s.n_seq_max <= LLAMA_MAX_SEQ:
        raise RigfitError(f"the number of parallel sequences must be between 1 and {LLAMA_MAX_SEQ}")
    if s.n_gpu_layers < -1:
        raise RigfitError("n_gpu_layers must be -1 (all) or a number of layers from 0 up")
    for which, name in (("K", s.type_k), ("V", s.type_v)):
        if name not in KV_TYPES:
            raise RigfitError(f"unknown {which} cache type '{name}' (use one of {', '.join(KV_TYPES)})")
    if s.overhead_mib is not None and (not math.isfinite(s.overhead_mib) or s.overhead_mib < 0):
        raise RigfitError("the per-GPU overhead must be a non-negative number of MiB")
    n = rig.n_gpus
    if s.tensor_split is not None:
        if len(s.tensor_split) != n:
            raise RigfitError(
                f"the tensor split has {len(s.tensor_split)} entries but the rig has {n} GPU"
                f"{'s' if n != 1 else ''}: give one ratio per GPU"
            )
        if any(not math.isfinite(float(r)) or float(r) < 0 for r in s.tensor_split):
            raise RigfitError("tensor split ratios must be non-negative numbers")
        if n and sum(float(r) for r in s.tensor_split) <= 0:
            raise RigfitError("tensor split ratios are all zero: give at least one GPU a share")
    if n and not 0 <= s.main_gpu < n:
        raise RigfitError(f"main GPU {s.main_gpu} does not exist: the rig has GPUs 0 to {n - 1}")
    if not n and s.main_gpu != 0:
        raise RigfitError("the rig has no GPU, so there is no main GPU to choose")
    if kv_type_id(s.type_v) != kv_type_id("f16") and not s.flash_attn:
        raise RigfitError("a quantized V cache needs flash attention (llama.cpp refuses it otherwise)")
    if s.flash_attn and s.type_k != "f16":
        block = 32  # q8_0 and q4_0 blocks
        if spec.head_dim_k % block:
            raise RigfitError(
                f"K cache type {s.type_k} needs a head size that is a multiple of {block}; "
                f"this model's is {spec.head_dim_k}"
            )
    if spec.kv_lora_rank > 0 and s.type_k != s.type_v:
        from app.core.memory import uses_mla_cache

        if uses_mla_cache(spec):
            raise RigfitError("this model (MLA attention) needs the same K and V cache types")
    if s.split_mode == "tensor" and n:
        if spec.architecture in TENSOR_SPLIT_UNSUPPORTED_ARCHS:
            raise RigfitError(
                f"llama.cpp has no tensor split for the '{spec.architecture}' architecture: use layer split"
            )
        if not s.flash_attn:
            raise RigfitError("tensor split needs flash attention (llama.cpp refuses it otherwise)")
    # Last, the upper ends: the ranges the CLI and the window check too (app/core/limits.py).
    limits.check_settings(s)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def gpu_buffer_name(gpu: Gpu) -> str:
    """llama.cpp's device/buffer name for a GPU: CUDA0, ROCm1, SYCL0..."""
    prefix = {VENDOR_AMD: "ROCm", VENDOR_INTEL: "SYCL"}.get(gpu.vendor, "CUDA")
    return f"{prefix}{gpu.index}"


def default_split_weights(rig: Rig) -> tuple[float, ...]:
    """llama.cpp's default tensor split: each GPU's free memory at load (total for planned GPUs)."""
    return tuple(float(np.float32(g.vram_usable_mib * MIB)) for g in rig.gpus)


def effective_tensor_split(rig: Rig, settings: Settings) -> tuple[float, ...]:
    """The split as normalised ratios per rig GPU (summing to 1): what the layers follow."""
    n = rig.n_gpus
    if n == 0:
        return ()
    if settings.split_mode == "none":
        return tuple(1.0 if i == settings.main_gpu else 0.0 for i in range(n))
    if settings.tensor_split is not None:
        raw = [float(r) for r in settings.tensor_split]
    elif settings.split_mode == "tensor":
        raw = [1.0] * n  # the meta device splits evenly without a tensor_split
    else:
        raw = list(default_split_weights(rig))
    total = sum(raw)
    if total <= 0:
        raw = [1.0] * n
        total = float(n)
    return tuple(r / total for r in raw)


def _raw_split(rig: Rig, settings: Settings, model_gpus: Sequence[int]) -> list[float]:
    """The un-normalised split llama.cpp sees for its device list (floats, as it converts them)."""
    if settings.split_mode == "none":
        return [1.0]
    if settings.tensor_split is not None and sum(float(r) for r in settings.tensor_split) > 0:
        return [float(settings.tensor_split[g]) for g in model_gpus]
    weights = default_split_weights(rig)
    return [weights[g] for g in model_gpus]


def _gpu_overhead_mib(gpu: Gpu, settings: Settings) -> float:
    # An explicit setting for this plan wins over a GPU's own value, which wins over the default.
    if settings.overhead_mib is not None:
        return float(settings.overhead_mib)
    if gpu.overhead_mib is not None:
        return float(gpu.overhead_mib)
    return DEFAULT_GPU_OVERHEAD_MIB


def _n_gpu_slots(prof: ModelProfile, settings: Settings) -> int:
    n_slots = prof.n_layer + 1
    return n_slots if settings.n_gpu_layers < 0 else min(settings.n_gpu_layers, n_slots)


# ------------------------------------------------------------------------------------------------
# row and tensor split: per-tensor shares
# ------------------------------------------------------------------------------------------------


def _row_split_rows(nrows: int, ratios: Sequence[float], rounding: int = ROW_SPLIT_ROUNDING) -> list[int]:
    """Rows of a split-buffer tensor per GPU (get_row_split: starts rounded down to ``rounding``)."""
    n = len(ratios)
    starts = np.zeros(n, dtype=np.float32)
    running = np.float32(0.0)
    total = np.float32(sum(ratios))
    for i, r in enumerate(ratios):
        starts[i] = running / total
        running = np.float32(running + np.float32(r))
    rows: list[int] = []
    for i in range(n):
        low = 0 if i == 0 else int(np.float32(nrows) * starts[i])
        low -= low % rounding
        if i == n - 1:
            high = nrows
        else:
            high = int(np.float32(nrows) * starts[i + 1])
            high -= high % rounding
        rows.append(max(0, high - low))
    return rows


@functools.lru_cache(maxsize=4096)
def _tp_shares(
    ne: int, granularity: int, split: tuple[float, ...] | None, rotation: int, n: int
) -> tuple[int, ...]:
    """Elements of one split axis per device (llama_meta_device_get_split_state), granularity-aligned."""
    out = [0] * n
    scan: list[np.float32] = []
    running = np.float32(0.0)
    for j in range(n):
        running = np.float32(running + np.float32(0.0 if split is None else split[(j + rotation) % n]))
        scan.append(running)
    low = 0
    for j in range(n - 1):
        high = ne * (j + 1) // n if scan[-1] == 0.0 else int(np.float32(ne) * scan[j] / scan[-1])
        high -= high % granularity
        out[(j + rotation) % n] = high - low
        low = high
    out[(n - 1 + rotation) % n] = ne - low
    return tuple(out)


def _blck(ggml_type: int) -> int:
    from app.core.memory import _quant

    return _quant(ggml_type)[0]


@dataclass
class _TpContext:
    prof: ModelProfile
    n: int
    split: tuple[float, ...] | None
    by_name: dict[str, TensorInfo] = field(default_factory=dict)
    memo: dict[tuple[int, int], tuple[int, int, int, int]] = field(default_factory=dict)
    rot_memo: dict[int, int] = field(default_factory=dict)

    def blck_of(self, name: str, fallback: TensorInfo) -> int:
        t = self.by_name.get(name, fallback)
        return _blck(t.ggml_type)

    def rotation(self, il: int) -> int:
        # Rotation counts only earlier layers of the same kind (sliding-window or not).
        hit = self.rot_memo.get(il)
        if hit is None:
            swa = self.prof.is_swa
            same = int(np.count_nonzero(swa[:il] == swa[il])) if il < swa.size else il
            hit = self.rot_memo[il] = same % self.n
        return hit

    def granularities(self, il: int, blck: int) -> tuple[int, int, int, int]:
        """(granularity_q, granularity_head, granularity_kv, granularity_v) for layer ``il``."""
        key = (il, blck)
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = self._granularities(il, blck)
        return hit

    def _granularities(self, il: int, blck: int) -> tuple[int, int, int, int]:
        p = self.prof
        n_head = int(p.n_head[il])
        n_head_kv = max(1, int(p.n_head_kv[il]))
        n_gqa = max(1, n_head // n_head_kv)
        hk, hv = p.head_dim_k, p.head_dim_v
        n_embd_q = n_gqa * hk
        perf = blck
        while perf < 128 and perf * self.n < n_embd_q:
            perf *= 2
        g_q = math.lcm(n_embd_q, perf)
        g_head = g_q // hk
        g_kv = g_q // n_gqa
        g_v = (g_kv // hk) * hv
        return g_q, g_head, g_kv, g_v


def _tp_tensor_bytes(ctx: _TpContext, t: TensorInfo) -> list[int]:
    """CUDA bytes of one weight on each GPU under tensor parallelism."""
    n = ctx.n
    name = t.name
    il = t.layer
    ne0 = t.shape[0] if t.shape else 1
    rows = 1
    for d in t.shape[1:]:
        rows *= d
    mirrored = [cuda_tensor_bytes(t)] * n
    if il is None:
        if name == "output.weight":
            rot = (ctx.prof.n_layer - int(getattr(ctx.prof.spec, "n_layer_nextn", 0) or 0)) % n
            shares = _tp_shares(t.shape[1], 1, ctx.split, rot, n)
            inner = rows // t.shape[1]
            return [cuda_tensor_bytes(t, ne0, s * inner) for s in shares]
        return mirrored
    suffix = name.split(".", 2)[2] if name.count(".") >= 2 else name
    rot = ctx.rotation(il)
    prefix = f"blk.{il}."

    def axis1(granularity: int) -> list[int]:
        ne1 = t.shape[1]
        inner = rows // ne1
        return [cuda_tensor_bytes(t, ne0, s * inner) for s in _tp_shares(ne1, granularity, ctx.split, rot, n)]

    def axis0(granularity: int) -> list[int]:
        return [cuda_tensor_bytes(t, s, rows) for s in _tp_shares(ne0, granularity, ctx.split, rot, n)]

    if suffix in (
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_q.bias",
        "attn_k.bias",
        "attn_v.bias",
    ):
        blck = ctx.blck_of(prefix + "attn_output.weight", t)
        g_q, _, g_kv, g_v = ctx.granularities(il, blck)
        g = g_q if suffix.startswith("attn_q") else (g_v if suffix.startswith("attn_v") else g_kv)
        return axis1(g) if suffix.endswith("weight") else axis0(g)
    if suffix == "attn_output.weight":
        g_q, g_head, _, _ = ctx.granularities(il, _blck(t.ggml_type))
        return axis0(g_head * ctx.prof.head_dim_v)
    if suffix in ("attn_q_norm.weight", "attn_k_norm.weight"):
        return mirrored if len(t.shape) < 2 or t.shape[1] == 1 else axis1(1)
    ffn_axis1: tuple[str, ...] = (
        "ffn_up.weight",
        "ffn_up_exps.weight",
        "ffn_gate.weight",
        "ffn_gate_exps.weight",
        "ffn_gate_up.weight",
        "ffn_gate_up_exps.weight",
    )
    if suffix in ffn_axis1 or suffix in ("ffn_down.weight", "ffn_down_exps.weight"):
        ref = (
            ctx.by_name.get(prefix + "ffn_down.weight")
            or ctx.by_name.get(prefix + "ffn_down_exps.weight")
            or t
        )
        g = math.lcm(_blck(ref.ggml_type), 128)
        if suffix in ffn_axis1 and suffix.startswith("ffn_gate_up"):
            return axis1(g)
        return axis1(g) if suffix in ffn_axis1 else axis0(g)
    return mirrored


def _tp_kv_widths(
    ctx: _TpContext, il: int, k_width: int, v_width: int, type_k: int, type_v: int
) -> list[tuple[int, int]]:
    """Per GPU (K values, V values) per cell of layer ``il`` under tensor parallelism."""
    n = ctx.n
    blck = ctx.blck_of(f"blk.{il}.attn_output.weight", ctx.prof.spec.tensors[0])
    _, _, g_kv, g_v = ctx.granularities(il, blck)
    rot = ctx.rotation(il)
    ks = _tp_shares(k_width, g_kv, ctx.split, rot, n) if k_width else [0] * n
    vs = _tp_shares(v_width, g_v, ctx.split, rot, n) if v_width else [0] * n
    return list(zip(ks, vs, strict=True))


# ------------------------------------------------------------------------------------------------
# evaluation of one placement
# ------------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Everything about one placement that does not depend on the context length."""

    n_gpus: int
    model_gpus: list[int]
    layer_dev: np.ndarray  # rig GPU per repeating layer; -1 CPU; -2 all GPUs (tensor split)
    out_dev: int
    host_layers: list[int]
    weights: list[float]  # bytes per rig GPU
    host_weights: float
    overhead_mib: list[float]
    layers: list[int]
    first_layer: list[int]
    has_output: list[bool]
    kv_base_row: np.ndarray  # bytes per cell of the full cache, per rig GPU
    kv_swa_row: np.ndarray  # bytes per cell of the sliding-window cache, per rig GPU
    host_kv_base_row: float
    host_kv_swa_row: float
    gpu_roles: dict[int, ComputeRole]
    host_roles: list[ComputeRole]  # the host compute buffer is the largest of these


@dataclass
class _Eval:
    n_gpus: int
    weights: list[float]
    kv: list[float]
    compute: list[float]
    overhead_mib: list[float]
    layers: list[int]
    first_layer: list[int]
    has_output: list[bool]
    host_weights: float = 0.0
    host_kv: float = 0.0
    host_compute: float = 0.0
    host_output: float = 0.0
    host_layers: int = 0
    buffers: list[BufferPlan] = field(default_factory=list)

    def gpu_total_mib(self, i: int) -> float:
        return (self.weights[i] + self.kv[i] + self.compute[i]) / MIB + self.overhead_mib[i]

    @property
    def host_total_mib(self) -> float:
        return (self.host_weights + self.host_kv + self.host_compute + self.host_output) / MIB


def _kv_rows(prof: ModelProfile, s: Settings) -> np.ndarray:
    """K+V bytes per cell for each layer (V transposed and padded to the widest layer without FA)."""
    k_row = kv_row_bytes(s.type_k, prof.kv_k_width)
    v_width = prof.kv_v_width
    if not s.flash_attn and not prof.uses_mla:
        v_width = np.where(prof.kv_v_width > 0, prof.kv_v_width_max, 0).astype(np.int64)
    return (k_row + kv_row_bytes(s.type_v, v_width)).astype(np.float64)


def _layout(rig: Rig, prof: ModelProfile, s: Settings, n_gpu_layers: int) -> _Layout:
    n = rig.n_gpus
    n_layer = prof.n_layer
    # The devices llama.cpp loads the model on (rig indices), and the split over them.
    if n == 0:
        model_gpus: list[int] = []
    elif s.split_mode == "none":
        model_gpus = [s.main_gpu]
    else:
        model_gpus = list(range(n))
    ratios = effective_tensor_split(rig, s)
    overhead = [0.0] * n
    for gi in model_gpus:
        overhead[gi] = _gpu_overhead_mib(rig.gpus[gi], s)

    tensor_mode = s.split_mode == "tensor" and n > 0
    if not model_gpus:
        slots = (-1,) * (n_layer + 1)
    elif tensor_mode:
        slots = layer_assignment(n_layer, [1.0], n_gpu_layers)
    else:
        slots = layer_assignment(n_layer, _raw_split(rig, s, model_gpus), n_gpu_layers)
    # slot value -> rig GPU index (-1: CPU); tensor mode uses -2 for "all GPUs".
    dev_of = [(-2 if tensor_mode else model_gpus[d]) if d >= 0 else -1 for d in slots]
    out_dev = dev_of[n_layer]
    layer_dev = np.array(dev_of[:n_layer], dtype=np.int64)
    host_layers = [il for il in range(n_layer) if layer_dev[il] == -1]
    weights = [0.0] * n
    layers = [0] * n
    first = [-1] * n
    has_out = [False] * n

    # --- weights ----------------------------------------------------------------------------
    host_w = float(prof.input_host_bytes + int(prof.layer_host_bytes[host_layers].sum()))
    if host_layers:
        host_w += prof.per_device_host_bytes
    if out_dev == -1:
        host_w += prof.output_host_bytes
    tp: _TpContext | None = None
    if tensor_mode:
        tp = _TpContext(
            prof, n, tuple(float(r) for r in s.tensor_split) if s.tensor_split is not None else None
        )
        tp.by_name = {t.name: t for t in prof.spec.tensors}
        gpu_layer_set = {il for il in range(n_layer) if layer_dev[il] == -2}
        for t, kind, il in zip(prof.spec.tensors, prof.tensor_roles, prof.tensor_layers, strict=True):
            on_gpu = (
                (kind == "layer" and il in gpu_layer_set)
                or (kind == "output" and out_dev == -2)
                or (kind == "per_device" and bool(gpu_layer_set))
            )
            if on_gpu:
                for gi, b in enumerate(_tp_tensor_bytes(tp, t)):
                    weights[gi] += b
        if out_dev == -2 and prof.spec.tied_embeddings:
            emb = tp.by_name.get("token_embd.weight")
            if emb is not None:
                for gi in range(n):
                    weights[gi] += cuda_tensor_bytes(emb)  # the duplicated output is mirrored
        for gi in range(n):
            layers[gi] = len(gpu_layer_set)
            first[gi] = min(gpu_layer_set) if gpu_layer_set else -1
            has_out[gi] = out_dev == -2
    elif s.split_mode == "row" and n > 0:
        row_ratios = [ratios[g] for g in model_gpus]
        for t, kind, il in zip(prof.spec.tensors, prof.tensor_roles, prof.tensor_layers, strict=True):
            if kind == "layer":
                dev = int(layer_dev[il])
            elif kind == "output":
                dev = out_dev
            else:
                continue
            if dev < 0:
                continue
            if is_matmul_weight(t) and (len(t.shape) == 2 or all(d == 1 for d in t.shape[2:])):
                ne0 = t.shape[0]
                for k, r in enumerate(_row_split_rows(t.shape[1], row_ratios)):
                    if r:
                        size = row_bytes(t.ggml_type, ne0) * r
                        if is_quantized(t.ggml_type) and ne0 % MATRIX_ROW_PADDING:
                            size += row_bytes(t.ggml_type, MATRIX_ROW_PADDING - ne0 % MATRIX_ROW_PADDING)
                        weights[model_gpus[k]] += size
            else:
                weights[dev] += cuda_tensor_bytes(t)
        if out_dev >= 0 and prof.spec.tied_embeddings:
            emb = next((t for t in prof.spec.tensors if t.name == "token_embd.weight"), None)
            if emb is not None:
                for k, r in enumerate(_row_split_rows(emb.shape[1], row_ratios)):
                    if r:
                        weights[model_gpus[k]] += row_bytes(emb.ggml_type, emb.shape[0]) * r
        for gi in model_gpus:
            if np.any(layer_dev == gi):
                weights[gi] += prof.per_device_gpu_bytes
    else:
        for gi in model_gpus:
            mask = layer_dev == gi
            if np.any(mask):
                weights[gi] += float(prof.layer_gpu_bytes[mask].sum()) + prof.per_device_gpu_bytes
        if out_dev >= 0:
            weights[out_dev] += prof.output_gpu_bytes
    if not tensor_mode:
        for gi in model_gpus:
            idx = np.flatnonzero(layer_dev == gi)
            layers[gi] = int(idx.size)
            first[gi] = int(idx[0]) if idx.size else -1
            has_out[gi] = out_dev == gi

    # --- KV cache: bytes per cell, split into the full and the sliding-window cache ---------------
    rows = _kv_rows(prof, s)
    swa = prof.is_swa
    base_row = np.zeros(n, dtype=np.float64)
    swa_row = np.zeros(n, dtype=np.float64)
    on_host = np.ones(n_layer, dtype=np.bool_) if not s.offload_kqv else layer_dev == -1
    host_base = float(rows[on_host & ~swa].sum())
    host_swa = float(rows[on_host & swa].sum())
    if s.offload_kqv and tensor_mode:
        assert tp is not None
        tk, tv = kv_type_id(s.type_k), kv_type_id(s.type_v)
        v_widths = prof.kv_v_width if s.flash_attn else np.where(prof.kv_v_width > 0, prof.kv_v_width_max, 0)
        for layer_idx in np.flatnonzero(layer_dev == -2):
            li = int(layer_idx)
            per = _tp_kv_widths(tp, li, int(prof.kv_k_width[li]), int(v_widths[li]), tk, tv)
            for gi, (kw, vw) in enumerate(per):
                kb = int(kv_row_bytes(s.type_k, np.array([kw]))[0]) if kw else 0
                vb = int(kv_row_bytes(s.type_v, np.array([vw]))[0]) if vw else 0
                if swa[li]:
                    swa_row[gi] += kb + vb
                else:
                    base_row[gi] += kb + vb
    elif s.offload_kqv:
        for gi in model_gpus:
            mask = layer_dev == gi
            base_row[gi] = float(rows[mask & ~swa].sum())
            swa_row[gi] = float(rows[mask & swa].sum())

    # --- compute buffers ------------------------------------------------------------------------
    n_slots = n_layer + 1
    ngl = n_slots if n_gpu_layers < 0 else min(n_gpu_layers, n_slots)
    pipeline = s.split_mode == "layer" and len(model_gpus) > 1 and ngl > n_layer and s.offload_kqv
    copies = PIPELINE_COPIES if pipeline else 1
    n_ubatch = kv_cells(s, prof.n_swa).n_ubatch
    offload = s.op_offload and n_ubatch >= OP_OFFLOAD_MIN_BATCH and bool(model_gpus)
    host_attention = tuple(host_layers) if s.offload_kqv else tuple(range(n_layer))
    gpu_roles: dict[int, ComputeRole] = {}
    host_roles: list[ComputeRole] = []
    if not model_gpus:
        all_layers = tuple(range(n_layer))
        host_roles.append(
            ComputeRole(backend=BACKEND_CPU, layers=all_layers, attention_layers=all_layers, output=True)
        )
    else:
        for k, gi in enumerate(model_gpus):
            if tensor_mode:
                gpu_layers = tuple(int(i) for i in np.flatnonzero(layer_dev == -2))
                dev_out = out_dev == -2
                share = ratios[gi]
            else:
                gpu_layers = tuple(int(i) for i in np.flatnonzero(layer_dev == gi))
                dev_out = out_dev == gi
                share = 1.0
            off_w = 0
            off_kv = 0
            off_out = False
            if offload and k == 0:
                if host_layers:
                    off_w = int(prof.layer_max_matmul_gpu_bytes[host_layers].max())
                    if s.flash_attn:
                        off_kv = int(rows[host_layers].max())
                off_out = out_dev == -1
            gpu_roles[gi] = ComputeRole(
                backend=BACKEND_CUDA,
                layers=gpu_layers,
                attention_layers=gpu_layers if s.offload_kqv else (),
                output=dev_out,
                share=share,
                copies=copies,
                offload_weight_bytes=off_w,
                offload_kv_row_bytes=off_kv,
                offload_output=off_out,
            )
        host_roles.append(
            ComputeRole(
                backend=BACKEND_CPU, attention_layers=tuple(range(n_layer)), copies=copies, host_inputs=True
            )
        )
        if host_layers and not offload:
            # Without op_offload the CPU runs its layers' matmuls itself.
            host_roles.append(
                ComputeRole(
                    backend=BACKEND_CPU,
                    layers=tuple(host_layers),
                    attention_layers=host_attention,
                    output=out_dev == -1,
                )
            )
    return _Layout(
        n_gpus=n,
        model_gpus=model_gpus,
        layer_dev=layer_dev,
        out_dev=out_dev,
        host_layers=host_layers,
        weights=weights,
        host_weights=host_w,
        overhead_mib=overhead,
        layers=layers,
        first_layer=first,
        has_output=has_out,
        kv_base_row=base_row,
        kv_swa_row=swa_row,
        host_kv_base_row=host_base,
        host_kv_swa_row=host_swa,
        gpu_roles=gpu_roles,
        host_roles=host_roles,
    )


@dataclass(frozen=True)
class _Costs:
    gpu_kv: np.ndarray  # (n_ctx, n_gpus) bytes
    gpu_compute: np.ndarray
    host_kv: np.ndarray  # (n_ctx,)
    host_compute: np.ndarray


def _costs(
    lay: _Layout,
    prof: ModelProfile,
    s: Settings,
    base_cells: np.ndarray,
    swa_cells: np.ndarray,
    n_stream: int,
    n_ubatch: int,
    n_outputs: int,
) -> _Costs:
    """KV and compute bytes of a layout for each context (cells per stream given as arrays)."""
    base_total = base_cells * n_stream
    swa_total = swa_cells * n_stream
    gpu_kv = base_total[:, None] * lay.kv_base_row[None, :] + swa_total[:, None] * lay.kv_swa_row[None, :]
    gpu_compute = np.zeros((base_cells.size, lay.n_gpus), dtype=np.float64)
    for gi, role in lay.gpu_roles.items():
        gpu_compute[:, gi] = compute_bytes_cells(prof, s, n_ubatch, n_outputs, base_cells, swa_cells, role)
    host_kv = base_total * lay.host_kv_base_row + swa_total * lay.host_kv_swa_row
    host_compute = np.zeros(base_cells.size, dtype=np.float64)
    for role in lay.host_roles:
        host_compute = np.maximum(
            host_compute, compute_bytes_cells(prof, s, n_ubatch, n_outputs, base_cells, swa_cells, role)
        )
    return _Costs(gpu_kv, gpu_compute, host_kv, host_compute)


def _evaluate(
    rig: Rig, prof: ModelProfile, settings: Settings, n_gpu_layers: int, with_buffers: bool = False
) -> _Eval:
    s = settings
    lay = _layout(rig, prof, s, n_gpu_layers)
    cells = kv_cells(s, prof.n_swa)
    costs = _costs(
        lay,
        prof,
        s,
        np.array([cells.n_ctx_seq], dtype=np.float64),
        np.array([cells.swa_cells], dtype=np.float64),
        cells.n_stream,
        cells.n_ubatch,
        cells.n_outputs,
    )
    ev = _Eval(
        n_gpus=lay.n_gpus,
        weights=lay.weights,
        kv=[float(v) for v in costs.gpu_kv[0]],
        compute=[float(v) for v in costs.gpu_compute[0]],
        overhead_mib=lay.overhead_mib,
        layers=lay.layers,
        first_layer=lay.first_layer,
        has_output=lay.has_output,
        host_weights=lay.host_weights,
        host_kv=float(costs.host_kv[0]),
        host_compute=float(costs.host_compute[0]),
        host_output=float(output_buffer_bytes(prof, s)),
        host_layers=len(lay.host_layers),
    )
    if with_buffers:
        ev.buffers = _buffers(rig, prof, s, ev, lay.model_gpus, lay.host_layers, lay.out_dev, cells)
    return ev


def _buffers(
    rig: Rig,
    prof: ModelProfile,
    s: Settings,
    ev: _Eval,
    model_gpus: list[int],
    host_layers: list[int],
    out_dev: int,
    cells: KvCells,
) -> list[BufferPlan]:
    """The buffer lines llama.cpp would log, in its order: model, output, KV, compute."""
    out: list[BufferPlan] = []
    if model_gpus:
        # With a GPU backend the host buffer type takes the host tensors; with mmap they stay mapped.
        mapped = mapped_span_bytes(prof, host_layers, out_dev == -1)
        out.append(BufferPlan("CPU_Mapped", "model", mapped / MIB))
    else:
        # CPU only: the CPU backend moves the weights it can repack into a CPU_REPACK buffer.
        from app.core.memory import cpu_repack_types

        host_buffers = logged_model_buffers(
            prof, host_layers, out_dev == -1, cpu_repack_types(rig.host.cpu_flags)
        )
        out.extend(BufferPlan(name, "model", mib) for name, mib in host_buffers.items())
    for gi in model_gpus:
        if ev.weights[gi] > 0:
            out.append(BufferPlan(gpu_buffer_name(rig.gpus[gi]), "model", ev.weights[gi] / MIB, gi))
    host_name = "CUDA_Host" if model_gpus else "CPU"
    out_name = host_name if out_dev != -1 else "CPU"
    out.append(BufferPlan(out_name, "output", ev.host_output / MIB))
    if ev.host_kv > 0:
        out.append(BufferPlan("CPU", "KV", ev.host_kv / MIB))
    for gi in model_gpus:
        if ev.kv[gi] > 0:
            out.append(BufferPlan(gpu_buffer_name(rig.gpus[gi]), "KV", ev.kv[gi] / MIB, gi))
    for gi in model_gpus:
        if ev.compute[gi] > 0:
            out.append(BufferPlan(gpu_buffer_name(rig.gpus[gi]), "compute", ev.compute[gi] / MIB, gi))
    if ev.host_compute > 0:
        out.append(BufferPlan(host_name, "compute", ev.host_compute / MIB))
    return out


def _fits(rig: Rig, ev: _Eval) -> tuple[bool, bool]:
    """(all GPUs fit, host fits)."""
    gpus_ok = all(ev.gpu_total_mib(i) <= g.vram_usable_mib for i, g in enumerate(rig.gpus))
    avail = rig.host.ram_available_mib
    host_ok = avail is None or ev.host_total_mib <= avail
    return gpus_ok, host_ok


def _largest_fitting_ngl(rig: Rig, prof: ModelProfile, settings: Settings, below: int) -> int | None:
    """Largest n_gpu_layers in [0, below) with everything fitting, or None."""
    if below <= 0:
        return None

    def ok(ngl: int) -> bool:
        g, h = _fits(rig, _evaluate(rig, prof, settings, ngl))
        return g and h

    def gpu_ok(ngl: int) -> bool:
        return _fits(rig, _evaluate(rig, prof, settings, ngl))[0]

    # GPU use grows with n_gpu_layers: binary-search the largest count whose GPUs fit.
    lo, hi = 0, below - 1
    if not gpu_ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if gpu_ok(mid):
            lo = mid
        else:
            hi = mid - 1
    # Layer rounding can make the boundary uneven: step down to the first count that fits fully.
    for ngl in range(lo, -1, -1):
        if ok(ngl):
            return ngl
        if not _fits(rig, _evaluate(rig, prof, settings, ngl))[1]:
            return None  # fewer GPU layers only move more to the host
    return None


# ------------------------------------------------------------------------------------------------
# the public planner
# ------------------------------------------------------------------------------------------------


def plan(rig: Rig, spec: ModelSpec, settings: Settings) -> Plan:
    """Place ``spec`` on ``rig`` with ``settings`` exactly as llama.cpp would, and size every buffer.

    Raises :class:`RigfitError` for settings llama.cpp would refuse (see :func:`validate_settings`)
    and for a spec without tensors.
    """
    validate_settings(rig, spec, settings)
    return plan_profile(rig, profile(spec), settings)


def plan_profile(rig: Rig, prof: ModelProfile, settings: Settings) -> Plan:
    """:func:`plan` for an already computed :class:`~app.core.memory.ModelProfile` (no validation)."""
    s = settings
    n_slots = prof.n_layer + 1
    ngl = n_slots if s.n_gpu_layers < 0 else min(s.n_gpu_layers, n_slots)
    if rig.n_gpus == 0:
        ngl = 0
    ev = _evaluate(rig, prof, s, ngl, with_buffers=True)
    devices = tuple(
        DevicePlan(
            index=g.index,
            name=g.name,
            layers=ev.layers[i],
            has_output=ev.has_output[i],
            weights_mib=ev.weights[i] / MIB,
            kv_mib=ev.kv[i] / MIB,
            compute_mib=ev.compute[i] / MIB,
            overhead_mib=ev.overhead_mib[i],
            capacity_mib=g.vram_usable_mib,
            first_layer=ev.first_layer[i],
        )
        for i, g in enumerate(rig.gpus)
    )
    host = HostPlan(
        layers=ev.host_layers,
        weights_mib=ev.host_weights / MIB,
        kv_mib=ev.host_kv / MIB,
        compute_mib=ev.host_compute / MIB,
        output_mib=ev.host_output / MIB,
        available_mib=rig.host.ram_available_mib,
    )
    notes: list[str] = list(prof.notes)
    gpus_ok, host_ok = _fits(rig, ev)
    fit_ngl: int | None = None
    if rig.n_gpus == 0:
        status = STATUS_FITS if host_ok else STATUS_NO
        notes.append("no GPU: every layer runs on the CPU")
        if not host_ok:
            notes.append(
                f"needs {host.total_mib:.0f} MiB of system RAM; {host.available_mib:.0f} MiB are available"
            )
    elif gpus_ok and host_ok:
        if ev.host_layers > 0 or not any(ev.has_output):
            status = STATUS_OFFLOAD
            notes.append(
                f"{ev.host_layers} of {prof.n_layer} layers"
                f"{' and the output layer' if not any(ev.has_output) else ''} run on the CPU "
                f"(n_gpu_layers={ngl}): those run at system-RAM speed"
            )
        else:
            low = [
                d
                for d in devices
                if d.capacity_mib > 0 and d.free_after_mib < TIGHT_FREE_FRACTION * d.capacity_mib
            ]
            status = STATUS_TIGHT if low else STATUS_FITS
            if low:
                names = ", ".join(f"GPU {d.index}" for d in low)
                notes.append(f"{names} keep{'s' if len(low) == 1 else ''} less than 10% of VRAM free")
    elif not gpus_ok:
        over = [d for d in devices if not d.fits]
        for d in over:
            notes.append(
                f"GPU {d.index} ({d.name}) needs {d.total_mib:.0f} MiB but has {d.capacity_mib:.0f} MiB"
            )
        fit_ngl = _largest_fitting_ngl(rig, prof, s, ngl)
        if fit_ngl is not None:
            status = STATUS_OFFLOAD
            left = n_slots - fit_ngl
            layers_left = min(left, prof.n_layer)
            notes.append(
                f"fits with n_gpu_layers={fit_ngl}: {layers_left} of {prof.n_layer} layers"
                f"{' and the output layer' if left > prof.n_layer else ''} would stay on the CPU "
                f"and run at system-RAM speed"
            )
        else:
            status = STATUS_NO
            notes.append("does not fit even with layers moved to the CPU")
    else:
        status = STATUS_NO
        notes.append(
            f"the layers left on the CPU need {host.total_mib:.0f} MiB of system RAM; "
            f"{host.available_mib:.0f} MiB are available"
        )
    if s.split_mode == "row" and any(g.vendor in _NO_ROW_SPLIT_VENDORS for g in rig.gpus):
        status = STATUS_NO
        notes.append(
            "row split does not load with llama-cpp-python 0.3.36 on CUDA/ROCm GPUs (its llama.cpp has no "
            "split buffers there: 'does not support split buffers'); the figures show what a llama.cpp "
            "with row split would place. Use layer or tensor split."
        )
    if prof.spec.n_ctx_train and s.ctx > prof.spec.n_ctx_train:
        notes.append(
            f"the context ({s.ctx}) is longer than the model was trained for ({prof.spec.n_ctx_train}): "
            "llama.cpp loads it, but answers may degrade"
        )
    if s.split_mode == "tensor" and rig.n_gpus == 1:
        notes.append("tensor split on a single GPU works but llama.cpp does not recommend it")
    return Plan(
        model=prof.spec.id,
        quant=prof.spec.file_type or "",
        settings=s,
        devices=devices,
        host=host,
        status=status,
        tensor_split=effective_tensor_split(rig, s),
        n_layer=prof.n_layer,
        layers_on_cpu=ev.host_layers if rig.n_gpus else prof.n_layer,
        notes=tuple(notes),
        buffers=tuple(ev.buffers),
        fit_n_gpu_layers=fit_ngl,
    )


@dataclass(frozen=True)
class ContextSweep:
    """Totals of one placement for many contexts (MiB), from :func:`context_sweep`.

    ``gpu_total_mib[i, g]`` is GPU ``g``'s total (weights, KV, compute, overhead) at ``ctx[i]``;
    ``fits[i]`` says whether every GPU and the host fit there.
    """

    ctx: np.ndarray
    gpu_total_mib: np.ndarray
    host_total_mib: np.ndarray
    gpu_fits: np.ndarray
    fits: np.ndarray


def context_sweep(rig: Rig, prof: ModelProfile, settings: Settings, ctxs: Sequence[int]) -> ContextSweep:
    """Evaluate one placement at many context lengths at once (for the fit table and sliders).

    The layer assignment and weights are computed once; KV and compute buffers are vectorised over
    ``ctxs``. Equal to :func:`plan`'s figures at every context (``settings.ctx`` is ignored).
    """
    s = settings
    ctx = np.asarray(list(ctxs), dtype=np.int64)
    if ctx.size == 0 or int(ctx.min()) < 1:
        raise RigfitError("contexts must be at least 1 token")
    n_slots = prof.n_layer + 1
    ngl = n_slots if s.n_gpu_layers < 0 else min(s.n_gpu_layers, n_slots)
    if rig.n_gpus == 0:
        ngl = 0
    lay = _layout(rig, prof, s, ngl)
    cells = kv_cells_for_contexts(s, prof.n_swa, ctx)
    n_ctx_seq, swa, n_stream = cells.n_ctx_seq, cells.swa_cells, cells.n_stream
    tokens, outputs = cells.n_ubatch, cells.n_outputs
    gpu_kv = np.zeros((ctx.size, rig.n_gpus))
    gpu_compute = np.zeros((ctx.size, rig.n_gpus))
    host_kv = np.zeros(ctx.size)
    host_compute = np.zeros(ctx.size)
    # The graph's token count only differs for contexts below a micro-batch: group by it.
    for t, n_out in sorted(set(zip(tokens.tolist(), outputs.tolist(), strict=True))):
        sel = (tokens == t) & (outputs == n_out)
        costs = _costs(
            lay,
            prof,
            s,
            n_ctx_seq[sel].astype(np.float64),
            swa[sel].astype(np.float64),
            n_stream,
            int(t),
            int(n_out),
        )
        gpu_kv[sel] = costs.gpu_kv
        gpu_compute[sel] = costs.gpu_compute
        host_kv[sel] = costs.host_kv
        host_compute[sel] = costs.host_compute
    weights = np.array(lay.weights, dtype=np.float64)
    overhead = np.array(lay.overhead_mib, dtype=np.float64)
    gpu_total = (weights[None, :] + gpu_kv + gpu_compute) / MIB + overhead[None, :]
    host_total = (lay.host_weights + host_kv + host_compute + output_buffer_bytes(prof, s)) / MIB
    capacity = np.array([g.vram_usable_mib for g in rig.gpus], dtype=np.float64)
    gpu_fits = (
        np.all(gpu_total <= capacity[None, :], axis=1) if rig.n_gpus else np.ones(ctx.size, dtype=np.bool_)
    )
    avail = rig.host.ram_available_mib
    host_fits = np.ones(ctx.size, dtype=np.bool_) if avail is None else host_total <= avail
    return ContextSweep(ctx, gpu_total, host_total, gpu_fits, gpu_fits & host_fits)


def largest_fitting_ctx(
    rig: Rig, spec: ModelSpec, settings: Settings, limit: int | None = None
) -> int | None:
    """The largest context (a multiple of 256, up to ``limit`` or the model's training context) at which
    this placement fits the GPUs and the host; ``None`` when not even 256 tokens fit."""
    validate_settings(rig, spec, replace(settings, ctx=max(1, settings.ctx)))
    prof = profile(spec)
    top = limit or spec.n_ctx_train or 131072
    candidates = list(range(KV_CTX_PAD, top + 1, KV_CTX_PAD)) or [top]
    sweep = context_sweep(rig, prof, settings, candidates)
    ok = np.flatnonzero(sweep.fits)
    return int(sweep.ctx[ok[-1]]) if ok.size else None


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
    from app.core.memory import repackable

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
            repack += pad(t_bytes(t), CPU_ALIGNMENT)
            continue
        start, end = t.offset, t.offset + t_bytes(t)
        fi = t.file_index
        mapped_lo[fi] = min(mapped_lo.get(fi, start), start)
        mapped_hi[fi] = max(mapped_hi.get(fi, end), end)
    if output_on_host and prof.spec.tied_embeddings and emb is not None:
        # The output copy of token_embd is created for a matmul: the repack buffer may take it.
        out_view = TensorInfo("output.weight", emb.shape, emb.ggml_type)
        if repackable(out_view, repack_types):
            repack += pad(t_bytes(emb), CPU_ALIGNMENT)
    if prof.has_offsets:
        mapped = sum(mapped_hi[f] - mapped_lo[f] for f in mapped_lo)
    else:
        mapped = mapped_span_bytes(prof, list(host_layers), output_on_host)
    result = {"CPU_Mapped": mapped / MIB}
    if repack:
        result["CPU_REPACK"] = repack / MIB
    return result


def t_bytes(t: TensorInfo) -> int:
    """ggml_nbytes of a tensor (re-exported for tests)."""
    from app.core.memory import tensor_bytes

    return tensor_bytes(t)


__all__ = [
    "TENSOR_SPLIT_UNSUPPORTED_ARCHS",
    "ContextSweep",
    "context_sweep",
    "default_split_weights",
    "effective_tensor_split",
    "gpu_buffer_name",
    "largest_fitting_ctx",
    "layer_assignment",
    "logged_model_buffers",
    "plan",
    "plan_profile",
    "validate_settings",
]
