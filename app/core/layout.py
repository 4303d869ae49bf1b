"""llama.cpp's layout arithmetic, shared by the planner, the fit table and the split solver.

:func:`app.core.placement.plan` places one model; :mod:`app.core.fit` places the whole catalog at
once with numpy and :mod:`app.core.split` searches splits. All three must agree with llama.cpp to
the byte, so the rules they share live here, once:

* which GPUs hold the model, in llama.cpp's device order (:func:`model_gpus`: ``none`` keeps only
  ``main_gpu``; remote RPC devices come first in a layer split, :func:`llama_device_order`) and the
  split llama.cpp sees for them (:func:`raw_split`, :func:`effective_tensor_split`);
* the slot rule (:func:`split_points`, :func:`layer_assignment`) and how many slots are offloaded
  (:func:`gpu_slots`);
* the per-GPU memory the allocator does not see (:func:`gpu_overhead_mib`) and the KV bytes per
  cell of each layer (:func:`kv_rows`);
* when the scheduler keeps pipeline copies (:func:`pipeline_parallel`), when op_offload copies
  host weights to a GPU (:func:`op_offload_active`) and to which one (:func:`offload_gpu`);
* what counts as ``tight`` (:data:`TIGHT_FREE_FRACTION`) and which contexts a "largest context"
  search tries (:func:`context_limit`, :func:`context_candidates`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.core.errors import RigfitError
from app.core.memory import (
    DEFAULT_GPU_OVERHEAD_MIB,
    KV_CTX_PAD,
    MIB,
    OP_OFFLOAD_MIN_BATCH,
    ModelProfile,
    kv_row_bytes,
)
from app.core.rig import Gpu, Rig
from app.core.settings import Settings

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# A GPU left with less than this share of its VRAM free makes a plan (and a fit-table cell) "tight".
TIGHT_FREE_FRACTION = 0.10
# The longest context a "largest context" search tries when the model does not say what it was
# trained for (128 Ki tokens: the longest of today's common models).
DEFAULT_MAX_CTX = 131072


def is_tight(free_mib: npt.ArrayLike, capacity_mib: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Whether a GPU with ``capacity_mib`` keeps too little free (elementwise; a GPU without
    capacity, such as one the plan does not use, is never tight)."""
    free = np.asarray(free_mib, dtype=np.float64)
    cap = np.asarray(capacity_mib, dtype=np.float64)
    return np.asarray((cap > 0) & (free < TIGHT_FREE_FRACTION * cap), dtype=np.bool_)


def context_limit(n_ctx_train: int, limit: int | None = None) -> int:
    """The longest context to try: ``limit``, else the model's trained context, else the default."""
    return limit or n_ctx_train or DEFAULT_MAX_CTX


