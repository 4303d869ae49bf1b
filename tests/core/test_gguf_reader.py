"""The fast GGUF header reader: same answers as gguf.GGUFReader, split models, corrupt input."""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFEndian, GGUFReader, GGUFValueType, GGUFWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.errors import BadModelFile
from app.core.gguf_reader import (
    MAX_KEPT_STRINGS,
    GgufArray,
    GgufFile,
    read_gguf,
    read_gguf_bytes,
    read_gguf_file,
    split_parts,
)


def assert_same_as_gguf_reader(path: Path | str, ours: GgufFile) -> None:
    """Metadata (scalars; arrays: type and length, values when kept) and tensor infos agree."""
    ref = GGUFReader(str(path))
    ref_keys = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert list(ours.metadata) == ref_keys
    for key in ref_keys:
        field = ref.fields[key]
        value = ours.metadata[key]
        assert ours.value_types[key] == int(field.types[0]), key
        if field.types[0] == GGUFValueType.ARRAY:
            assert isinstance(value, GgufArray), key
            assert value.item_type == int(field.types[1]), key
            # parts: key length, key, value type, item type, element count, ... (nested arrays
            # flatten their leaves into field.data, so the count comes from the header part).
            assert value.length == int(field.parts[4][0]), key
            if field.types[1] != GGUFValueType.ARRAY:
                assert value.length == len(field.data), key
            if value.values is not None:
                expected = field.contents()
                if value.item_type in (6, 12):  # floats
                    assert list(value.values) == pytest.approx(expected), key
                else:
                    assert list(value.values) == expected, key
        else:
            expected = field.contents()
            if isinstance(expected, float):
                assert value == pytest.approx(expected, rel=1e-7), key
            else:
                assert value == expected, key
    assert len(ours.tensors) == len(ref.tensors)
    for mine, theirs in zip(ours.tensors, ref.tensors, strict=True):
        assert mine.name == theirs.name
        assert mine.shape == tuple(int(d) for d in theirs.shape)
        assert mine.ggml_type == int(theirs.tensor_type)
        assert mine.offset == int(theirs.data_offset)


def write_rich_gguf(path: Path, *, endian: GGUFEndian = GGUFEndian.LITTLE, n_strings: int = 300) -> Path:
    """A GGUF with every metadata value type, short and long arrays, nested arrays and a few tensors."""
    w = GGUFWriter(str(path), "llama", endianess=endian)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.1)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 1e-300)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "grüße ✓")
    w.add_string("t.empty", "")
    w.add_array("t.ints", [1, 2, 3])
    w.add_key_value("t.u16s", [1, 65535], GGUFValueType.ARRAY, sub_type=GGUFValueType.UINT16)
    w.add_array("t.floats", [0.5, 1.5])
    w.add_array("t.bools", [True, False, True])
    w.add_array("t.names", ["a", "bb", ""])
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_token_list([f"tok{i}" for i in range(n_strings)])
    w.add_token_scores([float(i) for i in range(n_strings)])
    w.add_uint32("llama.block_count", 2)
    w.add_tensor("token_embd.weight", np.ones((8, 64), dtype=np.float16))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(64, dtype=np.float32))
    # Q8_0 rows of 64 values: two blocks of 34 bytes.
    w.add_tensor(
        "blk.1.ffn_up.weight", np.zeros((4, 68), dtype=np.uint8), raw_dtype=GGMLQuantizationType.Q8_0
    )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def rich_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_rich_gguf(tmp_path_factory.mktemp("rich") / "rich.gguf").read_bytes()


# --- agreement with gguf.GGUFReader -------------------------------------------------------------


def test_demo_model_header_matches_gguf_reader(demo_model_path: str) -> None:
    assert_same_as_gguf_reader(demo_model_path, read_gguf_file(demo_model_path))


def test_every_value_type_matches_gguf_reader(tmp_path: Path) -> None:
    path = write_rich_gguf(tmp_path / "rich.gguf")
    ours = read_gguf_file(path)
    assert_same_as_gguf_reader(path, ours)
    assert ours.metadata["t.str"] == "grüße ✓"
    assert ours.metadata["t.u64"] == 2**63 + 5


def test_big_endian_files_read_like_gguf_reader_reads_them(tmp_path: Path) -> None:
    path = write_rich_gguf(tmp_path / "be.gguf", endian=GGUFEndian.BIG)
    ours = read_gguf_file(path)
    assert_same_as_gguf_reader(path, ours)
    assert ours.metadata["t.i32"] == -2_000_000_000


