"""Finding the GGUF files people already have: caches of Hugging Face, LM Studio, Ollama and llama.cpp.

Where they live:

* Hugging Face cache (``huggingface_hub``, ``llama-cli -hf``): ``HF_HUB_CACHE``, else
  ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``. A repository is ``models--org--name`` whose
  ``snapshots/<revision>/`` holds symlinks to ``blobs/``; every revision links the same blob, so a
  file is listed once (by its real path).
* LM Studio: ``~/.lmstudio/models/<publisher>/<repo>/*.gguf``, older versions
  ``~/.cache/lm-studio/models`` (the same under ``%USERPROFILE%`` on Windows).
* Ollama: ``OLLAMA_MODELS``, ``~/.ollama/models``, ``/usr/share/ollama/.ollama/models`` (the Linux
  service's). Blobs are ``blobs/sha256-<hex>`` without an extension, so a blob counts when it starts
  with the GGUF magic; its name comes from the manifests
  ``manifests/<registry>/<namespace>/<model>/<tag>`` (JSON; the layer whose ``mediaType`` is
  ``application/vnd.ollama.image.model``), its quantization from the config blob's ``file_type``.
* llama.cpp's own cache: ``LLAMA_CACHE``, else ``~/.cache/llama.cpp`` (``~/Library/Caches`` on macOS,
  ``%LOCALAPPDATA%`` on Windows): flat files from older versions, the Hugging Face layout from newer.
* Folders the user adds.

Every folder is scanned the same way, recognising those layouts wherever they appear (a user folder
that is a copy of an Ollama store or a Hugging Face cache works too).

The scan is cheap on purpose: directory listings, ``stat``, four bytes of magic per candidate file and
the small Ollama JSON files; never a GGUF header (the view reads the header of the one file the user
picks). Depth and the number of directory entries are bounded, unreadable folders are skipped and
reported, directory symlink loops are cut. A scan of a big disk can be stopped from another thread
(``should_stop``). No Qt: the Run tab calls :func:`discover_models` on its thread pool.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.core import files
from app.core.errors import RigfitError
from app.core.gguf_names import guess_quant  # the rules the hub listing shares
from app.core.gguf_reader import GGUF_MAGIC

SOURCE_HF = "huggingface"
SOURCE_LMSTUDIO = "lmstudio"
SOURCE_OLLAMA = "ollama"
SOURCE_LLAMA_CPP = "llama.cpp"
SOURCE_FOLDER = "folder"
SOURCE_LABELS: dict[str, str] = {
    SOURCE_HF: "Hugging Face cache",
    SOURCE_LMSTUDIO: "LM Studio",
    SOURCE_OLLAMA: "Ollama",
    SOURCE_LLAMA_CPP: "llama.cpp cache",
    SOURCE_FOLDER: "Your folder",
}

DEFAULT_MAX_DEPTH = 6  # below a root: HF repo/snapshots/rev/subfolder/file is 5, LM Studio 3
DEFAULT_MAX_ENTRIES = 200_000  # directory entries looked at in one scan, all roots together
_MAX_JSON_BYTES = 1 << 20  # an Ollama manifest or config is a few hundred bytes

OLLAMA_MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
_OLLAMA_DEFAULT_REGISTRY = "registry.ollama.ai"
# Folders that never hold models but can be huge.
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".locks", ".Trash"})
_SPLIT_RE = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# Vision projectors (LLaVA-style "mmproj" files) are GGUF too, but cannot run on their own.
_PROJECTOR_RE = re.compile(r"^mmproj", re.IGNORECASE)


@dataclass(frozen=True)
class SearchRoot:
    """A folder to search and what put models there (one of the ``SOURCE_*`` names)."""

    path: str
    source: str


@dataclass(frozen=True)
class FoundModel:
    """One runnable model file found on disk.

    ``path`` is the file to open: the first part of a split model, the blob of an Ollama model.
    ``size_bytes`` counts every part that is there. ``quant`` is read from the file name (or Ollama's
    config) without opening the GGUF header, so it may be ``None``. ``where`` says where it was found
    in words (a Hugging Face repository, an LM Studio publisher folder, a folder path).
    """

    path: str
    name: str
    size_bytes: int
    quant: str | None
    source: str
    where: str
    parts: int = 1
    missing_parts: int = 0

    @property
    def complete(self) -> bool:
        return self.missing_parts == 0

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS.get(self.source, self.source)


@dataclass(frozen=True)
class ScanResult:
    """What one scan found, which folders it searched, and which it could not read."""

    models: tuple[FoundModel, ...]
    searched: tuple[SearchRoot, ...] = ()
    unreadable: tuple[str, ...] = ()
    truncated: bool = False  # stopped at the entry limit (or asked to stop)


# ------------------------------------------------------------------------------------------ where


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value).expanduser() if value else None


def default_roots(
    environ: Mapping[str, str] | None = None,
    home: str | os.PathLike[str] | None = None,
    platform: str | None = None,
) -> tuple[SearchRoot, ...]:
    """The folders where Hugging Face, LM Studio, Ollama and llama.cpp keep models on this machine.

    Folders that do not exist are included (the scan skips them quietly); duplicates are removed.
    ``environ``, ``home`` and ``platform`` default to this process's.
    """
    env = os.environ if environ is None else environ
    home_dir = Path(home) if home is not None else Path.home()
    plat = sys.platform if platform is None else platform
    windows = plat.startswith("win")
    mac = plat == "darwin"
    roots: list[SearchRoot] = []

    # Hugging Face, in huggingface_hub's order of precedence; the default place is searched too, since
    # a variable set today says nothing about where last year's downloads went.
    hf = _env_path(env, "HF_HUB_CACHE") or _env_path(env, "HUGGINGFACE_HUB_CACHE")
    if hf is None and (hf_home := _env_path(env, "HF_HOME")) is not None:
        hf = hf_home / "hub"
    if hf is None and not windows and (xdg := _env_path(env, "XDG_CACHE_HOME")) is not None:
        hf = xdg / "huggingface" / "hub"
    if hf is not None:
        roots.append(SearchRoot(str(hf), SOURCE_HF))
    roots.append(SearchRoot(str(home_dir / ".cache" / "huggingface" / "hub"), SOURCE_HF))

    roots.append(SearchRoot(str(home_dir / ".lmstudio" / "models"), SOURCE_LMSTUDIO))
    roots.append(SearchRoot(str(home_dir / ".cache" / "lm-studio" / "models"), SOURCE_LMSTUDIO))

    if (ollama := _env_path(env, "OLLAMA_MODELS")) is not None:
        roots.append(SearchRoot(str(ollama), SOURCE_OLLAMA))
    roots.append(SearchRoot(str(home_dir / ".ollama" / "models"), SOURCE_OLLAMA))
    if not windows and not mac:
        roots.append(SearchRoot("/usr/share/ollama/.ollama/models", SOURCE_OLLAMA))

    # llama.cpp's fs_get_cache_directory(): LLAMA_CACHE, else the platform's cache folder.
    llama = _env_path(env, "LLAMA_CACHE")
    if llama is None:
        if windows:
            local = _env_path(env, "LOCALAPPDATA")
            llama = (local or home_dir / "AppData" / "Local") / "llama.cpp"
        elif mac:
            llama = home_dir / "Library" / "Caches" / "llama.cpp"
        else:
            llama = (_env_path(env, "XDG_CACHE_HOME") or home_dir / ".cache") / "llama.cpp"
    roots.append(SearchRoot(str(llama), SOURCE_LLAMA_CPP))

    seen: set[str] = set()
    unique: list[SearchRoot] = []
    for root in roots:
        key = os.path.normcase(os.path.abspath(root.path))
        if key not in seen:
            seen.add(key)
            unique.append(root)
    return tuple(unique)


# ------------------------------------------------------------------------------------------ names


def _short_path(path: str, home: str) -> str:
    if home and (path == home or path.startswith(home.rstrip(os.sep) + os.sep)):
        return "~" + path[len(home.rstrip(os.sep)) :]
    return path


# ------------------------------------------------------------------------------------------ the scan


class _Scan:
    """One scan's state: limits, what was seen, what was found."""

    def __init__(
        self, max_depth: int, max_entries: int, should_stop: Callable[[], bool] | None, home: str
    ) -> None:
        self.max_depth = max_depth
        self.entries_left = max_entries
        self.should_stop = should_stop
        self.home = home
        self.models: list[FoundModel] = []
        self.unreadable: list[str] = []
        self.truncated = False
        self.root = ""  # the root being scanned
        self._seen_files: set[str] = set()
        self._seen_dirs: set[tuple[int, int]] = set()

    # -- helpers -------------------------------------------------------------------------------
    def stopped(self) -> bool:
        if self.truncated:
            return True
        if self.entries_left <= 0 or (self.should_stop is not None and self.should_stop()):
            self.truncated = True
        return self.truncated

    def listdir(self, path: str) -> list[os.DirEntry[str]] | None:
        """The entries of a folder, or None (and the folder noted) when it cannot be read."""
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except FileNotFoundError:
            return None
        except OSError:
            self.unreadable.append(path)
            return None
        self.entries_left -= len(entries)
        return entries

    def first_visit(self, path: str) -> bool:
        """False for a folder already scanned (a symlink loop, or two roots that overlap)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        if key in self._seen_dirs:
            return False
        self._seen_dirs.add(key)
        return True

    def claim(self, path: str) -> bool:
        """True the first time a file (by its real path: HF snapshots are symlinks) is claimed."""
        real = os.path.realpath(path)
        if real in self._seen_files:
            return False
        self._seen_files.add(real)
        return True

    def add(self, model: FoundModel) -> None:
        self.models.append(model)

    # -- walking -------------------------------------------------------------------------------
    def walk(self, path: str, source: str, where: str | None, depth: int) -> None:
        """Scan one folder: recognise an Ollama store or a Hugging Face repository, else list GGUFs."""
        if self.stopped() or depth > self.max_depth or not self.first_visit(path):
            return
        entries = self.listdir(path)
        if entries is None:
            return
        dirs: dict[str, os.DirEntry[str]] = {}
        files: list[os.DirEntry[str]] = []
        for entry in entries:
            try:
                if entry.is_dir():  # follows symlinks: first_visit() cuts loops
                    dirs[entry.name] = entry
                elif entry.name.lower().endswith(".gguf") and entry.is_file():
                    files.append(entry)
            except OSError:
                continue
        if "blobs" in dirs and "manifests" in dirs:
            self.ollama_store(path)
            return
        name = os.path.basename(path)
        if name.startswith("models--") and "snapshots" in dirs:
            repo = name[len("models--") :].replace("--", "/")
            self.walk(dirs["snapshots"].path, source, repo, depth + 1)
            return
        self.gguf_files(files, path, source, where)
        for dir_name in sorted(dirs):
            if dir_name in _SKIP_DIRS:
                continue
            self.walk(dirs[dir_name].path, source, where, depth + 1)

    def gguf_files(self, files: list[os.DirEntry[str]], folder: str, source: str, where: str | None) -> None:
        """The models among one folder's ``.gguf`` files; split parts become one model."""
        groups: dict[tuple[str, int], dict[int, os.DirEntry[str]]] = {}
        singles: list[os.DirEntry[str]] = []
        for entry in files:
            if _PROJECTOR_RE.match(entry.name):
                continue
            m = _SPLIT_RE.match(entry.name)
            if m and 1 <= int(m.group("no")) <= int(m.group("count")):
                groups.setdefault((m.group("prefix"), int(m.group("count"))), {})[int(m.group("no"))] = entry
            else:
                singles.append(entry)
        shown_where = where if where is not None else self.folder_label(folder, source)
        for entry in singles:
            size = _size(entry.path)
            if size is None or not _has_magic(entry.path) or not self.claim(entry.path):
                continue
            name = entry.name[: -len(".gguf")]
            self.add(FoundModel(entry.path, name, size, guess_quant(entry.name), source, shown_where))
        for (prefix, count), parts in groups.items():
            first = parts.get(1) or parts[min(parts)]
            if not _has_magic(first.path) or not self.claim(first.path):
                continue
            sizes = [_size(p.path) for p in parts.values()]
            size = sum(s for s in sizes if s is not None)
            present = sum(1 for s in sizes if s is not None)
            self.add(
                FoundModel(
                    path=first.path,
                    name=prefix,
                    size_bytes=size,
                    quant=guess_quant(prefix),
                    source=source,
                    where=shown_where,
                    parts=count,
                    missing_parts=count - present,
                )
            )

    def folder_label(self, folder: str, source: str) -> str:
        """LM Studio's ``publisher/repo``; for other folders the path, with ``~`` for the home folder."""
        if source == SOURCE_LMSTUDIO and self.root:
            rel = os.path.relpath(folder, self.root)
            if rel != "." and not rel.startswith(".."):
                return rel.replace(os.sep, "/")
        return _short_path(folder, self.home)

    # -- Ollama --------------------------------------------------------------------------------
    def ollama_store(self, models_dir: str) -> None:
        """An Ollama ``models`` folder: name each GGUF blob from the manifests that use it."""
        blobs_dir = os.path.join(models_dir, "blobs")
        names: dict[str, list[str]] = {}  # model blob digest -> model names
        quants: dict[str, str] = {}
        not_models: set[str] = set()  # projectors, adapters: GGUF, but not runnable alone
        for tag_path, display in self.ollama_manifests(os.path.join(models_dir, "manifests")):
            manifest = _read_json(tag_path)
            if manifest is None:
                continue
            layers = manifest.get("layers")
            if not isinstance(layers, list):
                continue
            config_quant = self.ollama_config_quant(blobs_dir, manifest.get("config"))
            for layer in layers:
                if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
                    continue
                digest = layer["digest"]
                if layer.get("mediaType") == OLLAMA_MODEL_MEDIA_TYPE:
                    names.setdefault(digest, []).append(display)
                    if config_quant:
                        quants.setdefault(digest, config_quant)
                else:
                    not_models.add(digest)
        entries = self.listdir(blobs_dir)
        if entries is None:
            return
        label = _short_path(models_dir, self.home)
        for entry in sorted(entries, key=lambda e: e.name):
            digest = _blob_digest(entry.name)
            if digest is None:
                continue
            if digest in not_models and digest not in names:
                continue
            size = _size(entry.path)
            if size is None or not _has_magic(entry.path) or not self.claim(entry.path):
                continue
            found = sorted(set(names.get(digest, ())), key=lambda n: (n.endswith(":latest"), n))
            if found:
                name = ", ".join(found)
                where = label
                quant = quants.get(digest) or guess_quant(found[0].rpartition(":")[2])
            else:
                name = f"{entry.name[:19]}…"
                where = f"{label} (in no manifest)"
                quant = None
            self.add(FoundModel(entry.path, name, size, quant, SOURCE_OLLAMA, where))

    def ollama_manifests(self, manifests_dir: str) -> Iterable[tuple[str, str]]:
        """``(manifest file, model name)`` for every tag: ``registry/namespace/model/tag`` files."""
        stack: list[tuple[str, tuple[str, ...]]] = [(manifests_dir, ())]
        while stack and not self.stopped():
            folder, rel = stack.pop()
            entries = self.listdir(folder)
            if entries is None:
                continue
            for entry in sorted(entries, key=lambda e: e.name):
                try:
                    if entry.is_dir():
                        if len(rel) < 4:
                            stack.append((entry.path, (*rel, entry.name)))
                    elif entry.is_file() and rel:
                        yield entry.path, _ollama_name(rel, entry.name)
                except OSError:
                    continue

    def ollama_config_quant(self, blobs_dir: str, config: object) -> str | None:
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            return None
        data = _read_json(os.path.join(blobs_dir, config["digest"].replace(":", "-", 1)))
        value = data.get("file_type") if data else None
        return value.upper() if isinstance(value, str) and value else None


