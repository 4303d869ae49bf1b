"""llama.cpp's quantizer, rule for rule: the type each tensor of a model gets for a file type.

:func:`apply_file_type` gives every tensor of a model the type llama.cpp's quantizer would give it. It
follows ``llama_tensor_get_type`` in ``src/llama-quant.cpp`` of the llama.cpp vendored in
llama-cpp-python 0.3.36, rule for rule: which tensors may be quantized at all, the output /
token-embedding types (tied embeddings quantize ``token_embd`` like the output), more bits for
``attn_v`` / ``ffn_down`` on chosen layers (``use_more_bits``, the ``n_attention_wv`` count, layer
numbers parsed from names for MoE models), the 8-expert and 70B special cases, the MXFP4 MoE mix, and
the fallback chain for rows whose length is not a multiple of the block size. No average
bits-per-weight anywhere: sizes are summed per tensor by the planner.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter

from app.core.errors import RigfitError
from app.core.model_spec import ModelSpec, TensorInfo
from app.core.quant import (
    F16,
    IQ1_M,
    IQ1_S,
    IQ2_S,
    IQ2_XS,
    IQ2_XXS,
    IQ3_S,
    IQ3_XXS,
    IQ4_NL,
    IQ4_XS,
    MXFP4,
    Q2_0,
    Q2_K,
    Q3_K,
    Q4_0,
    Q4_1,
    Q4_K,
    Q5_0,
    Q5_1,
    Q5_K,
    Q6_K,
    Q8_0,
    TQ1_0,
    TQ2_0,
    FileType,
    block_size,
    file_type,
    is_quantized,
    type_name,
)

# tensor_category in llama-quant.cpp
_C_TOKEN_EMBD = 0
_C_ATTN_Q = 1
_C_ATTN_V = 2
_C_ATTN_K = 3
_C_ATTN_QKV = 4
_C_ATTN_KV_B = 5
_C_ATTN_OUTPUT = 6
_C_FFN_UP = 7
_C_FFN_GATE = 8
_C_FFN_DOWN = 9
_C_OUTPUT = 10
_C_OTHER = 11
_ATTN_V_LIKE = frozenset({_C_ATTN_V, _C_ATTN_QKV, _C_ATTN_KV_B})

# Architectures whose loader calls an 80-layer (jais2: 68-layer) model LLM_TYPE_70B, the one model
# type the quantizer asks about (more bits for attn_v). llama needs n_head != n_head_kv and no 8 experts.
_TYPE_70B_LAYERS: dict[str, int] = {"llama": 80, "deci": 80, "olmo": 80, "qwen2": 80, "jais2": 68}

# Substrings that keep a 2-D+ ".weight" tensor unquantized (tensor_allows_quantization).
_NEVER_QUANTIZED_PARTS: tuple[str, ...] = (
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
)
_NEVER_QUANTIZED_NAMES: frozenset[str] = frozenset({"position_embd.weight", "token_types.weight"})
_GLM5_NEXT_Q8_PARTS: tuple[str, ...] = ("attn_q_a", "attn_q_b", "nextn.eh_proj")
_GLM5_NEXT_PARTS: tuple[str, ...] = (
    "hc_",
    "indexer.attn_q_b",
    "indexer.attn_k",
    "indexer.proj",
    "indexer_compressor_gate",
    "indexer_compressor_ape",
    "ssm_f_a.weight",
    "ssm_f_b.weight",
    "ssm_g_a.weight",
    "ssm_g_b.weight",
    "ssm_beta.weight",
    "attn_kv_a_mqa.weight",
    "attn_k_b.weight",
    "attn_v_b.weight",
)


def _category(name: str) -> int:
    """tensor_get_category: the first matching substring wins, in the source's order."""
    if name == "output.weight":
        return _C_OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return _C_TOKEN_EMBD
    if "attn_qkv.weight" in name:
        return _C_ATTN_QKV
    if "attn_kv_b.weight" in name:
        return _C_ATTN_KV_B
    if "attn_v.weight" in name:
        return _C_ATTN_V
    if "attn_k.weight" in name:
        return _C_ATTN_K
    if "attn_q.weight" in name:
        return _C_ATTN_Q
    if "attn_output.weight" in name:
        return _C_ATTN_OUTPUT
    if "ffn_up" in name:
        return _C_FFN_UP
    if "ffn_gate" in name:
        return _C_FFN_GATE
    if "ffn_down" in name:
        return _C_FFN_DOWN
    return _C_OTHER


