"""Compute buffers: what llama.cpp's graph allocator reserves per backend, and the output buffer.

A compute buffer is the peak of ggml-alloc's graph allocator over the worst-case prompt graph
(``llama-context.cpp`` ``sched_reserve``). It is modelled as the largest of a few phases of the
graph, each a sum of simultaneously live tensors, with coefficients measured (``COMPUTE_*``). A
:class:`ComputeRole` says what one backend's share of the graph holds; the placement builds one per
device (:mod:`app.core.placement`), the fit table and the split solver the same way. The output
buffer holds the logits of ``n_seq_max`` outputs (``llama_context::output_reserve``), on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.memory import FloatArray, ModelProfile
from app.core.settings import Settings

# --- compute buffer phases ----------------------------------------------------------------------
# Each phase is a set of tensors alive at once in the prompt graph of n_ubatch tokens, in units of
# e = n_embd*T*4, f = n_ff*T*4 (one FFN intermediate), q = n_head*head_dim*T*4,
# kvd = n_head_kv*head_dim*T*4, plus the attention mask (n_kv*T, f16 with flash attention, f32
# without), kq = n_kv*T*n_head*4 (attention scores without flash attention) and
# logits = n_vocab*n_outputs*4. The integer multiples of e include the allocator's fragmentation;
# they were fitted so the formulas reproduce llama.cpp's own figures: on CUDA the four H200 loads in
# DEVICE.md exactly (1B: logits+e; 8B and 70B at 8k and 32k: 3f+3e+mask), on the CPU the loads in
# docs/placement.md (within one e).
COMPUTE_CUDA_FFN_E = 3  # GPU FFN phase: 3f + 3e + masks (H200: 8B 116.01, 70B 224.01/248.01 MiB)
COMPUTE_CUDA_OUT_E = 1  # GPU output phase: logits + 1e (H200: 1B 100.00 MiB)
COMPUTE_CPU_FFN_E_FA = 4  # CPU FFN phase with flash attention: 3f + 4e + masks
COMPUTE_CPU_FFN_E_NOFA = 5  # CPU FFN phase without flash attention: 3f + 5e + masks
COMPUTE_CPU_OUT_E_FA = 2  # CPU output phase with flash attention: logits + 2e
COMPUTE_CPU_OUT_E_NOFA = 3  # CPU output phase without flash attention: logits + 3e
COMPUTE_ATTN_E_FA = 2  # CPU attention with flash attention: masks + 2e + 2q + 2kvd
COMPUTE_ATTN_E_NOFA = 5  # CPU attention without flash attention: kq + masks + 5e + 2kvd
COMPUTE_CUDA_ATTN_E_FA = 2  # GPU attention with flash attention: masks + 2e + 2q (+ f16 K/V for a
# quantized cache); H200, 13B shape with q8_0 KV: 124.09 MiB
COMPUTE_CUDA_ATTN_E_NOFA = (
    4  # GPU attention without flash attention: kq + masks + 4e + 2kvd (H200 8B: 564.01)
)
COMPUTE_HOST_E = 2  # CUDA_Host (CPU backend with GPUs): token rows + layer-0 norm: 2e + inputs
# GPU 0 with layers left on the host (op_offload copies each host weight in for large batches):
# largest host weight + 3f + 2e + masks. An envelope: the measured peaks (H200, 4-layer 70B-wide
# models, n_gpu_layers 0-4) fall 14% below to 6% above it, because where ggml-alloc's free blocks
# fall varies with the context (167 MiB at 8k but 187 MiB at 2k and 16k for the same model).
COMPUTE_OFFLOAD_F = 3
COMPUTE_OFFLOAD_E = 2
# CUDA's MoE weighted-reduction fusion (ggml-cuda.cu ggml_cuda_match_moe_weighted_reduction) takes
# 2 to 15 used experts; its graph_optimize keeps the experts' outputs alive for it (see _moe_walk).
MOE_FUSED_MIN_USED, MOE_FUSED_MAX_USED = 2, 15
# Small graph inputs per token: tokens (i32), positions (i32), K and V cache indices (i64 each),
# output ids (i32).
INPUT_BYTES_PER_TOKEN = 4 + 4 + 8 + 8 + 4
# What of them a GPU holds through its layers (measured: 0.0078 MiB at 512 tokens on the H200).
LAYER_INPUT_BYTES_PER_TOKEN = 16


BACKEND_CUDA = "cuda"
BACKEND_CPU = "cpu"


@dataclass(frozen=True)
class ComputeRole:
    """What one backend's share of the prompt graph contains, for :func:`compute_bytes_cells`."""

    backend: str  # BACKEND_CUDA or BACKEND_CPU
    layers: tuple[int, ...] = ()  # repeating layers whose FFN and attention run here
    attention_layers: tuple[int, ...] = ()  # layers whose attention runs here (KV lives here)
    output: bool = False  # the output layer (logits) runs here
    share: float = 1.0  # tensor parallelism: fraction of heads/FFN/vocab computed here
    copies: int = 1  # pipeline-parallel input copies (GGML_SCHED_MAX_COPIES) or 1
    host_inputs: bool = False  # CUDA_Host: the CPU side of a GPU run (inputs, token rows)
    offload_weight_bytes: int = 0  # largest host weight copied here by op_offload (0: none)
    offload_kv_row_bytes: int = 0  # per cell: largest host layer's K+V copied here for its attention
    offload_output: bool = False  # the host-resident output weight is offloaded here


