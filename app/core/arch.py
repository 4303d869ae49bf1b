"""Weight tensors of a model from its architecture parameters, named and shaped as llama.cpp expects.

The catalog and Hugging Face ``config.json`` sources have no GGUF file, so their tensors are generated
here: names from ``llama-arch.cpp`` (``blk.%d.attn_q`` ...), shapes from each architecture's
``load_arch_tensors`` in ``src/models/*.cpp`` of the llama.cpp vendored in llama-cpp-python 0.3.36,
and which optional tensors exist (biases, ``rope_freqs``, tied output) from what its converter
``convert_hf_to_gguf.py`` writes. The tensor types are those of the converter's F16 output (F32 for
1-D tensors, norms, biases and expert routers; gpt-oss experts stay MXFP4); :func:`build_spec` then
gives them a file type with :func:`app.core.quantizer.apply_file_type`.

Shapes are in ggml order: ``shape[0]`` is the row length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.core.errors import RigfitError
from app.core.model_spec import ModelSpec, TensorInfo
from app.core.quant import F16, F32, MXFP4
from app.core.quantizer import apply_file_type

SUPPORTED_ARCHITECTURES: tuple[str, ...] = (
    "llama",
    "qwen2",
    "qwen3",
    "qwen3moe",
    "gemma2",
    "gemma3",
    "deepseek2",
    "phi3",
    "gpt-oss",
)


@dataclass(frozen=True)
class ArchParams:
    """Architecture parameters as llama.cpp's hparams hold them (per-layer tuples: one per layer)."""

    architecture: str  # GGUF architecture name
    n_layer: int
    n_embd: int
    n_vocab: int
    n_head: tuple[int, ...]
    n_head_kv: tuple[int, ...]
    n_ff: tuple[int, ...]  # feed_forward_length per layer (dense FFN width)
    head_dim_k: int  # n_embd_head_k (for MLA: kv_lora_rank + rope dims, the cached key width)
    head_dim_v: int
    n_ctx_train: int = 0
    tied_embeddings: bool = False
    attn_bias: bool = False  # q/k/v biases (qwen2, gpt-oss)
    attn_out_bias: bool = False  # attn_output bias (gpt-oss; llama with attention_bias)
    rope_freqs: bool = False  # llama3-style rope scaling: a rope_freqs tensor of n_rot/2 values
    rope_factors: bool = False  # phi3 LongRoPE: rope_factors_long / _short tensors of n_rot/2 values
    # Mixture of experts
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_expert: int = 0  # expert_feed_forward_length
    n_expert_shared: int = 0
    n_layer_dense_lead: int = 0
    expert_bias: bool = False  # DeepSeek V3's exp_probs_b (e_score_correction_bias)
    # Sliding-window attention
    sliding_window: int = 0
    swa_layers: tuple[bool, ...] = ()
    # Multi-head latent attention (deepseek2)
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    head_dim_k_mla: int = 0  # qk_nope_head_dim + qk_rope_head_dim
    head_dim_v_mla: int = 0  # v_head_dim

    def __post_init__(self) -> None:
        for label, values in (("n_head", self.n_head), ("n_head_kv", self.n_head_kv), ("n_ff", self.n_ff)):
            if len(values) != self.n_layer:
                raise RigfitError(f"{label} has {len(values)} entries for {self.n_layer} layers")
        if self.swa_layers and len(self.swa_layers) != self.n_layer:
            raise RigfitError(
                f"the sliding-window layer list has {len(self.swa_layers)} entries for {self.n_layer} layers"
            )
        positive = {"n_layer": self.n_layer, "n_embd": self.n_embd, "n_vocab": self.n_vocab}
        for label, value in positive.items():
            if value <= 0:
                raise RigfitError(f"{label} must be positive, got {value}")
        if self.n_expert and (self.n_expert_used <= 0 or self.n_expert_used > self.n_expert):
            raise RigfitError(
                f"{self.n_expert_used} experts used per token does not fit {self.n_expert} experts"
            )


def per_layer(value: int | Sequence[int], n_layer: int) -> tuple[int, ...]:
    """A per-layer tuple from a scalar or a sequence (which must have ``n_layer`` entries)."""
    if isinstance(value, int):
        return (value,) * n_layer
    out = tuple(int(v) for v in value)
    if len(out) != n_layer:
        raise RigfitError(f"expected {n_layer} per-layer values, got {len(out)}")
    return out


