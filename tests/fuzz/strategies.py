"""Hypothesis strategies for hostile model files, configs, rigs and settings.

Most generated GGUF files start as a plausible model (a known or unknown architecture, small real
shapes, tensors whose data fits the file) and then get a few mutations: a metadata value replaced by
a hostile one of any GGUF type (NaN, 2**63, -2**31, a string, an array of the wrong length), a key
dropped or doubled, a tensor given an extreme dimension, an unknown type or a layer past the last.
Starting plausible is what lets a case reach the planner and the fit table instead of stopping at the
first check; the mutations are what make it hostile.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from app.core import limits
from app.core.settings import KV_TYPES, SPLIT_MODES, Settings
from tests.fuzz import gguf_bytes as G

ARCHS = ("llama", "qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "deepseek2", "phi3", "gpt-oss", "mamba")
# Keys the spec reader looks at, after "<arch>.".
ARCH_KEYS = (
    "block_count", "embedding_length", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "attention.key_length", "attention.value_length", "context_length",
    "expert_count", "expert_used_count", "expert_feed_forward_length", "expert_shared_count",
    "expert_shared_feed_forward_length", "leading_dense_block_count", "attention.sliding_window",
    "attention.sliding_window_pattern", "attention.kv_lora_rank", "attention.q_lora_rank",
    "rope.dimension_count", "attention.key_length_mla", "attention.value_length_mla",
    "nextn_predict_layers", "vocab_size",
)  # fmt: skip
GENERAL_KEYS = (
    "general.architecture", "general.alignment", "general.file_type", "general.name",
    "tokenizer.chat_template", "tokenizer.ggml.tokens", "split.count", "split.no", "split.tensors.count",
)  # fmt: skip
# ggml types with (block size, bytes per block); 99 and 2**31 are unknown ones.
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 14: (256, 210), 30: (1, 2)}
EDGE_INTS = (
    0, 1, 2, 3, 255, 256, 1023, 1024, 1025, 2**16, 2**24, 2**24 + 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
    2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, -1, -2, -(2**31), -(2**63),
)  # fmt: skip
EDGE_FLOATS = (math.nan, math.inf, -math.inf, 0.5, -0.0, 1e308, -1e308, 1e-308, 2.0**64, 3.0, 1e6)


def _fits(vtype: int, v: int) -> bool:
    lo, hi = G.INT_RANGES[vtype]
    return lo <= v <= hi


@st.composite
def hostile_value(draw: st.DrawFn, plausible: int | None = None) -> G.Value:
    """A metadata value of any GGUF type, biased to the edges of each type."""
    kind = draw(st.sampled_from(("int", "int", "float", "bool", "str", "array", "plausible")))
    if kind == "plausible" and plausible is not None:
        return G.Value(G.U32, max(0, min(plausible, 2**32 - 1)))
    if kind == "float":
        vtype = draw(st.sampled_from((G.F32, G.F64)))
        value = draw(st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(allow_nan=True, width=32)))
        if vtype == G.F32 and math.isfinite(value) and abs(value) > 3.4e38:
            value = math.inf
        return G.Value(vtype, value)
    if kind == "bool":
        return G.Value(G.BOOL, draw(st.booleans()))
    if kind == "str":
        return G.Value(G.STR, draw(st.text(max_size=20)))
    if kind == "array":
        item = draw(st.sampled_from((G.U32, G.I32, G.F32, G.U64, G.BOOL, G.STR)))
        n = draw(st.integers(0, 12))
        if item == G.STR:
            return G.Value(G.ARR, [draw(st.text(max_size=4)) for _ in range(n)], item)
        if item == G.BOOL:
            return G.Value(G.ARR, [draw(st.booleans()) for _ in range(n)], item)
        if item == G.F32:
            return G.Value(G.ARR, [draw(st.floats(width=32)) for _ in range(n)], item)
        lo, hi = G.INT_RANGES[item]
        return G.Value(G.ARR, [draw(st.integers(lo, hi)) for _ in range(n)], item)
    vtype = draw(st.sampled_from((G.U8, G.I8, G.U16, G.I16, G.U32, G.I32, G.U64, G.I64)))
    lo, hi = G.INT_RANGES[vtype]
    edge = [v for v in EDGE_INTS if lo <= v <= hi]
    value = draw(st.one_of(st.sampled_from(edge), st.integers(lo, hi)))
    return G.Value(vtype, value)


def _row_ok(ggml_type: int, ne0: int) -> bool:
    return ne0 % TYPES[ggml_type][0] == 0


def _nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    block, size = TYPES.get(ggml_type, (1, 4))
    n = 1
    for d in shape[1:]:
        n *= d
    return shape[0] // block * size * n


@st.composite
def gguf_docs(draw: st.DrawFn) -> G.GgufDoc:
    """A plausible small model, then 0-5 hostile mutations."""
    arch = draw(st.one_of(st.sampled_from(ARCHS), st.text(min_size=1, max_size=8)))
    n_layer = draw(st.one_of(st.integers(1, 6), st.integers(1, limits.MAX_LAYERS + 8)))
    n_embd = draw(st.sampled_from((32, 64, 128, 256)))
    n_head = draw(st.sampled_from((1, 2, 4, 8)))
    n_head_kv = draw(st.sampled_from([h for h in (1, 2, 4, 8) if h <= n_head]))
    n_ff = draw(st.sampled_from((0, 64, 256, 512)))
    n_vocab = draw(st.sampled_from((0, 32, 256, 300)))
    wtype = draw(st.sampled_from(sorted(TYPES)))
    meta: dict[str, G.Value] = {
        "general.architecture": G.Value(G.STR, arch),
        f"{arch}.block_count": G.Value(G.U32, n_layer),
        f"{arch}.embedding_length": G.Value(G.U32, n_embd),
        f"{arch}.attention.head_count": G.Value(G.U32, n_head),
        f"{arch}.attention.head_count_kv": G.Value(G.U32, n_head_kv),
        f"{arch}.feed_forward_length": G.Value(G.U32, n_ff),
        f"{arch}.context_length": G.Value(G.U32, draw(st.sampled_from((0, 2048, 131072, 2**31)))),
    }
    if draw(st.booleans()):
        meta[f"{arch}.expert_count"] = G.Value(G.U32, draw(st.sampled_from((0, 4, 8, 64))))
        meta[f"{arch}.expert_used_count"] = G.Value(G.U32, draw(st.sampled_from((0, 1, 2, 8))))
        meta[f"{arch}.expert_feed_forward_length"] = G.Value(G.U32, draw(st.sampled_from((64, 128))))
    if draw(st.booleans()):
        meta[f"{arch}.attention.sliding_window"] = G.Value(G.U32, draw(st.sampled_from((0, 128, 4096))))
    if draw(st.booleans()):
        meta["tokenizer.ggml.tokens"] = G.Value(G.ARR, ["a"] * n_vocab, G.STR)

    tensors: list[G.Tensor] = []
    offset = 0

    def add(name: str, *shape: int, ggml_type: int | None = None) -> None:
        nonlocal offset
        t = wtype if ggml_type is None else ggml_type
        if not _row_ok(t, shape[0]) or 0 in shape:
            t = 0
        tensors.append(G.Tensor(name, tuple(shape), t, offset))
        offset += (_nbytes(t, tuple(shape)) + 31) // 32 * 32

    if n_vocab:
        add("token_embd.weight", n_embd, n_vocab)
    add("output_norm.weight", n_embd, ggml_type=0)
    if draw(st.booleans()) and n_vocab:
        add("output.weight", n_embd, n_vocab)
    head_dim = n_embd // n_head
    for i in range(min(n_layer, draw(st.integers(0, 3)))):
        add(f"blk.{i}.attn_norm.weight", n_embd, ggml_type=0)
        add(f"blk.{i}.attn_q.weight", n_embd, n_head * head_dim)
        add(f"blk.{i}.attn_k.weight", n_embd, n_head_kv * head_dim)
        add(f"blk.{i}.attn_v.weight", n_embd, n_head_kv * head_dim)
        add(f"blk.{i}.attn_output.weight", n_head * head_dim, n_embd)
        if n_ff:
            add(f"blk.{i}.ffn_up.weight", n_embd, n_ff)
            add(f"blk.{i}.ffn_down.weight", n_ff, n_embd)

    doc = G.GgufDoc(metadata=list(meta.items()), tensors=tensors, data_size=offset)
    for _ in range(draw(st.integers(0, 5))):
        _mutate(draw, doc, arch, n_layer)
    return doc


def _mutate(draw: st.DrawFn, doc: G.GgufDoc, arch: str, n_layer: int) -> None:
    kind = draw(st.sampled_from(("set", "set", "set", "drop", "dup", "per_layer", "tensor", "format")))
    keys = [k for k, _ in doc.metadata]
    if kind == "set":
        key = draw(
            st.one_of(st.sampled_from([f"{arch}.{k}" for k in ARCH_KEYS]), st.sampled_from(GENERAL_KEYS))
        )
        doc.metadata = [(k, v) for k, v in doc.metadata if k != key] + [(key, draw(hostile_value(n_layer)))]
    elif kind == "drop" and keys:
        key = draw(st.sampled_from(keys))
        doc.metadata = [(k, v) for k, v in doc.metadata if k != key]
    elif kind == "dup" and doc.metadata:
        doc.metadata.append(draw(st.sampled_from(doc.metadata)))
    elif kind == "per_layer":
        key = f"{arch}." + draw(
            st.sampled_from(
                (
                    "attention.head_count_kv",
                    "feed_forward_length",
                    "attention.head_count",
                    "attention.sliding_window_pattern",
                )
            )
        )
        length = draw(st.sampled_from((n_layer, n_layer, 0, 1, n_layer + 1, max(0, n_layer - 1))))
        if length > 4096:
            length = 4096
        item = draw(st.sampled_from((G.U32, G.I32, G.F32, G.BOOL)))
        if item == G.F32:
            values: list[Any] = [
                draw(st.sampled_from((1.0, 4.0, math.nan, -1.0, 1e30))) for _ in range(min(length, 8))
            ]
        elif item == G.BOOL:
            values = [draw(st.booleans()) for _ in range(min(length, 8))]
        else:
            lo, hi = G.INT_RANGES[item]
            values = [
                draw(st.sampled_from([v for v in EDGE_INTS if lo <= v <= hi] + [4, 8]))
                for _ in range(min(length, 8))
            ]
        values = (
            (values * (length // max(1, len(values)) + 1))[:length]
            if values
            else [4] * length
            if length
            else []
        )
        doc.metadata = [(k, v) for k, v in doc.metadata if k != key] + [(key, G.Value(G.ARR, values, item))]
    elif kind == "tensor" and doc.tensors:
        i = draw(st.integers(0, len(doc.tensors) - 1))
        t = doc.tensors[i]
        what = draw(st.sampled_from(("dim", "type", "name", "layer", "offset")))
        if what == "dim":
            dims = list(t.shape)
            j = draw(st.integers(0, len(dims) - 1))
            dims[j] = draw(st.sampled_from([v for v in EDGE_INTS if v >= 0]))
            t = G.Tensor(t.name, tuple(dims), t.ggml_type, t.offset)
        elif what == "type":
            t = G.Tensor(t.name, t.shape, draw(st.sampled_from((3, 4, 40, 99, 2**31, 2**32 - 1))), t.offset)
        elif what == "name":
            t = G.Tensor(draw(st.text(max_size=30)), t.shape, t.ggml_type, t.offset)
        elif what == "layer":
            layer = draw(st.sampled_from((n_layer, n_layer + 1, 2**31, 10**30)))
            t = G.Tensor(f"blk.{layer}.attn_q.weight", t.shape, t.ggml_type, t.offset)
        else:
            t = G.Tensor(t.name, t.shape, t.ggml_type, draw(st.sampled_from((1, 2**40, 2**64 - 32))))
        doc.tensors[i] = t
    elif kind == "format":
        what = draw(st.sampled_from(("version", "alignment", "endian", "truncate_data")))
        if what == "version":
            doc.version = draw(st.sampled_from((1, 2, 3, 4, 2**32 - 1)))
        elif what == "alignment":
            doc.metadata.append(
                ("general.alignment", G.Value(G.U32, draw(st.sampled_from((0, 1, 3, 64, 2**31)))))
            )
        elif what == "endian":
            doc.big_endian = True
        else:
            doc.data_size = draw(st.integers(0, doc.data_size))


def mutated_bytes(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with a few bytes flipped, cut or inserted (reader robustness)."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 6))):
            if not buf:
                break
            op = draw(st.sampled_from(("flip", "flip", "cut", "insert", "u64")))
            pos = draw(st.integers(0, len(buf) - 1))
            if op == "flip":
                buf[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del buf[pos:]
            elif op == "insert":
                buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
            else:
                buf[pos : pos + 8] = draw(st.sampled_from(EDGE_INTS)).to_bytes(16, "little", signed=True)[:8]
        return bytes(buf)

    return build()


# --- configs -----------------------------------------------------------------------------------------

CONFIG_KEYS = (
    "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "vocab_size",
    "intermediate_size", "head_dim", "max_position_embeddings", "num_local_experts", "num_experts",
    "num_experts_per_tok", "moe_intermediate_size", "sliding_window", "kv_lora_rank", "q_lora_rank",
    "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "n_routed_experts", "n_shared_experts",
    "first_k_dense_replace", "tie_word_embeddings", "rope_scaling", "text_config", "sliding_window_pattern",
    "partial_rotary_factor", "decoder_sparse_step", "mlp_only_layers", "attention_bias",
)  # fmt: skip
MODEL_CLASSES = (
    "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "Gemma2ForCausalLM",
    "Gemma3ForCausalLM", "DeepseekV3ForCausalLM", "Phi3ForCausalLM", "GptOssForCausalLM", "MambaForCausalLM",
)  # fmt: skip

json_scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from(EDGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EDGE_FLOATS),
    st.booleans(),
    st.none(),
    st.text(max_size=10),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)  # fmt: skip


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible config.json dict for one architecture, then hostile values for a few keys."""
    cls = draw(st.sampled_from(MODEL_CLASSES))
    n_head = draw(st.sampled_from((1, 2, 4, 8)))
    data: dict[str, Any] = {
        "architectures": [cls],
        "num_hidden_layers": draw(st.one_of(st.integers(1, 6), st.integers(1, limits.MAX_LAYERS + 4))),
        "hidden_size": draw(st.sampled_from((64, 128, 256))),
        "num_attention_heads": n_head,
        "num_key_value_heads": draw(st.sampled_from([h for h in (1, 2, 4, 8) if h <= n_head])),
        "vocab_size": draw(st.sampled_from((300, 1000, 32000))),
        "intermediate_size": draw(st.sampled_from((128, 512))),
        "max_position_embeddings": draw(st.sampled_from((2048, 131072))),
    }
    if "Moe" in cls or "GptOss" in cls:
        data.update(num_experts=8, num_local_experts=8, num_experts_per_tok=2, moe_intermediate_size=64)
    if "Deepseek" in cls:
        data.update(
            kv_lora_rank=64, q_lora_rank=64, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32,
            n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=64, n_shared_experts=1,
            first_k_dense_replace=1,
        )  # fmt: skip
    if "Gemma" in cls or "GptOss" in cls:
        data["sliding_window"] = 128
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(CONFIG_KEYS))
        if draw(st.booleans()):
            data[key] = draw(json_values)
        else:
            data.pop(key, None)
    return data