def context_candidates(top: int) -> IntArray:
    """The contexts a largest-context search tries: multiples of llama.cpp's 256-cell padding up to
    ``top`` (``top`` itself when it is below one padding step)."""
    cands = np.arange(KV_CTX_PAD, top + 1, KV_CTX_PAD, dtype=np.int64)
    return cands if cands.size else np.array([top], dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# the split and the slot rule
# ------------------------------------------------------------------------------------------------


def llama_device_order(rig: Rig, split_mode: str) -> tuple[int, ...]:
    """Rig positions in llama.cpp's device order for ``split_mode``.

    ``llama_prepare_model_devices`` (src/llama.cpp) puts every device of the RPC registry first for
    ``layer``, ``row`` and ``none`` ("to minimize network transfers"), then the local GPUs; the
    ``tensor`` split's Meta device takes the registry's order, where local backends (registered at
    start-up) come before RPC servers (registered when added). Rigfit keeps a rig's local GPUs in
    their own order and its remote devices in theirs; without remote devices this is the rig's order.
    """
    remote = [i for i, g in enumerate(rig.gpus) if g.remote is not None]
    local = [i for i, g in enumerate(rig.gpus) if g.remote is None]
    if split_mode == "tensor":
        return tuple(local + remote)
    return tuple(remote + local)


def model_gpus(rig: Rig, settings: Settings) -> list[int]:
    """The rig GPUs llama.cpp loads the model on, in its device order (the order the slot rule fills
    them in): all of them (remote RPC devices first in a layer split, :func:`llama_device_order`),
    only ``main_gpu`` for split mode ``none``, none on a rig without GPUs."""
    if rig.n_gpus == 0:
        return []
    if settings.split_mode == "none":
        return [settings.main_gpu]
    return list(llama_device_order(rig, settings.split_mode))


def offload_gpu(rig: Rig, gpus: Sequence[int]) -> int | None:
    """The GPU op_offload sends the host's large-batch work to: the first of ``gpus`` (llama.cpp's
    device order) whose backend offers ``offload_op``. RPC devices do not (ggml-rpc.cpp leaves it
    unset), so it is the first local GPU; ``None`` when the model has none."""
    return next((g for g in gpus if rig.gpus[g].remote is None), None)


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


def raw_split(rig: Rig, settings: Settings, gpus: Sequence[int]) -> list[float]:
    """The un-normalised split llama.cpp sees for its device list ``gpus`` (rig positions in its
    device order, :func:`model_gpus`; floats, as it converts them)."""
    if settings.split_mode == "none":
        return [1.0]
    if settings.tensor_split is not None and sum(float(r) for r in settings.tensor_split) > 0:
        return [float(settings.tensor_split[g]) for g in gpus]
    weights = default_split_weights(rig)
    return [weights[g] for g in gpus]


def split_points(ratios: Sequence[float]) -> npt.NDArray[np.float32]:
    """Normalised cumulative split points in float32, as llama.cpp computes them."""
    splits = np.array(ratios, dtype=np.float32)
    running = np.float32(0.0)
    for i in range(splits.size):
        running = np.float32(running + splits[i])
        splits[i] = running
    return (splits / running).astype(np.float32)


def gpu_slots(n_layer: int, settings: Settings, n_gpus: int) -> int:
    """How many of the ``n_layer + 1`` slots (the output layer is the last) go to the GPUs:
    ``n_gpu_layers`` capped by the slots, all of them for -1, none on a rig without GPUs."""
    if n_gpus == 0:
        return 0
    n_slots = n_layer + 1
    return n_slots if settings.n_gpu_layers < 0 else min(settings.n_gpu_layers, n_slots)


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
        raise RigfitError("tensor split ratios must be zero or positive numbers")
    if sum(ratios) <= 0:
        raise RigfitError("the tensor split ratios are all zero: at least one must be above zero")
    ngl = n_slots if n_gpu_layers < 0 else n_gpu_layers
    i_gpu_start = max(n_slots - ngl, 0)
    act = min(ngl, n_slots)
    out = np.full(n_slots, -1, dtype=np.int64)
    if act > 0:
        splits = split_points(ratios)
        # float(il - i_gpu_start) / act in float32, then upper_bound over the split points.
        values = np.arange(act, dtype=np.float32) / np.float32(act)
        out[i_gpu_start : i_gpu_start + act] = np.searchsorted(splits, values, side="right")
    return tuple(int(v) for v in out)


# ------------------------------------------------------------------------------------------------
# per-GPU and per-layer costs
# ------------------------------------------------------------------------------------------------


def gpu_overhead_mib(gpu: Gpu, settings: Settings) -> float:
    """Memory a GPU holding the model carries besides llama.cpp's buffers (CUDA context, cuBLAS).

    An explicit setting for this plan wins over a GPU's own (measured) value, which wins over the
    default.
    """
    if settings.overhead_mib is not None:
        return float(settings.overhead_mib)
    if gpu.overhead_mib is not None:
        return float(gpu.overhead_mib)
    return DEFAULT_GPU_OVERHEAD_MIB


def kv_rows(prof: ModelProfile, settings: Settings) -> FloatArray:
    """K+V bytes per cell for each layer (without flash attention V is transposed and padded to the
    widest layer)."""
    k_row = kv_row_bytes(settings.type_k, prof.kv_k_width)
    v_width = prof.kv_v_width
    if not settings.flash_attn and not prof.uses_mla:
        v_width = np.where(prof.kv_v_width > 0, prof.kv_v_width_max, 0).astype(np.int64)
    return np.asarray(k_row + kv_row_bytes(settings.type_v, v_width), dtype=np.float64)


def pipeline_parallel(settings: Settings, n_model_gpus: int, all_offloaded: bool) -> bool:
    """Whether the scheduler keeps pipeline copies of its inputs: the layer split over several GPUs
    with every slot offloaded and the KV cache on the GPUs."""
    return settings.split_mode == "layer" and n_model_gpus > 1 and all_offloaded and settings.offload_kqv


def op_offload_active(settings: Settings, has_gpus: bool) -> bool:
    """Whether a GPU runs the large-batch ops of weights left in host memory (op_offload): on, a
    GPU that offers it (``has_gpus``: :func:`offload_gpu` found one), and a micro-batch (capped by
    the batch and the context, as llama.cpp caps it) large enough."""
    n_ubatch = min(settings.ctx, settings.n_batch, settings.n_ubatch)
    return settings.op_offload and has_gpus and n_ubatch >= OP_OFFLOAD_MIN_BATCH


__all__ = [
    "DEFAULT_MAX_CTX",
    "TIGHT_FREE_FRACTION",
    "context_candidates",
    "context_limit",
    "default_split_weights",
    "effective_tensor_split",
    "gpu_overhead_mib",
    "gpu_slots",
    "is_tight",
    "kv_rows",
    "layer_assignment",
    "llama_device_order",
    "model_gpus",
    "offload_gpu",
    "op_offload_active",
    "pipeline_parallel",
    "raw_split",
    "split_points",
]