def _allows_quantization(name: str, n_dims: int, arch: str) -> bool:
    """tensor_allows_quantization with default params (output quantized, not pure, not copy-only)."""
    if n_dims < 2 or not name.endswith("weight"):
        return False
    if name in _NEVER_QUANTIZED_NAMES or any(part in name for part in _NEVER_QUANTIZED_PARTS):
        return False
    return not (arch == "glm5-next" and any(part in name for part in _GLM5_NEXT_PARTS))


def _block_layer(name: str) -> int | None:
    """sscanf(name, "blk.%d.") — the layer number, or None."""
    if not name.startswith("blk."):
        return None
    end = name.find(".", 4)
    digits = name[4:end] if end > 4 else ""
    if not digits:
        return None
    sign = -1 if digits[0] == "-" else 1
    body = digits[1:] if digits[0] in "+-" else digits
    return sign * int(body) if body.isdigit() else None


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _n_dims(shape: tuple[int, ...]) -> int:
    """ggml_n_dims: trailing dimensions of size 1 do not count."""
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return max(n, 1)


@dataclass(frozen=True)
class _ModelFacts:
    """What the rules ask of the model (hparams of quantize_state_impl)."""

    arch: str
    n_expert: int
    n_gqa: int
    is_70b: bool
    tied: bool  # no output.weight: token_embd is quantized like the output


@dataclass(frozen=True)
class _Sig:
    """Everything one tensor's type depends on besides the file type; equal signatures, equal types."""

    category: int
    source_type: int
    ne0: int
    ne2_gt1: bool
    allowed: bool
    # attn_v-like: i_attention_wv < 2, < 4, use_more_bits(i_attention_wv, n_attention_wv)
    wv: tuple[bool, bool, bool] = (False, False, False)
    # ffn_down/gate/up: (raw counter < n/8) then on the layer llama.cpp uses (parsed name for MoE):
    # < n/16, < n/8, use_more_bits, n/8 <= i < 7n/8
    ffn: tuple[bool, bool, bool, bool, bool] = (False, False, False, False, False)
    q8_floor: bool = False  # glm5-next: attn_q_a / attn_q_b / nextn.eh_proj never below Q8_0


@dataclass
class _SpecPlan:
    """A model's tensors grouped by signature, computed once per spec."""

    facts: _ModelFacts
    sigs: tuple[_Sig, ...]  # distinct signatures
    sig_of: tuple[int, ...]  # per tensor (spec order): index into sigs
    members: tuple[tuple[int, ...], ...]  # per signature: its tensors (spec indexes), ascending
    # Puts the tensors of all signatures, concatenated in signature order, back in spec order.
    restore: Callable[[Sequence[TensorInfo]], tuple[TensorInfo, ...]]
    by_ftype: dict[tuple[str, bool | None], ModelSpec]
    # (signature, type) -> that signature's tensors with that type, made once and shared by mixes
    group_cache: dict[tuple[int, int], list[TensorInfo]]


def _is_70b(spec: ModelSpec) -> bool:
    layers = _TYPE_70B_LAYERS.get(spec.architecture)
    if layers is None or spec.n_layer != layers:
        return False
    if spec.architecture == "llama":
        if spec.n_expert == 8:
            return False
        return bool(spec.n_head) and bool(spec.n_head_kv) and spec.n_head[0] != spec.n_head_kv[0]
    return True


def _model_facts(spec: ModelSpec) -> _ModelFacts:
    n_head = spec.n_head[0] if spec.n_head else 0
    n_head_kv = spec.n_head_kv[0] if spec.n_head_kv else 0
    return _ModelFacts(
        arch=spec.architecture,
        n_expert=spec.n_expert,
        n_gqa=n_head // n_head_kv if n_head_kv else 0,
        is_70b=_is_70b(spec),
        tied=not any(t.name == "output.weight" for t in spec.tensors),
    )


