"""A :class:`ModelSpec` from a GGUF file's metadata and tensor table.

The hyperparameters are read the way llama.cpp's ``llama_model_base::load_hparams`` and the
architecture's ``load_arch_hparams`` read them: ``<arch>.block_count``, ``embedding_length``,
``feed_forward_length`` / ``attention.head_count`` / ``attention.head_count_kv`` (a number or one
value per layer; KV heads default to the heads), ``attention.key_length`` / ``value_length``
(default ``n_embd / n_head``), expert counts, MLA ranks, and the sliding window with the layer pattern
each architecture applies (gemma2 and gpt-oss alternate starting with an SWA layer, gemma3 keeps every
6th layer dense, phi3's window is ignored by llama.cpp, a ``sliding_window_pattern`` key overrides).
Architectures Rigfit does not know still give a spec when the generic keys are there.
"""

from __future__ import annotations

from pathlib import Path

from app.core import limits
from app.core.arch import SWA_DEFAULT_PATTERN, swa_pattern
from app.core.errors import BadModelFile, UnknownName
from app.core.files import printable, show_path
from app.core.gguf_reader import GgufArray, GgufModel, split_parts
from app.core.limits import Bound
from app.core.model_spec import ModelSpec
from app.core.quant import file_type_from_gguf

# Architectures whose llama.cpp loader never uses a sliding window even when a GGUF carries one.
_NO_SWA: frozenset[str] = frozenset({"llama", "qwen2", "qwen3", "qwen3moe", "deepseek2", "phi3"})
# ... and those that apply their pattern even without a sliding_window key (with this default window).
_SWA_ALWAYS: dict[str, int] = {"gemma2": 4096, "gpt-oss": 0}


def _where(model: GgufModel) -> str:
    return show_path(model.paths[0])


def _int(model: GgufModel, key: str, default: int = 0, bound: Bound = limits.ANY_COUNT) -> int:
    """A whole-number key within ``bound`` (NaN, infinities, fractions, negatives: BadModelFile)."""
    v = model.metadata.get(key)
    if v is None:
        return default
    if isinstance(v, GgufArray | str):
        raise BadModelFile(f"{_where(model)}: metadata '{key}' should be a number")
    return limits.whole_number(v, key, bound, _where(model))


def _per_layer(
    model: GgufModel, key: str, n_layer: int, default: tuple[int, ...], bound: Bound
) -> tuple[int, ...]:
    """llama_model_loader::get_key_or_arr: a scalar for every layer, or one value per layer."""
    v = model.metadata.get(key)
    if v is None:
        return default
    where = _where(model)
    if isinstance(v, GgufArray):
        if v.values is None or v.length != n_layer:
            raise BadModelFile(f"{where}: '{key}' has {v.length} values for {n_layer} layers")
        out: list[int] = []
        for item in v.values:
            if not isinstance(item, int | float):
                raise BadModelFile(f"{where}: '{key}' should hold numbers")
            out.append(limits.whole_number(item, key, bound, where))
        return tuple(out)
    if isinstance(v, int | float):
        return (limits.whole_number(v, key, bound, where),) * n_layer
    raise BadModelFile(f"{where}: metadata '{key}' should be a number or a list of numbers")


def _swa(model: GgufModel, arch: str, n_layer: int) -> tuple[int, tuple[bool, ...]]:
    """Sliding window and per-layer SWA flags as llama.cpp's loader for ``arch`` sets them."""
    if arch in _NO_SWA:
        return 0, ()
    # A window beyond any context is a full-size cache: capped, it plans the same.
    window = min(_int(model, f"{arch}.attention.sliding_window", _SWA_ALWAYS.get(arch, 0)), limits.MAX_CTX)
    if window <= 0 and arch not in _SWA_ALWAYS:
        return 0, ()
    pattern_key = f"{arch}.attention.sliding_window_pattern"
    raw = model.metadata.get(pattern_key)
    layers: tuple[bool, ...]
    if isinstance(raw, GgufArray):
        if raw.values is None or raw.length != n_layer:
            raise BadModelFile(
                f"{_where(model)}: '{pattern_key}' has {raw.length} values for {n_layer} layers"
            )
        layers = tuple(bool(x) for x in raw.values)
    else:
        n_pattern, dense_first = SWA_DEFAULT_PATTERN.get(arch, (-1, False))
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            n_pattern = limits.whole_number(raw, pattern_key, limits.LAYERS_OR_NONE, _where(model))
        if n_pattern < 0:
            # An architecture Rigfit does not know and no pattern in the file: no SWA assumed, which
            # overestimates the KV cache rather than underestimating it.
            return 0, ()
        layers = swa_pattern(n_layer, n_pattern, dense_first)
    if not any(layers):
        return 0, ()
    return window, layers


def _vocab_size(model: GgufModel, arch: str) -> int:
    tokens = model.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, GgufArray) and tokens.length > 0:
        return tokens.length
    for t in model.tensors:
        if t.name == "token_embd.weight" and len(t.shape) >= 2:
            return t.shape[1]
    return _int(model, f"{arch}.vocab_size", 0, limits.VOCAB)


def model_stem(path: str | Path) -> str:
    """A model's name from its file name, without the split suffix (``-00001-of-00003``)."""
    p = Path(path)
    parts = split_parts(p)
    if parts is not None:
        return p.name[: -len("-00001-of-00001.gguf")]
    return p.stem


