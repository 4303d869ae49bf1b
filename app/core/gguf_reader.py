"""A fast GGUF header reader: metadata and tensor infos, never tensor data.

``gguf.GGUFReader`` maps the whole file and turns every metadata array into numpy objects, the
tokenizer's hundred thousand strings included; on the 98 MB demo model that takes seconds. Rigfit
needs the scalars, the length of the big arrays and the tensor table, so this reader walks the header
with ``struct`` over a read-only memory map, steps over long arrays (reading only each string's
length prefix), keeps the values of short arrays (per-layer head counts, SWA patterns), and stops at
the tensor data. It reads split models (``name-00001-of-00003.gguf``) as one, with each tensor's
``file_index``.

The same parser reads a header piece by piece from a :class:`RangeSource` (a file on a server, read
with HTTP range requests by ``app.hub``): it asks for more bytes only when it runs out, and sizes each
request from what it has seen (the average length of the strings of the array it is in), so a
128k-token header takes two or three requests and hardly a byte past the tensor table.

Corrupt input raises :class:`~app.core.errors.BadModelFile`: bad magic, unsupported version,
truncation, and counts or lengths that the file is too small to hold are rejected before anything
is allocated for them, so a damaged header can neither exhaust memory nor loop for long.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeAlias

from app.core.errors import BadModelFile
from app.core.files import open_regular, path_exists, show_path
from app.core.model_spec import TensorInfo
from app.core.quant import block_size, is_known_type, tensor_nbytes, type_name

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS: tuple[int, ...] = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS

# GGUF metadata value types (gguf_type)
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL = 0, 1, 2, 3, 4, 5, 6, 7
T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = 8, 9, 10, 11, 12

_SCALAR_FORMATS: dict[int, str] = {
    T_UINT8: "B",
    T_INT8: "b",
    T_UINT16: "H",
    T_INT16: "h",
    T_UINT32: "I",
    T_INT32: "i",
    T_FLOAT32: "f",
    T_BOOL: "?",
    T_UINT64: "Q",
    T_INT64: "q",
    T_FLOAT64: "d",
}
_SCALAR_SIZES: dict[int, int] = {t: struct.calcsize(f) for t, f in _SCALAR_FORMATS.items()}

# Arrays up to these lengths keep their values; longer ones (the tokenizer's) keep type and length.
MAX_KEPT_NUMBERS = 4096
MAX_KEPT_STRINGS = 256
_MAX_ARRAY_DEPTH = 8

_SPLIT_RE = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

# Reading from a RangeSource: the first request, and what each later one asks for beyond the bytes the
# parser is known to need. 4 MiB holds whole headers up to a ~100k-token vocabulary (the demo model's
# is 1.7 MiB), so most files take one request; later parts of a split model hold no tokenizer.
FIRST_READ_BYTES = 4 << 20
LATER_PART_FIRST_READ_BYTES = 256 << 10
_READ_SLACK_BYTES = 256 << 10  # after the array being read: the keys and the tensor table that follow
_GUESSED_STRING_BYTES = 16  # length prefix + text, before any string of an array has been seen


class RangeSource(Protocol):
    """A file read piece by piece (a GGUF on a server, read with HTTP range requests)."""

    @property
    def size_bytes(self) -> int:
        """The whole file's size."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end of the file); raises on failure."""
        ...


@dataclass(frozen=True)
class GgufArray:
    """A metadata array: element type, length, and the values when the array is short."""

    item_type: int
    length: int
    values: tuple[object, ...] | None = None


MetaValue: TypeAlias = int | float | bool | str | GgufArray


@dataclass(frozen=True)
class GgufFile:
    """The header of one GGUF file."""

    path: str
    version: int
    metadata: dict[str, MetaValue] = field(compare=False)
    value_types: dict[str, int] = field(compare=False)  # key -> gguf type (T_ARRAY for arrays)
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int  # where tensor data starts
    file_size: int