def _sort_key(name: str) -> tuple[int, str]:
    # llama_model_loader::weight_name_comparer: layer number first (-1 for non-layer tensors), then name.
    layer = _block_layer(name)
    return (-1 if layer is None else layer, name)


def _build_plan(spec: ModelSpec) -> _SpecPlan:
    facts = _model_facts(spec)
    n_layer_all = spec.n_layer
    n_expert_eff = max(1, facts.n_expert)
    order = sorted(range(len(spec.tensors)), key=lambda i: _sort_key(spec.tensors[i].name))
    categories = [_category(t.name) for t in spec.tensors]
    allowed = [_allows_quantization(t.name, _n_dims(t.shape), facts.arch) for t in spec.tensors]
    n_attention_wv = sum(1 for c in categories if c in _ATTN_V_LIKE)

    # Counters in the quantizer's visiting order. They only advance for tensors that reach the rules,
    # i.e. those that may be quantized (the output/token_embd branches never touch them).
    counter: dict[int, int] = {_C_ATTN_V: 0, _C_FFN_DOWN: 0, _C_FFN_GATE: 0, _C_FFN_UP: 0}
    wv_facts: dict[int, tuple[bool, bool, bool]] = {}
    ffn_facts: dict[int, tuple[bool, bool, bool, bool, bool]] = {}
    for i in order:
        cat = categories[i]
        if not allowed[i]:
            continue
        if cat in _ATTN_V_LIKE:
            c = counter[_C_ATTN_V]
            wv_facts[i] = (c < 2, c < 4, _use_more_bits(c, n_attention_wv))
            counter[_C_ATTN_V] = c + 1
        elif cat in (_C_FFN_DOWN, _C_FFN_GATE, _C_FFN_UP):
            c = counter[cat]
            name = spec.tensors[i].name
            if n_expert_eff > 1:
                parsed = _block_layer(name)
                if parsed is None:
                    raise RigfitError(f"cannot tell the layer of expert tensor '{name}'")
                if parsed < 0 or parsed >= n_layer_all:
                    raise RigfitError(
                        f"tensor '{name}' names layer {parsed}, but the model has {n_layer_all}"
                    )
                li = parsed
            else:
                li = c
            n = n_layer_all
            ffn_facts[i] = (
                c < n // 8,
                li < n // 16,
                li < n // 8,
                _use_more_bits(li, n),
                n // 8 <= li < 7 * n // 8,
            )
            counter[cat] = c + 1

    sig_index: dict[_Sig, int] = {}
    sigs: list[_Sig] = []
    sig_of: list[int] = []
    for i, t in enumerate(spec.tensors):
        sig = _Sig(
            category=categories[i],
            source_type=t.ggml_type,
            ne0=t.shape[0] if t.shape else 1,
            ne2_gt1=len(t.shape) > 2 and t.shape[2] > 1,
            allowed=allowed[i],
            wv=wv_facts.get(i, (False, False, False)),
            ffn=ffn_facts.get(i, (False, False, False, False, False)),
            q8_floor=facts.arch == "glm5-next" and any(p in t.name for p in _GLM5_NEXT_Q8_PARTS),
        )
        k = sig_index.get(sig)
        if k is None:
            k = sig_index[sig] = len(sigs)
            sigs.append(sig)
        sig_of.append(k)
    members: list[list[int]] = [[] for _ in sigs]
    for i, k in enumerate(sig_of):
        members[k].append(i)
    position = [0] * len(sig_of)
    for pos, i in enumerate(i for group in members for i in group):
        position[i] = pos
    restore = _restorer(position)
    return _SpecPlan(facts, tuple(sigs), tuple(sig_of), tuple(map(tuple, members)), restore, {}, {})


def _restorer(position: list[int]) -> Callable[[Sequence[TensorInfo]], tuple[TensorInfo, ...]]:
    # operator.itemgetter does the per-tensor reordering in C; the quantizer's decisions are made per
    # signature (a few dozen per model), so building a mix costs almost nothing per tensor.
    if len(position) == 1:
        only = position[0]
        return lambda seq: (seq[only],)
    if not position:
        return lambda seq: ()
    getter = itemgetter(*position)
    return lambda seq: getter(seq)


