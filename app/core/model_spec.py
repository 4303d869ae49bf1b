"""What the planner needs to know about a model: its architecture and every weight tensor.

Three sources give the same :class:`ModelSpec`: a GGUF file (``app.core.gguf_reader``), a Hugging Face
``config.json`` (``app.core.hf_config``) and the catalog ``resources/models.toml``
(``app.core.catalog``). For a GGUF file the tensors carry their real types; for the other two the
tensor shapes come from the architecture and :func:`app.core.quantizer.apply_file_type` assigns the types
llama.cpp's quantizer would.

Shapes follow ggml's order: ``shape[0]`` is the row length (``ne0``), so a ``[n_embd, n_vocab]``
token embedding has ``n_vocab`` rows of ``n_embd`` values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class TensorInfo:
    """One weight tensor: name, ggml shape, ggml type (``gguf.GGMLQuantizationType`` value)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int = 0  # byte offset of the data in its file (GGUF only)
    file_index: int = 0  # which split file holds it (GGUF only)

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def layer(self) -> int | None:
        """The repeating layer (``blk.N.``) this tensor belongs to, ``None`` for input/output tensors."""
        m = _BLOCK_RE.match(self.name)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class ModelSpec:
    """A model's architecture and weights, independent of where it came from.

    Per-layer tuples (``n_head_kv``, ``n_ff``, ``swa_layers``) have one entry per repeating layer.
    """

    id: str
    name: str
    architecture: str  # GGUF ``general.architecture``: llama, qwen2, qwen3, qwen3moe, gemma3, deepseek2, ...
    n_layer: int
    n_embd: int
    n_vocab: int
    n_head: tuple[int, ...]
    n_head_kv: tuple[int, ...]
    n_ff: tuple[int, ...]
    head_dim_k: int  # llama.cpp's n_embd_head_k
    head_dim_v: int  # llama.cpp's n_embd_head_v
    n_ctx_train: int = 0
    tensors: tuple[TensorInfo, ...] = ()
    tied_embeddings: bool = False  # no output.weight: the output layer reuses token_embd
    # Mixture of experts: all experts' weights are resident; n_expert_used drives compute and speed.
    n_expert: int = 0
    n_expert_used: int = 0
    n_expert_shared: int = 0
    n_ff_expert: int = 0
    n_ff_shared_expert: int = 0
    n_layer_dense_lead: int = 0  # DeepSeek: first layers are dense
    # Sliding-window attention: the window, and True for each layer that uses it.
    sliding_window: int = 0
    swa_layers: tuple[bool, ...] = ()
    # Multi-head latent attention (DeepSeek V2/V3): compressed KV cache.
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    q_lora_rank: int = 0
    # MLA head sizes after decompression (GGUF key_length_mla / value_length_mla; 0 without MLA).
    head_dim_k_mla: int = 0
    head_dim_v_mla: int = 0
    # Trailing multi-token-prediction layers counted in n_layer (GGUF nextn_predict_layers): they hold
    # weights but no KV cache in normal generation.
    n_layer_nextn: int = 0
    file_type: str | None = None  # quant name (``Q4_K_M``) from a GGUF's general.file_type
    source: str = "catalog"  # "gguf", "config" or "catalog"
    paths: tuple[str, ...] = ()  # GGUF files (all parts of a split model)
    file_size_bytes: int = 0
    chat_template: str | None = None
    notes: tuple[str, ...] = ()  # things the user should know about how the spec was made
    metadata: dict[str, object] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def n_params(self) -> int:
        """Parameter count, from the tensor shapes."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @property
    def uses_mla(self) -> bool:
        return self.kv_lora_rank > 0

    def is_swa(self, layer: int) -> bool:
        return bool(self.swa_layers) and self.swa_layers[layer]


def uses_mla_cache(spec: ModelSpec) -> bool:
    """True when llama.cpp keeps this model's compressed MLA cache (hparams.is_mla()).

    A GGUF says so with ``attention.key_length_mla``/``value_length_mla``; older DeepSeek GGUFs
    without them run as plain multi-head attention with a full K and V cache. Specs from a catalog
    or config.json describe what today's converter writes: MLA whenever ``kv_lora_rank`` is set.
    """
    if spec.head_dim_k_mla > 0 and spec.head_dim_v_mla > 0:
        return True
    return spec.source != "gguf" and spec.kv_lora_rank > 0
