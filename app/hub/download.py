"""Downloads into the standard Hugging Face cache: progress, cancel, resume, free disk, SHA-256.

Why not ``hf_hub_download`` for the bytes: in huggingface_hub 2.4 it writes to a temporary file with
a unique name and deletes it when anything goes wrong, so a cancelled or interrupted download starts
again from zero; it cannot be cancelled while a server stalls; it only warns when the disk is too
small; and it does not check the file's SHA-256. Rigfit streams the file itself with HTTP range
requests into ``blobs/<sha256>.incomplete`` (kept across interruptions, so the next attempt resumes),
hashes it on the way, and only a file whose SHA-256 matches the hub's LFS hash becomes
``blobs/<sha256>``. Then ``hf_hub_download`` itself links it into ``snapshots/<commit>/`` (it finds
the blob and downloads nothing), so the cache is laid out by the official client and every tool that
reads it (llama.cpp's ``-hf``, ``hf cache``, Rigfit's own scan) finds the file.

Rigfit downloads over plain HTTP even where the hub stores a file with Xet: ``hf_xet`` reads Xet
storage faster, but cannot be resumed or checked this way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import filelock
import httpx2
from huggingface_hub import errors as hf_errors
from huggingface_hub import get_session, hf_hub_download, hf_hub_url, hf_raise_for_status

from app.hub.cache import repo_folder, snapshot_path
from app.hub.config import HubConfig, hub_config
from app.hub.errors import (
    ChecksumMismatch,
    DownloadCancelled,
    HubError,
    HubUnreachable,
    NotEnoughDisk,
    format_bytes,
    hub_error,
    offline_error,
)
from app.hub.http import hub_headers, same_host, timeout
from app.hub.listing import HubFile, RemoteModel, RepoListing

CHUNK_BYTES = 1 << 20
DISK_MARGIN_BYTES = 64 << 20  # left free after the download: a full disk breaks everything else
_RETRIES = 5  # reconnections in a row without a byte received in between
_PROGRESS_INTERVAL_S = 0.1
_POLL_S = 1.0
_SPEED_WINDOW_S = 3.0


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download is: bytes over all parts, speed over the last seconds, time left."""

    done_bytes: int
    total_bytes: int
    speed_bps: float
    eta_s: float | None
    file: str  # the part being downloaded
    part: int  # from 1
    parts: int
    resumed_bytes: int  # found on disk from an earlier attempt

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 1.0


@dataclass(frozen=True)
class DownloadPlan:
    """What a download will take, known before it starts."""

    total_bytes: int
    on_disk_bytes: int  # complete parts and partial files already there
    free_bytes: int
    folder: Path

    @property
    def needed_bytes(self) -> int:
        return self.total_bytes - self.on_disk_bytes

    @property
    def fits(self) -> bool:
        return self.needed_bytes + DISK_MARGIN_BYTES <= self.free_bytes


@dataclass(frozen=True)
class DownloadResult:
    """A finished download: the first part's path in the HF cache (what llama.cpp opens)."""

    path: Path
    paths: tuple[Path, ...]
    downloaded_bytes: int  # received this time
    resumed_bytes: int  # found from an earlier attempt
    already_there: bool


def _blob(config: HubConfig, repo: str, f: HubFile) -> Path:
    return repo_folder(config, repo) / "blobs" / f.blob_name