def _ollama_name(rel: tuple[str, ...], tag: str) -> str:
    """``registry.ollama.ai/library/llama3.1`` + ``8b`` → ``llama3.1:8b``, as ``ollama list`` shows it."""
    parts = list(rel)
    if parts and parts[0] == _OLLAMA_DEFAULT_REGISTRY:
        parts = parts[1:]
        if parts and parts[0] == "library":
            parts = parts[1:]
    return f"{'/'.join(parts)}:{tag}"


def _blob_digest(file_name: str) -> str | None:
    """``sha256-<hex>`` (or the old ``sha256:<hex>``) → ``sha256:<hex>``; None for anything else."""
    for sep in ("-", ":"):
        prefix = f"sha256{sep}"
        if file_name.startswith(prefix) and len(file_name) > len(prefix):
            return "sha256:" + file_name[len(prefix) :]
    return None


def _size(path: str) -> int | None:
    """Size in bytes, following symlinks; None for a broken link or an unreadable file."""
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _has_magic(path: str) -> bool:
    # Regular files only, opened without blocking: a FIFO in a model cache must not stall the search.
    try:
        fd, _size = files.open_regular(path, "model file")
    except RigfitError:
        return False
    try:
        return os.read(fd, 4) == GGUF_MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


def _read_json(path: str) -> dict[str, object] | None:
    try:
        raw = files.read_capped(path, "manifest", _MAX_JSON_BYTES)
        data = files.parse_json(raw, "manifest")
    except RigfitError:  # unreadable, too large, not JSON, nested too deeply: not a manifest
        return None
    return data if isinstance(data, dict) else None


