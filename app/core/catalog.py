"""The model catalog (``resources/models.toml``): models users plan for before they download anything.

Every entry holds the architecture keys of the model's published ``config.json`` (cited per entry), so a
catalog model becomes a :class:`ModelSpec` through the same path as a user's own config.json
(:mod:`app.core.hf_config`), with tensor types from llama.cpp's quantization rules.
"""

from __future__ import annotations

import difflib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from app.core import files, limits
from app.core.errors import BadModelFile, UnknownName
from app.core.files import show_path
from app.core.hf_config import architecture_of, spec_from_config
from app.core.model_spec import ModelSpec
from app.core.quant import normalize_file_type
from app.core.quantizer import apply_file_type

CATALOG_FILE = "models.toml"


def catalog_path() -> Path:
    """Where the model catalog lives (``RIGFIT_MODELS_TOML`` overrides it, for tests and packaging)."""
    override = os.environ.get("RIGFIT_MODELS_TOML")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "resources" / CATALOG_FILE


GGUF_SOURCES: tuple[str, ...] = ("maker", "llama.cpp", "quantizer")


@dataclass(frozen=True)
class GgufRepo:
    """A Hugging Face repository holding a catalog model's GGUF files, and who publishes it."""

    repo: str  # OWNER/NAME
    source: str  # one of GGUF_SOURCES: the model maker, llama.cpp's maintainers, or a quantizer

    @property
    def owner(self) -> str:
        return self.repo.split("/", 1)[0]


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog model: who publishes it, what it is, and the config it is planned from."""

    id: str
    name: str
    hf_repo: str
    config_url: str
    params_b: float  # published parameter count of the language model, billions
    params_url: str
    license: str
    quants: tuple[str, ...]  # file types commonly published as GGUF
    default_quant: str
    architecture: str  # GGUF architecture
    config: dict[str, object] = field(compare=False, hash=False, repr=False)
    gguf_n_vocab: int | None = None
    gguf_repos: tuple[GgufRepo, ...] = ()  # where its GGUF files are, most used first


_lock = threading.Lock()
_entries: dict[Path, tuple[CatalogEntry, ...]] = {}
_base_specs: dict[tuple[Path, str], ModelSpec] = {}


def _str(raw: dict[str, object], key: str, where: str) -> str:
    v = raw.get(key)
    if not isinstance(v, str) or not v.strip():
        raise BadModelFile(f"{where}: '{key}' must be a non-empty text")
    return v.strip()


def _parse_entry(raw: object, index: int, origin: str) -> CatalogEntry:
    where = f"{origin} model #{index + 1}"
    if not isinstance(raw, dict):
        raise BadModelFile(f"{where} is not a table")
    entry_id = _str(raw, "id", where).lower()
    where = f"{origin} model '{entry_id}'"
    config = raw.get("config")
    if not isinstance(config, dict):
        raise BadModelFile(f"{where} has no [model.config] table")
    quants_raw = raw.get("quants")
    if not isinstance(quants_raw, list) or not quants_raw or not all(isinstance(q, str) for q in quants_raw):
        raise BadModelFile(f"{where}: 'quants' must be a non-empty list of quant names")
    quants = tuple(normalize_file_type(q) for q in quants_raw)
    default_quant = normalize_file_type(_str(raw, "default_quant", where))
    params_b = raw.get("params_b")
    if (
        isinstance(params_b, bool)
        or not isinstance(params_b, int | float)
        or not 0 < params_b <= limits.MAX_PARAMS / 1e9
    ):
        raise BadModelFile(f"{where}: 'params_b' must be a positive number")
    n_vocab = raw.get("gguf_n_vocab")
    if n_vocab is not None:
        n_vocab = limits.whole_number(n_vocab, "gguf_n_vocab", limits.VOCAB, where)
    return CatalogEntry(
        gguf_repos=_gguf_repos(raw.get("gguf"), where),
        id=entry_id,
        name=_str(raw, "name", where),
        hf_repo=_str(raw, "hf_repo", where),
        config_url=_str(raw, "config_url", where),
        params_b=float(params_b),
        params_url=_str(raw, "params_url", where),
        license=_str(raw, "license", where),
        quants=quants,
        default_quant=default_quant,
        architecture=architecture_of(config, where),
        config=config,
        gguf_n_vocab=n_vocab,
    )


def _gguf_repos(raw: object, where: str) -> tuple[GgufRepo, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadModelFile(f"{where}: 'gguf' must be a list of {{ repo = ..., source = ... }} tables")
    repos: list[GgufRepo] = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadModelFile(f"{where}: each 'gguf' entry must be a {{ repo = ..., source = ... }} table")
        repo = _str(item, "repo", f"{where} gguf entry")
        source = _str(item, "source", f"{where} gguf entry {repo}")
        if repo.count("/") != 1:
            raise BadModelFile(f"{where}: gguf repository '{repo}' is not written OWNER/NAME")
        if source not in GGUF_SOURCES:
            raise BadModelFile(f"{where}: gguf source '{source}' is not one of {', '.join(GGUF_SOURCES)}")
        repos.append(GgufRepo(repo, source))
    return tuple(repos)


def load_model_catalog(path: str | os.PathLike[str] | None = None) -> tuple[CatalogEntry, ...]:
    """All catalog entries, in file order (read once and cached)."""
    p = Path(path) if path is not None else catalog_path()
    cached = _entries.get(p)
    if cached is not None:
        return cached
    if not files.path_exists(p):
        raise BadModelFile(f"the model catalog is missing: {show_path(p)}")
    text = files.read_text(p, "model catalog", files.MAX_CATALOG_BYTES, BadModelFile)
    data = files.parse_toml(text, f"the model catalog {show_path(p)}", BadModelFile)
    models = data.get("model")
    if not isinstance(models, list):
        raise BadModelFile(f"the model catalog {p} has no [[model]] entries")
    entries = tuple(_parse_entry(raw, i, p.name) for i, raw in enumerate(models))
    seen: set[str] = set()
    for e in entries:
        if e.id in seen:
            raise BadModelFile(f"the model catalog {p} lists '{e.id}' twice")
        seen.add(e.id)
    with _lock:
        _entries[p] = entries
    return entries


def find_entry(model_id: str, path: str | os.PathLike[str] | None = None) -> CatalogEntry:
    """The catalog entry for an id (case-insensitive); UnknownName with the closest ids otherwise."""
    entries = load_model_catalog(path)
    key = model_id.strip().lower()
    for e in entries:
        if e.id == key:
            return e
    ids = [e.id for e in entries]
    close = difflib.get_close_matches(key, ids, n=3, cutoff=0.5)
    if not close:
        # Names such as "llama 3.1 8b" or "Qwen3-8B" find the id they spell.
        squashed = key.replace(" ", "-").replace("_", "-")
        close = [e.id for e in entries if squashed in e.id or e.id in squashed][:3]
    hint = f" (did you mean {', '.join(close)}?)" if close else " (see the catalog with 'rigfit fit')"
    raise UnknownName(f"unknown model '{model_id}'{hint}")


def catalog_spec(
    model_id: str, quant: str | None = None, path: str | os.PathLike[str] | None = None
) -> ModelSpec:
    """The :class:`ModelSpec` of a catalog model at file type ``quant`` (None: the entry's default).

    Specs are cached per model and quant, so the fit table can ask for every model at every quant
    again and again.
    """
    entry = find_entry(model_id, path)
    ftype = normalize_file_type(quant) if quant is not None else entry.default_quant
    p = Path(path) if path is not None else catalog_path()
    base = _base_specs.get((p, entry.id))
    if base is None:
        base = spec_from_config(
            entry.config,
            id=entry.id,
            name=entry.name,
            quant=None,
            source="catalog",
            origin=f"catalog entry '{entry.id}'",
            n_vocab=entry.gguf_n_vocab,
        )
        with _lock:
            base = _base_specs.setdefault((p, entry.id), base)
    return apply_file_type(base, ftype)