def spec_from_gguf(model: GgufModel, *, id: str | None = None) -> ModelSpec:
    """Build a :class:`ModelSpec` (real tensor types) from a read GGUF model."""
    path = _where(model)
    arch = model.metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise BadModelFile(f"{path} has no general.architecture, so it is not a model Rigfit can plan")
    arch = arch[:64]
    raw_layers = model.metadata.get(f"{arch}.block_count")
    raw_embd = model.metadata.get(f"{arch}.embedding_length")
    if raw_layers is None or raw_embd is None:
        raise BadModelFile(
            f"{path}: Rigfit does not know the '{arch}' architecture and the file lacks "
            f"{arch}.block_count / {arch}.embedding_length, so its layers cannot be planned"
        )
    # The layer count sizes every per-layer list below: checked first, against real models' range.
    n_layer = _int(model, f"{arch}.block_count", 0, limits.LAYERS)
    n_embd = _int(model, f"{arch}.embedding_length", 0, limits.EMBD)
    zeros = (0,) * n_layer
    n_ff = _per_layer(model, f"{arch}.feed_forward_length", n_layer, zeros, limits.FF)
    n_head = _per_layer(model, f"{arch}.attention.head_count", n_layer, zeros, limits.HEADS)
    n_head_kv = _per_layer(model, f"{arch}.attention.head_count_kv", n_layer, n_head, limits.HEADS)
    head0 = n_head[0] if n_head else 0
    default_head_dim = n_embd // head0 if head0 > 0 else 0
    head_dim_k = _int(model, f"{arch}.attention.key_length", default_head_dim, limits.HEAD_DIM)
    head_dim_v = _int(model, f"{arch}.attention.value_length", default_head_dim, limits.HEAD_DIM)

    for t in model.tensors:
        layer = t.layer
        if layer is not None and layer >= n_layer:
            raise BadModelFile(f"{path}: tensor '{t.name}' names layer {layer}, but the model has {n_layer}")

    n_expert = _int(model, f"{arch}.expert_count", 0, limits.EXPERTS)
    used = _per_layer(model, f"{arch}.expert_used_count", n_layer, zeros, limits.EXPERTS)
    n_ff_expert_layers = _per_layer(model, f"{arch}.expert_feed_forward_length", n_layer, zeros, limits.FF)
    n_ff_expert = max(n_ff_expert_layers) if n_ff_expert_layers else 0
    n_expert_shared = _int(model, f"{arch}.expert_shared_count", 0, limits.SHARED_EXPERTS)
    n_ff_shared = _int(model, f"{arch}.expert_shared_feed_forward_length", 0, limits.FF)
    if not n_ff_shared and arch == "deepseek2":
        n_ff_shared = n_ff_expert * n_expert_shared

    window, swa_layers = _swa(model, arch, n_layer)

    raw_ftype = model.metadata.get("general.file_type")
    file_type: str | None = None
    if isinstance(raw_ftype, int) and not isinstance(raw_ftype, bool):
        try:
            file_type = file_type_from_gguf(raw_ftype)
        except UnknownName:
            file_type = None
    name = model.metadata.get("general.name")
    stem = printable(model_stem(model.paths[0]))
    template = model.metadata.get("tokenizer.chat_template")
    spec = ModelSpec(
        id=id or stem,
        name=printable(name) if isinstance(name, str) and name.strip() else stem,
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_vocab=_vocab_size(model, arch),
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=n_ff,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        # The trained context only bounds the largest-context search: beyond any context it is capped.
        n_ctx_train=min(_int(model, f"{arch}.context_length"), limits.MAX_CTX),
        tensors=model.tensors,
        tied_embeddings=not any(t.name == "output.weight" for t in model.tensors),
        n_expert=n_expert,
        n_expert_used=max(used) if used else 0,
        n_expert_shared=n_expert_shared,
        n_ff_expert=n_ff_expert,
        n_ff_shared_expert=n_ff_shared,
        n_layer_dense_lead=_int(model, f"{arch}.leading_dense_block_count", 0, limits.LAYERS_OR_NONE),
        sliding_window=window,
        swa_layers=swa_layers,
        kv_lora_rank=_int(model, f"{arch}.attention.kv_lora_rank", 0, limits.LORA_RANK),
        qk_rope_head_dim=_int(model, f"{arch}.rope.dimension_count", 0, limits.HEAD_DIM)
        if arch == "deepseek2"
        else 0,
        q_lora_rank=_int(model, f"{arch}.attention.q_lora_rank", 0, limits.LORA_RANK),
        head_dim_k_mla=_int(model, f"{arch}.attention.key_length_mla", 0, limits.HEAD_DIM),
        head_dim_v_mla=_int(model, f"{arch}.attention.value_length_mla", 0, limits.HEAD_DIM),
        n_layer_nextn=_int(model, f"{arch}.nextn_predict_layers", 0, limits.LAYERS_OR_NONE),
        file_type=file_type,
        source="gguf",
        paths=model.paths,
        file_size_bytes=model.file_size_bytes,
        chat_template=template if isinstance(template, str) else None,
        metadata=dict(model.metadata),
    )
    return limits.check_spec(spec, path)