def discover_models(
    roots: Iterable[SearchRoot] | None = None,
    extra_folders: Iterable[str | os.PathLike[str]] = (),
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    should_stop: Callable[[], bool] | None = None,
    home: str | os.PathLike[str] | None = None,
) -> ScanResult:
    """Scan ``roots`` (default: :func:`default_roots`) and the user's ``extra_folders`` for GGUF models.

    A file reachable from two roots is listed once, under the first. Models are sorted by source (in
    the order of the roots) and then by name.
    """
    home_text = str(home) if home is not None else str(Path.home())
    all_roots = list(default_roots(home=home) if roots is None else roots)
    all_roots += [SearchRoot(os.fspath(f), SOURCE_FOLDER) for f in extra_folders]
    scan = _Scan(max_depth, max_entries, should_stop, home_text)
    searched: list[SearchRoot] = []
    for root in all_roots:
        if scan.stopped():
            break
        path = os.path.abspath(os.path.expanduser(root.path))
        if not os.path.isdir(path):
            if os.path.exists(path):
                scan.unreadable.append(path)
            continue
        searched.append(root)
        scan.root = path
        scan.walk(path, root.source, None, 0)
    order = {root.source: i for i, root in reversed(list(enumerate(searched)))}
    models = sorted(scan.models, key=lambda m: (order.get(m.source, 99), m.name.lower(), m.path))
    return ScanResult(
        models=tuple(models),
        searched=tuple(searched),
        unreadable=tuple(dict.fromkeys(scan.unreadable)),
        truncated=scan.truncated,
    )


__all__ = [
    "DEFAULT_MAX_DEPTH",
    "SOURCE_FOLDER",
    "SOURCE_HF",
    "SOURCE_LABELS",
    "SOURCE_LLAMA_CPP",
    "SOURCE_LMSTUDIO",
    "SOURCE_OLLAMA",
    "FoundModel",
    "ScanResult",
    "SearchRoot",
    "default_roots",
    "discover_models",
    "guess_quant",
]