def cuda_flash_attn_supported(head_dim_k: int, head_dim_v: int, gqa_ratio: int) -> bool:
    """Whether CUDA's flash-attention kernels take these head sizes (fattn.cu get_best_fattn_kernel).

    When they do not, llama.cpp runs the FLASH_ATTN_EXT node on the CPU and copies Q, K and V over.
    """
    if head_dim_k == head_dim_v and head_dim_k in (40, 64, 72, 80, 96, 112, 128, 256, 512):
        return True
    if (head_dim_k, head_dim_v) == (192, 128):
        return gqa_ratio % 8 == 0
    if (head_dim_k, head_dim_v) == (320, 256):
        return gqa_ratio % 32 == 0
    return (head_dim_k, head_dim_v) == (576, 512)


class _BestFit:
    """ggml-alloc's dynamic allocator (ggml-alloc.c ggml_dyn_tallocr_alloc / _free_tensor) on a few
    blocks: the smallest free block that holds the tensor (the later one on a tie), else the tail."""

    def __init__(self) -> None:
        self.free: list[list[float]] = []  # [offset, size] below the tail, sorted, merged
        self.tail = 0.0  # where the unbounded last block starts
        self.peak = 0.0

    def alloc(self, size: float) -> float:
        best = -1
        for k, (_, free_size) in enumerate(self.free):
            if free_size >= size and (best < 0 or free_size <= self.free[best][1]):
                best = k
        if best < 0:
            offset = self.tail
            self.tail += size
        else:
            offset = self.free[best][0]
            self.free[best] = [offset + size, self.free[best][1] - size]
            if self.free[best][1] <= 0:
                self.free.pop(best)
        self.peak = max(self.peak, offset + size)
        return offset

    def release(self, offset: float, size: float) -> None:
        blocks = sorted([*self.free, [offset, size]])
        merged: list[list[float]] = []
        for block in blocks:
            if merged and merged[-1][0] + merged[-1][1] >= block[0]:
                merged[-1][1] = block[0] + block[1] - merged[-1][0]
            else:
                merged.append(list(block))
        if merged and merged[-1][0] + merged[-1][1] >= self.tail:
            self.tail = merged.pop()[0]
        self.free = merged


