"""A :class:`ModelSpec` from a Hugging Face ``config.json``: what a user has before downloading.

The config's model class (``architectures``) or ``model_type`` is mapped to the GGUF architecture that
llama.cpp's converter (``convert_hf_to_gguf.py``) produces for it, and its hyperparameters to the
values the converter writes: ``head_dim`` (or ``hidden_size / num_attention_heads``), KV heads, tied
embeddings, the MoE fields of each family (``num_local_experts`` / ``num_experts`` /
``n_routed_experts``, ``moe_intermediate_size``, shared experts, ``first_k_dense_replace``), DeepSeek's
MLA ranks (the converter turns MLA into one KV head of ``kv_lora_rank + qk_rope_head_dim``), and the
sliding window. Where llama.cpp decides the SWA layer pattern itself (gemma2, gemma3, gpt-oss), its
pattern is used, not the config's ``layer_types``, because that is what will run. Gemma 3 nests its
language model in ``text_config``; defaults missing from a config are the transformers defaults the
converter would see.

Limits: the converter trims Gemma 3's embedding rows to the tokenizer (262144 instead of the config's
262208); a config alone cannot tell, so the config's ``vocab_size`` is used (0.02% more).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from app.core import files, limits
from app.core.arch import SWA_DEFAULT_PATTERN, ArchParams, build_spec, per_layer, swa_pattern
from app.core.errors import BadModelFile, RigfitError, UnknownName
from app.core.files import printable, show_path
from app.core.limits import Bound
from app.core.model_spec import ModelSpec

# Hugging Face model class -> GGUF architecture (convert_hf_to_gguf's registrations).
ARCH_BY_CLASS: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "LLaMAForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "MixtralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3moe",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3",
    "Gemma3ForConditionalGeneration": "gemma3",
    "DeepseekV2ForCausalLM": "deepseek2",
    "DeepseekV3ForCausalLM": "deepseek2",
    "Phi3ForCausalLM": "phi3",
    "GptOssForCausalLM": "gpt-oss",
}
# ... and by model_type, for configs without an architectures list.
ARCH_BY_MODEL_TYPE: dict[str, str] = {
    "llama": "llama",
    "mistral": "llama",
    "mixtral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "qwen3_moe": "qwen3moe",
    "gemma2": "gemma2",
    "gemma3": "gemma3",
    "gemma3_text": "gemma3",
    "deepseek_v2": "deepseek2",
    "deepseek_v3": "deepseek2",
    "phi3": "phi3",
    "gpt_oss": "gpt-oss",
}

# transformers' config defaults for keys a published config may leave out.
_DEFAULTS: dict[str, dict[str, object]] = {
    "gemma2": {
        "head_dim": 256,
        "sliding_window": 4096,
        "vocab_size": 256000,
        "max_position_embeddings": 8192,
    },
    "gemma3": {
        "head_dim": 256,
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "sliding_window": 4096,
    },
}
# Families whose checkpoints share the output layer with the embeddings unless they say otherwise.
_TIED_BY_DEFAULT: frozenset[str] = frozenset({"gemma2", "gemma3"})


class _Config:
    """Typed access to a config dict, with errors that name the file and the key."""

    def __init__(self, data: Mapping[str, object], origin: str) -> None:
        self.data = data
        self.origin = origin

    def get(self, key: str, default: object = None) -> object:
        v = self.data.get(key)
        return default if v is None else v

    def int(self, *keys: str, default: int | None = None, bound: Bound = limits.ANY_COUNT) -> int:
        """The first of ``keys`` present, a finite whole number within ``bound`` (else BadModelFile)."""
        for key in keys:
            v = self.data.get(key)
            if v is None:
                continue
            return limits.whole_number(v, key, bound, self.origin)
        if default is None:
            raise BadModelFile(f"{self.origin} has no '{keys[0]}', which Rigfit needs to lay out the model")
        return default

    def flag(self, key: str, default: bool) -> bool:
        v = self.data.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise BadModelFile(f"{self.origin}: '{key}' should be true or false, not {v!r}")
        return v

    def rope_type(self) -> str:
        for key in ("rope_scaling", "rope_parameters"):
            v = self.data.get(key)
            if isinstance(v, Mapping):
                kind = v.get("rope_type", v.get("type"))
                if isinstance(kind, str):
                    return kind.lower()
        return ""


def architecture_of(config: Mapping[str, object], origin: str = "config.json") -> str:
    """The GGUF architecture llama.cpp's converter makes of this config; raises for unsupported models."""
    classes = config.get("architectures")
    names = [c for c in classes if isinstance(c, str)] if isinstance(classes, list) else []
    for cls in names:
        if cls in ARCH_BY_CLASS:
            return ARCH_BY_CLASS[cls]
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type in ARCH_BY_MODEL_TYPE:
        return ARCH_BY_MODEL_TYPE[model_type]
    what = names[0] if names else (model_type if isinstance(model_type, str) else "unknown")
    supported = ", ".join(sorted(ARCH_BY_MODEL_TYPE))
    raise UnknownName(
        f"{origin} describes a '{what}' model, which Rigfit cannot plan from config.json "
        f"(supported model types: {supported}); load its GGUF file instead"
    )


