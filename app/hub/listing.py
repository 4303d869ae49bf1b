"""A repository's GGUF models, with exact sizes, from one API call; searching the hub for more.

``HfApi.model_info(files_metadata=True)`` answers with the commit, every file's size and, for files
in LFS, its SHA-256, in one request however many files the repository holds. File names are mapped to
quants (:func:`app.core.gguf_names.guess_quant`) and the parts of a split model
(``name-00001-of-00003.gguf``, often in a folder of their own) are grouped into one model.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from huggingface_hub import HfApi

from app.core.errors import RigfitError
from app.core.gguf_names import guess_quant, is_projector, split_name
from app.hub.config import HubConfig, hub_config
from app.hub.errors import HubError, HubNotFound, format_bytes, hub_error, offline_error
from app.hub.http import LIBRARY, api_get_json
from app.hub.refs import check_repo_id, normalize_quant_name


@dataclass(frozen=True)
class HubFile:
    """One file of a repository, as the hub lists it."""

    path: str
    size_bytes: int
    sha256: str | None  # the LFS object's SHA-256; None for a file kept in git itself
    blob_id: str | None = None  # the git blob id

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def blob_name(self) -> str:
        """The file's name under ``blobs/`` in the Hugging Face cache (its ETag on the hub)."""
        return self.sha256 or self.blob_id or ""


@dataclass(frozen=True)
class RemoteModel:
    """One GGUF model of a repository: a single file, or every part of a split model."""

    repo: str
    name: str  # the file name without .gguf and without the -0000N-of-0000M part suffix
    quant: str | None  # from the file name (the header, once read, is the truth)
    files: tuple[HubFile, ...]  # in part order
    n_parts: int = 1  # parts the names announce; more than len(files) when some are missing

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    @property
    def first(self) -> HubFile:
        return self.files[0]

    @property
    def complete(self) -> bool:
        return len(self.files) == self.n_parts

    @property
    def ref(self) -> str:
        """``hf:REPO/FILE.gguf`` (the first part for a split model), what ``--model`` takes."""
        return f"hf:{self.repo}/{self.first.path}"

    def describe(self) -> str:
        parts = f", {self.n_parts} parts" if self.n_parts > 1 else ""
        missing = "" if self.complete else f", {self.n_parts - len(self.files)} missing"
        return f"{self.first.path} ({self.quant or 'quant unknown'}, {format_bytes(self.size_bytes)}{parts}{missing})"


@dataclass(frozen=True)
class RepoListing:
    """A repository at one commit: its GGUF models (and projectors, which are not models)."""

    repo: str
    revision: str  # what was asked for ("main", a tag or a commit)
    commit: str  # the commit it resolved to
    models: tuple[RemoteModel, ...]
    projectors: tuple[HubFile, ...] = ()
    gated: bool = False
    private: bool = False

    def quants(self) -> tuple[str, ...]:
        """The quants the repository offers, in listing order, each once."""
        return tuple(dict.fromkeys(m.quant for m in self.models if m.quant))

    def for_quant(self, quant: str) -> RemoteModel | None:
        """The model to take for a quant: complete ones first, then the plainest (shortest) name."""
        wanted = normalize_quant_name(quant)
        found = [m for m in self.models if m.quant == wanted]
        if not found:
            return None
        return min(found, key=lambda m: (not m.complete, len(m.first.path), m.first.path))

    def for_file(self, name: str) -> RemoteModel | None:
        """The model holding a file, by its path in the repository or its bare name (any part)."""
        for exact in (True, False):
            for m in self.models:
                for f in m.files:
                    if (
                        (f.path == name or f.name == name)
                        if exact
                        else name.lower() in (f.path.lower(), f.name.lower())
                    ):
                        return m
        return None

    def pick(self, quant: str | None = None, file: str | None = None) -> RemoteModel:
        """The model a user asked for with ``--file`` or ``--quant`` (or the only one there is)."""
        if not self.models:
            raise HubNotFound(f"{self.repo} holds no GGUF model (only other formats)")
        if file is not None:
            model = self.for_file(file)
            if model is None:
                raise HubNotFound(f"{self.repo} has no GGUF file {file!r}; it has: {self._names()}")
        elif quant is not None:
            model = self.for_quant(quant)
            if model is None:
                raise HubNotFound(
                    f"{self.repo} has no {normalize_quant_name(quant)} GGUF; it has {', '.join(self.quants()) or 'none with a quant in its name'}"
                )
        elif len(self.models) == 1:
            model = self.models[0]
        else:
            raise RigfitError(
                f"{self.repo} has {len(self.models)} GGUF models: pick one with --quant "
                f"({', '.join(self.quants())}), or name the file (hf:{self.repo}/FILE.gguf, or --file for pull)"
            )
        if not model.complete:
            raise HubNotFound(
                f"{self.repo}: {model.name} is split into {model.n_parts} files, but the repository holds "
                f"only {len(model.files)} of them"
            )
        return model

    def _names(self) -> str:
        names = [m.first.path for m in self.models]
        return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def group_gguf_files(repo: str, files: list[HubFile]) -> tuple[tuple[RemoteModel, ...], tuple[HubFile, ...]]:
    """The models among a repository's files (split parts grouped), and its projectors."""
    singles: list[RemoteModel] = []
    groups: dict[tuple[str, str, int], dict[int, HubFile]] = {}
    projectors: list[HubFile] = []
    for f in files:
        if not f.path.lower().endswith(".gguf"):
            continue
        if is_projector(f.name):
            projectors.append(f)
            continue
        part = split_name(f.name)
        if part is None:
            stem = f.name[: -len(".gguf")]
            singles.append(RemoteModel(repo, stem, guess_quant(f.path), (f,)))
        else:
            key = (posixpath.dirname(f.path), part.prefix, part.count)
            groups.setdefault(key, {})[part.no] = f
    for (folder, prefix, count), parts in groups.items():
        ordered = tuple(parts[no] for no in sorted(parts))
        # Quantizers put the quant in the prefix or in the folder name (bartowski: Q4_K_M/…-00001-of-…)
        quant = guess_quant(prefix) or guess_quant(folder)
        if min(parts) != 1:  # without part 1 there is no header to plan or file to load
            continue
        singles.append(RemoteModel(repo, prefix, quant, ordered, count))
    singles.sort(key=lambda m: (m.size_bytes, m.first.path))
    return tuple(singles), tuple(projectors)


