"""How the user wants the model loaded: the knobs llama.cpp takes, as one immutable value."""

from __future__ import annotations

from dataclasses import dataclass

SPLIT_MODES: tuple[str, ...] = ("layer", "row", "tensor", "none")
KV_TYPES: tuple[str, ...] = ("f16", "q8_0", "q4_0")
DEFAULT_CTX = 8192  # the context a plan and the fit table use unless told otherwise


@dataclass(frozen=True)
class Settings:
    """Load settings, named as llama.cpp names them.

    ``tensor_split`` is ``None`` for llama.cpp's default (proportional to each GPU's free VRAM at
    load time); otherwise one non-negative ratio per GPU of the rig. ``n_gpu_layers`` of ``-1`` puts
    every layer, the output layer included, on the GPUs. ``overhead_mib`` overrides the per-GPU
    memory the allocator does not see (CUDA context, cuBLAS workspace) for every GPU. ``swa_full``,
    ``kv_unified`` and ``op_offload`` mirror llama_context_params and default as llama.cpp does.
    """

    ctx: int = DEFAULT_CTX
    split_mode: str = "layer"
    tensor_split: tuple[float, ...] | None = None
    main_gpu: int = 0
    n_gpu_layers: int = -1
    n_batch: int = 512
    n_ubatch: int = 512
    flash_attn: bool = True
    type_k: str = "f16"
    type_v: str = "f16"
    offload_kqv: bool = True
    n_seq_max: int = 1
    overhead_mib: float | None = None
    # Full-size sliding-window cache: llama_context_default_params() (and so llama-cpp-python) default
    # to true; llama-server's -swa-full flag defaults to false.
    swa_full: bool = True
    kv_unified: bool = False  # one KV stream shared by all sequences
    op_offload: bool = True  # let a GPU run large-batch ops whose weights stay in host memory
