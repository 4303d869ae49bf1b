"""Copies of a GGUF with one metadata value changed in place, for tests.

Only same-size edits: a string value may get shorter (padded with a Jinja comment or spaces) or a
key renamed to one of the same length, so no offset in the file moves and the tensor data stays
valid. Reading and rewriting the file with gguf's reader/writer would take seconds on the demo model
(it materialises the tokenizer arrays); this takes a file copy.
"""

from __future__ import annotations

import struct
from pathlib import Path

_STRING = 8
_UINT32 = 4
_HEADER_SCAN = 8 * 1024 * 1024  # metadata sits at the front; the demo's ends before 2 MB


def _locate(data: bytearray, key: str) -> tuple[int, int]:
    """(offset of the key's length prefix, offset of its value type) for ``key``."""
    kb = key.encode()
    needle = struct.pack("<Q", len(kb)) + kb
    pos = data.find(needle, 0, _HEADER_SCAN)
    if pos < 0:
        raise KeyError(key)
    return pos, pos + len(needle)


def edit_gguf(
    src: str | Path,
    dst: str | Path,
    *,
    strings: dict[str, str] | None = None,
    uint32s: dict[str, int] | None = None,
    renames: dict[str, str] | None = None,
    jinja_pad: bool = False,
) -> Path:
    data = bytearray(Path(src).read_bytes())
    for key, value in (strings or {}).items():
        _, type_off = _locate(data, key)
        assert struct.unpack_from("<I", data, type_off)[0] == _STRING, key
        n = struct.unpack_from("<Q", data, type_off + 4)[0]
        new = value.encode()
        if len(new) > n:
            raise ValueError(f"new value for {key} is {len(new)} bytes, the slot holds {n}")
        pad = n - len(new)
        if jinja_pad and pad >= 4:
            new += b"{#" + b" " * (pad - 4) + b"#}"
        else:
            new += b" " * pad
        data[type_off + 12 : type_off + 12 + n] = new
    for key, value in (uint32s or {}).items():
        _, type_off = _locate(data, key)
        assert struct.unpack_from("<I", data, type_off)[0] == _UINT32, key
        struct.pack_into("<I", data, type_off + 4, value)
    for key, new_key in (renames or {}).items():
        if len(new_key) != len(key):
            raise ValueError("a renamed key must keep its length")
        pos, _ = _locate(data, key)
        data[pos + 8 : pos + 8 + len(key)] = new_key.encode()
    out = Path(dst)
    out.write_bytes(bytes(data))
    return out
