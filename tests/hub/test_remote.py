"""Remote GGUF headers: the same header and plan as the local file, in few requests, cached on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import BadModelFile
from app.core.gguf_reader import read_gguf
from app.core.model_source import load_gguf_spec
from app.core.placement import plan
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression
from app.hub.errors import HubUnreachable
from app.hub.listing import list_repo
from app.hub.remote import hub_model_spec, read_remote_headers
from tests.hub.fake_hub import FakeHub
from tests.hub.models import DEMO_FILE, DEMO_REPO, SPLIT_REPO, VOCAB128K_FILE, VOCAB128K_REPO

MAX_REQUESTS_PER_SHARD = 3
MAX_BYTES_PER_SHARD = 8_000_000


def _same_header(remote: object, local: object) -> None:
    assert remote.tensors == local.tensors  # type: ignore[attr-defined]
    assert remote.metadata == local.metadata  # type: ignore[attr-defined]
    assert remote.file_size_bytes == local.file_size_bytes  # type: ignore[attr-defined]


def test_a_128k_vocabulary_header_takes_at_most_3_requests_and_8_mb(fake_hub: FakeHub) -> None:
    listing = list_repo(VOCAB128K_REPO)
    model = listing.pick(file=VOCAB128K_FILE)
    fake_hub.log.clear()
    read = read_remote_headers(listing, model, cache=None)
    local = read_gguf(fake_hub.blob(VOCAB128K_REPO, VOCAB128K_FILE).file)
    _same_header(read.model, local)
    assert read.model.get("tokenizer.ggml.tokens").length == 128256  # type: ignore[union-attr]
    # Counted by the server: the redirect from the hub and the range requests to the CDN.
    requests = fake_hub.requests_for(VOCAB128K_REPO, VOCAB128K_FILE)
    sent = fake_hub.bytes_sent_for(VOCAB128K_REPO, VOCAB128K_FILE)
    assert len(requests) <= MAX_REQUESTS_PER_SHARD, requests
    assert sent <= MAX_BYTES_PER_SHARD
    assert sent >= local.parts[0].data_offset  # the whole header, nothing skipped
    assert read.requests == len(requests) and read.bytes_received == sent


def test_every_shard_of_a_split_model_is_read_within_the_same_budget(fake_hub: FakeHub) -> None:
    listing = list_repo(SPLIT_REPO)
    (model,) = listing.models
    fake_hub.log.clear()
    read = read_remote_headers(listing, model, cache=None)
    local = read_gguf(fake_hub.blob(SPLIT_REPO, model.first.path).file)
    _same_header(read.model, local)
    assert sorted({t.file_index for t in read.model.tensors}) == [0, 1, 2]
    for f in model.files:
        assert len(fake_hub.requests_for(SPLIT_REPO, f.path)) <= MAX_REQUESTS_PER_SHARD
        assert fake_hub.bytes_sent_for(SPLIT_REPO, f.path) <= MAX_BYTES_PER_SHARD


def test_the_remote_plan_is_the_local_plan_marked_remote(fake_hub: FakeHub) -> None:
    ref = f"hf:{DEMO_REPO}/{DEMO_FILE}"
    remote = hub_model_spec(ref)
    local = load_gguf_spec(fake_hub.blob(DEMO_REPO, DEMO_FILE).file)
    assert remote.remote == ref and local.remote == ""
    assert remote.tensors == local.tensors and remote.file_type == local.file_type == "Q4_1"
    assert "not downloaded" in remote.notes[-1] and f"rigfit pull {DEMO_REPO}" in remote.notes[-1]
    assert remote.paths[0].endswith(f"snapshots/{fake_hub.repos[DEMO_REPO].commit}/{DEMO_FILE}")
    rig = parse_rig_expression("2x RTX 3090")
    for settings in (Settings(ctx=4096), Settings(ctx=8192, tensor_split=(3.0, 1.0))):
        a, b = plan(rig, remote, settings), plan(rig, local, settings)
        assert [d.total_mib for d in a.devices] == [d.total_mib for d in b.devices]
        assert a.status == b.status


def test_a_header_read_once_plans_again_from_the_disk_cache_even_offline(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = f"hf:{SPLIT_REPO}/Split3-Q8_0/Split3-Q8_0-00002-of-00003.gguf"  # any part names the model
    first = hub_model_spec(ref)
    fake_hub.log.clear()
    again = hub_model_spec(ref)
    assert again.tensors == first.tensors
    assert [e.path for e in fake_hub.log if "/resolve/" in e.path or e.role == "cdn"] == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = hub_model_spec(f"hf:{SPLIT_REPO}/Split3-Q8_0/Split3-Q8_0-00001-of-00003.gguf")
    assert offline.tensors == first.tensors
    assert [e for e in fake_hub.log if e.path.startswith("/api/")] == [fake_hub.log[0]]  # only the online one
    with pytest.raises(HubUnreachable, match="HF_HUB_OFFLINE is set"):
        hub_model_spec(f"hf:{VOCAB128K_REPO}/{VOCAB128K_FILE}")  # never read: nothing to plan from


def test_a_file_that_is_not_a_gguf_is_refused_by_name(fake_hub: FakeHub, tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("not a model at all\n" * 100)
    truncated = tmp_path / "cut-Q4_0.gguf"
    truncated.write_bytes(fake_hub.blob(DEMO_REPO, DEMO_FILE).file.read_bytes()[:300_000])
    fake_hub.add_repo("rigfit-test/Broken-GGUF", {"notes.gguf": text, "cut-Q4_0.gguf": truncated})
    with pytest.raises(BadModelFile, match=r"hf:rigfit-test/Broken-GGUF/notes.gguf is not a GGUF file"):
        hub_model_spec("hf:rigfit-test/Broken-GGUF/notes.gguf")
    with pytest.raises(
        BadModelFile, match=r"cut-Q4_0.gguf is not a usable GGUF file: .*truncated or corrupt"
    ):
        hub_model_spec("hf:rigfit-test/Broken-GGUF/cut-Q4_0.gguf")


def test_a_downloaded_model_is_planned_from_its_file(fake_hub: FakeHub) -> None:
    from app.hub.download import download_model

    listing = list_repo(DEMO_REPO)
    model = listing.pick(quant="Q4_1")
    result = download_model(listing, model)
    spec = hub_model_spec(f"hf:{DEMO_REPO}:Q4_1")
    assert spec.remote == "" and spec.paths == (str(result.path),)
    assert "is downloaded: planned from" in spec.notes[-1]
