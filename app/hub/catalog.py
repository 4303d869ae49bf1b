"""The catalog's GGUF repositories (``gguf`` in ``resources/models.toml``): where to look first.

A catalog model planned in the Fit tab at a quant becomes a file to download here: its repositories
are listed in the catalog's order (the model maker's own first where there is one) and the first
that has a file of that quant is taken.
"""

from __future__ import annotations

import re

from app.core.catalog import CatalogEntry, GgufRepo, find_entry, load_model_catalog
from app.core.errors import RigfitError
from app.hub.config import HubConfig, hub_config
from app.hub.errors import HubAccessDenied, HubNotFound
from app.hub.listing import RemoteModel, RepoListing, list_repo
from app.hub.refs import normalize_quant_name


class QuantNotInCatalogRepos(HubNotFound):
    """No catalog repository holds the quant; ``listing`` is the first one that exists (or ``None``),
    so a caller can offer its other files without asking the hub again."""

    def __init__(self, message: str, listing: RepoListing | None) -> None:
        super().__init__(message)
        self.listing = listing


SOURCE_LABELS = {
    "maker": "the model maker's own GGUF",
    "llama.cpp": "llama.cpp's maintainers (ggml-org)",
    "quantizer": "quantized by {owner}",
}


def source_label(repo: GgufRepo) -> str:
    """``quantized by bartowski``, ``the model maker's own GGUF``: who publishes a repository."""
    return "catalog: " + SOURCE_LABELS.get(repo.source, repo.source).format(owner=repo.owner)


def _squash(text: str) -> str:
    return re.sub(r"[\s_]+", "-", text.strip().lower())


def matching_entries(text: str) -> tuple[CatalogEntry, ...]:
    """Catalog models that ``text`` names: by id, or every word found in the id or the name."""
    key = _squash(text)
    words = key.split("-")
    found = []
    for e in load_model_catalog():
        haystack = f"{e.id} {_squash(e.name)}"
        if key == e.id or all(w in haystack for w in words if w):
            found.append(e)
    return tuple(found)


def catalog_gguf_repos(text: str) -> list[tuple[str, str]]:
    """``(repo, label)`` for the GGUF repositories of the catalog models that ``text`` names."""
    out: list[tuple[str, str]] = []
    for e in matching_entries(text):
        for r in e.gguf_repos:
            out.append((r.repo, source_label(r)))
    return out


def find_for_quant(
    model_id: str, quant: str, *, config: HubConfig | None = None
) -> tuple[RepoListing, RemoteModel, GgufRepo]:
    """The first catalog repository of a model that has a complete file of ``quant``, and that file.

    One API call per repository tried. Raises with what each repository answered when none has it.
    """
    cfg = config or hub_config()
    entry = find_entry(model_id)
    if not entry.gguf_repos:
        raise RigfitError(f"the catalog knows no GGUF repository for {entry.name}: use 'rigfit search'")
    wanted = normalize_quant_name(quant)
    tried: list[str] = []
    first: RepoListing | None = None
    for repo in entry.gguf_repos:
        try:
            listing = list_repo(repo.repo, config=cfg)
        except (HubNotFound, HubAccessDenied) as exc:
            tried.append(f"{repo.repo}: {exc}")
            continue
        model = listing.for_quant(wanted)
        if model is not None and model.complete:
            return listing, model, repo
        first = first or listing
        tried.append(f"{repo.repo} has no {wanted} file")
    raise QuantNotInCatalogRepos(
        f"no catalog repository of {entry.name} has a {wanted} GGUF ({'; '.join(tried)})", first
    )