# --- rigs and settings ----------------------------------------------------------------------------

RIG_EXPRESSIONS = ("RTX 3090", "2x RTX 3090 nvlink", "RTX 4090 + RTX 3060@x4", "3x RTX 3060", "cpu")


@st.composite
def settings_for(draw: st.DrawFn, n_gpus: int, in_range: bool = True) -> Settings:
    """Load settings; ``in_range`` keeps every value inside app.core.limits' ranges."""
    split: tuple[float, ...] | None = None
    if n_gpus and draw(st.booleans()):
        split = tuple(draw(st.floats(0, limits.MAX_SPLIT_RATIO)) for _ in range(n_gpus))
        if sum(split) <= 0:
            split = None
    kv = draw(st.sampled_from(KV_TYPES))
    s = Settings(
        ctx=draw(st.one_of(st.integers(1, 65536), st.integers(1, limits.MAX_CTX))),
        split_mode=draw(st.sampled_from(SPLIT_MODES)),
        tensor_split=split,
        main_gpu=draw(st.integers(0, max(0, n_gpus - 1))),
        n_gpu_layers=draw(st.one_of(st.integers(-1, 40), st.sampled_from((-1, 999, limits.INT32_MAX)))),
        n_batch=draw(st.sampled_from((1, 32, 512, 4096, limits.MAX_BATCH))),
        n_ubatch=draw(st.sampled_from((1, 32, 512, 4096))),
        flash_attn=draw(st.booleans()),
        type_k=kv,
        type_v=kv if draw(st.booleans()) else draw(st.sampled_from(KV_TYPES)),
    )
    if not in_range:
        from dataclasses import replace

        field = draw(
            st.sampled_from(("ctx", "n_batch", "n_ubatch", "n_gpu_layers", "main_gpu", "tensor_split"))
        )
        if field == "tensor_split":
            ratios = draw(st.sampled_from((1e308, 1e-320, 1e10, math.inf, math.nan, -1.0)))
            return replace(s, tensor_split=(ratios,) * max(1, n_gpus))
        low = {"n_gpu_layers": -2, "main_gpu": -1}.get(field, 0)
        high = {"main_gpu": limits.MAX_GPUS, "n_gpu_layers": 2**31}.get(field, 2**32 + 4096)
        bad = draw(st.sampled_from((-(2**63), low, high, 2**63, 2**64)))
        return replace(s, **{field: bad})
    return s