def swa_pattern(n_layer: int, n_pattern: int, dense_first: bool = False) -> tuple[bool, ...]:
    """llama_hparams::set_swa_pattern: which layers use the sliding window.

    With ``n_pattern`` N and not ``dense_first``, every N-th layer (the last of each group) is dense;
    with ``dense_first`` the first of each group is. N of 0 makes every layer SWA; N of 1 none.
    """
    if dense_first:
        return tuple(n_pattern == 0 or il % n_pattern != 0 for il in range(n_layer))
    return tuple(n_pattern == 0 or il % n_pattern < n_pattern - 1 for il in range(n_layer))


# The SWA pattern each architecture's load_hparams applies when the GGUF carries no pattern key:
# (n_pattern, dense_first). gemma2 / gpt-oss alternate (even layers SWA), gemma3 keeps every 6th
# layer dense; phi3 reads a window but llama.cpp disables SWA for it.
SWA_DEFAULT_PATTERN: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gpt-oss": (2, False),
    "cohere2": (4, False),
    "cohere2moe": (4, True),
    "exaone4": (4, False),
    "exaone-moe": (4, False),
    "gemma3n": (5, False),
    "gemma-embedding": (6, False),
    "olmo2": (4, False),
    "mellum": (4, False),
    "plamo3": (8, False),
    "afmoe": (4, False),
    "smallthinker": (4, True),
    "muse-glimmer": (4, False),
}


def _t(name: str, *shape: int, ggml_type: int | None = None) -> TensorInfo:
    if ggml_type is None:
        # What convert_hf_to_gguf writes for an F16 model: 1-D tensors, norms and non-".weight"
        # tensors (biases) as F32, matrices as F16.
        one_d = sum(1 for d in shape if d != 1) <= 1
        ggml_type = F32 if one_d or name.endswith("_norm.weight") or not name.endswith(".weight") else F16
    return TensorInfo(name=name, shape=tuple(shape), ggml_type=ggml_type)


def _router(i: int, n_embd: int, n_expert: int) -> TensorInfo:
    # The converter keeps expert routers (ffn_gate_inp) in F32.
    return _t(f"blk.{i}.ffn_gate_inp.weight", n_embd, n_expert, ggml_type=F32)


def _qkv(p: ArchParams, i: int, n_embd_q: int, bias: bool) -> list[TensorInfo]:
    n_k = p.head_dim_k * p.n_head_kv[i]
    n_v = p.head_dim_v * p.n_head_kv[i]
    out = [
        _t(f"blk.{i}.attn_q.weight", p.n_embd, n_embd_q),
        _t(f"blk.{i}.attn_k.weight", p.n_embd, n_k),
        _t(f"blk.{i}.attn_v.weight", p.n_embd, n_v),
    ]
    if bias:
        out += [
            _t(f"blk.{i}.attn_q.bias", n_embd_q),
            _t(f"blk.{i}.attn_k.bias", n_k),
            _t(f"blk.{i}.attn_v.bias", n_v),
        ]
    return out


def _head(p: ArchParams, output: bool) -> list[TensorInfo]:
    out = [_t("token_embd.weight", p.n_embd, p.n_vocab), _t("output_norm.weight", p.n_embd)]
    if output:
        out.append(_t("output.weight", p.n_embd, p.n_vocab))
    return out