def _moe_walk(
    e: float, f_r: float, experts: float, router: float, weights: float, shared: bool, fused: bool
) -> tuple[float, float]:
    """One MoE FFN (llama-graph.cpp build_moe_ffn) through ggml-alloc, from its input on: the
    highest byte it reaches and where the summed experts' output (the layer's hidden state) ends.

    In order: ffn_inp (e), its norm (e), the router's logits, softmax and argsort (``router``), the
    selected weights, up and gate ``ggml_mul_mat_id`` (``f_r`` = n_ff_exp x n_expert_used x T x 4
    each), SwiGLU (f_r), down ``ggml_mul_mat_id`` (``experts`` = n_embd x n_expert_used x T x 4),
    ``ggml_mul(experts, weights)``, the first ``ggml_add`` of the sum (e); the later adds, the
    residual add and the output norm work in place on it. A shared expert keeps the norm alive
    (it runs after). ``fused``: CUDA's graph_optimize adds allocation dependencies for its MoE
    fusions (ggml-cuda.cu ggml_backend_cuda_graph_optimize: the weighted reduction keeps experts and
    weights alive to the last add; ggml-backend.cpp turns them into GGML_OP_NONE nodes), so the
    weighting ``ggml_mul`` cannot reuse ``experts`` in place and a second block of that size is
    live. The experts' outputs do not fit the block up and gate free (2 f_r) when they are larger
    (qwen3moe: 8e > 6e) and go on top of SwiGLU; the hidden state then falls into the e left over
    above the weighted copy (qwen3moe: 11.19e), above everything when a shared expert holds the
    hole below (deepseek2: 15.09e) or at 2e when the norm's block is free (gpt-oss).
    """
    a = _BestFit()
    a.alloc(e)  # ffn_inp, alive to the residual add
    cur = a.alloc(e)
    r = a.alloc(router)
    a.alloc(weights)  # alive to the sum (fused) or the weighting
    up = a.alloc(f_r)
    gate = a.alloc(f_r)
    if not shared:
        a.release(cur, e)
    act = a.alloc(f_r)
    a.release(up, f_r)
    a.release(gate, f_r)
    a.alloc(experts)
    a.release(act, f_r)
    a.release(r, router)
    if fused:
        a.alloc(experts)
    out = a.alloc(e)
    return a.peak, out + e


def _moe_phases(prof: ModelProfile, t: int, share: float, fused: bool) -> tuple[float, float] | None:
    """(_moe_walk's peak, hidden state's end) for this model's MoE layers, None for a dense model."""
    spec = prof.spec
    if not spec.is_moe or spec.n_ff_expert <= 0 or spec.n_expert_used <= 0:
        return None
    used = spec.n_expert_used
    fused = fused and MOE_FUSED_MIN_USED <= used <= MOE_FUSED_MAX_USED
    e = prof.n_embd * t * 4.0
    return _moe_walk(
        e,
        spec.n_ff_expert * used * t * 4.0 * share,
        used * e * share,
        3.0 * max(spec.n_expert, used) * t * 4.0,  # router logits, softmax, argsort: [n_expert, T]
        used * t * 4.0,  # the selected experts' weights: [1, n_used, T]
        spec.n_ff_shared_expert > 0,
        fused,
    )


def _rotation_input_bytes(prof: ModelProfile, settings: Settings) -> float:
    # A quantized K/V cache rotates heads with Hadamard matrices (64x64 up to the head size), passed
    # to the graph as f32 inputs (llama-kv-cache.cpp attn_rot_k/attn_rot_v).
    rot_k = settings.type_k != "f16" and prof.head_dim_k % 64 == 0
    rot_v = settings.type_v != "f16" and prof.head_dim_v % 64 == 0 and not prof.uses_mla
    if not (rot_k or rot_v):
        return 0.0
    top = max(prof.head_dim_k if rot_k else 0, prof.head_dim_v if rot_v else 0)
    total = 0
    n = 64
    while n <= top:
        total += n * n * 4
        n *= 2
    return float(total)