def _fallback(ne0: int, target: int) -> int:
    """tensor_type_fallback: a type whose block size divides the row length."""
    bs = block_size(target)
    if ne0 % bs == 0:
        return target
    if target in (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_XS):
        out = IQ4_NL
    elif target in (Q2_0, Q2_K, Q3_K, TQ1_0, TQ2_0):
        out = Q4_0
    elif target == Q4_K:
        out = Q5_0
    elif target == Q5_K:
        out = Q5_1
    elif target == Q6_K:
        out = Q8_0
    elif bs <= 32:
        out = target
    else:
        raise RigfitError(
            f"llama.cpp has no fallback for {type_name(target)} on rows of {ne0} values, so it cannot quantize this model"
        )
    if ne0 % block_size(out) != 0:
        out = F16
    return out


_IQ2_GROUP = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"})
_IQ3_5_GROUP = frozenset(
    {
        "Q2_K",
        "IQ3_XS",
        "IQ3_XXS",
        "Q3_K_S",
        "Q3_K_M",
        "IQ4_NL",
        "Q4_K_S",
        "Q4_K_M",
        "IQ3_S",
        "IQ3_M",
        "IQ4_XS",
    }
)


def _rule_type(sig: _Sig, new_type: int, ft: str, m: _ModelFacts, has_imatrix: bool) -> int:
    """llama_tensor_get_type_impl for one tensor signature (default params: no overrides)."""
    cat = sig.category
    if sig.q8_floor:
        # Only block types reach these rules, so the source's "unless F32/F16/BF16" never applies.
        return Q8_0
    if cat == _C_OUTPUT or (m.tied and cat == _C_TOKEN_EMBD):
        if ft == "MXFP4_MOE":
            return Q8_0
        if m.arch == "falcon" or sig.ne0 % block_size(new_type) != 0:
            return Q8_0
        if ft in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
            return Q5_K
        if new_type != Q8_0:
            return Q6_K
        return new_type
    if ft == "MXFP4_MOE":
        # Experts (3-D) get MXFP4; bailingmoe3's 3-D MLA projections are not experts.
        expert = m.arch != "bailingmoe3" or cat in (_C_FFN_UP, _C_FFN_GATE, _C_FFN_DOWN)
        return MXFP4 if sig.ne2_gt1 and expert else Q8_0
    if cat == _C_TOKEN_EMBD:
        if ft in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return Q2_K
        if ft in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return IQ3_S
        if ft in ("TQ1_0", "TQ2_0", "Q2_0"):
            return Q4_K
        return new_type
    wv_lt2, wv_lt4, wv_more = sig.wv
    cnt_lt8, li_lt16, li_lt8, li_more, li_mid = sig.ffn
    if ft in _IQ2_GROUP:
        if cat in _ATTN_V_LIKE:
            if m.n_gqa >= 4 or m.n_expert >= 4:
                return Q4_K
            return IQ3_S if ft in ("IQ2_S", "IQ2_M") else Q2_K
        if m.n_expert == 8 and cat == _C_ATTN_K:
            return Q4_K
        if cat == _C_FFN_DOWN:
            if cnt_lt8:
                return IQ3_S if ft in ("IQ2_S", "IQ2_M") else Q2_K
            return new_type
        if cat == _C_ATTN_OUTPUT:
            if m.n_expert == 8:
                return Q5_K
            if ft in ("IQ1_S", "IQ1_M"):
                return IQ2_XXS
            if ft in ("IQ2_S", "IQ2_M"):
                return IQ3_S
        return new_type
    if cat in _ATTN_V_LIKE:
        if ft == "Q2_K":
            new_type = Q4_K if m.n_gqa >= 4 else Q3_K
        elif ft == "Q2_K_S" and m.n_gqa >= 4:
            new_type = Q4_K
        elif ft == "IQ3_XXS":
            new_type = Q4_K if m.n_gqa >= 4 else (IQ3_XXS if has_imatrix else IQ3_S)
        elif ft in ("IQ3_XS", "IQ3_S") and m.n_gqa >= 4:  # noqa: SIM114 (mirrors the source's chain)
            new_type = Q4_K
        elif ft == "IQ3_M":
            new_type = Q4_K
        elif ft == "Q3_K_M":
            new_type = Q5_K if wv_lt2 else Q4_K
        elif ft == "Q3_K_L":  # noqa: SIM114 (mirrors the source's chain)
            new_type = Q5_K
        elif ft in ("IQ4_NL", "IQ4_XS") and m.n_gqa >= 4:
            new_type = Q5_K
        elif ft in ("Q4_K_M", "Q5_K_M") and wv_more:
            new_type = Q6_K
        elif ft == "Q4_K_S" and wv_lt4:
            new_type = Q5_K
        if m.is_70b and new_type in (Q3_K, Q4_K):
            new_type = Q5_K
        if m.n_expert == 8:
            new_type = Q8_0
        return new_type
    if cat == _C_ATTN_K:
        if m.n_expert == 8:
            return Q8_0
        if ft == "IQ3_XS":
            return IQ3_XXS
        if ft == "IQ3_XXS":
            return IQ2_S
        return new_type
    if cat == _C_ATTN_Q:
        if ft == "IQ3_XS":
            return IQ3_XXS
        if ft == "IQ3_XXS":
            return IQ2_S
        return new_type
    if cat == _C_FFN_DOWN:
        falcon = m.arch == "falcon"
        if ft == "Q2_K":
            return Q3_K
        if ft == "Q2_K_S":
            return Q4_K if li_lt8 else new_type
        if ft == "IQ3_XXS" and not has_imatrix:
            return Q4_K if li_lt8 else Q3_K
        if ft == "Q3_K_M":
            if li_lt16:
                return Q5_K
            return Q4_K if (not falcon or li_more) else Q3_K
        if ft == "IQ3_M" and (li_lt8 or (m.n_expert == 8 and li_more)):
            return Q4_K
        if ft == "Q3_K_L":
            return Q4_K if falcon else Q5_K
        if ft == "Q4_K_M":
            if falcon:
                return Q6_K if li_lt16 else (Q5_K if li_more else Q4_K)
            return Q6_K if li_more else new_type
        if li_lt8 and ft in ("IQ4_NL", "IQ4_XS") and not has_imatrix:
            return Q5_K
        if ft == "Q5_K_M" and li_more:
            return Q6_K
        if ft == "Q4_K_S" and not falcon and li_lt8:
            return Q5_K
        if ft in ("Q4_0", "Q5_0") and has_imatrix and li_lt8:
            return Q4_1 if ft == "Q4_0" else Q5_1
        return new_type
    if cat == _C_ATTN_OUTPUT:
        if m.arch != "falcon":
            if m.n_expert == 8:
                if ft in _IQ3_5_GROUP:
                    return Q5_K
                return new_type
            return {"Q2_K": Q3_K, "IQ3_XXS": IQ3_S, "Q3_K_M": Q4_K, "Q3_K_L": Q5_K, "IQ3_M": Q4_K}.get(
                ft, new_type
            )
        return Q4_K if ft == "Q3_K_L" else new_type
    if cat == _C_ATTN_QKV:
        # Unreachable in llama.cpp too (attn_qkv is attn_v-like above); kept for symmetry with the source.
        return new_type  # pragma: no cover
    if cat in (_C_FFN_GATE, _C_FFN_UP):
        if ft == "IQ3_XS" and li_mid:
            return IQ3_XXS
        return new_type
    return new_type


