"""Plan a GGUF on the hub before downloading it: its header, read with HTTP range requests.

:class:`HttpRangeSource` gives Rigfit's own reader (:func:`app.core.gguf_reader.read_gguf_source`)
the bytes it asks for; the reader sizes its requests, so a header with a 128k-token vocabulary takes
two or three requests and little more than its own size. Every part of a split model is read (each
holds part of the tensor table). Headers are kept on disk (:class:`~app.hub.header_cache.HeaderCache`);
the :class:`~app.core.model_spec.ModelSpec` is the one a local copy of the file gives, with
``remote`` set and ``paths`` naming where ``rigfit pull`` will put the files.

``hf:`` references: ``hf:OWNER/REPO/FILE.gguf`` (any part of a split model names the model),
``hf:OWNER/REPO`` with a quant (``--quant Q4_K_M``, or ``hf:OWNER/REPO:Q4_K_M`` as llama.cpp's ``-hf``
writes it); ``@REVISION`` after the repository picks a branch, tag or commit.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from huggingface_hub import get_session, hf_hub_url, hf_raise_for_status

from app.core.errors import BadModelFile
from app.core.gguf_reader import (
    FIRST_READ_BYTES,
    LATER_PART_FIRST_READ_BYTES,
    GgufFile,
    GgufModel,
    model_from_parts,
    read_gguf_source,
)
from app.core.gguf_spec import spec_from_gguf
from app.core.model_source import load_gguf_spec
from app.core.model_spec import ModelSpec
from app.hub.cache import cached_file, downloaded_path, snapshot_path
from app.hub.config import HubConfig, hub_config
from app.hub.errors import HubError, format_bytes, hub_error, offline_error
from app.hub.header_cache import HeaderCache, PrefixSource
from app.hub.http import hub_headers, same_host, timeout
from app.hub.listing import HubFile, RemoteModel, RepoListing, list_repo
from app.hub.refs import HF_PREFIX, HubRef, is_hub_ref, normalize_quant_name, parse_hub_ref

_PART_READERS = 4  # headers of a split model's parts read at once


def resolve(ref: HubRef, quant: str | None = None, *, config: HubConfig) -> tuple[RepoListing, RemoteModel]:
    """The listing and the model a reference (and ``--quant``) names: one API call."""
    listing = list_repo(ref.repo, ref.revision, config=config)
    if ref.path:
        return listing, listing.pick(file=ref.path)
    return listing, listing.pick(quant=ref.quant or quant)


# ------------------------------------------------------------------------------------------ range reads


class HttpRangeSource:
    """A file on the hub read with HTTP range requests; counts requests and bytes received.

    The first request goes to the hub's ``resolve`` URL and follows its redirect (to the CDN, for
    files in LFS); later ones go straight to where it led. The token is sent to the hub's own host
    only, as huggingface_hub does.
    """

    def __init__(self, config: HubConfig, repo: str, commit: str, file: HubFile) -> None:
        self.config = config
        self.repo = repo
        self.file = file
        self.url = hf_hub_url(repo, file.path, revision=commit, endpoint=config.endpoint)
        self.requests = 0  # HTTP requests, redirects included
        self.bytes_received = 0
        self.prefix = bytearray()  # what was read from the start of the file, in order

    @property
    def size_bytes(self) -> int:
        return self.file.size_bytes

    def read(self, offset: int, length: int) -> bytes:
        if self.config.offline:
            raise offline_error()
        extra = {"Range": f"bytes={offset}-{offset + length - 1}", "Accept-Encoding": "identity"}
        headers = hub_headers(extra) if same_host(self.url, self.config.endpoint) else extra
        buf = bytearray()
        try:
            with get_session().stream("GET", self.url, headers=headers, timeout=timeout(self.config)) as r:
                self.requests += 1 + len(r.history)
                if r.status_code >= 400:
                    r.read()
                    hf_raise_for_status(r)
                if r.status_code == 200 and offset > 0:
                    raise HubError(
                        f"{self.config.endpoint} does not answer range requests, so headers cannot be read"
                    )
                if r.status_code not in (200, 206):
                    raise HubError(
                        f"the hub answered {r.status_code} to a range request for {self.file.path}"
                    )
                for chunk in r.iter_bytes():
                    buf += chunk
                    if len(buf) >= length:
                        break  # a server that ignored the range: stop at what was asked
                self.url = str(r.url)
        except Exception as exc:
            raise hub_error(
                exc,
                endpoint=self.config.endpoint,
                repo=self.repo,
                filename=self.file.path,
                timeout_s=self.config.timeout_s,
            ) from None
        self.bytes_received += len(buf)
        data = bytes(buf[:length])
        if offset == len(self.prefix):
            self.prefix += data
        return data


@dataclass(frozen=True)
class HeaderRead:
    """The headers of every part of a remote model, and what reading them cost."""

    model: GgufModel
    requests: int  # HTTP requests (0 when every header came from the cache)
    bytes_received: int
    cached_parts: int  # parts whose header came from the disk cache


def _read_part(
    config: HubConfig, cache: HeaderCache | None, listing: RepoListing, f: HubFile, index: int
) -> tuple[GgufFile, int, int, bool]:
    name = f"{HF_PREFIX}{listing.repo}/{f.path}"
    key = f.blob_name
    if cache is not None and key:
        data = cache.get(key, f.size_bytes)
        if data is not None:
            try:
                return (
                    read_gguf_source(PrefixSource(data, f.size_bytes), name, first_read_bytes=len(data)),
                    0,
                    0,
                    True,
                )
            except BadModelFile:
                pass  # an entry from an older reader that stopped short: read it again
    source = HttpRangeSource(config, listing.repo, listing.commit, f)
    first = FIRST_READ_BYTES if index == 0 else LATER_PART_FIRST_READ_BYTES
    parsed = read_gguf_source(source, name, first_read_bytes=first)
    if cache is not None and key:
        cache.put(key, f.size_bytes, bytes(source.prefix[: parsed.data_offset]))
    return parsed, source.requests, source.bytes_received, False


def read_remote_headers(
    listing: RepoListing,
    model: RemoteModel,
    *,
    config: HubConfig | None = None,
    cache: HeaderCache | None = None,
) -> HeaderRead:
    """Read (or take from the cache) the header of every part of ``model``."""
    cfg = config or hub_config()
    if len(model.files) == 1:
        results = [_read_part(cfg, cache, listing, model.files[0], 0)]
    else:
        with ThreadPoolExecutor(max_workers=_PART_READERS) as pool:
            futures = [pool.submit(_read_part, cfg, cache, listing, f, i) for i, f in enumerate(model.files)]
            results = [fut.result() for fut in futures]
    files = [r[0] for r in results]
    return HeaderRead(
        model=model_from_parts(files),
        requests=sum(r[1] for r in results),
        bytes_received=sum(r[2] for r in results),
        cached_parts=sum(1 for r in results if r[3]),
    )


def default_cache(config: HubConfig) -> HeaderCache:
    return HeaderCache(config.header_cache_dir)


# ------------------------------------------------------------------------------------------ specs


def _record(listing: RepoListing, model: RemoteModel) -> dict[str, object]:
    return {
        "repo": listing.repo,
        "commit": listing.commit,
        "name": model.name,
        "quant": model.quant,
        "files": [
            {"path": f.path, "size": f.size_bytes, "sha256": f.sha256, "blob_id": f.blob_id}
            for f in model.files
        ],
    }


def _model_from_record(record: dict[str, object]) -> tuple[RepoListing, RemoteModel] | None:
    try:
        files = tuple(
            HubFile(str(f["path"]), int(f["size"]), f.get("sha256"), f.get("blob_id"))
            for f in record["files"]  # type: ignore[attr-defined]
        )
        repo = str(record["repo"])
        model = RemoteModel(repo, str(record["name"]), record.get("quant"), files, len(files))  # type: ignore[arg-type]
        return RepoListing(repo, str(record["commit"]), str(record["commit"]), (model,)), model
    except (KeyError, TypeError, ValueError):
        return None


def remote_spec(
    listing: RepoListing,
    model: RemoteModel,
    *,
    config: HubConfig | None = None,
    cache: HeaderCache | None = None,
) -> ModelSpec:
    """The spec of a model on the hub, from its headers; a downloaded model is planned from its file."""
    cfg = config or hub_config()
    local = downloaded_path(cfg, listing, model)
    if local is not None:
        spec = load_gguf_spec(local)
        return replace(spec, notes=(*spec.notes, f"{model.ref} is downloaded: planned from {local}"))
    store = cache if cache is not None else default_cache(cfg)
    read = read_remote_headers(listing, model, config=cfg, cache=store)
    store.remember(model.ref, _record(listing, model))
    spec = spec_from_gguf(read.model)
    paths = tuple(str(snapshot_path(cfg, listing.repo, listing.commit, f.path)) for f in model.files)
    note = (
        f"planned from the header of {model.ref} on the hub ({format_bytes(model.size_bytes)}, not downloaded); "
        f"rigfit pull {listing.repo} --file {model.first.path} downloads it"
    )
    return replace(spec, paths=paths, remote=model.ref, notes=(*spec.notes, note))


def hub_model_spec(
    ref: str, quant: str | None = None, *, config: HubConfig | None = None, cache: HeaderCache | None = None
) -> ModelSpec:
    """The spec for ``hf:…`` (``quant`` picks the file when the reference names only a repository).

    With ``HF_HUB_OFFLINE`` a downloaded file, or a header read before, still plans.
    """
    cfg = config or hub_config()
    parsed = parse_hub_ref(ref)
    if cfg.offline:
        local = cached_file(parsed, quant, config=cfg)
        if local is not None:
            return load_gguf_spec(local)
        store = cache if cache is not None else default_cache(cfg)
        record = store.recall(parsed.text) if parsed.path else None
        found = _model_from_record(record) if record else None
        if found is None:
            raise offline_error()
        listing, model = found
        return remote_spec(listing, model, config=cfg, cache=store)
    listing, model = resolve(parsed, quant, config=cfg)
    spec = remote_spec(listing, model, config=cfg, cache=cache)
    if (
        quant is not None
        and parsed.path is not None
        and spec.file_type
        and spec.file_type != normalize_quant_name(quant)
    ):
        note = f"--quant {normalize_quant_name(quant)} ignored: {model.first.name} is {spec.file_type}"
        spec = replace(spec, notes=(*spec.notes, note))
    return spec


def load_any_model_spec(ref: str, quant: str | None = None) -> ModelSpec:
    """``hf:…`` from the hub, anything else through :func:`app.core.model_source.load_model_spec`."""
    if is_hub_ref(ref):
        return hub_model_spec(ref, quant)
    from app.core.model_source import load_model_spec

    return load_model_spec(ref, quant)