def _llama(p: ArchParams) -> list[TensorInfo]:
    out = _head(p, not p.tied_embeddings)
    if p.rope_freqs:
        out.append(_t("rope_freqs.weight", p.head_dim_k // 2))
    for i in range(p.n_layer):
        n_q = p.head_dim_k * p.n_head[i]
        out.append(_t(f"blk.{i}.attn_norm.weight", p.n_embd))
        out += _qkv(p, i, n_q, p.attn_bias)
        out.append(_t(f"blk.{i}.attn_output.weight", n_q, p.n_embd))
        if p.attn_out_bias:
            out.append(_t(f"blk.{i}.attn_output.bias", p.n_embd))
        out.append(_t(f"blk.{i}.ffn_norm.weight", p.n_embd))
        if p.n_expert == 0:
            out += _dense_ffn(p, i, p.n_ff[i])
        else:
            # Mixtral in the llama architecture: experts are as wide as feed_forward_length.
            out.append(_router(i, p.n_embd, p.n_expert))
            out += _expert_ffn(p, i, p.n_ff[i])
    return out


def _dense_ffn(p: ArchParams, i: int, n_ff: int) -> list[TensorInfo]:
    return [
        _t(f"blk.{i}.ffn_gate.weight", p.n_embd, n_ff),
        _t(f"blk.{i}.ffn_down.weight", n_ff, p.n_embd),
        _t(f"blk.{i}.ffn_up.weight", p.n_embd, n_ff),
    ]


def _expert_ffn(p: ArchParams, i: int, n_ff_exp: int, ggml_type: int | None = None) -> list[TensorInfo]:
    return [
        _t(f"blk.{i}.ffn_gate_exps.weight", p.n_embd, n_ff_exp, p.n_expert, ggml_type=ggml_type),
        _t(f"blk.{i}.ffn_down_exps.weight", n_ff_exp, p.n_embd, p.n_expert, ggml_type=ggml_type),
        _t(f"blk.{i}.ffn_up_exps.weight", p.n_embd, n_ff_exp, p.n_expert, ggml_type=ggml_type),
    ]


def _qwen2(p: ArchParams) -> list[TensorInfo]:
    out = _head(p, not p.tied_embeddings)
    for i in range(p.n_layer):
        out.append(_t(f"blk.{i}.attn_norm.weight", p.n_embd))
        out += _qkv(p, i, p.n_embd, p.attn_bias)
        out.append(_t(f"blk.{i}.attn_output.weight", p.n_embd, p.n_embd))
        out.append(_t(f"blk.{i}.ffn_norm.weight", p.n_embd))
        out += _dense_ffn(p, i, p.n_ff[i])
    return out


def _qwen3(p: ArchParams) -> list[TensorInfo]:
    out = _head(p, not p.tied_embeddings)
    moe = p.architecture == "qwen3moe"
    for i in range(p.n_layer):
        n_q = p.head_dim_k * p.n_head[i]
        out.append(_t(f"blk.{i}.attn_norm.weight", p.n_embd))
        out += _qkv(p, i, n_q, p.attn_bias)
        out.append(_t(f"blk.{i}.attn_output.weight", n_q, p.n_embd))
        out.append(_t(f"blk.{i}.attn_k_norm.weight", p.head_dim_k))
        out.append(_t(f"blk.{i}.attn_q_norm.weight", p.head_dim_k))
        out.append(_t(f"blk.{i}.ffn_norm.weight", p.n_embd))
        if moe:
            out.append(_router(i, p.n_embd, p.n_expert))
            n_ff_exp = p.n_ff_expert or p.n_ff[i] // p.n_expert_used
            out += _expert_ffn(p, i, n_ff_exp)
        else:
            out += _dense_ffn(p, i, p.n_ff[i])
    return out


def _gemma(p: ArchParams) -> list[TensorInfo]:
    # gemma2 never loads an output tensor (always tied); gemma3 would, but its checkpoints are tied.
    out = _head(p, p.architecture == "gemma3" and not p.tied_embeddings)
    qk_norm = p.architecture == "gemma3"
    for i in range(p.n_layer):
        n_q = p.head_dim_k * p.n_head[i]
        out.append(_t(f"blk.{i}.attn_norm.weight", p.n_embd))
        out += _qkv(p, i, n_q, False)
        out.append(_t(f"blk.{i}.attn_output.weight", n_q, p.n_embd))
        out.append(_t(f"blk.{i}.post_attention_norm.weight", p.n_embd))
        if qk_norm:
            out.append(_t(f"blk.{i}.attn_k_norm.weight", p.head_dim_k))
            out.append(_t(f"blk.{i}.attn_q_norm.weight", p.head_dim_k))
        out.append(_t(f"blk.{i}.ffn_norm.weight", p.n_embd))
        out += [
            _t(f"blk.{i}.ffn_gate.weight", p.n_embd, p.n_ff[i]),
            _t(f"blk.{i}.ffn_up.weight", p.n_embd, p.n_ff[i]),
            _t(f"blk.{i}.ffn_down.weight", p.n_ff[i], p.n_embd),
        ]
        out.append(_t(f"blk.{i}.post_ffw_norm.weight", p.n_embd))
    return out


def _phi3(p: ArchParams) -> list[TensorInfo]:
    # The converter keeps Phi-3/4's fused qkv_proj and gate_up_proj: one attn_qkv, one double-width ffn_up.
    out = _head(p, not p.tied_embeddings)
    if p.rope_factors:
        out.append(_t("rope_factors_long.weight", p.head_dim_k // 2))
        out.append(_t("rope_factors_short.weight", p.head_dim_k // 2))
    for i in range(p.n_layer):
        n_gqa = p.head_dim_k * p.n_head_kv[i]
        out.append(_t(f"blk.{i}.attn_norm.weight", p.n_embd))
        out.append(_t(f"blk.{i}.attn_qkv.weight", p.n_embd, p.n_embd + 2 * n_gqa))
        out.append(_t(f"blk.{i}.attn_output.weight", p.n_embd, p.n_embd))
        out.append(_t(f"blk.{i}.ffn_norm.weight", p.n_embd))
        out.append(_t(f"blk.{i}.ffn_down.weight", p.n_ff[i], p.n_embd))
        out.append(_t(f"blk.{i}.ffn_up.weight", p.n_embd, 2 * p.n_ff[i]))
    return out


def _gpt_oss(p: ArchParams) -> list[TensorInfo]:
    out = _head(p, True)
    n_ff_exp = p.n_ff_expert
    for i in range(p.n_layer):
        n_q = p.n_head[i] * p.head_dim_k
        out.append(_t(f"blk.{i}.attn_norm.weight", p.n_embd))
        out.append(_t(f"blk.{i}.post_attention_norm.weight", p.n_embd))
        out += _qkv(p, i, n_q, True)
        out.append(_t(f"blk.{i}.attn_output.weight", n_q, p.n_embd))
        out.append(_t(f"blk.{i}.attn_output.bias", p.n_embd))
        out.append(_t(f"blk.{i}.attn_sinks.weight", p.n_head[i]))
        out.append(_router(i, p.n_embd, p.n_expert))
        out.append(_t(f"blk.{i}.ffn_gate_inp.bias", p.n_expert))
        # The checkpoint's experts are MXFP4 already; the converter repacks them unchanged.
        out += _expert_ffn(p, i, n_ff_exp, ggml_type=MXFP4)
        out += [
            _t(f"blk.{i}.ffn_gate_exps.bias", n_ff_exp, p.n_expert),
            _t(f"blk.{i}.ffn_down_exps.bias", p.n_embd, p.n_expert),
            _t(f"blk.{i}.ffn_up_exps.bias", n_ff_exp, p.n_expert),
        ]
    return out


def _deepseek2(p: ArchParams) -> list[TensorInfo]:
    if p.kv_lora_rank <= 0 or p.head_dim_k_mla <= p.qk_rope_head_dim or p.head_dim_v_mla <= 0:
        raise RigfitError("a deepseek2 model needs kv_lora_rank, qk_nope/qk_rope and v head sizes")
    out = _head(p, not p.tied_embeddings)
    rope = p.qk_rope_head_dim
    nope = p.head_dim_k_mla - rope
    kv = p.kv_lora_rank
    for i in range(p.n_layer):
        n_head = p.n_head[i]
        out.append(_t(f"blk.{i}.attn_norm.weight", p.n_embd))
        if p.q_lora_rank > 0:
            out.append(_t(f"blk.{i}.attn_q_a_norm.weight", p.q_lora_rank))
        out.append(_t(f"blk.{i}.attn_kv_a_norm.weight", kv))
        if p.q_lora_rank > 0:
            out.append(_t(f"blk.{i}.attn_q_a.weight", p.n_embd, p.q_lora_rank))
            out.append(_t(f"blk.{i}.attn_q_b.weight", p.q_lora_rank, n_head * p.head_dim_k_mla))
        else:
            out.append(_t(f"blk.{i}.attn_q.weight", p.n_embd, n_head * p.head_dim_k_mla))
        out.append(_t(f"blk.{i}.attn_kv_a_mqa.weight", p.n_embd, kv + rope))
        # Current converters split kv_b into k_b (transposed) and v_b for the absorbed-MLA path.
        out.append(_t(f"blk.{i}.attn_k_b.weight", nope, kv, n_head))
        out.append(_t(f"blk.{i}.attn_v_b.weight", kv, p.head_dim_v_mla, n_head))
        out.append(_t(f"blk.{i}.attn_output.weight", n_head * p.head_dim_v_mla, p.n_embd))
        out.append(_t(f"blk.{i}.ffn_norm.weight", p.n_embd))
        if i < p.n_layer_dense_lead:
            out += _dense_ffn(p, i, p.n_ff[i])
        else:
            out.append(_router(i, p.n_embd, p.n_expert))
            if p.expert_bias:
                out.append(_t(f"blk.{i}.exp_probs_b.bias", p.n_expert))
            n_ff_exp = p.n_ff_expert
            out.append(_t(f"blk.{i}.ffn_down_exps.weight", n_ff_exp, p.n_embd, p.n_expert))
            out.append(_t(f"blk.{i}.ffn_gate_exps.weight", p.n_embd, n_ff_exp, p.n_expert))
            out.append(_t(f"blk.{i}.ffn_up_exps.weight", p.n_embd, n_ff_exp, p.n_expert))
            n_sh = n_ff_exp * p.n_expert_shared
            if n_sh:
                out.append(_t(f"blk.{i}.ffn_gate_shexp.weight", p.n_embd, n_sh))
                out.append(_t(f"blk.{i}.ffn_down_shexp.weight", n_sh, p.n_embd))
                out.append(_t(f"blk.{i}.ffn_up_shexp.weight", p.n_embd, n_sh))
    return out


_GENERATORS = {
    "llama": _llama,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "qwen3moe": _qwen3,
    "gemma2": _gemma,
    "gemma3": _gemma,
    "deepseek2": _deepseek2,
    "phi3": _phi3,
    "gpt-oss": _gpt_oss,
}


def generate_tensors(params: ArchParams) -> tuple[TensorInfo, ...]:
    """Every weight tensor llama.cpp loads for a model of these parameters, with converter (F16) types."""
    gen = _GENERATORS.get(params.architecture)
    if gen is None:
        raise RigfitError(
            f"Rigfit cannot lay out the tensors of a '{params.architecture}' model from its parameters "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)}); load its GGUF file instead"
        )
    if params.architecture in ("qwen3moe", "gpt-oss") and params.n_expert <= 0:
        raise RigfitError(f"a {params.architecture} model needs its expert count")
    if params.architecture == "gpt-oss" and params.n_ff_expert <= 0:
        raise RigfitError("a gpt-oss model needs its expert feed-forward length")
    moe_layers = params.n_layer_dense_lead < params.n_layer
    if (
        params.architecture == "deepseek2"
        and moe_layers
        and (params.n_expert <= 0 or params.n_ff_expert <= 0)
    ):
        raise RigfitError("a deepseek2 model with MoE layers needs its expert count and expert width")
    return tuple(gen(params))


def build_spec(
    params: ArchParams,
    *,
    id: str,
    name: str,
    source: str,
    file_type: str | None = None,
    imatrix: bool | None = None,
) -> ModelSpec:
    """A :class:`ModelSpec` with generated tensors, given the file type ``file_type`` (None: F16 as converted)."""
    spec = ModelSpec(
        id=id,
        name=name,
        architecture=params.architecture,
        n_layer=params.n_layer,
        n_embd=params.n_embd,
        n_vocab=params.n_vocab,
        n_head=params.n_head,
        n_head_kv=params.n_head_kv,
        n_ff=params.n_ff,
        head_dim_k=params.head_dim_k,
        head_dim_v=params.head_dim_v,
        n_ctx_train=params.n_ctx_train,
        tensors=generate_tensors(params),
        tied_embeddings=params.tied_embeddings or params.architecture == "gemma2",
        n_expert=params.n_expert,
        n_expert_used=params.n_expert_used,
        n_expert_shared=params.n_expert_shared,
        n_ff_expert=params.n_ff_expert,
        n_ff_shared_expert=params.n_ff_expert * params.n_expert_shared
        if params.architecture == "deepseek2"
        else 0,
        n_layer_dense_lead=params.n_layer_dense_lead,
        sliding_window=params.sliding_window,
        swa_layers=params.swa_layers,
        kv_lora_rank=params.kv_lora_rank,
        qk_rope_head_dim=params.qk_rope_head_dim,
        q_lora_rank=params.q_lora_rank,
        head_dim_k_mla=params.head_dim_k_mla,
        head_dim_v_mla=params.head_dim_v_mla,
        file_type="F16",
        source=source,
    )
    if file_type is None:
        return spec
    return apply_file_type(spec, file_type, imatrix=imatrix)
