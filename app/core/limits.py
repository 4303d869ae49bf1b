"""The numbers Rigfit accepts: model dimensions from files, and the load settings a user types.

Everything after the GGUF reader trusts numbers, so they are checked once, where they enter:

* :func:`check_spec` validates a :class:`ModelSpec` where it is made (GGUF, config.json, catalog):
  every dimension a whole, finite number within the range any real model has, and the shapes
  consistent with each other. A file outside these ranges is not a model Rigfit can plan; the error
  names the file, the key and the range. Planning work is bounded by these limits whatever a file
  says (the fit table's per-model work grows with the square of the layer count).
* :data:`SETTING_RANGES` are the ranges of the load settings (context, threads, batch, GPU layers,
  split ratios, ...) that the CLI and the window both read, so a value that would wrap in
  llama.cpp's C integers (``--ctx 4294971392`` becoming 4096) is refused before it gets there.

The upper bounds are a few times the largest published model's value, named next to each bound, so
that tomorrow's larger model still passes while a corrupt or hostile file cannot make the planner
allocate terabytes or loop for minutes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from app.core.errors import BadModelFile, RigfitError

if TYPE_CHECKING:
    from app.core.model_spec import ModelSpec
    from app.core.settings import Settings

_ATTN_RE = re.compile(r"^blk\.\d+\.attn_(q|k|v|qkv|output)\.")

# --- model dimensions (largest real value, model) ---------------------------------------------------
# Repeating layers: Llama 3.1 405B has 126, Nemotron-4 340B 96, DeepSeek V3 61 (+1 MTP layer); the
# largest community self-merges (Goliath 120B: 137, BigLlama-3.1-1T: ~250) stay far below 1024.
MAX_LAYERS = 1024
# Hidden size: Nemotron-4 340B 18432, Llama 3.1 405B 16384.
MAX_EMBD = 65536
# Vocabulary: Gemma 3 262208, BLOOM 250880.
MAX_VOCAB = 1 << 20
# Attention heads per layer: Llama 3.1 405B and DeepSeek V3 128.
MAX_HEADS = 1024
# Head size (key_length / value_length): DeepSeek V3's MLA cache row 576, Gemma 256.
MAX_HEAD_DIM = 4096
# Widest K/V or Q row (heads x head size): DeepSeek V2 without MLA 128 x 192 = 24576.
MAX_ATTN_WIDTH = 1 << 18
# Feed-forward width: Nemotron-4 340B 73728, Falcon 180B 59392.
MAX_FF = 1 << 18
# Experts: Qwen3-Next 512, Kimi K2 384, DeepSeek V3 256.
MAX_EXPERTS = 4096
# Shared experts: DeepSeek V2 2, Qwen MoE 1.
MAX_SHARED_EXPERTS = 64
# MLA ranks: DeepSeek V3 q_lora_rank 1536, kv_lora_rank 512, rope part 64.
MAX_LORA_RANK = 65536
# Context in tokens: Llama 4 Scout trains 10,485,760. Also the most any setting may ask for.
MAX_CTX = 1 << 24
# Parameters: Kimi K2 1.04e12, Switch-C 1.6e12; 2**44 is 17.6e12.
MAX_PARAMS = 1 << 44
# A rig holds at most this many GPUs (rig files, split ratios).
MAX_GPUS = 64


@dataclass(frozen=True)
class Bound:
    """An inclusive whole-number range for one model dimension, with the words for its error."""

    lo: int
    hi: int
    what: str


def _bad(origin: str, message: str) -> BadModelFile:
    return BadModelFile(f"{origin}: {message}")


def whole_number(value: object, key: str, bound: Bound, origin: str) -> int:
    """``value`` as an int when it is a finite whole number within ``bound``; BadModelFile otherwise.

    Floats that hold whole numbers (``32.0``) pass, as llama.cpp's loader converts them too; NaN,
    infinities, fractions, booleans and text do not.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(origin, f"'{key}' should be a whole number, not {_show(value)}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise _bad(origin, f"'{key}' should be a whole number, not {_show(value)}")
    n = int(value)
    if not bound.lo <= n <= bound.hi:
        raise _bad(
            origin,
            f"'{key}' is {n}, outside the {bound.lo} to {bound.hi} {bound.what} any real model has "
            "(a corrupt or hostile file?)",
        )
    return n


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- the spec validator ------------------------------------------------------------------------------


def _check(value: int, bound: Bound, field: str, origin: str) -> None:
    if not bound.lo <= value <= bound.hi:
        raise _bad(
            origin,
            f"{field} is {value}, outside the {bound.lo} to {bound.hi} {bound.what} any real model has "
            "(a corrupt or hostile file?)",
        )


LAYERS = Bound(1, MAX_LAYERS, "layers")
LAYERS_OR_NONE = Bound(0, MAX_LAYERS, "layers")
EMBD = Bound(1, MAX_EMBD, "hidden size")
VOCAB = Bound(0, MAX_VOCAB, "tokens")
HEADS = Bound(0, MAX_HEADS, "heads")
HEAD_DIM = Bound(0, MAX_HEAD_DIM, "values per head")
FF = Bound(0, MAX_FF, "feed-forward width")
EXPERTS = Bound(0, MAX_EXPERTS, "experts")
SHARED_EXPERTS = Bound(0, MAX_SHARED_EXPERTS, "shared experts")
LORA_RANK = Bound(0, MAX_LORA_RANK, "rank")
CTX = Bound(0, MAX_CTX, "tokens")
# Metadata that only informs (the trained context, the sliding window) is read with these wider
# ranges, then capped at MAX_CTX: a window or trained context beyond any context is "unlimited".
ANY_COUNT = Bound(0, (1 << 64) - 1, "values")


def check_spec(spec: ModelSpec, origin: str | None = None) -> ModelSpec:
    """The spec, checked: every dimension in range, per-layer lists as long as the layer count,
    expert and layer counts consistent, tensors within the layers and the parameter count bounded.

    Returns the spec with informational values capped (a trained context or sliding window beyond
    :data:`MAX_CTX` becomes :data:`MAX_CTX`). Raises :class:`BadModelFile` naming ``origin`` (default:
    the spec's file or id) and the value.
    """
    where = origin or (spec.paths[0] if spec.paths else f"model '{spec.id}'")
    _check(spec.n_layer, LAYERS, "the layer count", where)
    n_layer = spec.n_layer
    _check(spec.n_embd, EMBD, "the hidden size", where)
    _check(spec.n_vocab, VOCAB, "the vocabulary", where)
    for plural, singular, values, bound in (
        ("head counts", "a head count", spec.n_head, HEADS),
        ("KV head counts", "a KV head count", spec.n_head_kv, HEADS),
        ("feed-forward widths", "a feed-forward width", spec.n_ff, FF),
    ):
        # One value per layer; memory.profile also takes a single value for all (and no FFN widths).
        if len(values) not in (n_layer, 1) and not (bound is FF and not values):
            raise _bad(where, f"the model lists {len(values)} {plural} for {n_layer} layers")
        for v in values:
            _check(v, bound, singular, where)
    for il, (h, kv) in enumerate(zip(spec.n_head, spec.n_head_kv, strict=False)):
        if h > 0 and kv > h:
            raise _bad(where, f"layer {il} has {kv} KV heads for {h} attention heads (at most as many)")
    if spec.swa_layers and len(spec.swa_layers) != n_layer:
        raise _bad(where, f"the sliding-window pattern lists {len(spec.swa_layers)} layers of {n_layer}")
    _check(spec.head_dim_k, HEAD_DIM, "the key head size", where)
    _check(spec.head_dim_v, HEAD_DIM, "the value head size", where)
    _check(spec.head_dim_k_mla, HEAD_DIM, "the MLA key head size", where)
    _check(spec.head_dim_v_mla, HEAD_DIM, "the MLA value head size", where)
    widest_heads = max((*spec.n_head, *spec.n_head_kv, 0))
    if widest_heads > 0 and (spec.head_dim_k < 1 or spec.head_dim_v < 1):
        raise _bad(
            where,
            f"the model has attention heads but a head size of {spec.head_dim_k} (key) / "
            f"{spec.head_dim_v} (value): every head needs at least one value",
        )
    width = widest_heads * max(spec.head_dim_k, spec.head_dim_v, spec.head_dim_k_mla, spec.head_dim_v_mla)
    if width > MAX_ATTN_WIDTH:
        raise _bad(
            where,
            f"attention rows of {width} values (heads x head size) are beyond any real model "
            f"(at most {MAX_ATTN_WIDTH})",
        )
    _check(spec.n_expert, EXPERTS, "the expert count", where)
    _check(spec.n_expert_used, EXPERTS, "the experts used per token", where)
    if spec.n_expert_used > max(spec.n_expert, 0) and spec.n_expert > 0:
        raise _bad(where, f"{spec.n_expert_used} experts used per token, but the model has {spec.n_expert}")
    _check(spec.n_expert_shared, SHARED_EXPERTS, "the shared expert count", where)
    _check(spec.n_ff_expert, FF, "the expert feed-forward width", where)
    _check(spec.n_ff_shared_expert, Bound(0, MAX_FF * MAX_SHARED_EXPERTS, "width"), "the shared FFN", where)
    _check(spec.n_layer_dense_lead, Bound(0, n_layer, "layers"), "the leading dense layers", where)
    _check(spec.n_layer_nextn, Bound(0, n_layer - 1, "layers"), "the prediction (MTP) layers", where)
    for label, value in (
        ("the KV LoRA rank", spec.kv_lora_rank),
        ("the Q LoRA rank", spec.q_lora_rank),
        ("the rope head size", spec.qk_rope_head_dim),
    ):
        _check(value, LORA_RANK, label, where)
    if spec.n_ctx_train < 0 or spec.sliding_window < 0:
        raise _bad(where, "the trained context and the sliding window must not be negative")
    n_params = 0
    for t in spec.tensors:
        layer = t.layer
        if layer is not None and layer < n_layer and _ATTN_RE.match(t.name):
            heads = spec.n_head[layer] if len(spec.n_head) == n_layer else spec.n_head[0]
            if heads <= 0 or spec.head_dim_k < 1 or spec.head_dim_v < 1:
                raise _bad(
                    where,
                    f"layer {layer} has attention weights ('{_clip(t.name)}') but {heads} attention heads "
                    f"of {spec.head_dim_k} values: the file's head counts are missing or wrong",
                )
        if layer is not None and layer >= n_layer:
            raise _bad(where, f"tensor '{_clip(t.name)}' names layer {layer}, but the model has {n_layer}")
        n = 1
        for d in t.shape:
            if d <= 0:
                # ggml's format allows an empty tensor; no model weight is one, and the planner divides
                # by these dimensions.
                raise _bad(
                    where, f"tensor '{_clip(t.name)}' has an empty or negative dimension {list(t.shape)}"
                )
            n *= d
        n_params += n
        if n_params > MAX_PARAMS:
            raise _bad(
                where, f"the tensors hold more than {MAX_PARAMS:.3g} parameters, more than any real model"
            )
    capped = {}
    if spec.n_ctx_train > MAX_CTX:
        capped["n_ctx_train"] = MAX_CTX
    if spec.sliding_window > MAX_CTX:
        capped["sliding_window"] = MAX_CTX
    return replace(spec, **capped) if capped else spec  # type: ignore[arg-type]


# --- load settings: one range per knob, read by the CLI and the window --------------------------------


@dataclass(frozen=True)
class Range:
    """The accepted values of one setting, inclusive, and how to name it to the user."""

    name: str  # the user's words: "the context"
    lo: float
    hi: float
    unit: str = ""
    why: str = ""  # where the upper bound comes from

    def check(self, value: float) -> None:
        """Raise :class:`RigfitError` unless ``value`` is a finite number within the range."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RigfitError(f"{self.name} must be a number, not {_show(value)}")
        if not math.isfinite(value) or not self.lo <= value <= self.hi:
            raise RigfitError(f"{self.name} must be {self.describe()}, not {_fmt(value)}")

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"from {_fmt(self.lo)} to {_fmt(self.hi)}{unit}"

    def parse_int(self, text: str) -> int:
        """A whole number from ``text`` (as typed on a command line), checked; RigfitError otherwise."""
        try:
            value = int(text.strip().replace("_", ""), 10)
        except (ValueError, AttributeError):
            raise RigfitError(f"{self.name} must be a whole number, not '{_clip(text)}'") from None
        self.check(value)
        return value

    def parse_float(self, text: str) -> float:
        """A number from ``text``, checked; RigfitError for text, NaN, infinity or out of range."""
        try:
            value = float(text.strip())
        except (ValueError, AttributeError):
            raise RigfitError(f"{self.name} must be a number, not '{_clip(text)}'") from None
        self.check(value)
        return value


def _fmt(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, int) and abs(value) >= 10000:
        return f"{value:,}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _clip(text: object, n: int = 40) -> str:
    s = str(text)
    return s if len(s) <= n else s[: n - 3] + "..."


INT32_MAX = (1 << 31) - 1
UINT32_MAX = (1 << 32) - 1
# ggml's GGML_MAX_N_THREADS (ggml.h).
MAX_THREADS = 512
# A logical or micro batch larger than this holds more tokens than any context worth running; llama.cpp
# caps a batch at the context anyway.
MAX_BATCH = 1 << 20
# A split ratio is relative (GiB, percent or a share): 1e9 holds any of them; larger ones add up to
# infinity in 32-bit floats (llama.cpp's tensor_split is float[]).
MAX_SPLIT_RATIO = 1e9
# ... and a ratio above zero below this becomes zero in a 32-bit float (llama.cpp's type), where a
# split of only such ratios divides zero by zero.
MIN_SPLIT_RATIO = 1e-30
# One chat turn's text: far beyond any context (a token is at least one byte of text).
MAX_PROMPT_CHARS = 64 * MAX_CTX

CTX_RANGE = Range("the context", 1, MAX_CTX, "tokens", "Llama 4 Scout's 10M-token context fits")
BATCH_RANGE = Range("the batch size", 1, MAX_BATCH, "tokens")
UBATCH_RANGE = Range("the micro-batch size", 1, MAX_BATCH, "tokens")
THREADS_RANGE = Range("the number of threads", 1, MAX_THREADS, "", "GGML_MAX_N_THREADS")
# Any count above the model's layers means "all": llama.cpp reads it as a C int.
NGL_RANGE = Range("the number of GPU layers", -1, INT32_MAX, "(-1: all)")
MAIN_GPU_RANGE = Range("the main GPU", 0, MAX_GPUS - 1)
SPLIT_RATIO_RANGE = Range("a split ratio", 0, MAX_SPLIT_RATIO)
MAX_TOKENS_RANGE = Range("the number of tokens to generate", 1, MAX_CTX, "tokens")
SEED_RANGE = Range("the seed", 0, UINT32_MAX, "", "llama.cpp's seed is a 32-bit unsigned number")
TEMPERATURE_RANGE = Range("the temperature", 0, 100)
TOP_P_RANGE = Range("top-p", 0, 1)
PP_RANGE = Range("--pp", 0, MAX_CTX, "tokens")
TG_RANGE = Range("--tg", 0, MAX_CTX, "tokens")
REPEAT_RANGE = Range("--repeat", 1, 1000, "runs")
COUNT_RANGE = Range("--count", 1, INT32_MAX, "samples")
# Network ports (a TCP port is 16 bits); 0 lets the system choose, where a command allows it.
PORT_RANGE = Range("the port", 1, 65535)
LISTEN_PORT_RANGE = Range("the port", 0, 65535, "(0: any free one)")
# Requests waiting behind the running one in ``rigfit serve``: each holds a connection and a prompt.
QUEUE_RANGE = Range("the queue", 0, 4096, "requests")

SETTING_RANGES: dict[str, Range] = {
    "ctx": CTX_RANGE,
    "n_batch": BATCH_RANGE,
    "n_ubatch": UBATCH_RANGE,
    "n_threads": THREADS_RANGE,
    "n_gpu_layers": NGL_RANGE,
    "main_gpu": MAIN_GPU_RANGE,
    "split_ratio": SPLIT_RATIO_RANGE,
    "max_tokens": MAX_TOKENS_RANGE,
    "seed": SEED_RANGE,
    "temperature": TEMPERATURE_RANGE,
    "top_p": TOP_P_RANGE,
    "pp": PP_RANGE,
    "tg": TG_RANGE,
    "repeat": REPEAT_RANGE,
    "count": COUNT_RANGE,
}


def check_split(ratios: Sequence[float], what: str = "the split") -> tuple[float, ...]:
    """One ratio per GPU: finite, 0 to :data:`MAX_SPLIT_RATIO`, at least one above zero, at most
    :data:`MAX_GPUS` of them. Returns them as floats."""
    if not ratios:
        raise RigfitError(f"{what} needs at least one ratio")
    if len(ratios) > MAX_GPUS:
        raise RigfitError(f"{what} has {len(ratios)} ratios; a rig holds at most {MAX_GPUS} GPUs")
    out = []
    for r in ratios:
        if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r):
            raise RigfitError(f"{what}: ratios must be numbers, not {_show(r)}")
        if r < 0:
            raise RigfitError(f"{what}: ratios must be zero or positive, not {_fmt(r)}")
        if 0 < r < MIN_SPLIT_RATIO:
            raise RigfitError(f"{what}: a ratio must be 0 or at least {MIN_SPLIT_RATIO:g}, not {r:g}")
        if r > MAX_SPLIT_RATIO:
            raise RigfitError(
                f"{what}: each ratio must be at most {_fmt(MAX_SPLIT_RATIO)} (ratios are relative: "
                f"3,1 and 300,100 are the same split), not {r:g}"
            )
        out.append(float(r))
    if sum(out) <= 0:
        raise RigfitError(f"{what}: at least one ratio must be above zero")
    return tuple(out)


# llama.cpp's LLAMA_MAX_SEQ (llama-cparams.h).
MAX_SEQUENCES = 256
# A per-GPU overhead beyond 1 TiB is a typo, not a GPU.
MAX_OVERHEAD_MIB = float(1 << 20)


def check_settings(settings: Settings) -> None:
    """Raise :class:`RigfitError` when a load setting is outside :data:`SETTING_RANGES`.

    The planner calls this before sizing anything, so no caller (CLI, window, a test) can plan with a
    value that would wrap in llama.cpp or make the arithmetic overflow.
    """
    s = settings
    CTX_RANGE.check(s.ctx)
    BATCH_RANGE.check(s.n_batch)
    UBATCH_RANGE.check(s.n_ubatch)
    NGL_RANGE.check(s.n_gpu_layers)
    MAIN_GPU_RANGE.check(s.main_gpu)
    Range("the number of parallel sequences", 1, MAX_SEQUENCES).check(s.n_seq_max)
    for name, value in (("ctx", s.ctx), ("n_batch", s.n_batch), ("n_ubatch", s.n_ubatch)):
        if not isinstance(value, int):
            raise RigfitError(f"{SETTING_RANGES[name].name} must be a whole number, not {_show(value)}")
    if s.overhead_mib is not None:
        Range("the per-GPU overhead", 0, MAX_OVERHEAD_MIB, "MiB").check(s.overhead_mib)
    if s.tensor_split is not None and s.tensor_split:
        check_split(s.tensor_split, "the tensor split")