def compute_bytes_cells(
    prof: ModelProfile,
    settings: Settings,
    n_ubatch: int,
    n_outputs: int,
    base_cells: FloatArray,
    swa_cells: FloatArray,
    role: ComputeRole,
) -> FloatArray:
    """Modelled compute-buffer bytes of one backend (see the ``COMPUTE_*`` constants for the phases),
    for many contexts at once: one value per entry of ``base_cells``.

    ``base_cells`` / ``swa_cells`` are the cells per stream of the full and sliding-window caches
    (``KvCells.n_ctx_seq`` / ``KvCells.swa_cells``) for each context.
    """
    t = n_ubatch
    fa = settings.flash_attn
    e = prof.n_embd * t * 4.0
    mask_bytes_per_cell = t * (2 if fa else 4)
    masks = np.zeros_like(base_cells, dtype=np.float64)
    if bool((~prof.is_swa).any()):
        masks = masks + base_cells * mask_bytes_per_cell
    if bool(prof.is_swa.any()):
        masks = masks + swa_cells * mask_bytes_per_cell
    n_kv = base_cells.astype(np.float64)
    # Graph inputs: tokens, positions, output ids (i32), K and V cache row indices (i64; without
    # flash attention V is stored transposed and gets one index per value).
    v_idx = t * 8.0 * (prof.kv_v_width_max if not fa and prof.kv_v_width_max else 1)
    inputs = t * (4 + 4 + 4 + 8) + v_idx
    small = INPUT_BYTES_PER_TOKEN * t
    logits = prof.n_vocab * n_outputs * 4.0 * role.share
    rot = _rotation_input_bytes(prof, settings)
    attn = np.array(role.attention_layers, dtype=np.int64)
    if attn.size:
        n_head = float(prof.n_head[attn].max())
        n_head_kv = max(1.0, float(prof.n_head_kv[attn].max()))
        q = n_head * prof.head_dim_k * t * 4.0 * role.share
        kvd = float(prof.kv_k_width[attn].max()) * t * 4.0 * role.share
        k_view = n_kv * float(prof.kv_k_width[attn].max()) * 2.0 * role.share
        v_view = n_kv * float(prof.kv_v_width[attn].max()) * 2.0 * role.share
        fa_on_gpu = cuda_flash_attn_supported(
            prof.head_dim_k, prof.head_dim_v if not prof.uses_mla else 512, int(n_head // n_head_kv)
        )
    else:
        n_head = q = kvd = 0.0
        k_view = v_view = np.zeros_like(n_kv)
        fa_on_gpu = True

    if role.host_inputs:
        # With pipeline parallelism the token rows going to the first device are kept in n_copies
        # copies too (measured on the H200 with RPC devices: + (copies - 1) activations).
        host = role.copies * (masks + inputs) + (COMPUTE_HOST_E + role.copies - 1) * e + rot
        if fa and not fa_on_gpu:
            # The CPU runs every layer's flash attention: Q and f16 views of K and V come over.
            host = host + q + k_view + v_view
        return np.asarray(host, dtype=np.float64)

    phases: list[FloatArray | float] = []
    moe = _moe_phases(prof, t, role.share, fused=role.backend == BACKEND_CUDA)
    if role.layers:
        layers = np.array(role.layers, dtype=np.int64)
        f = float(prof.n_ff_eff[layers].max()) * t * 4.0 * role.share
        # A mixture-of-experts FFN: _moe_walk's peak with the same allowance over the tensors' sum as
        # the dense phase (3f + 3e on CUDA is 3f + 2e live). qwen3moe on the H200's RPC devices:
        # 92.01 MiB logged (with the mask) against 3f + 3e + mask = 56.01, walk + e + mask = 88.76;
        # on the CPU, ten 4-layer qwen3moe shapes (docs/placement.md) within 3.3 MiB (< e).
        moe_peak = moe[0] if moe is not None else 0.0
        if role.backend == BACKEND_CUDA:
            ffn = max(3 * f + COMPUTE_CUDA_FFN_E * e, moe_peak + (COMPUTE_CUDA_FFN_E - 2) * e)
            phases.append(ffn + masks + LAYER_INPUT_BYTES_PER_TOKEN * t)
        else:
            k = COMPUTE_CPU_FFN_E_FA if fa else COMPUTE_CPU_FFN_E_NOFA
            phases.append(max(3 * f + k * e, moe_peak + (k - 2) * e) + masks + small)
    if attn.size:
        if role.backend == BACKEND_CUDA:
            if fa and fa_on_gpu:
                value = masks + COMPUTE_CUDA_ATTN_E_FA * e + 2 * q + rot
                if settings.type_k != "f16" or settings.type_v != "f16":
                    # The CUDA MMA/tile kernels convert a quantized K/V to f16 in scratch space that
                    # is part of the FLASH_ATTN_EXT node's alloc size (fattn.cu get_alloc_size).
                    value += k_view + v_view
                phases.append(value + LAYER_INPUT_BYTES_PER_TOKEN * t)
            elif not fa:
                kq = n_kv * t * n_head * 4.0
                phases.append(
                    kq + masks + COMPUTE_CUDA_ATTN_E_NOFA * e + 2 * kvd + LAYER_INPUT_BYTES_PER_TOKEN * t
                )
        elif fa:
            phases.append(masks + COMPUTE_ATTN_E_FA * e + 2 * q + 2 * kvd + small)
        else:
            kq = n_kv * t * n_head * 4.0
            phases.append(kq + masks + COMPUTE_ATTN_E_NOFA * e + 2 * kvd)
    # Pipeline copies of the masks are never freed, so a phase that has let its mask go (the
    # output) still has one copy of it under it.
    kept_mask = masks if role.copies > 1 else 0.0
    if role.output:
        if role.backend == BACKEND_CUDA:
            # The logits go above the last hidden state, which the output norm overwrites in place:
            # at the bottom for a dense model (+e), where _moe_walk puts it for a MoE one (H200:
            # qwen3moe 341.54 MiB = logits + 44.79, deepseek2 260.39 = logits + 60.39, gpt-oss
            # 404.00 = logits + 11.25; the walk gives 44.77, 60.39 and 11.25).
            hidden = COMPUTE_CUDA_OUT_E * e if moe is None else max(COMPUTE_CUDA_OUT_E * e, moe[1])
            phases.append(logits + hidden + kept_mask)
        elif fa:
            phases.append(logits + COMPUTE_CPU_OUT_E_FA * e + small)
        else:
            phases.append(logits + COMPUTE_CPU_OUT_E_NOFA * e + small)
    if role.offload_weight_bytes > 0:
        # op_offload: a host layer's matmul runs here on a copy of its weight (one weight per split).
        f_all = float(prof.n_ff_eff.max()) * t * 4.0
        phases.append(role.offload_weight_bytes + COMPUTE_OFFLOAD_F * f_all + COMPUTE_OFFLOAD_E * e + masks)
    if role.offload_kv_row_bytes > 0:
        # ... and its flash attention on copies of that layer's K and V cache (converted to f16 when
        # quantized, as for GPU layers).
        q_all = float(prof.n_head.max()) * prof.head_dim_k * t * 4.0
        kv_copy = role.offload_kv_row_bytes * base_cells
        if settings.type_k != "f16" or settings.type_v != "f16":
            kv_copy = kv_copy + base_cells * float(prof.kv_k_width.max() + prof.kv_v_width.max()) * 2.0
        phases.append(kv_copy + masks + COMPUTE_CUDA_ATTN_E_FA * e + 2 * q_all)
    if role.offload_output:
        phases.append(prof.output_matmul_gpu_bytes + logits + e)
    if not phases:
        return np.zeros_like(masks)
    value = np.zeros_like(masks)
    for phase in phases:
        value = np.maximum(value, phase)
    if role.copies > 1:
        # Pipeline parallelism keeps every split input in n_copies copies that are never freed
        # (ggml-backend.cpp, ggml_backend_sched_split_graph): masks and the incoming activations.
        # Measured with RPC devices on the H200 (8B, 70B, gemma3, gpt-oss): one activation per copy.
        value = value + (role.copies - 1) * masks + role.copies * e
    return value


def output_buffer_bytes(prof: ModelProfile, settings: Settings) -> int:
    """The logits buffer llama_context reserves at start: n_vocab floats per sequence."""
    return prof.n_vocab * max(1, settings.n_seq_max) * 4
