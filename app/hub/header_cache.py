"""Remote GGUF headers kept on disk, so a file is fetched once however often it is planned.

A header is stored under the file's content hash (its LFS SHA-256, or git blob id) and size, so an
entry can never be stale: new bytes on the hub are a new hash. What is stored is the start of the file
up to its tensor data, which Rigfit's reader parses again like a file (a better reader later reads
the same bytes). A small record per ``hf:`` reference (commit, parts, hashes) lets ``HF_HUB_OFFLINE``
plan a file that was planned before. The folder is capped (oldest entries go first), and a cache that
cannot be written (read-only home, full disk) only costs speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from app.core.errors import BadModelFile

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 << 20
_KEY_RE = re.compile(r"^[0-9a-fA-F]{16,128}$")


class PrefixSource:
    """A :class:`~app.core.gguf_reader.RangeSource` over the cached start of a file."""

    def __init__(self, data: bytes, size_bytes: int) -> None:
        self._data = data
        self._size = size_bytes

    @property
    def size_bytes(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self._size)
        if end > len(self._data):
            raise BadModelFile("the cached header ends before the header does")
        return self._data[offset:end]


class HeaderCache:
    """A folder of GGUF headers (``<hash>-<size>.header``) and reference records (``refs/*.json``)."""

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def _path(self, key: str, size_bytes: int) -> Path | None:
        if not _KEY_RE.match(key) or size_bytes < 0:
            return None
        return self.folder / f"{key.lower()}-{size_bytes}.header"

    def get(self, key: str, size_bytes: int) -> bytes | None:
        """The stored header of the file with this hash and size, or None."""
        path = self._path(key, size_bytes)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return data

    def put(self, key: str, size_bytes: int, header: bytes) -> None:
        """Store a header (atomically: a reader never sees half a file)."""
        path = self._path(key, size_bytes)
        if path is None:
            return
        self._write(path, header)
        self._evict()

    def remember(self, ref: str, record: dict[str, Any]) -> None:
        """What an ``hf:`` reference resolved to (commit, parts with sizes and hashes)."""
        self._write(self._ref_path(ref), json.dumps(record, sort_keys=True).encode())

    def recall(self, ref: str) -> dict[str, Any] | None:
        """The record :meth:`remember` kept for ``ref``, or None."""
        try:
            data = json.loads(self._ref_path(ref).read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _ref_path(self, ref: str) -> Path:
        return self.folder / "refs" / f"{hashlib.sha256(ref.encode()).hexdigest()[:32]}.json"

    def _write(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            log.info("could not write the header cache %s: %s", path, exc)

    def _evict(self) -> None:
        try:
            entries = [(p.stat().st_mtime, p.stat().st_size, p) for p in self.folder.glob("*.header")]
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