def _flatten(config: Mapping[str, object]) -> dict[str, object]:
    # Multimodal wrappers (Gemma 3) keep the language model in text_config, as the converter reads it.
    merged = dict(config)
    text = config.get("text_config")
    if isinstance(text, Mapping):
        merged.update(text)
    return merged


def params_from_config(config: Mapping[str, object], origin: str = "config.json") -> ArchParams:
    """Architecture parameters (as the converted GGUF will hold them) from a config.json dict."""
    arch = architecture_of(config, origin)
    data = dict(_DEFAULTS.get(arch, {}))
    data.update({k: v for k, v in _flatten(config).items() if v is not None})
    c = _Config(data, origin)

    # The layer count sizes every per-layer list: checked against real models' range before anything.
    n_layer = c.int("num_hidden_layers", "n_layer", "num_layers", bound=limits.LAYERS)
    n_embd = c.int("hidden_size", "n_embd", "d_model", bound=limits.EMBD)
    n_head = c.int("num_attention_heads", "n_head", bound=limits.HEADS)
    n_head_kv = c.int("num_key_value_heads", "n_head_kv", default=n_head, bound=limits.HEADS)
    n_vocab = c.int("vocab_size", bound=limits.VOCAB)
    n_ff = c.int("intermediate_size", default=0, bound=limits.FF)
    if n_layer <= 0 or n_embd <= 0 or n_head <= 0 or n_vocab <= 0:
        raise BadModelFile(f"{origin}: layers, hidden size, heads and vocabulary must be positive")
    if n_ff == 0 and arch not in ("qwen3moe", "gpt-oss", "deepseek2"):
        raise BadModelFile(f"{origin} has no 'intermediate_size', which Rigfit needs to lay out the model")
    head_dim = c.int("head_dim", default=n_embd // n_head, bound=limits.HEAD_DIM)
    tied = c.flag("tie_word_embeddings", arch in _TIED_BY_DEFAULT)
    common = ArchParams(
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_vocab=n_vocab,
        n_head=per_layer(n_head, n_layer),
        n_head_kv=per_layer(n_head_kv, n_layer),
        n_ff=per_layer(n_ff, n_layer),
        head_dim_k=head_dim,
        head_dim_v=head_dim,
        # Only bounds the largest-context search: a value beyond any context is capped.
        n_ctx_train=min(
            c.int("max_position_embeddings", "max_sequence_length", "n_positions", default=0), limits.MAX_CTX
        ),
        tied_embeddings=tied,
    )
    if arch == "llama":
        n_expert = c.int("num_local_experts", default=0, bound=limits.EXPERTS)
        attention_bias = c.flag("attention_bias", False)
        return replace(
            common,
            attn_bias=attention_bias,
            attn_out_bias=attention_bias,
            rope_freqs=c.rope_type() == "llama3",
            n_expert=n_expert,
            n_expert_used=c.int("num_experts_per_tok", default=2, bound=limits.EXPERTS) if n_expert else 0,
        )
    if arch == "qwen2":
        # Qwen2 always has q/k/v biases (the config has no switch for them).
        return replace(common, attn_bias=True)
    if arch == "qwen3":
        return replace(common, attn_bias=c.flag("attention_bias", False))
    if arch == "qwen3moe":
        mlp_only = data.get("mlp_only_layers")
        if (isinstance(mlp_only, list) and mlp_only) or c.int(
            "decoder_sparse_step", default=1, bound=limits.LAYERS_OR_NONE
        ) != 1:
            raise UnknownName(
                f"{origin}: Qwen3-MoE with dense layers in between is not supported by llama.cpp"
            )
        return replace(
            common,
            attn_bias=c.flag("attention_bias", False),
            n_expert=c.int("num_experts", bound=limits.EXPERTS),
            n_expert_used=c.int("num_experts_per_tok", bound=limits.EXPERTS),
            n_ff_expert=c.int("moe_intermediate_size", bound=limits.FF),
        )
    if arch in ("gemma2", "gemma3"):
        window = min(c.int("sliding_window", default=0), limits.MAX_CTX)
        if arch == "gemma3" and data.get("sliding_window_pattern") == 1:
            window = 0  # the converter writes no window: llama.cpp runs every layer dense
        layers: tuple[bool, ...] = ()
        if window > 0:
            n_pattern, dense_first = SWA_DEFAULT_PATTERN[arch]
            layers = swa_pattern(n_layer, n_pattern, dense_first)
        return replace(
            common,
            sliding_window=window if layers else 0,
            swa_layers=layers,
        )
    if arch == "phi3":
        rope = c.rope_type()
        partial = data.get("partial_rotary_factor")
        if isinstance(partial, int | float) and partial != 1:
            raise UnknownName(f"{origin}: Phi-3 models with partial rotary embeddings are not supported")
        # llama.cpp ignores Phi's sliding window (see phi3.cpp), so no SWA here.
        return replace(common, rope_factors=rope in ("longrope", "su"))
    if arch == "gpt-oss":
        n_pattern, dense_first = SWA_DEFAULT_PATTERN["gpt-oss"]
        return replace(
            common,
            attn_bias=True,
            attn_out_bias=True,
            n_expert=c.int("num_local_experts", "num_experts", bound=limits.EXPERTS),
            n_expert_used=c.int("num_experts_per_tok", "experts_per_token", bound=limits.EXPERTS),
            n_ff_expert=c.int("intermediate_size", bound=limits.FF),
            sliding_window=min(c.int("sliding_window"), limits.MAX_CTX),
            swa_layers=swa_pattern(n_layer, n_pattern, dense_first),
        )
    if arch == "deepseek2":
        kv_lora = c.int("kv_lora_rank", default=512, bound=limits.LORA_RANK)
        rope_dim = c.int("qk_rope_head_dim", bound=limits.HEAD_DIM)
        nope = c.int("qk_nope_head_dim", bound=limits.HEAD_DIM)
        v_dim = c.int("v_head_dim", bound=limits.HEAD_DIM)
        has_moe = data.get("n_routed_experts") is not None
        dense_lead = c.int(
            "first_k_dense_replace", default=0 if has_moe else n_layer, bound=limits.LAYERS_OR_NONE
        )
        # The converter turns MLA into MQA: one KV head of kv_lora_rank + rope dims (K) / kv_lora_rank (V).
        return replace(
            common,
            n_head_kv=per_layer(1, n_layer),
            head_dim_k=kv_lora + rope_dim,
            head_dim_v=kv_lora,
            n_expert=c.int("n_routed_experts", default=0, bound=limits.EXPERTS),
            n_expert_used=c.int("num_experts_per_tok", default=0, bound=limits.EXPERTS),
            n_ff_expert=c.int("moe_intermediate_size", "intermediate_size", bound=limits.FF),
            n_expert_shared=c.int("n_shared_experts", default=0, bound=limits.SHARED_EXPERTS),
            n_layer_dense_lead=dense_lead,
            expert_bias=data.get("topk_method") == "noaux_tc",
            q_lora_rank=c.int("q_lora_rank", default=0, bound=limits.LORA_RANK),
            kv_lora_rank=kv_lora,
            qk_rope_head_dim=rope_dim,
            head_dim_k_mla=nope + rope_dim,
            head_dim_v_mla=v_dim,
        )
    raise RigfitError(f"{origin}: no parameter mapping for architecture '{arch}'")  # pragma: no cover


def spec_from_config(
    config: Mapping[str, object],
    *,
    id: str,
    name: str,
    quant: str | None = None,
    source: str = "config",
    origin: str = "config.json",
    n_vocab: int | None = None,
) -> ModelSpec:
    """A :class:`ModelSpec` for this config at file type ``quant`` (None: F16, as converted).

    ``n_vocab`` overrides the vocabulary when the GGUF is known to differ from the config (the catalog
    uses it for Gemma 3).
    """
    params = params_from_config(config, origin)
    if n_vocab is not None:
        params = _with_vocab(params, n_vocab)
    try:
        spec = build_spec(params, id=id, name=name, source=source, file_type=quant)
    except RecursionError:  # pragma: no cover - build_spec does not recurse; kept for the message
        raise BadModelFile(f"{origin}: the model description is too deeply nested") from None
    return limits.check_spec(spec, origin)


def _with_vocab(params: ArchParams, n_vocab: int) -> ArchParams:
    return replace(params, n_vocab=n_vocab)


def read_config(path: str | os.PathLike[str]) -> tuple[dict[str, object], Path]:
    """Read a config.json (or the config.json inside a folder); returns the dict and the file's path."""
    p = Path(path)
    if files.is_dir(p):
        p = p / "config.json"
    if not files.path_exists(p):
        raise BadModelFile(f"no config.json at {show_path(p)} ({files.describe_missing(p)})")
    text = files.read_text(p, "config.json", files.MAX_CONFIG_JSON_BYTES, BadModelFile)
    data = files.parse_json(text, show_path(p), BadModelFile)
    if not isinstance(data, dict):
        raise BadModelFile(f"{show_path(p)} does not hold a JSON object, so it is not a model config")
    return data, p


def default_quant(architecture: str) -> str:
    """The file type most downloads of this architecture use: MXFP4 for gpt-oss, Q4_K_M otherwise."""
    return "MXFP4_MOE" if architecture == "gpt-oss" else "Q4_K_M"


def spec_from_config_file(path: str | os.PathLike[str], quant: str | None = None) -> ModelSpec:
    """A :class:`ModelSpec` from a config.json path (or its folder) at file type ``quant``.

    ``quant`` None picks :func:`default_quant` for the model's architecture.
    """
    data, p = read_config(path)
    if quant is None:
        quant = default_quant(architecture_of(data, show_path(p)))
    model_name = printable((p.parent.name if p.name == "config.json" else p.stem) or p.stem)
    name_or_path = data.get("_name_or_path")
    if isinstance(name_or_path, str) and name_or_path.strip():
        model_name = printable(name_or_path.strip().rstrip("/").split("/")[-1]) or model_name
    return spec_from_config(
        data, id=model_name, name=model_name, quant=quant, source="config", origin=show_path(p)
    )