def _tensor_type(sig: _Sig, ft: FileType, m: _ModelFacts, has_imatrix: bool) -> int:
    """llama_tensor_get_type with default params."""
    if not sig.allowed:
        return sig.source_type
    new_type = ft.default_type
    if is_quantized(new_type):
        new_type = _rule_type(sig, new_type, ft.name, m, has_imatrix)
        new_type = _fallback(sig.ne0, new_type)
    return new_type


def _requires_imatrix(sig: _Sig, result: int, ft_name: str) -> bool:
    """tensor_requires_imatrix for a tensor that gets quantized."""
    if sig.category in (_C_TOKEN_EMBD, _C_OUTPUT) or not sig.allowed:
        return False
    if result in (IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_M, IQ1_S):
        return True
    return result == Q2_K and ft_name == "Q2_K_S"


_plans: dict[int, tuple[weakref.ref[ModelSpec], _SpecPlan]] = {}
_plans_lock = threading.Lock()


def _plan_for(spec: ModelSpec) -> _SpecPlan:
    # Keyed by object identity (hashing a spec hashes every tensor); the weak reference guards
    # against a recycled id and drops the entry when the spec goes away.
    key = id(spec)
    entry = _plans.get(key)
    if entry is not None and entry[0]() is spec:
        return entry[1]
    plan = _build_plan(spec)

    def _drop(_ref: weakref.ref[ModelSpec], key: int = key) -> None:
        with _plans_lock:
            current = _plans.get(key)
            if current is not None and current[0] is _ref:
                del _plans[key]

    with _plans_lock:
        _plans[key] = (weakref.ref(spec, _drop), plan)
    return plan


