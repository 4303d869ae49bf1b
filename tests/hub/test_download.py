"""Downloads into the HF cache, and every fault: a cut, a cancel, a wrong hash, 401/404, a stall, no
network, a disk too small before or full during. After each, nothing broken is left on disk."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from app.hub import download as download_module
from app.hub.config import hub_config
from app.hub.download import DownloadProgress, download_model
from app.hub.errors import (
    ChecksumMismatch,
    DownloadCancelled,
    HubAccessDenied,
    HubNotFound,
    HubUnreachable,
    NotEnoughDisk,
)
from app.hub.listing import RemoteModel, RepoListing, list_repo
from app.runner.discovery import SOURCE_HF, default_roots, discover_models
from tests.hub.fake_hub import FakeHub
from tests.hub.models import DEMO_FILE, DEMO_REPO, SPLIT_REPO, VOCAB128K_FILE, VOCAB128K_REPO


def _demo() -> tuple[RepoListing, RemoteModel]:
    listing = list_repo(DEMO_REPO)
    return listing, listing.pick(file=DEMO_FILE)


def _files(folder: Path) -> list[str]:
    """Every file under the HF cache, except huggingface_hub's lock files and cache tag."""
    if not folder.exists():
        return []
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and ".locks" not in p.parts and p.name != "CACHEDIR.TAG"
    )


def _snapshot_ggufs(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("snapshots/*/**/*.gguf")] if folder.exists() else []


def test_a_download_lands_in_the_hf_cache_where_huggingface_hub_and_the_scan_find_it(
    fake_hub: FakeHub,
) -> None:
    cfg = hub_config()
    listing, model = _demo()
    reports: list[DownloadProgress] = []
    result = download_model(listing, model, progress=reports.append)
    hosted = fake_hub.blob(DEMO_REPO, DEMO_FILE)
    assert result.path.read_bytes() == hosted.file.read_bytes()
    assert result.path.resolve().name == hosted.sha256  # blobs/<sha256>, as huggingface_hub names it
    assert result.downloaded_bytes == hosted.size and not result.already_there
    # huggingface_hub's own lookup, offline, finds the same file: the layout is the standard one.
    found = hf_hub_download(DEMO_REPO, DEMO_FILE, cache_dir=cfg.cache_dir, local_files_only=True)
    assert Path(found) == result.path
    scan = discover_models(default_roots(environ={"HF_HUB_CACHE": str(cfg.cache_dir)}, home=cfg.cache_dir))
    (model_found,) = [m for m in scan.models if m.source == SOURCE_HF]
    assert model_found.where == DEMO_REPO and model_found.quant == "Q4_1"
    assert reports[-1].done_bytes == reports[-1].total_bytes == hosted.size
    assert [r.done_bytes for r in reports] == sorted(r.done_bytes for r in reports)
    assert not [p for p in cfg.cache_dir.rglob("*.incomplete")]
    again = download_model(listing, model)
    assert again.already_there and again.path == result.path