@dataclass(frozen=True)
class GgufModel:
    """A GGUF model, one file or all parts of a split model read as one.

    ``metadata`` is the first part's (split parts after the first hold only split bookkeeping);
    tensors carry their ``file_index`` and absolute ``offset`` within that part.
    """

    paths: tuple[str, ...]
    metadata: dict[str, MetaValue] = field(compare=False)
    value_types: dict[str, int] = field(compare=False)
    tensors: tuple[TensorInfo, ...]
    file_size_bytes: int
    parts: tuple[GgufFile, ...]

    def get(self, key: str, default: object = None) -> object:
        """A metadata value, or ``default`` when the key is absent."""
        return self.metadata.get(key, default)


Buffer: TypeAlias = mmap.mmap | bytes | bytearray


class _Header:
    """Cursor over a mapped file (or the fetched start of a remote one); every read is bounds-checked
    and failures become BadModelFile.

    ``end`` is the file's size; ``have`` is how much of it ``buf`` holds (all of it, except when
    reading from a :class:`RangeSource`, which is asked for more when a read runs past ``have``).
    """

    __slots__ = ("buf", "end", "endian", "have", "off", "path", "source", "u32", "u64")

    def __init__(
        self, buf: Buffer, path: str, endian: str, end: int | None = None, source: RangeSource | None = None
    ) -> None:
        self.buf = buf
        self.have = len(buf)
        self.end = self.have if end is None else end
        self.source = source
        self.off = 0
        self.path = path
        self.endian = endian
        self.u32 = struct.Struct(endian + "I").unpack_from
        self.u64 = struct.Struct(endian + "Q").unpack_from

    def fail(self, what: str) -> BadModelFile:
        return BadModelFile(f"{self.path} is not a usable GGUF file: {what}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.off + n > self.end:
            raise self.fail(f"the file ends inside {what} (truncated or corrupt)")
        if self.off + n > self.have:
            self.fetch(self.off + n)

    def fetch(self, required_end: int, hint_end: int = 0) -> None:
        """Read more of a remote file: at least up to ``required_end``, up to ``hint_end`` (where the
        array being read is expected to end) when known, plus some slack for what follows."""
        if self.source is None or required_end > self.end:
            raise self.fail("the file ends inside the header (truncated or corrupt)")
        target = max(required_end, hint_end) + _READ_SLACK_BYTES
        # Without a hint, grow by half at least, so a long run of small reads takes few requests.
        target = min(self.end, max(target, self.have + self.have // 2))
        data = self.source.read(self.have, target - self.have)
        if len(data) < required_end - self.have:
            raise BadModelFile(
                f"{self.path}: asked for {target - self.have} bytes at {self.have}, got {len(data)}"
            )
        if not isinstance(self.buf, bytearray):
            self.buf = bytearray(self.buf)
        self.buf += data
        self.have = len(self.buf)

    def read_u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = self.u32(self.buf, self.off)
        self.off += 4
        return int(v)

    def read_u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = self.u64(self.buf, self.off)
        self.off += 8
        return int(v)

    def read_str(self, what: str) -> str:
        n = self.read_u64(what)
        self.need(n, what)
        raw = self.buf[self.off : self.off + n]
        self.off += n
        return bytes(raw).decode("utf-8", errors="replace")

    def read_scalar(self, vtype: int, what: str) -> int | float | bool:
        size = _SCALAR_SIZES[vtype]
        self.need(size, what)
        (v,) = struct.unpack_from(self.endian + _SCALAR_FORMATS[vtype], self.buf, self.off)
        self.off += size
        if vtype == T_BOOL:
            return bool(v)
        return v  # type: ignore[no-any-return]

    def read_value(self, vtype: int, what: str, depth: int = 0) -> MetaValue:
        if vtype == T_STRING:
            return self.read_str(what)
        if vtype == T_ARRAY:
            return self.read_array(what, depth + 1)
        if vtype in _SCALAR_FORMATS:
            return self.read_scalar(vtype, what)
        raise self.fail(f"{what} has unknown value type {vtype}")

    def read_array(self, what: str, depth: int) -> GgufArray:
        if depth > _MAX_ARRAY_DEPTH:
            raise self.fail(f"{what} nests arrays more than {_MAX_ARRAY_DEPTH} deep")
        item_type = self.read_u32(what)
        n = self.read_u64(what)
        if item_type in _SCALAR_FORMATS:
            size = _SCALAR_SIZES[item_type]
            if n > (self.end - self.off) // size:
                raise self.fail(
                    f"{what} claims {n} values, more than the file can hold (truncated or corrupt)"
                )
            values: tuple[object, ...] | None = None
            if n <= MAX_KEPT_NUMBERS:
                self.need(n * size, what)
                fmt = f"{self.endian}{n}{_SCALAR_FORMATS[item_type]}"
                values = struct.unpack_from(fmt, self.buf, self.off)
                if item_type == T_BOOL:
                    values = tuple(bool(v) for v in values)
            self.off += n * size
            return GgufArray(item_type, n, values)
        if item_type == T_STRING:
            # Every string needs at least its 8-byte length.
            if n > (self.end - self.off) // 8:
                raise self.fail(
                    f"{what} claims {n} strings, more than the file can hold (truncated or corrupt)"
                )
            if n <= MAX_KEPT_STRINGS:
                return GgufArray(item_type, n, tuple(self.read_str(what) for _ in range(n)))
            self.skip_strings(n, what)
            return GgufArray(item_type, n, None)
        if item_type == T_ARRAY:
            # GGUF has no fixed minimum per nested array beyond its 12-byte header.
            if n > (self.end - self.off) // 12:
                raise self.fail(
                    f"{what} claims {n} arrays, more than the file can hold (truncated or corrupt)"
                )
            for _ in range(n):
                self.read_array(what, depth + 1)
            return GgufArray(item_type, n, None)
        raise self.fail(f"{what} is an array of unknown value type {item_type}")

    def skip_strings(self, n: int, what: str) -> None:
        # The hot loop of the whole reader (tokenizer tokens and merges): only each length is read.
        u64, off, end, start = self.u64, self.off, self.end, self.off
        i = 0
        while True:
            buf = self.buf
            try:
                for i in range(i, n):  # noqa: B007, B020 (i says where to resume when the buffer runs out)
                    off += 8 + u64(buf, off)[0]
                break
            except (struct.error, OverflowError):  # past the buffer, or a corrupt length past any offset
                if self.source is None or off + 8 > end:
                    raise self.fail(f"the file ends inside {what} (truncated or corrupt)") from None
                # Remote: ask for the rest of this array, guessed from the strings read so far.
                per_string = (off - start) / i if i >= 64 else _GUESSED_STRING_BYTES
                self.fetch(off + 8, off + int((n - i) * per_string * 1.02))
        if off > end:
            raise self.fail(f"the file ends inside {what} (truncated or corrupt)")
        self.off = off


def _open_map(path: Path) -> tuple[mmap.mmap, int]:
    # Regular files only: a FIFO would block the open, a device (/dev/zero) would map endless zeros.
    fd, size = open_regular(path, "model file", BadModelFile)
    try:
        if size == 0:
            raise BadModelFile(f"{show_path(path)} is empty, not a GGUF model")
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ), size
    except (OSError, ValueError) as exc:
        raise BadModelFile(f"cannot read {show_path(path)}: {exc}") from None
    finally:
        os.close(fd)


def read_gguf_file(path: str | os.PathLike[str]) -> GgufFile:
    """Parse one GGUF file's header (metadata and tensor infos), reading no tensor data."""
    p = Path(path)
    buf, size = _open_map(p)
    try:
        return _parse(buf, size, str(p))
    finally:
        buf.close()


def read_gguf_bytes(data: bytes, name: str = "<memory>") -> GgufFile:
    """Parse a whole GGUF file held in memory (tests, and headers fetched by other means)."""
    if not data:
        raise BadModelFile(f"{name} is empty, not a GGUF model")
    return _parse(data, len(data), name)


def read_gguf_source(source: RangeSource, name: str, *, first_read_bytes: int = FIRST_READ_BYTES) -> GgufFile:
    """Parse one GGUF header from a :class:`RangeSource`, reading little more than the header.

    ``name`` names the file in messages. Bounds are checked against the source's whole size, so a
    header that promises tensor data past the end of the file is refused as for a local file.
    """
    size = source.size_bytes
    if size <= 0:
        raise BadModelFile(f"{name} is empty, not a GGUF model")
    first = source.read(0, min(size, max(first_read_bytes, 8)))
    if len(first) < min(size, 8):
        raise BadModelFile(f"{name}: could not read the start of the file")
    return _parse(first, size, name, source)


def _parse(buf: Buffer, size: int, path: str, source: RangeSource | None = None) -> GgufFile:
    shown = show_path(path)
    if size < 4 or buf[:4] != GGUF_MAGIC:
        raise BadModelFile(f"{shown} is not a GGUF file (it does not start with 'GGUF')")
    if size < 8:
        raise BadModelFile(f"{shown} is not a usable GGUF file: it ends after the magic (truncated)")
    (version,) = struct.unpack_from("<I", buf, 4)
    endian = "<"
    if version & 0xFFFF == 0 and version != 0:
        # A big-endian file read on a little-endian host shows its version byte-swapped.
        endian = ">"
        (version,) = struct.unpack_from(">I", buf, 4)
    if version not in SUPPORTED_VERSIONS:
        raise BadModelFile(
            f"{shown} uses GGUF version {version}; Rigfit reads versions {', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    h = _Header(buf, shown, endian, size, source)
    h.off = 8
    n_tensors = h.read_u64("the tensor count")
    n_kv = h.read_u64("the metadata count")
    remaining = size - h.off
    # Smallest possible entries: a metadata pair is a key length, a type and one byte; a tensor info
    # is a name length, n_dims, one dimension, a type and an offset.
    if n_kv > remaining // 13:
        raise h.fail(
            f"it claims {n_kv} metadata entries, more than its {size} bytes can hold (truncated or corrupt)"
        )
    if n_tensors > remaining // 32:
        raise h.fail(
            f"it claims {n_tensors} tensors, more than its {size} bytes can hold (truncated or corrupt)"
        )

    metadata: dict[str, MetaValue] = {}
    value_types: dict[str, int] = {}
    for i in range(n_kv):
        key = h.read_str(f"metadata key #{i}")
        vtype = h.read_u32(f"the type of '{key}'")
        if key in metadata:
            raise h.fail(f"metadata key '{key}' appears twice")
        metadata[key] = h.read_value(vtype, f"metadata '{key}'")
        value_types[key] = vtype

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in metadata:
        raw_alignment = metadata["general.alignment"]
        if (
            not isinstance(raw_alignment, int)
            or isinstance(raw_alignment, bool)
            or raw_alignment <= 0
            or raw_alignment & (raw_alignment - 1)
        ):
            raise h.fail(f"general.alignment is {raw_alignment!r}, not a power of two")
        alignment = raw_alignment

    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name = h.read_str(f"the name of tensor #{i}")
        n_dims = h.read_u32(f"tensor '{name}'")
        if not 1 <= n_dims <= MAX_DIMS:
            raise h.fail(f"tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS})")
        h.need(8 * n_dims + 12, f"tensor '{name}'")
        shape = struct.unpack_from(f"{endian}{n_dims}Q", h.buf, h.off)
        h.off += 8 * n_dims
        ggml_type = h.read_u32(f"tensor '{name}'")
        rel_offset = h.read_u64(f"tensor '{name}'")
        if name in seen:
            raise h.fail(f"tensor '{name}' appears twice")
        seen.add(name)
        if not is_known_type(ggml_type):
            raise h.fail(f"tensor '{name}' has unknown type {ggml_type} (made by a newer llama.cpp?)")
        n_elements = 1
        for d in shape:
            n_elements *= d
        if n_elements > (1 << 62):
            raise h.fail(f"tensor '{name}' claims an impossible shape {list(shape)}")
        if shape[0] % block_size(ggml_type):
            raise h.fail(
                f"tensor '{name}' rows of {shape[0]} values do not fit {type_name(ggml_type)} blocks of {block_size(ggml_type)}"
            )
        if rel_offset % alignment:
            raise h.fail(f"tensor '{name}' data offset {rel_offset} is not aligned to {alignment} bytes")
        infos.append((name, tuple(int(d) for d in shape), ggml_type, rel_offset))

    data_offset = h.off + (-h.off) % alignment
    tensors: list[TensorInfo] = []
    for name, shape, ggml_type, rel_offset in infos:
        start = data_offset + rel_offset
        if start + tensor_nbytes(ggml_type, shape) > size:
            raise h.fail(f"tensor '{name}' data ends past the end of the file (truncated download?)")
        tensors.append(TensorInfo(name=name, shape=shape, ggml_type=ggml_type, offset=start))
    return GgufFile(
        path=path,
        version=version,
        metadata=metadata,
        value_types=value_types,
        tensors=tuple(tensors),
        alignment=alignment,
        data_offset=data_offset,
        file_size=size,
    )


def split_parts(path: str | os.PathLike[str]) -> tuple[Path, ...] | None:
    """All part paths of a split model named like ``name-00002-of-00004.gguf``; None for other names."""
    p = Path(path)
    m = _SPLIT_RE.match(p.name)
    if m is None:
        return None
    count = int(m.group("count"))
    no = int(m.group("no"))
    if count < 1 or not 1 <= no <= count:
        raise BadModelFile(f"{show_path(p.name)} claims to be part {no} of {count}")
    prefix = m.group("prefix")
    return tuple(p.with_name(f"{prefix}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1))


def _int_meta(f: GgufFile, key: str) -> int | None:
    v = f.metadata.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def read_gguf(path: str | os.PathLike[str]) -> GgufModel:
    """Read a GGUF model: one file, or every part of a split model when given any of its parts."""
    p = Path(path)
    parts = split_parts(p)
    first = read_gguf_file(parts[0] if parts else p)
    count = _int_meta(first, "split.count") or 1
    if parts is None:
        if count > 1:
            raise BadModelFile(
                f"{show_path(p)} is part of a model split into {count} files, but its name does not follow "
                "llama.cpp's 'name-00001-of-0000N.gguf' pattern, so the other parts cannot be found"
            )
        return model_from_parts((first,))
    if count != len(parts):
        raise BadModelFile(
            f"{show_path(parts[0].name)} says the model has {count} parts, its name says {len(parts)}"
        )
    files = [first]
    for i, part in enumerate(parts[1:], start=1):
        if not path_exists(part):
            raise BadModelFile(
                f"part {i + 1} of {len(parts)} of this split model is missing: {show_path(part)}"
            )
        files.append(read_gguf_file(part))
    return model_from_parts(files)


def model_from_parts(files: Sequence[GgufFile]) -> GgufModel:
    """One model from the headers of every part of a split model, in order (or of a single file).

    Checks that the parts belong together: their ``split.no``, no tensor twice, and the tensor count
    the first part promises.
    """
    first = files[0]
    name = Path(first.path).name
    count = _int_meta(first, "split.count") or 1
    if count != len(files):
        raise BadModelFile(f"{name} says the model has {count} parts, {len(files)} were read")
    if len(files) == 1:
        return GgufModel(
            (first.path,), first.metadata, first.value_types, first.tensors, first.file_size, (first,)
        )
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for index, f in enumerate(files):
        no = _int_meta(f, "split.no")
        if no is not None and no != index:
            raise BadModelFile(
                f"{show_path(f.path)} says it is split part {no + 1}, its name says {index + 1}"
            )
        for t in f.tensors:
            if t.name in names:
                raise BadModelFile(f"tensor '{t.name}' appears in more than one part of {show_path(name)}")
            names.add(t.name)
            tensors.append(TensorInfo(t.name, t.shape, t.ggml_type, t.offset, index))
    expected = _int_meta(first, "split.tensors.count")
    if expected is not None and expected != len(tensors):
        raise BadModelFile(
            f"{show_path(name)}: the parts hold {len(tensors)} tensors, the header promises {expected}"
        )
    return GgufModel(
        paths=tuple(f.path for f in files),
        metadata=first.metadata,
        value_types=first.value_types,
        tensors=tuple(tensors),
        file_size_bytes=sum(f.file_size for f in files),
        parts=tuple(files),
    )