def _partial(config: HubConfig, repo: str, f: HubFile) -> Path:
    return _blob(config, repo, f).with_name(f.blob_name + ".incomplete")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def free_bytes(folder: Path) -> int:
    """Free space where ``folder`` is (or would be: its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


def _on_disk(config: HubConfig, listing: RepoListing, f: HubFile) -> int:
    if _size(_blob(config, listing.repo, f)) == f.size_bytes:
        return f.size_bytes
    return min(_size(_partial(config, listing.repo, f)), f.size_bytes)


def plan_download(
    listing: RepoListing, model: RemoteModel, *, config: HubConfig | None = None
) -> DownloadPlan:
    """Size, what is already on disk, and free space, for the window and the CLI to show first."""
    cfg = config or hub_config()
    return DownloadPlan(
        total_bytes=model.size_bytes,
        on_disk_bytes=sum(_on_disk(cfg, listing, f) for f in model.files),
        free_bytes=free_bytes(cfg.cache_dir),
        folder=cfg.cache_dir,
    )


class _Meter:
    """Progress reports, at most every 0.1 s, with the speed of the last three seconds."""

    def __init__(self, total: int, done: int, parts: int, report: Callable[[DownloadProgress], None] | None):
        self.total = total
        self.done = done
        self.parts = parts
        self.report = report
        self.resumed = 0
        self.samples: deque[tuple[float, int]] = deque()
        self.last = 0.0

    def add(self, n: int, file: str, part: int, force: bool = False) -> None:
        self.done += n
        if self.report is None:
            return
        now = time.monotonic()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > _SPEED_WINDOW_S:
            self.samples.popleft()
        if not force and now - self.last < _PROGRESS_INTERVAL_S:
            return
        self.last = now
        t0, d0 = self.samples[0]
        speed = (self.done - d0) / (now - t0) if now > t0 else 0.0
        left = self.total - self.done
        eta = left / speed if speed > 0 else None
        self.report(DownloadProgress(self.done, self.total, speed, eta, file, part, self.parts, self.resumed))


def _write_chunk(out: object, chunk: bytes) -> None:
    out.write(chunk)  # type: ignore[attr-defined]


def _hash_existing(path: Path, size: int, hasher: hashlib._Hash, cancel: threading.Event | None) -> None:
    with path.open("rb") as f:
        left = size
        while left > 0:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("download cancelled")
            block = f.read(min(8 << 20, left))
            if not block:
                break
            hasher.update(block)
            left -= len(block)


def _fetch(
    config: HubConfig,
    listing: RepoListing,
    f: HubFile,
    part: int,
    meter: _Meter,
    cancel: threading.Event | None,
) -> int:
    """Stream one file into its partial file, resuming what is there; returns the bytes received."""
    partial = _partial(config, listing.repo, f)
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = _size(partial)
    if have > f.size_bytes:
        partial.unlink()
        have = 0
    # LFS files are checked against their SHA-256; files kept in git against their git blob id.
    use_sha256 = f.sha256 is not None
    hasher = hashlib.sha256() if use_sha256 else hashlib.sha1(f"blob {f.size_bytes}\0".encode())
    if have:
        _hash_existing(partial, have, hasher, cancel)
        meter.resumed += have
        meter.add(have, f.path, part, force=True)
    resolve_url = hf_hub_url(listing.repo, f.path, revision=listing.commit, endpoint=config.endpoint)
    url = resolve_url
    received = 0
    failures = 0
    last_byte = time.monotonic()
    # Reads wait at most a second, so a cancel is seen within a second even while a server sends
    # nothing; a stall is only declared after stall_timeout_s without a byte (reconnecting meanwhile).
    read_s = min(_POLL_S, config.stall_timeout_s)
    with partial.open("r+b" if have else "wb") as out:
        out.seek(have)
        while have < f.size_bytes:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("download cancelled")
            extra = {"Range": f"bytes={have}-", "Accept-Encoding": "identity"}
            headers = hub_headers(extra) if same_host(url, config.endpoint) else extra
            got_this_time = 0
            try:
                with get_session().stream("GET", url, headers=headers, timeout=timeout(config, read_s)) as r:
                    if r.status_code >= 400:
                        r.read()
                        if url != resolve_url and r.status_code in (401, 403, 410):
                            url = resolve_url  # an expired CDN link: ask the hub for a new one
                            failures += 1
                            if failures > _RETRIES:
                                hf_raise_for_status(r)
                            continue
                        hf_raise_for_status(r)
                    if r.status_code == 200 and have:  # the server ignored the range: start over
                        out.seek(0)
                        out.truncate()
                        hasher = (
                            hashlib.sha256()
                            if use_sha256
                            else hashlib.sha1(f"blob {f.size_bytes}\0".encode())
                        )
                        meter.add(-have, f.path, part)
                        have = 0
                    elif r.status_code not in (200, 206):
                        raise HubError(f"the hub answered {r.status_code} when downloading {f.path}")
                    url = str(r.url)
                    for chunk in r.iter_bytes(CHUNK_BYTES):
                        if cancel is not None and cancel.is_set():
                            raise DownloadCancelled("download cancelled")
                        if have + len(chunk) > f.size_bytes:
                            raise HubError(
                                f"the hub sent more than the {f.size_bytes} bytes it lists for {f.path}"
                            )
                        _write_chunk(out, chunk)
                        hasher.update(chunk)
                        have += len(chunk)
                        received += len(chunk)
                        got_this_time += len(chunk)
                        last_byte = time.monotonic()
                        meter.add(len(chunk), f.path, part)
            except httpx2.TimeoutException as exc:
                meter.add(0, f.path, part, force=True)  # show where it stopped
                if isinstance(exc, httpx2.ConnectTimeout):
                    raise hub_error(
                        exc,
                        endpoint=config.endpoint,
                        repo=listing.repo,
                        filename=f.path,
                        timeout_s=config.timeout_s,
                    ) from None
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelled("download cancelled") from None
                if time.monotonic() - last_byte < config.stall_timeout_s:
                    continue
                raise HubUnreachable(
                    f"the download of {f.path} stalled: nothing arrived for {config.stall_timeout_s:g} s; "
                    f"{format_bytes(have)} of {format_bytes(f.size_bytes)} are kept, run it again to resume"
                ) from None
            except (
                httpx2.RemoteProtocolError,
                httpx2.ReadError,
                httpx2.ConnectError,
                httpx2.WriteError,
            ) as exc:
                # A cut connection: resume from where the bytes stopped, a few times in a row at most.
                meter.add(0, f.path, part, force=True)
                failures = 0 if got_this_time else failures + 1
                if failures > _RETRIES:
                    raise hub_error(
                        exc, endpoint=config.endpoint, repo=listing.repo, filename=f.path
                    ) from None
                if failures and cancel is not None and cancel.wait(min(0.25 * 2**failures, 4.0)):
                    raise DownloadCancelled("download cancelled") from None
                if failures and cancel is None:
                    time.sleep(min(0.25 * 2**failures, 4.0))
                continue
            except hf_errors.HfHubHTTPError as exc:  # an OSError too, but not the disk's
                raise hub_error(exc, endpoint=config.endpoint, repo=listing.repo, filename=f.path) from None
            except (HubError, OSError):
                raise
            except Exception as exc:
                raise hub_error(exc, endpoint=config.endpoint, repo=listing.repo, filename=f.path) from None
        out.flush()
        os.fsync(out.fileno())
    digest = hasher.hexdigest()
    expected = f.sha256 if use_sha256 else f.blob_id
    if expected and digest.lower() != expected.lower():
        partial.unlink(missing_ok=True)
        kind = "SHA-256" if use_sha256 else "git blob id"
        raise ChecksumMismatch(
            f"{f.path}: the downloaded bytes do not match the hub's {kind} ({expected[:12]}…, got "
            f"{digest[:12]}…); the file was deleted, nothing was kept. Try again; if it happens again, "
            "the repository's file or a proxy on the way is at fault"
        )
    os.replace(partial, _blob(config, listing.repo, f))
    return received


def _drop_if_empty(path: Path) -> None:
    """A partial file with nothing in it is no resume point, only litter."""
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


def _link(config: HubConfig, listing: RepoListing, f: HubFile) -> Path:
    """Let huggingface_hub put the verified blob in ``snapshots/<commit>/`` (it downloads nothing)."""
    expected = snapshot_path(config, listing.repo, listing.commit, f.path)
    try:
        got = Path(
            hf_hub_download(
                listing.repo,
                f.path,
                revision=listing.commit,
                cache_dir=config.cache_dir,
                endpoint=config.endpoint,
                etag_timeout=config.timeout_s,
            )
        )
    except Exception as exc:
        raise hub_error(
            exc, endpoint=config.endpoint, repo=listing.repo, filename=f.path, timeout_s=config.timeout_s
        ) from None
    if got.resolve() != _blob(config, listing.repo, f).resolve():
        raise HubError(
            f"the Hugging Face cache holds a different file at {got}; delete it and download again"
        )
    # The branch asked for points at the commit just downloaded, as huggingface_hub records it.
    if listing.revision != listing.commit:
        ref = repo_folder(config, listing.repo) / "refs" / listing.revision
        with contextlib.suppress(OSError):
            if not ref.is_file() or ref.read_text().strip() != listing.commit:
                ref.parent.mkdir(parents=True, exist_ok=True)
                ref.write_text(listing.commit)
    return expected


def _disk_full(config: HubConfig, listing: RepoListing, model: RemoteModel, name: str) -> NotEnoughDisk:
    needed = sum(f.size_bytes - _on_disk(config, listing, f) for f in model.files)
    free = free_bytes(config.cache_dir)
    return NotEnoughDisk(
        f"the disk filled up while downloading {name}: this download needs {format_bytes(needed + DISK_MARGIN_BYTES)} "
        f"free in {config.cache_dir}, {format_bytes(free)} are; the partial file was deleted. Free "
        f"{format_bytes(max(0, needed + DISK_MARGIN_BYTES - free))}, or set HF_HUB_CACHE to a larger disk"
    )


def download_model(
    listing: RepoListing,
    model: RemoteModel,
    *,
    config: HubConfig | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Download every part of ``model`` into the Hugging Face cache (resuming what is there).

    Raises :class:`~app.hub.errors.DownloadCancelled` when ``cancel`` is set (the partial file is kept
    for the next attempt), :class:`~app.hub.errors.NotEnoughDisk` before starting when the disk is too
    small, or when it fills up (the partial file is deleted), :class:`~app.hub.errors.ChecksumMismatch`
    when the bytes are not the hub's file (deleted too).
    """
    cfg = config or hub_config()
    if not model.complete:
        raise HubError(f"{listing.repo}: {model.name} lacks {model.n_parts - len(model.files)} of its parts")
    paths = tuple(snapshot_path(cfg, listing.repo, listing.commit, f.path) for f in model.files)
    if all(_size(p) == f.size_bytes for p, f in zip(paths, model.files, strict=True)):
        return DownloadResult(paths[0], paths, 0, 0, already_there=True)
    if cfg.offline:
        raise offline_error()
    plan = plan_download(listing, model, config=cfg)
    if not plan.fits:
        raise NotEnoughDisk(
            f"not enough free disk space for {model.first.path}: it needs {format_bytes(plan.needed_bytes + DISK_MARGIN_BYTES)} "
            f"in {cfg.cache_dir}, {format_bytes(plan.free_bytes)} are free; free some space or set HF_HUB_CACHE to a larger disk"
        )
    meter = _Meter(model.size_bytes, 0, len(model.files), progress)
    received = 0
    locks = repo_folder(cfg, listing.repo).parent / ".locks" / repo_folder(cfg, listing.repo).name
    for part, f in enumerate(model.files, start=1):
        if _size(_blob(cfg, listing.repo, f)) == f.size_bytes:
            meter.resumed += f.size_bytes
            meter.add(f.size_bytes, f.path, part, force=True)
            continue
        locks.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(locks / f"{f.blob_name}.rigfit.lock"), timeout=0)
        try:
            with lock:
                try:
                    received += _fetch(cfg, listing, f, part, meter, cancel)
                finally:
                    _drop_if_empty(_partial(cfg, listing.repo, f))
        except filelock.Timeout:
            raise HubError(
                f"{f.path} is being downloaded by another Rigfit right now; wait for it to finish"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                _partial(cfg, listing.repo, f).unlink(missing_ok=True)
                raise _disk_full(cfg, listing, model, f.path) from None
            raise HubError(f"cannot write {f.path} into {cfg.cache_dir}: {exc.strerror or exc}") from None
    meter.add(0, model.files[-1].path, len(model.files), force=True)
    linked = tuple(_link(cfg, listing, f) for f in model.files)
    return DownloadResult(linked[0], linked, received, meter.resumed, already_there=False)
