"""The on-disk header cache: keyed by content hash and size, capped, and harmless when it cannot work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core.errors import BadModelFile
from app.hub.header_cache import HeaderCache, PrefixSource


def test_entries_are_found_by_hash_and_size_and_the_oldest_go_first(tmp_path: Path) -> None:
    cache = HeaderCache(tmp_path / "c", max_bytes=2500)
    keys = [f"{i:064x}" for i in range(3)]
    for i, key in enumerate(keys):
        cache.put(key, 10_000, bytes([i]) * 1000)
        os.utime(cache.folder / f"{key}-10000.header", (i, i))  # written in this order
    cache.put("f" * 64, 10_000, b"x" * 1000)
    assert cache.get(keys[0], 10_000) is None and cache.get(keys[0], 10_000) is None  # evicted
    assert cache.get(keys[2], 10_000) == bytes([2]) * 1000
    assert cache.get(keys[2], 9_999) is None  # another size is another file
    assert cache.get("../../etc/passwd", 1) is None  # only hashes name entries
    cache.remember("hf:o/r/f.gguf", {"commit": "c"})
    assert cache.recall("hf:o/r/f.gguf") == {"commit": "c"}


def test_a_cache_that_cannot_be_written_only_costs_speed(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    cache = HeaderCache(blocker / "c")
    cache.put("a" * 64, 10, b"GGUF")  # no exception
    assert cache.get("a" * 64, 10) is None


def test_a_prefix_source_refuses_to_read_past_what_was_kept() -> None:
    source = PrefixSource(b"GGUF1234", 1000)
    assert source.size_bytes == 1000 and source.read(4, 4) == b"1234"
    with pytest.raises(BadModelFile, match="cached header ends"):
        source.read(6, 10)
