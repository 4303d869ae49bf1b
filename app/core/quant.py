"""GGUF tensor types and llama.cpp's file types (quantization mixes).

* the tensor types: block size, bytes per block and the byte size of a tensor. The block table comes
  from the ``gguf`` package (``GGML_QUANT_SIZES``, which mirrors ggml's ``type_traits``) so Rigfit keeps
  no copy that could drift; the few types newer than the installed ``gguf`` are added from ggml's
  ``ggml-common.h`` of the pinned llama.cpp.
* the file types (``Q4_K_M``, ``IQ3_XS``...) by name and GGUF id.

:mod:`app.core.quantizer` gives every tensor of a model the type llama.cpp's quantizer would give it
for a file type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from app.core.errors import UnknownName
from app.core.model_spec import ModelSpec

# ---------------------------------------------------------------------------------------------------
# Tensor types
# ---------------------------------------------------------------------------------------------------

# Types the pinned llama.cpp knows but the installed gguf package (0.19) may not: id -> (name, block
# values, block bytes). Q2_0 is ``block_q2_0`` in ggml-common.h: one fp16 scale plus 64 2-bit values.
_EXTRA_TYPES: dict[int, tuple[str, int, int]] = {42: ("Q2_0", 64, 2 + 64 // 4)}

_TYPE_NAMES: dict[int, str] = {int(t): t.name for t in GGMLQuantizationType}
_TYPE_SIZES: dict[int, tuple[int, int]] = {int(t): (bs, ts) for t, (bs, ts) in GGML_QUANT_SIZES.items()}
for _tid, (_name, _bs, _ts) in _EXTRA_TYPES.items():
    _TYPE_NAMES.setdefault(_tid, _name)
    _TYPE_SIZES.setdefault(_tid, (_bs, _ts))
_TYPE_IDS: dict[str, int] = {name: tid for tid, name in _TYPE_NAMES.items()}

F32 = 0
F16 = 1
Q4_0 = 2
Q4_1 = 3
Q5_0 = 6
Q5_1 = 7
Q8_0 = 8
Q2_K = 10
Q3_K = 11
Q4_K = 12
Q5_K = 13
Q6_K = 14
IQ2_XXS = 16
IQ2_XS = 17
IQ3_XXS = 18
IQ1_S = 19
IQ4_NL = 20
IQ3_S = 21
IQ2_S = 22
IQ4_XS = 23
IQ1_M = 29
BF16 = 30
TQ1_0 = 34
TQ2_0 = 35
MXFP4 = 39
Q1_0 = 41
Q2_0 = 42

# ggml_is_quantized: every block type except the plain float and integer types.
_NOT_QUANTIZED: frozenset[int] = frozenset({F32, F16, BF16, 24, 25, 26, 27, 28})


def type_name(ggml_type: int) -> str:
    """ggml type name (``Q4_K``) for a type id; ``type<N>`` for an id no table knows."""
    return _TYPE_NAMES.get(ggml_type, f"type{ggml_type}")


def type_id(name: str) -> int:
    """ggml type id for a name such as ``q8_0`` or ``F16`` (case-insensitive)."""
    try:
        return _TYPE_IDS[name.strip().upper()]
    except KeyError:
        raise UnknownName(f"unknown tensor type '{name}'{_suggest(name.upper(), _TYPE_IDS)}") from None


def is_known_type(ggml_type: int) -> bool:
    """True for a tensor type id that has a block table entry."""
    return ggml_type in _TYPE_SIZES


def is_quantized(ggml_type: int) -> bool:
    """ggml_is_quantized: block-quantized types (not F32/F16/BF16/F64 or the integer types)."""
    return ggml_type not in _NOT_QUANTIZED


def _sizes(ggml_type: int) -> tuple[int, int]:
    try:
        return _TYPE_SIZES[ggml_type]
    except KeyError:
        raise UnknownName(f"unknown tensor type id {ggml_type}") from None


def block_size(ggml_type: int) -> int:
    """Values per block (1 for plain float and integer types)."""
    return _sizes(ggml_type)[0]


def bytes_per_block(ggml_type: int) -> int:
    """Bytes one block takes."""
    return _sizes(ggml_type)[1]


def row_nbytes(ggml_type: int, ne0: int) -> int:
    """Bytes of one row of ``ne0`` values (ggml_row_size); ``ne0`` must be a multiple of the block size."""
    bs, ts = _sizes(ggml_type)
    if ne0 % bs:
        raise ValueError(f"row length {ne0} is not a multiple of {type_name(ggml_type)}'s block size {bs}")
    return ne0 // bs * ts


def tensor_nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of this type and ggml shape takes in a GGUF file and in a ggml buffer (unpadded)."""
    if not shape:
        return bytes_per_block(ggml_type)
    rows = 1
    for d in shape[1:]:
        rows *= d
    return row_nbytes(ggml_type, shape[0]) * rows