def test_a_split_model_comes_whole_and_the_token_never_goes_to_the_cdn(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub.repos[SPLIT_REPO].token = "hf_secret"
    listing = list_repo(SPLIT_REPO)
    (model,) = listing.models
    with pytest.raises(
        HubAccessDenied, match=r"set HF_TOKEN to a token that can read it, or accept its licence"
    ):
        download_model(listing, model)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    result = download_model(listing, model)
    assert len(result.paths) == 3 and all(p.parent == result.path.parent for p in result.paths)
    for p, f in zip(result.paths, model.files, strict=True):
        assert p.read_bytes() == fake_hub.blob(SPLIT_REPO, f.path).file.read_bytes()
    assert any(e.authorized for e in fake_hub.log if e.role == "hub" and "/resolve/" in e.path)
    assert not any(e.authorized for e in fake_hub.log if e.role == "cdn")


def test_a_connection_cut_mid_download_resumes_and_ends_with_the_right_hash(fake_hub: FakeHub) -> None:
    hosted = fake_hub.blob(DEMO_REPO, DEMO_FILE)
    fake_hub.cut_after[hosted.sha256] = [3 << 20, 5 << 20]  # two cuts in a row
    listing, model = _demo()
    result = download_model(listing, model)
    assert result.path.read_bytes() == hosted.file.read_bytes()
    gets = [e for e in fake_hub.requests_for(DEMO_REPO, DEMO_FILE) if e.role == "cdn"]
    assert [e.range for e in gets] == ["bytes=0-", f"bytes={3 << 20}-", f"bytes={8 << 20}-"]
    assert result.downloaded_bytes == hosted.size  # nothing fetched twice


def test_a_cancelled_download_keeps_its_part_and_the_next_one_resumes_from_there(fake_hub: FakeHub) -> None:
    cfg = hub_config()
    listing, model = _demo()
    hosted = fake_hub.blob(DEMO_REPO, DEMO_FILE)
    cancel = threading.Event()

    def stop_at_20_mib(p: DownloadProgress) -> None:
        if p.done_bytes >= 20 << 20:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        download_model(listing, model, progress=stop_at_20_mib, cancel=cancel)
    (partial,) = cfg.cache_dir.rglob("*.incomplete")
    kept = partial.stat().st_size
    assert kept >= 20 << 20 and not _snapshot_ggufs(cfg.cache_dir)
    fake_hub.log.clear()
    result = download_model(listing, model)
    assert result.resumed_bytes == kept and result.downloaded_bytes == hosted.size - kept
    assert [e.range for e in fake_hub.log if e.role == "cdn"] == [f"bytes={kept}-"]
    assert result.path.read_bytes() == hosted.file.read_bytes()
    assert not list(cfg.cache_dir.rglob("*.incomplete"))


def test_a_wrong_hash_deletes_the_file_and_says_so(fake_hub: FakeHub) -> None:
    cfg = hub_config()
    fake_hub.advertised_sha256[(VOCAB128K_REPO, VOCAB128K_FILE)] = "ab" * 32
    listing = list_repo(VOCAB128K_REPO)
    with pytest.raises(
        ChecksumMismatch, match=r"do not match the hub's SHA-256 \(abababababab….*the file was deleted"
    ):
        download_model(listing, listing.pick(file=VOCAB128K_FILE))
    assert _files(cfg.cache_dir) == []


def test_a_file_gone_from_the_repository_is_named(fake_hub: FakeHub) -> None:
    listing, model = _demo()
    del fake_hub.repos[DEMO_REPO].files[DEMO_FILE]
    with pytest.raises(HubNotFound, match=rf"{DEMO_REPO} has no file '{DEMO_FILE}' on the hub"):
        download_model(listing, model)
    assert _files(hub_config().cache_dir) == []


def test_a_stalled_server_stops_after_the_timeout_and_keeps_what_arrived(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "1")
    hosted = fake_hub.blob(VOCAB128K_REPO, VOCAB128K_FILE)
    fake_hub.stall_blobs.add(hosted.sha256)
    listing = list_repo(VOCAB128K_REPO)
    with pytest.raises(HubUnreachable, match=r"stalled: nothing arrived for 1 s; 0 B of 23.6 MiB are kept"):
        download_model(listing, listing.pick(file=VOCAB128K_FILE))
    assert not _snapshot_ggufs(hub_config().cache_dir)


def test_a_download_stalled_by_its_server_can_be_cancelled(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "120")  # the stall alone would not end it
    hosted = fake_hub.blob(VOCAB128K_REPO, VOCAB128K_FILE)
    fake_hub.stall_blobs.add(hosted.sha256)
    listing = list_repo(VOCAB128K_REPO)
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            download_model(listing, listing.pick(file=VOCAB128K_FILE), cancel=cancel)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    while not any(e.role == "cdn" for e in fake_hub.log):
        thread.join(0.05)
    cancel.set()
    thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], DownloadCancelled)


def test_no_network_or_a_silent_hub_is_one_clear_line(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(
        HubUnreachable, match=r"^cannot reach the Hugging Face hub at http://127.0.0.1:\d+ .*HF_ENDPOINT"
    ):
        list_repo(DEMO_REPO)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    fake_hub.stall_api = True
    with pytest.raises(HubUnreachable, match=r"did not answer within 1 s"):
        list_repo(DEMO_REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachable, match="HF_HUB_OFFLINE is set"):
        list_repo(DEMO_REPO)


def test_a_disk_too_small_is_refused_before_a_byte_is_fetched(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing, model = _demo()
    monkeypatch.setattr(download_module, "free_bytes", lambda folder: 50 << 20)
    with pytest.raises(NotEnoughDisk, match=r"needs 157.8 MiB in .*, 50.0 MiB are free"):
        download_model(listing, model)
    assert not [e for e in fake_hub.log if e.role == "cdn"]
    assert _files(hub_config().cache_dir) == []


def test_a_disk_that_fills_up_mid_download_keeps_nothing_and_says_how_much_is_needed(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing, model = _demo()
    written = [0]
    real = download_module._write_chunk

    def full_after_10_mib(out: object, chunk: bytes) -> None:
        if written[0] >= 10 << 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        written[0] += len(chunk)
        real(out, chunk)

    monkeypatch.setattr(download_module, "_write_chunk", full_after_10_mib)
    with pytest.raises(
        NotEnoughDisk, match=r"filled up while downloading .*: this download needs 157.8 MiB free"
    ):
        download_model(listing, model)
    assert _files(hub_config().cache_dir) == []


def _mount_tmpfs(where: Path, size_mib: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)],
            capture_output=True,
            check=False,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="mounting a small disk needs root")
def test_a_real_small_disk_filled_by_another_program_mid_download(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = tmp_path / "small-disk"
    if not _mount_tmpfs(disk, 100):
        pytest.skip("this machine does not let the tests mount a tmpfs")
    try:
        monkeypatch.setenv("HF_HUB_CACHE", str(disk / "hub"))
        listing = list_repo(VOCAB128K_REPO)  # 23.6 MiB: fits 100 MiB with the 64 MiB margin
        filler = disk / "someone-elses-file"

        def another_program_fills_the_disk(p: DownloadProgress) -> None:
            if p.done_bytes and not filler.exists():
                with filler.open("wb") as f, __import__("contextlib").suppress(OSError):
                    while True:
                        f.write(b"\0" * (1 << 20))

        with pytest.raises(NotEnoughDisk, match=r"filled up while downloading .*Free .*or set HF_HUB_CACHE"):
            download_model(
                listing, listing.pick(file=VOCAB128K_FILE), progress=another_program_fills_the_disk
            )
        assert _files(disk / "hub") == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, timeout=20)
