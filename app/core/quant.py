"""GGUF tensor types: block size, bytes per block, and the byte size of a tensor.

The block table comes from the ``gguf`` package (``GGML_QUANT_SIZES``), which mirrors ggml's own
``type_traits``; Rigfit does not keep a copy that could drift.
"""

from __future__ import annotations

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from app.core.errors import UnknownName


def type_name(ggml_type: int) -> str:
    """ggml type name (``Q4_K``) for a type id."""
    try:
        return GGMLQuantizationType(ggml_type).name
    except ValueError:
        return f"type{ggml_type}"


def type_id(name: str) -> int:
    """ggml type id for a name such as ``q8_0`` or ``F16`` (case-insensitive)."""
    try:
        return int(GGMLQuantizationType[name.upper()])
    except KeyError:
        raise UnknownName(f"unknown tensor type '{name}'") from None


def block_size(ggml_type: int) -> int:
    """Values per block (1 for plain float and integer types)."""
    return GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)][0]


def bytes_per_block(ggml_type: int) -> int:
    """Bytes one block takes."""
    return GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)][1]


def row_nbytes(ggml_type: int, ne0: int) -> int:
    """Bytes of one row of ``ne0`` values (ggml_row_size); ``ne0`` must be a multiple of the block size."""
    bs, ts = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
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


def bits_per_weight(ggml_type: int) -> float:
    bs, ts = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    return ts * 8 / bs
