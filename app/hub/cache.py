"""Where the Hugging Face cache keeps a repository's files, looked up without the network.

``models--OWNER--NAME/snapshots/<commit>/<path>`` links to ``blobs/<sha256>``; ``refs/<branch>``
holds a branch's commit. These lookups need neither the network nor ``huggingface_hub``, so running
an ``hf:`` model that is already downloaded works offline and starts fast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.errors import RigfitError
from app.hub.config import HubConfig, hub_config
from app.hub.refs import HubRef, is_hub_ref, normalize_quant_name, parse_hub_ref

if TYPE_CHECKING:
    from app.hub.listing import RemoteModel, RepoListing


def repo_folder(config: HubConfig, repo: str) -> Path:
    """``models--OWNER--NAME`` in the Hugging Face cache."""
    return config.cache_dir / ("models--" + repo.replace("/", "--"))


def snapshot_path(config: HubConfig, repo: str, commit: str, path: str) -> Path:
    """Where huggingface_hub keeps a file of a commit (a link to its blob)."""
    return repo_folder(config, repo) / "snapshots" / commit / Path(*path.split("/"))


def downloaded_path(config: HubConfig, listing: RepoListing, model: RemoteModel) -> Path | None:
    """The first part's path in the HF cache when every part is there, whole; else None."""
    paths = [snapshot_path(config, listing.repo, listing.commit, f.path) for f in model.files]
    for path, f in zip(paths, model.files, strict=True):
        try:
            if path.stat().st_size != f.size_bytes:
                return None
        except OSError:
            return None
    return paths[0]


def cached_file(ref: HubRef, quant: str | None = None, *, config: HubConfig) -> Path | None:
    """The file a reference names, if it is in the HF cache, found without the network.

    The revision's commit comes from ``refs/`` (as huggingface_hub writes it); a reference without a
    file is matched by the quant in the names of the cached files (the first part of a split model).
    """
    from app.core.gguf_names import guess_quant, split_name

    folder = repo_folder(config, ref.repo)
    revision = ref.revision or "main"
    commit = revision
    with contextlib.suppress(OSError):
        commit = (folder / "refs" / revision).read_text().strip() or revision
    snapshot = folder / "snapshots" / commit
    if ref.path is not None:
        path = snapshot / Path(*ref.path.split("/"))
        return path if path.is_file() else None
    wanted = normalize_quant_name(ref.quant or quant or "")
    if not wanted or not snapshot.is_dir():
        return None
    for path in sorted(snapshot.rglob("*.gguf"), key=lambda p: (len(p.name), p.name)):
        part = split_name(path.name)
        if (
            (part is None or part.no == 1)
            and guess_quant(str(path.relative_to(snapshot))) == wanted
            and path.is_file()
        ):
            return path
    return None


def downloaded_file(ref: str, quant: str | None = None, *, config: HubConfig | None = None) -> Path:
    """The local file for ``hf:…`` (to run it), or a message saying how to download it."""
    cfg = config or hub_config()
    parsed = parse_hub_ref(ref)
    path = cached_file(parsed, quant, config=cfg)
    if path is None:
        what = (
            f"--file {parsed.path}"
            if parsed.path
            else f"--quant {normalize_quant_name(parsed.quant or quant or 'Q4_K_M')}"
        )
        raise RigfitError(
            f"{parsed.text} is not downloaded yet: run 'rigfit pull {parsed.repo} {what}' first"
        )
    return path


def local_model_ref(ref: str) -> str:
    """The downloaded file for an ``hf:`` reference (a message says how to download it); other
    references (paths, ``demo``) unchanged. For ``rigfit run`` and ``rigfit bench``."""
    if is_hub_ref(ref):
        return str(downloaded_file(ref))
    return ref