def file_type_requires_imatrix(spec: ModelSpec, ftype: str) -> bool:
    """True when llama-quantize refuses to make this file type of this model without an imatrix."""
    ft = file_type(ftype)
    plan = _plan_for(spec)
    return any(_requires_imatrix(s, _tensor_type(s, ft, plan.facts, False), ft.name) for s in plan.sigs)


def tensor_types(spec: ModelSpec, ftype: str, *, imatrix: bool | None = None) -> tuple[int, ...]:
    """The type llama.cpp's quantizer gives each tensor of ``spec`` (same order) for file type ``ftype``.

    ``imatrix``: whether an importance matrix is used; ``None`` decides as llama-quantize forces it:
    with one exactly when the mix contains types that cannot be made without one (IQ1/IQ2, IQ3_XXS,
    Q2_K_S). It changes a few choices (IQ3_XXS, IQ4_NL/XS, Q4_0/Q5_0 ``ffn_down``).
    """
    ft = file_type(ftype)
    plan = _plan_for(spec)
    return _types_for_plan(plan, ft, imatrix)


def _sig_types(plan: _SpecPlan, ft: FileType, imatrix: bool | None) -> list[int]:
    if imatrix is None:
        by_sig = [_tensor_type(s, ft, plan.facts, False) for s in plan.sigs]
        if any(_requires_imatrix(s, t, ft.name) for s, t in zip(plan.sigs, by_sig, strict=True)):
            by_sig = [_tensor_type(s, ft, plan.facts, True) for s in plan.sigs]
        return by_sig
    return [_tensor_type(s, ft, plan.facts, imatrix) for s in plan.sigs]


def _types_for_plan(plan: _SpecPlan, ft: FileType, imatrix: bool | None) -> tuple[int, ...]:
    by_sig = _sig_types(plan, ft, imatrix)
    return tuple(by_sig[k] for k in plan.sig_of)


def apply_file_type(spec: ModelSpec, ftype: str, *, imatrix: bool | None = None) -> ModelSpec:
    """A copy of ``spec`` whose tensors carry the types llama.cpp's quantizer gives them for ``ftype``.

    Tensors llama.cpp never quantizes (1-D tensors, norms, biases, expert routers) keep their current
    type. The result is cached per spec object and file type, so calling it for every catalog model and
    every quant again costs a dictionary lookup. Raises :class:`UnknownName` (with suggestions) for an
    unknown file type and :class:`RigfitError` where llama.cpp itself would refuse.
    See :func:`tensor_types` for ``imatrix``.
    """
    ft = file_type(ftype)
    plan = _plan_for(spec)
    key = (ft.name, imatrix)
    done = plan.by_ftype.get(key)
    if done is not None:
        return done
    by_sig = _sig_types(plan, ft, imatrix)
    cache = plan.group_cache
    tensors = spec.tensors
    concat: list[TensorInfo] = []
    for k, new in enumerate(by_sig):
        group = cache.get((k, new))
        if group is None:
            group = []
            for i in plan.members[k]:
                t = tensors[i]
                group.append(
                    t if t.ggml_type == new else TensorInfo(t.name, t.shape, new, t.offset, t.file_index)
                )
            cache[(k, new)] = group
        concat.extend(group)
    out = plan.restore(concat)
    result = replace(spec, tensors=out, file_type=ft.name)
    plan.by_ftype[key] = result
    return result