def spec_nbytes(spec: ModelSpec) -> int:
    """Bytes of all of a model's weight tensors, summed per tensor."""
    return sum(tensor_nbytes(t.ggml_type, t.shape) for t in spec.tensors)


# ---------------------------------------------------------------------------------------------------
# File types
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileType:
    """One of llama.cpp's file types (``LLAMA_FTYPE_*``): its name, GGUF id and default tensor type."""

    name: str
    ftype: int  # general.file_type value
    default_type: int  # llama_ftype_get_default_type
    description: str


# Ordered from the most to the fewest bits, as a user reads a quant menu. Defaults follow
# llama_ftype_get_default_type (note IQ2_S -> IQ2_XS, IQ2_M -> IQ2_S, IQ3_XS/IQ3_M -> IQ3_S).
FILE_TYPES: tuple[FileType, ...] = (
    FileType("F32", 0, F32, "all F32"),
    FileType("F16", 1, F16, "F16"),
    FileType("BF16", 32, BF16, "BF16"),
    FileType("Q8_0", 7, Q8_0, "Q8_0"),
    FileType("Q6_K", 18, Q6_K, "Q6_K"),
    FileType("Q5_K_M", 17, Q5_K, "Q5_K - Medium"),
    FileType("Q5_K_S", 16, Q5_K, "Q5_K - Small"),
    FileType("Q5_1", 9, Q5_1, "Q5_1"),
    FileType("Q5_0", 8, Q5_0, "Q5_0"),
    FileType("Q4_K_M", 15, Q4_K, "Q4_K - Medium"),
    FileType("Q4_K_S", 14, Q4_K, "Q4_K - Small"),
    FileType("Q4_1", 3, Q4_1, "Q4_1"),
    FileType("Q4_0", 2, Q4_0, "Q4_0"),
    FileType("MXFP4_MOE", 38, MXFP4, "MXFP4 MoE"),
    FileType("IQ4_NL", 25, IQ4_NL, "IQ4_NL - 4.5 bpw"),
    FileType("IQ4_XS", 30, IQ4_XS, "IQ4_XS - 4.25 bpw"),
    FileType("Q3_K_L", 13, Q3_K, "Q3_K - Large"),
    FileType("Q3_K_M", 12, Q3_K, "Q3_K - Medium"),
    FileType("IQ3_M", 27, IQ3_S, "IQ3_S mix - 3.66 bpw"),
    FileType("IQ3_S", 26, IQ3_S, "IQ3_S - 3.4375 bpw"),
    FileType("Q3_K_S", 11, Q3_K, "Q3_K - Small"),
    FileType("IQ3_XS", 22, IQ3_S, "IQ3_XS - 3.3 bpw"),
    FileType("IQ3_XXS", 23, IQ3_XXS, "IQ3_XXS - 3.0625 bpw"),
    FileType("Q2_K", 10, Q2_K, "Q2_K - Medium"),
    FileType("Q2_K_S", 21, Q2_K, "Q2_K - Small"),
    FileType("IQ2_M", 29, IQ2_S, "IQ2_M - 2.7 bpw"),
    FileType("IQ2_S", 28, IQ2_XS, "IQ2_S - 2.5 bpw"),
    FileType("IQ2_XS", 20, IQ2_XS, "IQ2_XS - 2.3125 bpw"),
    FileType("IQ2_XXS", 19, IQ2_XXS, "IQ2_XXS - 2.0625 bpw"),
    FileType("Q2_0", 41, Q2_0, "Q2_0"),
    FileType("TQ2_0", 37, TQ2_0, "TQ2_0 - 2.06 bpw ternary"),
    FileType("IQ1_M", 31, IQ1_M, "IQ1_M - 1.75 bpw"),
    FileType("TQ1_0", 36, TQ1_0, "TQ1_0 - 1.69 bpw ternary"),
    FileType("IQ1_S", 24, IQ1_S, "IQ1_S - 1.5625 bpw"),
    FileType("Q1_0", 40, Q1_0, "Q1_0"),
)

