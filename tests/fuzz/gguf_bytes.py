"""GGUF files as raw bytes, for fuzzing: any value of any type, any shape, any count.

``gguf.GGUFWriter`` refuses some of what a hostile file holds (a value that does not fit its declared
type, duplicate keys, unknown tensor types); a fuzzer needs all of it, so this encoder writes the
format (GGUF v2/v3, docs/gguf.md of llama.cpp) directly with ``struct``. Values are given with their
GGUF type, so a 2**63 can be written as a uint64 and a NaN as a float32.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

# gguf_type
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FORMATS = {
    U8: "B",
    I8: "b",
    U16: "H",
    I16: "h",
    U32: "I",
    I32: "i",
    F32: "f",
    BOOL: "?",
    U64: "Q",
    I64: "q",
    F64: "d",
}
INT_RANGES = {
    U8: (0, 2**8 - 1), I8: (-(2**7), 2**7 - 1), U16: (0, 2**16 - 1), I16: (-(2**15), 2**15 - 1),
    U32: (0, 2**32 - 1), I32: (-(2**31), 2**31 - 1), U64: (0, 2**64 - 1), I64: (-(2**63), 2**63 - 1),
}  # fmt: skip


@dataclass(frozen=True)
class Value:
    """A metadata value with its GGUF type; arrays hold ``item_type`` and a list of plain values."""

    vtype: int
    value: object
    item_type: int = U32


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]  # ggml order, each dimension written as a uint64
    ggml_type: int
    offset: int  # relative to the data section


@dataclass
class GgufDoc:
    metadata: list[tuple[str, Value]] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    version: int = 3
    data_size: int = 0  # bytes of tensor data appended after the aligned header
    alignment: int = 32
    big_endian: bool = False


def _str(s: str | bytes, e: str) -> bytes:
    raw = s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass")
    return struct.pack(e + "Q", len(raw)) + raw


def _scalar(vtype: int, value: object, e: str) -> bytes:
    if vtype == STR:
        return _str(value, e)  # type: ignore[arg-type]
    return struct.pack(e + FORMATS[vtype], value)


def _value(v: Value, e: str) -> bytes:
    if v.vtype != ARR:
        return _scalar(v.vtype, v.value, e)
    items: Sequence[object] = v.value  # type: ignore[assignment]
    out = [struct.pack(e + "IQ", v.item_type, len(items))]
    if v.item_type == ARR:
        for item in items:
            out.append(_value(item, e))  # type: ignore[arg-type]
    else:
        out.extend(_scalar(v.item_type, item, e) for item in items)
    return b"".join(out)


def encode(doc: GgufDoc) -> bytes:
    """The bytes of a GGUF file: header, metadata, tensor infos, padding, ``data_size`` zero bytes."""
    e = ">" if doc.big_endian else "<"
    parts = [
        b"GGUF",
        struct.pack(e + "I", doc.version),
        struct.pack(e + "QQ", len(doc.tensors), len(doc.metadata)),
    ]
    for key, v in doc.metadata:
        parts.append(_str(key, e) + struct.pack(e + "I", v.vtype) + _value(v, e))
    for t in doc.tensors:
        parts.append(_str(t.name, e) + struct.pack(e + "I", len(t.shape)))
        parts.append(b"".join(struct.pack(e + "Q", d) for d in t.shape))
        parts.append(struct.pack(e + "IQ", t.ggml_type, t.offset))
    head = b"".join(parts)
    pad = (-len(head)) % doc.alignment
    return head + b"\0" * pad + b"\0" * doc.data_size
