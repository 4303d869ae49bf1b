"""Repository listings: file names to quants, split parts grouped, the right file picked, one API call."""

from __future__ import annotations

import pytest

from app.core.errors import RigfitError
from app.hub.errors import HubAccessDenied, HubNotFound
from app.hub.listing import HubFile, group_gguf_files, list_repo
from app.hub.refs import parse_hub_ref
from tests.hub.fake_hub import FakeHub
from tests.hub.models import SPLIT_PREFIX, SPLIT_REPO, VOCAB128K_FILE, VOCAB128K_REPO


def _f(path: str, size: int = 100) -> HubFile:
    return HubFile(path, size, "0" * 64)


def test_file_names_map_to_quants_and_split_parts_group_into_one_model() -> None:
    files = [
        _f("README.md"),
        _f("Llama-3.2-1B-Instruct-Q4_K_M.gguf", 800),
        _f("Llama-3.2-1B-Instruct-IQ4_XS.gguf", 700),
        _f("Llama-3.2-1B-Instruct-f16.gguf", 2500),
        _f("mmproj-model-f16.gguf", 50),
        _f("Qwen2.5-72B-Instruct-Q4_K_M/Qwen2.5-72B-Instruct-Q4_K_M-00002-of-00002.gguf", 300),
        _f("Qwen2.5-72B-Instruct-Q4_K_M/Qwen2.5-72B-Instruct-Q4_K_M-00001-of-00002.gguf", 400),
        _f("big-Q8_0-00001-of-00003.gguf", 10),  # part 3 missing
        _f("big-Q8_0-00002-of-00003.gguf", 10),
        _f("orphan-Q6_K-00002-of-00002.gguf", 10),  # no first part: nothing to open
    ]
    models, projectors = group_gguf_files("o/r", files)
    by_name = {m.name: m for m in models}
    assert [p.path for p in projectors] == ["mmproj-model-f16.gguf"]
    assert by_name["Llama-3.2-1B-Instruct-Q4_K_M"].quant == "Q4_K_M"
    assert by_name["Llama-3.2-1B-Instruct-IQ4_XS"].quant == "IQ4_XS"
    assert by_name["Llama-3.2-1B-Instruct-f16"].quant == "F16"
    split = by_name["Qwen2.5-72B-Instruct-Q4_K_M"]
    assert split.n_parts == 2 and split.complete and split.size_bytes == 700
    assert [f.name for f in split.files] == [
        "Qwen2.5-72B-Instruct-Q4_K_M-00001-of-00002.gguf",
        "Qwen2.5-72B-Instruct-Q4_K_M-00002-of-00002.gguf",
    ]
    assert split.ref == "hf:o/r/Qwen2.5-72B-Instruct-Q4_K_M/Qwen2.5-72B-Instruct-Q4_K_M-00001-of-00002.gguf"
    assert not by_name["big-Q8_0"].complete
    assert "orphan-Q6_K" not in by_name


def test_pick_by_quant_by_file_and_the_errors_that_list_the_choices() -> None:
    from app.hub.listing import RepoListing

    models, _ = group_gguf_files(
        "o/r",
        [
            _f("m-Q4_K_M.gguf"),
            _f("m-Q8_0.gguf"),
            _f("m-Q4_K_M-imat.gguf"),
            _f("x-Q2_K-00001-of-00002.gguf"),
        ],
    )
    listing = RepoListing("o/r", "main", "c" * 40, models)
    assert listing.pick(quant="q4-k-m").first.path == "m-Q4_K_M.gguf"  # the plainest name wins
    assert listing.pick(file="m-Q8_0.gguf").quant == "Q8_0"
    with pytest.raises(HubNotFound, match=r"no IQ2_M GGUF; it has Q4_K_M, Q8_0, Q2_K"):
        listing.pick(quant="IQ2_M")
    with pytest.raises(HubNotFound, match=r"no GGUF file 'nope\.gguf'"):
        listing.pick(file="nope.gguf")
    with pytest.raises(RigfitError, match=r"has 4 GGUF models: pick one with --quant"):
        listing.pick()
    with pytest.raises(HubNotFound, match="split into 2 files, but the repository holds only 1"):
        listing.pick(quant="Q2_K")


def test_hub_references_parse_and_bad_ones_say_how_to_write_them() -> None:
    ref = parse_hub_ref("hf:bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_K_M.gguf")
    assert (ref.repo, ref.path, ref.revision) == (
        "bartowski/Llama-3.2-1B-Instruct-GGUF",
        "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        None,
    )
    assert parse_hub_ref("hf:o/r:q4_k_m").quant == "Q4_K_M"
    assert parse_hub_ref("hf:o/r@v2/sub/f.gguf").revision == "v2"
    for bad in ("hf:justaname", "hf:o/r/README.md", "hf:o/../x", "hf:o/r@"):
        with pytest.raises(RigfitError, match=r"hf:|OWNER/NAME|after '@'"):
            parse_hub_ref(bad)


def test_a_listing_is_one_api_call_with_exact_sizes_and_lfs_hashes(fake_hub: FakeHub) -> None:
    listing = list_repo(SPLIT_REPO)
    api = [e for e in fake_hub.log if e.path.startswith("/api/")]
    assert len(api) == 1 and "blobs=true" in api[0].path
    (model,) = listing.models
    assert model.n_parts == 3 and model.complete and model.quant == "Q8_0"
    hosted = [fake_hub.blob(SPLIT_REPO, f.path) for f in model.files]
    assert [f.size_bytes for f in model.files] == [h.size for h in hosted]
    assert [f.sha256 for f in model.files] == [h.sha256 for h in hosted]
    assert model.first.path == f"{SPLIT_PREFIX}/{SPLIT_PREFIX}-00001-of-00003.gguf"
    assert listing.commit == fake_hub.repos[SPLIT_REPO].commit


def test_unknown_repository_revision_and_a_refusal_are_said_in_rigfits_words(fake_hub: FakeHub) -> None:
    with pytest.raises(HubNotFound, match=r"no repository 'nobody/nothing-GGUF' on the Hugging Face hub"):
        list_repo("nobody/nothing-GGUF")
    with pytest.raises(HubNotFound, match="no such revision"):
        list_repo(VOCAB128K_REPO, "v9")
    fake_hub.repos[VOCAB128K_REPO].deny = 401
    with pytest.raises(
        HubAccessDenied, match=r"\(401\).*set HF_TOKEN.*accept its licence at http://127\.0\.0\.1"
    ):
        list_repo(VOCAB128K_REPO)
    fake_hub.repos[VOCAB128K_REPO].deny = 403
    with pytest.raises(HubAccessDenied, match=r"\(403\)"):
        list_repo(VOCAB128K_REPO)
    with pytest.raises(RigfitError, match="not a Hugging Face repository id"):
        list_repo(VOCAB128K_FILE)
