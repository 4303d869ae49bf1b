"""The memory model: what every buffer llama.cpp allocates weighs, per tensor, per layer, per device.

This follows llama-cpp-python 0.3.36's vendored llama.cpp (``vendor/llama.cpp``); the source lines
each rule follows are named next to it and in ``docs/placement.md``. The split between this module
and :mod:`app.core.placement` is a performance split:

* :func:`profile` does the per-model work once (it is cached): every tensor classified and sized in
  the buffers a backend would allocate, summed per layer; the per-layer KV widths; the shapes the
  compute-buffer formulas need. The result, a :class:`ModelProfile`, is public so the fit table can
  vectorise over contexts and quantizations without calling :func:`app.core.placement.plan`.
* the placement step (layer assignment, sums, KV and compute for one context) is cheap arithmetic
  on the profile's numpy arrays.

Buffers and how they are sized (bytes; MiB = 2**20 bytes):

* Weights on a CUDA GPU: ``GGML_PAD(alloc_size, 128)`` per tensor, where ``alloc_size`` adds one
  row of padding to quantized tensors whose row length is not a multiple of 512
  (``ggml-cuda.cu`` ``ggml_backend_cuda_buffer_type_get_alloc_size``, ``MATRIX_ROW_PADDING``) and
  ``ggml-alloc.c`` ``ggml_backend_alloc_ctx_tensors_from_buft`` sums the padded sizes.
* Weights on the host are memory-mapped from the file (``CPU_Mapped``): llama.cpp logs the span
  from the first to the last host tensor in each file (``llama_model_loader::get_mapping_range``).
  On a CPU-only x86 machine with AVX2, 2-D matmul weights of the types ``ggml-cpu/repack.cpp``
  repacks move to a ``CPU_REPACK`` buffer instead.
* KV cache: one K and one V tensor per layer, ``kv_size`` cells (context padded to 256, per
  sequence stream), on the device of the layer (``llama-kv-cache.cpp`` constructor).
* Compute buffers and the output buffer: :mod:`app.core.compute`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from app.core import limits
from app.core.errors import RigfitError
from app.core.model_spec import ModelSpec, TensorInfo, uses_mla_cache
from app.core.settings import Settings
from app.core.speccache import SpecCache

MIB = float(1 << 20)

# --- buffer alignment and padding (ggml sources) -----------------------------------------------
CUDA_ALIGNMENT = 128  # ggml_backend_cuda_buffer_type_get_alignment
CPU_ALIGNMENT = 32  # TENSOR_ALIGNMENT (ggml-impl.h): CPU and CPU_REPACK buffers
GGUF_DEFAULT_ALIGNMENT = 32  # tensor data alignment in a GGUF file unless general.alignment says otherwise
MATRIX_ROW_PADDING = 512  # ggml-cuda/common.cuh: quantized rows padded to a multiple of 512 values

# --- context and KV cache (llama-context.cpp, llama-kv-cache-iswa.cpp) --------------------------
KV_CTX_PAD = 256  # cparams.n_ctx = GGML_PAD(n_ctx, 256); n_ctx_seq padded the same way
SWA_CACHE_PAD = 256  # the SWA cache is padded to 256 cells too

# --- scheduler (ggml-backend.cpp) -------------------------------------------------------------
PIPELINE_COPIES = 4  # GGML_SCHED_MAX_COPIES: input copies kept when pipeline parallelism is on
OP_OFFLOAD_MIN_BATCH = 32  # CUDA offloads host-weight ops of batches this large (op_offload)

# --- row split (split buffer, ggml-sycl.cpp get_row_split; CUDA's former rule) -----------------
ROW_SPLIT_ROUNDING = 128  # rows per device are rounded down to this (mmq_y of Volta+ GPUs)

# --- per-GPU memory the allocator does not see -------------------------------------------------
# NVML's used-VRAM increase minus llama.cpp's logged CUDA0 buffers on an H200, driver 580 / CUDA 13.0
# (docs/validation.md). Right after the load: the CUDA context and what loading allocated (DEVICE.md:
# 527.3, 528.6, 528.6 MiB for a 1B, 8B and 70B model; 527.7-528.7 MiB in the 12 loads of issue 8).
GPU_OVERHEAD_AFTER_LOAD_MIB = 528.6
# The first decode then adds what CUDA and cuBLAS set up on first use (workspaces, lazily loaded kernels):
# 66.0 MiB in every one of the 12 loads (1B to 70B, full and partial offload, 4k to 32k context).
GPU_OVERHEAD_WARMUP_MIB = 66.0
# The planner's default is what a running model holds while it generates (594.6 MiB; measured
# 593.7-594.7). Consumer GPUs and other drivers differ (often 300-700 MiB): override it with
# Gpu.overhead_mib or Settings.overhead_mib when measured.
DEFAULT_GPU_OVERHEAD_MIB = GPU_OVERHEAD_AFTER_LOAD_MIB + GPU_OVERHEAD_WARMUP_MIB

# ggml types the CPU backend repacks into CPU_REPACK on x86 with AVX2 (ggml-cpu/repack.cpp
# ggml_repack_get_optimal_repack_type; Q2_K needs AVX-512) when the tensor has a multiple of 8 rows.
CPU_REPACK_TYPES_AVX2: frozenset[int] = frozenset(
    {
        int(GGMLQuantizationType.Q4_0),
        int(GGMLQuantizationType.Q4_K),
        int(GGMLQuantizationType.IQ4_NL),
        int(GGMLQuantizationType.MXFP4),
    }
)
CPU_REPACK_TYPES_AVX512: frozenset[int] = CPU_REPACK_TYPES_AVX2 | {int(GGMLQuantizationType.Q2_K)}

_KV_TYPE_IDS = {
    "f16": int(GGMLQuantizationType.F16),
    "q8_0": int(GGMLQuantizationType.Q8_0),
    "q4_0": int(GGMLQuantizationType.Q4_0),
    "f32": int(GGMLQuantizationType.F32),
    "bf16": int(GGMLQuantizationType.BF16),
}

# Tensors outside the repeating blocks, by the layer llama.cpp gives them (llama-arch.cpp
# LLM_TENSOR_INFOS): input tensors stay in host memory, output tensors go with the output layer.
_INPUT_PREFIXES = ("token_embd", "token_types", "pos_embd", "per_layer_token_embd", "tok_embd")
_OUTPUT_PREFIXES = ("output", "cls", "result_norm", "enc.output_norm", "dec.output_norm")
# Per-layer tensors stored once without a block number (rope frequency factors): llama.cpp
# duplicates them into every device that holds a layer (TENSOR_DUPLICATED).
_PER_DEVICE_PREFIXES = ("rope_freqs", "rope_factors_long", "rope_factors_short")
# Weights consumed by a matrix multiplication: the ones op_offload copies to a GPU and repacking
# applies to.
_MATMUL_SUFFIXES = (
    "attn_q.weight",
    "attn_k.weight",
    "attn_v.weight",
    "attn_qkv.weight",
    "attn_output.weight",
    "attn_q_a.weight",
    "attn_q_b.weight",
    "attn_kv_a_mqa.weight",
    "attn_kv_b.weight",
    "attn_k_b.weight",
    "attn_v_b.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_shexp.weight",
    "ffn_up_shexp.weight",
    "ffn_down_shexp.weight",
    "ffn_gate_exps.weight",
    "ffn_up_exps.weight",
    "ffn_down_exps.weight",
    "ffn_gate_up_exps.weight",
)

ROLE_INPUT = "input"
ROLE_OUTPUT = "output"
ROLE_LAYER = "layer"
ROLE_PER_DEVICE = "per_device"


def tensor_role(t: TensorInfo) -> str:
    """Where llama.cpp puts a tensor: ``input`` (host), ``output`` (output layer), ``layer`` or ``per_device``."""
    if t.layer is not None:
        return ROLE_LAYER
    name = t.name
    if name.startswith(_PER_DEVICE_PREFIXES):
        return ROLE_PER_DEVICE
    if name.startswith(_OUTPUT_PREFIXES):
        return ROLE_OUTPUT
    # Everything else outside the blocks (token embeddings and their norms) is an input tensor.
    return ROLE_INPUT


def is_matmul_weight(t: TensorInfo) -> bool:
    """True for weights a matrix multiplication consumes (attention and FFN projections, output)."""
    return t.name == "output.weight" or t.name.endswith(_MATMUL_SUFFIXES)


_QUANT_SIZES: dict[int, tuple[int, int]] = {
    int(k): (int(v[0]), int(v[1])) for k, v in GGML_QUANT_SIZES.items()
}


def _quant(ggml_type: int) -> tuple[int, int]:
    try:
        return _QUANT_SIZES[ggml_type]
    except KeyError:
        raise RigfitError(f"unknown ggml tensor type {ggml_type}") from None


def block_size(ggml_type: int) -> int:
    """Values per block of a ggml type (1 for F32/F16/BF16, 32 for Q4_0, 256 for the K-quants)."""
    return _quant(ggml_type)[0]


def row_bytes(ggml_type: int, ne0: int) -> int:
    """ggml_row_size: bytes of ``ne0`` values of a type (``ne0`` must be a whole number of blocks)."""
    block, size = _quant(ggml_type)
    if ne0 % block:
        raise RigfitError(f"a row of {ne0} values is not a whole number of {block}-value blocks")
    return ne0 // block * size


def tensor_bytes(t: TensorInfo) -> int:
    """ggml_nbytes of a weight tensor."""
    if not t.shape:
        return _quant(t.ggml_type)[1]
    rows = 1
    for d in t.shape[1:]:
        rows *= d
    return row_bytes(t.ggml_type, t.shape[0]) * rows


def is_quantized(ggml_type: int) -> bool:
    """ggml_is_quantized: block-quantized types (block size above 1)."""
    return _quant(ggml_type)[0] > 1


def pad(n: int, align: int) -> int:
    """GGML_PAD: round ``n`` up to a multiple of ``align``."""
    return (n + align - 1) // align * align


def cuda_tensor_bytes(t: TensorInfo, ne0: int | None = None, rows: int | None = None) -> int:
    """Bytes a weight takes in a CUDA buffer: alloc size (quantized rows padded to 512) padded to 128.

    ``ne0``/``rows`` describe a slice of the tensor (tensor-parallel shards); default the whole tensor.
    """
    full_ne0 = t.shape[0] if t.shape else 1
    ne0 = full_ne0 if ne0 is None else ne0
    if rows is None:
        rows = 1
        for d in t.shape[1:]:
            rows *= d
    if ne0 <= 0 or rows <= 0:
        return 0
    size = row_bytes(t.ggml_type, ne0) * rows
    if is_quantized(t.ggml_type) and ne0 % MATRIX_ROW_PADDING:
        size += row_bytes(t.ggml_type, MATRIX_ROW_PADDING - ne0 % MATRIX_ROW_PADDING)
    return pad(size, CUDA_ALIGNMENT)


def cpu_repack_types(cpu_flags: Sequence[str]) -> frozenset[int]:
    """The weight types llama.cpp's CPU backend repacks on a CPU with these flags (``Host.cpu_flags``).

    Unknown flags (an empty tuple) predict no repacking; ARM layouts are not modelled.
    """
    flags = set(cpu_flags)
    if "avx512f" in flags:
        return CPU_REPACK_TYPES_AVX512
    if "avx2" in flags:
        return CPU_REPACK_TYPES_AVX2
    return frozenset()


def repackable(t: TensorInfo, repack_types: frozenset[int]) -> bool:
    """True when the CPU backend would put this weight in a CPU_REPACK buffer."""
    return (
        t.ggml_type in repack_types
        and is_matmul_weight(t)
        and len(t.shape) >= 2
        and t.shape[1] % 8 == 0
        and (len(t.shape) == 2 or t.name.endswith("_exps.weight"))
    )


def kv_type_id(name: str) -> int:
    """ggml type id of a KV cache type name (``f16``, ``q8_0``, ``q4_0``)."""
    try:
        return _KV_TYPE_IDS[name.lower()]
    except KeyError:
        known = ", ".join(sorted(_KV_TYPE_IDS))
        raise RigfitError(f"unknown KV cache type '{name}' (use one of {known})") from None


# ------------------------------------------------------------------------------------------------
# context and KV cache sizing
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KvCells:
    """How many cells llama.cpp gives the KV cache for a context (llama-context.cpp, kv-cache-iswa.cpp)."""

    n_ctx: int  # context after padding, all sequences
    n_ctx_seq: int  # cells per sequence stream (kv_size)
    n_stream: int  # K/V streams: n_seq_max, or 1 with a unified cache
    swa_cells: int  # cells per stream of the sliding-window cache (= n_ctx_seq when swa_full)
    n_ubatch: int  # tokens in the worst-case prompt graph
    n_outputs: int  # outputs (logits rows) in the worst-case prompt graph

    @property
    def base_cells_total(self) -> int:
        return self.n_ctx_seq * self.n_stream

    @property
    def swa_cells_total(self) -> int:
        return self.swa_cells * self.n_stream


def _check_sizes(s: Settings) -> None:
    # The sizes every buffer scales with, checked here because every plan passes through: a value
    # beyond these ranges would wrap in llama.cpp and overflow the int64 arithmetic below.
    if not (
        isinstance(s.ctx, int)
        and 1 <= s.ctx <= limits.MAX_CTX
        and 1 <= s.n_batch <= limits.MAX_BATCH
        and 1 <= s.n_ubatch <= limits.MAX_BATCH
        and 1 <= s.n_seq_max <= limits.MAX_SEQUENCES
    ):
        limits.check_settings(s)


def kv_cells(settings: Settings, n_swa: int = 0) -> KvCells:
    """Cells of the KV cache(s) and the graph's token count for these settings.

    Follows llama_context's constructor: n_ctx padded to 256, split into n_seq_max streams of
    n_ctx_seq (each padded to 256) unless the cache is unified; n_batch capped by n_ctx and n_ubatch
    by n_batch; the sliding-window cache holds ``min(n_ctx_seq, n_swa*(n_seq if unified) + n_ubatch)``
    cells padded to 256, or the whole context with ``swa_full``.
    """
    _check_sizes(settings)
    n_seq = max(1, settings.n_seq_max)
    n_ctx = pad(settings.ctx, KV_CTX_PAD)
    if settings.kv_unified:
        n_ctx_seq = n_ctx
        n_stream = 1
    else:
        n_ctx_seq = pad(n_ctx // n_seq, KV_CTX_PAD)
        n_ctx = n_ctx_seq * n_seq
        n_stream = n_seq
    # llama-cpp-python caps n_batch by the (unpadded) n_ctx, llama.cpp again by the padded one.
    n_batch = min(settings.ctx, settings.n_batch, n_ctx)
    n_ubatch = min(n_batch, settings.n_ubatch)
    n_tokens = min(n_ctx, n_ubatch)
    n_outputs = min(n_tokens, n_batch)  # n_outputs_max defaults to n_batch
    if n_swa > 0 and not settings.swa_full:
        swa = pad(min(n_ctx_seq, n_swa * (n_seq if settings.kv_unified else 1) + n_ubatch), SWA_CACHE_PAD)
    else:
        swa = n_ctx_seq
    return KvCells(n_ctx, n_ctx_seq, n_stream, swa, n_tokens, n_outputs)


# ------------------------------------------------------------------------------------------------
# the per-model profile
# ------------------------------------------------------------------------------------------------

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class KvCellsArray:
    """:class:`KvCells` for many contexts at once (one entry per context)."""

    ctx: IntArray
    n_ctx_seq: IntArray
    swa_cells: IntArray
    n_stream: int
    n_ubatch: IntArray
    n_outputs: IntArray


def kv_cells_for_contexts(settings: Settings, n_swa: int, ctxs: npt.ArrayLike) -> KvCellsArray:
    """:func:`kv_cells` vectorised over ``ctxs`` (``settings.ctx`` is ignored): the same rules."""
    s = settings
    _check_sizes(replace(s, ctx=1))
    ctx = np.asarray(ctxs, dtype=np.int64)
    if ctx.size and (int(ctx.min()) < 1 or int(ctx.max()) > limits.MAX_CTX):
        raise RigfitError(f"contexts must be {limits.CTX_RANGE.describe()}")
    n_seq = max(1, s.n_seq_max)
    n_ctx = (ctx + KV_CTX_PAD - 1) // KV_CTX_PAD * KV_CTX_PAD
    if s.kv_unified:
        n_ctx_seq = n_ctx
        n_stream = 1
    else:
        n_ctx_seq = (n_ctx // n_seq + KV_CTX_PAD - 1) // KV_CTX_PAD * KV_CTX_PAD
        n_ctx = n_ctx_seq * n_seq
        n_stream = n_seq
    n_batch = np.minimum(np.minimum(ctx, s.n_batch), n_ctx)
    n_ubatch = np.minimum(n_batch, s.n_ubatch)
    tokens = np.minimum(n_ctx, n_ubatch)
    outputs = np.minimum(tokens, n_batch)
    if n_swa > 0 and not s.swa_full:
        window = n_swa * (n_seq if s.kv_unified else 1) + n_ubatch
        swa = (np.minimum(n_ctx_seq, window) + SWA_CACHE_PAD - 1) // SWA_CACHE_PAD * SWA_CACHE_PAD
    else:
        swa = n_ctx_seq
    return KvCellsArray(ctx, n_ctx_seq, np.asarray(swa, dtype=np.int64), n_stream, tokens, outputs)


@dataclass(frozen=True, eq=False)
class ModelProfile:
    """Everything about a model the placement needs, precomputed once per :class:`ModelSpec`.

    Byte counts are per buffer type, as the backend allocates them. Per-layer arrays have
    ``n_layer`` entries (blk index order). For the fit table:

    * weights on the GPUs for the layers ``a..b`` = ``layer_gpu_bytes[a:b].sum()``, plus
      ``output_gpu_bytes`` on the device holding the output layer, plus ``per_device_gpu_bytes``
      once per GPU holding a layer;
    * KV bytes of layer ``l`` for a context = ``kv_k_width[l]`` and ``kv_v_width[l]`` values per cell
      (bytes per cell: :func:`app.core.layout.kv_rows`), times the cells of :func:`kv_cells`;
    * compute buffers from :func:`compute_bytes_cells` (vectorised over cell counts).
    """

    spec: ModelSpec
    n_layer: int
    n_embd: int
    n_vocab: int
    # weights
    layer_gpu_bytes: IntArray  # CUDA buffer bytes per layer
    layer_host_bytes: IntArray  # file bytes per layer (what the mapping holds)
    layer_max_matmul_gpu_bytes: IntArray  # largest matmul weight per layer, CUDA bytes (op_offload copies)
    input_host_bytes: int  # token embeddings & other input tensors, file bytes
    output_gpu_bytes: int  # output layer on a GPU (output_norm + output, or the duplicated token_embd)
    output_host_bytes: int  # output layer on the host (a tied output reuses token_embd: no extra)
    output_matmul_gpu_bytes: int  # the output weight alone, CUDA bytes
    per_device_gpu_bytes: int  # rope factors: one copy per GPU holding a layer
    per_device_host_bytes: int
    # KV cache (values per cell)
    kv_k_width: IntArray  # K values per cell per layer (0: layer has no KV)
    kv_v_width: IntArray  # V values per cell per layer (0: no V cache, MLA)
    kv_v_width_max: int  # V width used for every layer when V is transposed (no flash attention)
    is_swa: BoolArray
    n_swa: int
    # compute-buffer dimensions
    n_ff_eff: IntArray  # FFN intermediate width per token per layer (MoE: used experts + shared)
    n_head: IntArray
    n_head_kv: IntArray
    head_dim_k: int
    head_dim_v: int
    uses_mla: bool
    # host mapping spans for llama.cpp's CPU_Mapped log lines: per file, per layer first/last byte
    layer_file_lo: IntArray  # (n_files, n_layer) first data byte of the layer's tensors, -1 if none
    layer_file_hi: IntArray  # (n_files, n_layer) end of the last tensor
    input_file_lo: IntArray  # (n_files,)
    input_file_hi: IntArray
    output_file_lo: IntArray
    output_file_hi: IntArray
    has_offsets: bool  # tensor offsets come from a real file
    tensor_roles: tuple[str, ...] = ()  # tensor_role() of each spec tensor, in spec order
    tensor_layers: tuple[int, ...] = ()  # blk index of each spec tensor, -1 outside the blocks
    notes: tuple[str, ...] = ()

    @property
    def n_files(self) -> int:
        return int(self.layer_file_lo.shape[0])


# Bounded: the whole catalog times every quantization is about 800 specs.
PROFILE_CACHE_SIZE = 4096


def profile(spec: ModelSpec) -> ModelProfile:
    """The placement profile of a model, computed once per spec object and cached.

    Raises :class:`RigfitError` when the spec has no tensors or inconsistent shapes.
    """
    return PROFILE_CACHE.get(spec)


def _per_layer(values: Sequence[int], n_layer: int, what: str, default: int | None = None) -> list[int]:
    if len(values) == n_layer:
        return [int(v) for v in values]
    if len(values) == 1:
        return [int(values[0])] * n_layer
    if not values and default is not None:
        return [default] * n_layer
    raise RigfitError(f"the model lists {len(values)} {what} values for {n_layer} layers")


def _build_profile(spec: ModelSpec) -> ModelProfile:
    n_layer = spec.n_layer
    if n_layer < 1:
        raise RigfitError(f"model '{spec.id}' has no layers")
    # Specs from files were checked where they were made; a spec built some other way is checked
    # here, so no dimension can overflow the int64 sums below or size an array by a corrupt count.
    limits.check_spec(spec)
    if not spec.tensors:
        raise RigfitError(
            f"model '{spec.id}' has no tensor list: pick a quantization so its tensor sizes are known"
        )
    raw_alignment = spec.metadata.get("general.alignment")
    alignment = (
        raw_alignment if isinstance(raw_alignment, int) and raw_alignment > 0 else GGUF_DEFAULT_ALIGNMENT
    )
    n_files = max(1, len(spec.paths), 1 + max(t.file_index for t in spec.tensors))

    layer_gpu = np.zeros(n_layer, dtype=np.int64)
    layer_host = np.zeros(n_layer, dtype=np.int64)
    layer_max_mm = np.zeros(n_layer, dtype=np.int64)
    lo = np.full((n_files, n_layer), -1, dtype=np.int64)
    hi = np.full((n_files, n_layer), -1, dtype=np.int64)
    in_lo = np.full(n_files, -1, dtype=np.int64)
    in_hi = np.full(n_files, -1, dtype=np.int64)
    out_lo = np.full(n_files, -1, dtype=np.int64)
    out_hi = np.full(n_files, -1, dtype=np.int64)

    def span(lo_arr: IntArray, hi_arr: IntArray, idx: tuple[int, ...], t: TensorInfo, nbytes: int) -> None:
        start, end = t.offset, t.offset + nbytes
        lo_arr[idx] = start if lo_arr[idx] < 0 else min(int(lo_arr[idx]), start)
        hi_arr[idx] = max(int(hi_arr[idx]), end)

    input_host = 0
    output_gpu = 0
    output_host = 0
    output_mm_gpu = 0
    per_dev_gpu = 0
    per_dev_host = 0
    token_embd: TensorInfo | None = None
    has_output_weight = False
    roles: list[str] = []
    layer_of: list[int] = []
    offsets = [t.offset for t in spec.tensors]
    has_offsets = spec.source == "gguf" and len(set(offsets)) == len(offsets)
    for t in spec.tensors:
        nbytes = tensor_bytes(t)
        fbytes = pad(nbytes, alignment)
        role = tensor_role(t)
        roles.append(role)
        layer_of.append(t.layer if role == ROLE_LAYER and t.layer is not None else -1)
        fi = min(t.file_index, n_files - 1)
        if role == ROLE_LAYER:
            il = t.layer
            assert il is not None
            if il >= n_layer:
                raise RigfitError(f"tensor '{t.name}' names layer {il}, but the model has {n_layer} layers")
            g = cuda_tensor_bytes(t)
            layer_gpu[il] += g
            layer_host[il] += fbytes
            if is_matmul_weight(t):
                layer_max_mm[il] = max(int(layer_max_mm[il]), g)
            span(lo, hi, (fi, il), t, nbytes)
        elif role == ROLE_OUTPUT:
            output_gpu += cuda_tensor_bytes(t)
            output_host += fbytes
            if t.name == "output.weight":
                has_output_weight = True
                output_mm_gpu = cuda_tensor_bytes(t)
            span(out_lo, out_hi, (fi,), t, nbytes)
        elif role == ROLE_PER_DEVICE:
            per_dev_gpu += cuda_tensor_bytes(t)
            per_dev_host += fbytes
        else:
            input_host += fbytes
            if t.name == "token_embd.weight":
                token_embd = t
            span(in_lo, in_hi, (fi,), t, nbytes)
    notes: list[str] = []
    if not has_output_weight and token_embd is not None:
        # llama.cpp creates the output from token_embd with TENSOR_DUPLICATED: a copy on the output
        # device (llama-model-loader.cpp create_tensor); on the host it reuses the mapped tensor.
        output_mm_gpu = cuda_tensor_bytes(token_embd)
        output_gpu += output_mm_gpu
        notes.append("tied embeddings: the output layer is a copy of token_embd on its device")

    n_head = np.array(_per_layer(spec.n_head, n_layer, "head-count"), dtype=np.int64)
    n_head_kv = np.array(_per_layer(spec.n_head_kv, n_layer, "KV head-count"), dtype=np.int64)
    n_ff = np.array(_per_layer(spec.n_ff, n_layer, "feed-forward", default=0), dtype=np.int64)
    is_swa = np.array(
        [bool(spec.swa_layers[i]) if i < len(spec.swa_layers) else False for i in range(n_layer)],
        dtype=np.bool_,
    )
    mla = uses_mla_cache(spec)
    if mla:
        # MLA caches one compressed latent plus the rope part per token, and no V (has_v = !is_mla).
        width = spec.kv_lora_rank + spec.qk_rope_head_dim if spec.kv_lora_rank else spec.head_dim_k
        k_width = np.full(n_layer, width, dtype=np.int64)
        v_width = np.zeros(n_layer, dtype=np.int64)
    else:
        k_width = n_head_kv * spec.head_dim_k
        v_width = n_head_kv * spec.head_dim_v
    # Layers without KV heads have no cache, nor do trailing NextN (MTP) layers in normal generation
    # (the KV filter keeps il < n_layer()).
    n_nextn = int(getattr(spec, "n_layer_nextn", 0) or 0)
    has_kv = (n_head_kv > 0) & (np.arange(n_layer) < n_layer - n_nextn)
    k_width = np.where(has_kv, k_width, 0)
    v_width = np.where(has_kv, v_width, 0)

    ff_eff = n_ff.copy()
    if spec.is_moe:
        moe_ff = spec.n_ff_expert * max(1, spec.n_expert_used) + spec.n_ff_shared_expert * max(
            1, spec.n_expert_shared
        )
        for il in range(n_layer):
            if il >= spec.n_layer_dense_lead:
                ff_eff[il] = max(moe_ff, 0) or int(n_ff[il])
    if int(ff_eff.max()) <= 0:
        ff_eff[:] = 4 * spec.n_embd

    if int(layer_max_mm.sum()) + output_mm_gpu <= 0:
        # No matrix to multiply: nothing is read per token, so no speed and no compute to size (a
        # vocabulary-only GGUF, or a header whose tensors are norms or empty).
        raise RigfitError(
            f"model '{spec.id}' holds no weights in its layers or output layer, so there is nothing to run"
        )
    for label, arr in (
        ("layer weights", layer_gpu),
        ("layer file bytes", layer_host),
        ("K cache widths", k_width),
        ("V cache widths", v_width),
        ("feed-forward widths", ff_eff),
    ):
        if arr.size and int(arr.min()) < 0:
            raise RigfitError(f"model '{spec.id}': negative {label} (a corrupt model description)")
    return ModelProfile(
        spec=spec,
        n_layer=n_layer,
        n_embd=spec.n_embd,
        n_vocab=spec.n_vocab,
        layer_gpu_bytes=layer_gpu,
        layer_host_bytes=layer_host,
        layer_max_matmul_gpu_bytes=layer_max_mm,
        input_host_bytes=input_host,
        output_gpu_bytes=output_gpu,
        output_host_bytes=output_host,
        output_matmul_gpu_bytes=output_mm_gpu,
        per_device_gpu_bytes=per_dev_gpu,
        per_device_host_bytes=per_dev_host,
        kv_k_width=k_width.astype(np.int64),
        kv_v_width=v_width.astype(np.int64),
        kv_v_width_max=int(v_width.max()) if n_layer else 0,
        is_swa=is_swa,
        n_swa=spec.sliding_window if bool(is_swa.any()) else 0,
        n_ff_eff=ff_eff,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=spec.head_dim_k,
        head_dim_v=spec.head_dim_v,
        uses_mla=mla,
        layer_file_lo=lo,
        layer_file_hi=hi,
        input_file_lo=in_lo,
        input_file_hi=in_hi,
        output_file_lo=out_lo,
        output_file_hi=out_hi,
        has_offsets=has_offsets,
        tensor_roles=tuple(roles),
        tensor_layers=tuple(layer_of),
        notes=tuple(notes),
    )


# ------------------------------------------------------------------------------------------------
# KV cache bytes
# ------------------------------------------------------------------------------------------------


def kv_row_bytes(type_name: str, width: IntArray) -> IntArray:
    """Bytes of one cell's row of ``width`` values per layer in a KV type (ggml_row_size)."""
    block, size = _quant(kv_type_id(type_name))
    if np.any(width % block):
        raise RigfitError(
            f"the KV cache type {type_name} needs rows that are a whole number of {block}-value blocks; "
            f"this model's K/V rows are {sorted({int(w) for w in width})} values"
        )
    return (width // block * size).astype(np.int64)


# ------------------------------------------------------------------------------------------------
# host mapping span (for llama.cpp's CPU_Mapped log lines)
# ------------------------------------------------------------------------------------------------


def mapped_span_bytes(prof: ModelProfile, host_layers: Sequence[int], output_on_host: bool) -> int:
    """What llama.cpp logs as ``CPU_Mapped model buffer size``: per file, last minus first host byte.

    ``host_layers`` are the repeating layers kept on the host; token embeddings always are. Without
    real file offsets (catalog and config specs) it is the sum of the host tensors' file sizes.
    """
    if not prof.has_offsets:
        total = prof.input_host_bytes + int(prof.layer_host_bytes[list(host_layers)].sum())
        if output_on_host:
            total += prof.output_host_bytes
        return total
    total = 0
    idx = np.array(list(host_layers), dtype=np.int64)
    for fi in range(prof.n_files):
        los = [int(prof.input_file_lo[fi])]
        his = [int(prof.input_file_hi[fi])]
        if idx.size:
            los += [int(v) for v in prof.layer_file_lo[fi, idx]]
            his += [int(v) for v in prof.layer_file_hi[fi, idx]]
        if output_on_host:
            los.append(int(prof.output_file_lo[fi]))
            his.append(int(prof.output_file_hi[fi]))
        los = [v for v in los if v >= 0]
        his = [v for v in his if v >= 0]
        if los and his:
            total += max(his) - min(los)
    return total


PROFILE_CACHE: SpecCache[ModelProfile] = SpecCache(_build_profile, PROFILE_CACHE_SIZE)