def listing_from_info(repo: str, revision: str, info: Any) -> RepoListing:
    """A :class:`RepoListing` from ``HfApi.model_info(files_metadata=True)``'s answer."""
    files: list[HubFile] = []
    for s in info.siblings or ():
        size = s.lfs.size if s.lfs is not None else s.size
        if size is None:
            continue
        files.append(
            HubFile(
                path=s.rfilename,
                size_bytes=int(size),
                sha256=s.lfs.sha256 if s.lfs is not None else None,
                blob_id=s.blob_id,
            )
        )
    models, projectors = group_gguf_files(repo, files)
    return RepoListing(
        repo=repo,
        revision=revision,
        commit=str(info.sha or revision),
        models=models,
        projectors=projectors,
        gated=bool(info.gated),
        private=bool(info.private),
    )


def list_repo(repo: str, revision: str | None = None, *, config: HubConfig | None = None) -> RepoListing:
    """The GGUF models of a repository at ``revision`` (default ``main``): one API call."""
    cfg = config or hub_config()
    repo = check_repo_id(repo)
    if cfg.offline:
        raise offline_error()
    api = HfApi(endpoint=cfg.endpoint, library_name=LIBRARY)
    try:
        info = api.model_info(repo, revision=revision, files_metadata=True, timeout=cfg.timeout_s)
    except Exception as exc:
        raise hub_error(exc, endpoint=cfg.endpoint, repo=repo, timeout_s=cfg.timeout_s) from None
    return listing_from_info(repo, revision or "main", info)


@dataclass(frozen=True)
class SearchHit:
    """A repository the hub's search found."""

    repo: str
    downloads: int = 0
    likes: int = 0
    gated: bool = False


def search_repos(text: str, limit: int = 10, *, config: HubConfig | None = None) -> tuple[SearchHit, ...]:
    """GGUF repositories whose id contains ``text``, most downloaded first (the hub's model search).

    The same request as ``HfApi.list_models(search=..., filter="gguf")``, made directly because
    ``list_models`` takes no timeout and retries for half a minute.
    """
    cfg = config or hub_config()
    query = text.strip()
    if not query:
        raise RigfitError("nothing to search for: give part of a model name, like 'llama 3.2'")
    params = {"search": query, "filter": "gguf", "sort": "downloads", "direction": "-1", "limit": str(limit)}
    data = api_get_json(cfg, "/api/models", params, repo=f"the search for {query!r}")
    if not isinstance(data, list):
        raise HubError(f"{cfg.endpoint} answered the search with something that is not a list")
    hits: list[SearchHit] = []
    for item in data[:limit]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        hits.append(
            SearchHit(
                repo=item["id"],
                downloads=int(item.get("downloads") or 0),
                likes=int(item.get("likes") or 0),
                gated=bool(item.get("gated")),
            )
        )
    return tuple(hits)