def test_long_arrays_keep_type_and_length_but_not_values(tmp_path: Path) -> None:
    ours = read_gguf_file(write_rich_gguf(tmp_path / "rich.gguf", n_strings=MAX_KEPT_STRINGS + 1))
    tokens = ours.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GgufArray)
    assert (tokens.item_type, tokens.length, tokens.values) == (8, MAX_KEPT_STRINGS + 1, None)
    names = ours.metadata["t.names"]
    assert isinstance(names, GgufArray) and names.values == ("a", "bb", "")


def test_tensor_data_is_never_read(tmp_path: Path) -> None:
    # A header promising 8 GiB of tensor data, padded with a sparse hole: reading it touches only the
    # header pages and allocates next to nothing.
    w = GGUFWriter(str(tmp_path / "huge.gguf"), "llama")
    w.add_tensor_info("big.weight", (65536, 65536), np.dtype(np.float16), 65536 * 65536 * 2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    path = tmp_path / "huge.gguf"
    header_size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(header_size + (-header_size) % 32 + 65536 * 65536 * 2)
    tracemalloc.start()
    try:
        model = read_gguf(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model.tensors[0].shape == (65536, 65536)
    assert peak < 1 << 20


# --- split models -----------------------------------------------------------------------------


def write_split(tmp_path: Path, n_tensors: int = 5, per_part: int = 2) -> list[Path]:
    w = GGUFWriter(str(tmp_path / "model.gguf"), "llama", split_max_tensors=per_part)
    w.add_uint32("llama.block_count", n_tensors)
    for i in range(n_tensors):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.full(64 + 32 * i, i, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sorted(tmp_path.glob("model-*-of-*.gguf"))


def test_split_model_reads_every_part_with_file_indexes(tmp_path: Path) -> None:
    parts = write_split(tmp_path)
    assert [p.name for p in parts] == [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    model = read_gguf(parts[0])
    assert model.paths == tuple(str(p) for p in parts)
    assert [t.name for t in model.tensors] == [f"blk.{i}.attn_norm.weight" for i in range(5)]
    assert [t.file_index for t in model.tensors] == [0, 0, 1, 1, 2]
    assert model.file_size_bytes == sum(p.stat().st_size for p in parts)
    for index, part in enumerate(parts):
        ref = GGUFReader(str(part))
        mine = [t for t in model.tensors if t.file_index == index]
        assert [t.offset for t in mine] == [int(t.data_offset) for t in ref.tensors]


def test_any_part_of_a_split_model_reads_the_whole_model(tmp_path: Path) -> None:
    parts = write_split(tmp_path)
    assert read_gguf(parts[1]).tensors == read_gguf(parts[0]).tensors
    assert split_parts(parts[2]) == tuple(parts)


def test_a_missing_split_part_is_named(tmp_path: Path) -> None:
    parts = write_split(tmp_path)
    parts[1].unlink()
    with pytest.raises(BadModelFile, match=r"part 2 of 3.*missing"):
        read_gguf(parts[0])


def test_a_renamed_split_part_cannot_find_its_siblings(tmp_path: Path) -> None:
    parts = write_split(tmp_path)
    renamed = parts[0].rename(tmp_path / "renamed.gguf")
    with pytest.raises(BadModelFile, match="split into 3 files"):
        read_gguf(renamed)


# --- corrupt input ----------------------------------------------------------------------------


def test_missing_file_empty_file_folder_and_text_file_are_bad_model_files(tmp_path: Path) -> None:
    with pytest.raises(BadModelFile, match="not found"):
        read_gguf(tmp_path / "nope.gguf")
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(BadModelFile, match="empty"):
        read_gguf(tmp_path / "empty.gguf")
    with pytest.raises(BadModelFile, match="folder"):
        read_gguf(tmp_path)
    (tmp_path / "notes.gguf").write_text("hello, this is not a model")
    with pytest.raises(BadModelFile, match="does not start with 'GGUF'"):
        read_gguf(tmp_path / "notes.gguf")


@pytest.mark.parametrize("version", [1, 4, 0x7FFFFFFF])
def test_unsupported_versions_are_named(rich_bytes: bytes, version: int) -> None:
    data = rich_bytes[:4] + struct.pack("<I", version) + rich_bytes[8:]
    with pytest.raises(BadModelFile, match=f"version {version}"):
        read_gguf_bytes(data)


@pytest.mark.parametrize("keep", [5, 8, 12, 30, 200, -400])
def test_truncated_files_are_reported_as_truncated(rich_bytes: bytes, keep: int) -> None:
    with pytest.raises(BadModelFile, match=r"truncated|ends after"):
        read_gguf_bytes(rich_bytes[:keep])


def _first_key_offset(data: bytes) -> int:
    return 4 + 4 + 8 + 8  # magic, version, tensor count, kv count


def test_absurd_counts_are_rejected_before_any_allocation(rich_bytes: bytes) -> None:
    huge = struct.pack("<Q", 2**62)
    for offset in (8, 16):  # tensor count, metadata count
        data = rich_bytes[:offset] + huge + rich_bytes[offset + 8 :]
        with pytest.raises(BadModelFile, match="more than its"):
            read_gguf_bytes(data)


def test_absurd_string_and_array_lengths_are_rejected(rich_bytes: bytes) -> None:
    at = _first_key_offset(rich_bytes)
    data = rich_bytes[:at] + struct.pack("<Q", 2**60) + rich_bytes[at + 8 :]
    with pytest.raises(BadModelFile, match="truncated"):
        read_gguf_bytes(data)
    key = b"tokenizer.ggml.tokens"
    length_at = rich_bytes.index(key) + len(key) + 4 + 4  # value type, item type
    data = rich_bytes[:length_at] + struct.pack("<Q", 2**40) + rich_bytes[length_at + 8 :]
    with pytest.raises(BadModelFile, match="claims"):
        read_gguf_bytes(data)


def test_unknown_value_and_tensor_types_are_rejected(rich_bytes: bytes) -> None:
    at = _first_key_offset(rich_bytes)
    (key_len,) = struct.unpack_from("<Q", rich_bytes, at)
    type_at = at + 8 + key_len
    data = rich_bytes[:type_at] + struct.pack("<I", 77) + rich_bytes[type_at + 4 :]
    with pytest.raises(BadModelFile, match="unknown value type 77"):
        read_gguf_bytes(data)
    name = b"blk.0.attn_norm.weight"
    ti = rich_bytes.index(name) + len(name)
    type_at = ti + 4 + 8  # n_dims, one dimension
    data = rich_bytes[:type_at] + struct.pack("<I", 999) + rich_bytes[type_at + 4 :]
    with pytest.raises(BadModelFile, match="unknown type 999"):
        read_gguf_bytes(data)


def test_too_many_dimensions_and_misaligned_offsets_are_rejected(rich_bytes: bytes) -> None:
    name = b"blk.0.attn_norm.weight"
    ti = rich_bytes.index(name) + len(name)
    data = rich_bytes[:ti] + struct.pack("<I", 9) + rich_bytes[ti + 4 :]
    with pytest.raises(BadModelFile, match="9 dimensions"):
        read_gguf_bytes(data)
    offset_at = ti + 4 + 8 + 4
    (offset,) = struct.unpack_from("<Q", rich_bytes, offset_at)
    data = rich_bytes[:offset_at] + struct.pack("<Q", offset + 3) + rich_bytes[offset_at + 8 :]
    with pytest.raises(BadModelFile, match="not aligned"):
        read_gguf_bytes(data)


def test_tensor_data_past_the_end_of_the_file_is_a_truncated_download(rich_bytes: bytes) -> None:
    last = read_gguf_bytes(rich_bytes).tensors[-1]
    end = last.offset + 4 * 68  # four Q8_0 rows of 68 bytes
    read_gguf_bytes(rich_bytes[:end])  # the alignment padding after the last tensor is optional
    with pytest.raises(BadModelFile, match="past the end"):
        read_gguf_bytes(rich_bytes[: end - 1])


_LENGTH_LIKE = st.sampled_from([0, 1, 7, 255, 2**31, 2**32 - 1, 2**40, 2**63, 2**64 - 1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    mode=st.sampled_from(["truncate", "flip", "length", "truncate+flip"]),
)
def test_random_corruption_gives_bad_model_file_and_no_large_allocation(
    rich_bytes: bytes, data: st.DataObject, mode: str
) -> None:
    buf = bytearray(rich_bytes)
    header_end = rich_bytes.index(b"blk.1.ffn_up.weight") + 64
    if "flip" in mode:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, header_end))
            buf[i] ^= data.draw(st.integers(1, 255))
    if mode == "length":
        i = data.draw(st.integers(0, header_end - 8))
        buf[i : i + 8] = struct.pack("<Q", data.draw(_LENGTH_LIKE))
    if "truncate" in mode:
        del buf[data.draw(st.integers(0, len(buf) - 1)) :]
    tracemalloc.start()
    try:
        with contextlib.suppress(BadModelFile):
            read_gguf_bytes(bytes(buf))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The copy above is the input; the parse itself may hold a few small values, never the claimed sizes.
    assert peak < 4 * len(rich_bytes) + (1 << 20)