# The mixes users meet on model pages (the list plus MXFP4 for gpt-oss), same order.
COMMON_FILE_TYPES: tuple[str, ...] = (
    "F16",
    "BF16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_1",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_1",
    "Q4_0",
    "MXFP4_MOE",
    "IQ4_NL",
    "IQ4_XS",
    "Q3_K_L",
    "Q3_K_M",
    "IQ3_M",
    "IQ3_S",
    "Q3_K_S",
    "IQ3_XS",
    "IQ3_XXS",
    "Q2_K",
    "IQ2_M",
    "IQ2_S",
    "IQ2_XS",
    "IQ2_XXS",
    "IQ1_M",
    "IQ1_S",
)

_BY_NAME: dict[str, FileType] = {ft.name: ft for ft in FILE_TYPES}
_BY_ID: dict[int, FileType] = {ft.ftype: ft for ft in FILE_TYPES}
# Names people type for the same mix.
_ALIASES: dict[str, str] = {"MXFP4": "MXFP4_MOE", "ALL_F32": "F32", "FP16": "F16", "FP32": "F32"}
# File types that GGUF files may still carry but the quantizer no longer produces.
_RETIRED_FTYPES: dict[int, str] = {
    4: "Q4_1_SOME_F16",
    33: "Q4_0_4_4",
    34: "Q4_0_4_8",
    35: "Q4_0_8_8",
    39: "NVFP4",
}
_FTYPE_GUESSED = 1024


def file_type_names() -> tuple[str, ...]:
    """Every file type :func:`app.core.quantizer.apply_file_type` knows, from the most to the fewest bits."""
    return tuple(ft.name for ft in FILE_TYPES)


def file_type(name: str) -> FileType:
    """The file type called ``name`` (case-insensitive, ``q4_k_m`` or ``Q4_K_M``; ``MXFP4`` for MXFP4_MOE)."""
    key = name.strip().upper().replace("-", "_")
    if key.startswith("LLAMA_FTYPE_"):
        key = key[len("LLAMA_FTYPE_") :]
    if key.startswith("MOSTLY_"):
        key = key[len("MOSTLY_") :]
    key = _ALIASES.get(key, key)
    found = _BY_NAME.get(key)
    if found is None:
        raise UnknownName(f"unknown quantization '{name}'{_suggest(key, _BY_NAME)}")
    return found


def normalize_file_type(name: str) -> str:
    """Canonical spelling of a file type name (``q4_k_m`` -> ``Q4_K_M``)."""
    return file_type(name).name


def file_type_from_gguf(value: int) -> str:
    """Name of a GGUF ``general.file_type`` value (``15`` -> ``Q4_K_M``).

    Retired values that old files still carry get their historical name; an unknown value raises
    :class:`UnknownName`.
    """
    raw = int(value) & ~_FTYPE_GUESSED
    found = _BY_ID.get(raw)
    if found is not None:
        return found.name
    if raw in _RETIRED_FTYPES:
        return _RETIRED_FTYPES[raw]
    raise UnknownName(f"unknown GGUF file type {value}")


def _suggest(key: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""
