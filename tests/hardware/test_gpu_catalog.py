"""resources/gpus.toml: complete, sane entries; names and NVML names that find the right card."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import RigfitError, UnknownName
from app.hardware.catalog import CatalogEntry, find_gpu, load_gpu_catalog, match_detected

CATALOG = load_gpu_catalog()
BY_ID = {e.id: e for e in CATALOG}


def test_catalog_has_at_least_25_gpus_with_unique_ids() -> None:
    assert len(CATALOG) >= 25
    assert len(BY_ID) == len(CATALOG)


@pytest.mark.parametrize(
    "catalog_id",
    [
        # the list
        "rtx-3060-12gb", "rtx-3090", "rtx-4060-ti-16gb", "rtx-4090", "rtx-5090", "rtx-a4000", "rtx-a5000",
        "rtx-a6000", "rtx-6000-ada", "tesla-p40", "tesla-v100-pcie-32gb", "a100-pcie-40gb", "a100-pcie-80gb",
        "l40s", "h100-pcie", "h100-sxm", "h200", "rx-7900-xtx", "mi300x", "arc-a770-16gb",
        # what else hobbyists run
        "rtx-3060-ti", "rtx-3070", "rtx-3080-10gb", "rtx-3080-12gb", "rtx-3090-ti", "rtx-4060", "rtx-4070",
        "rtx-4070-ti", "rtx-4070-super", "rtx-4080", "rtx-4080-super", "rtx-5060-ti-16gb", "rtx-5070-ti",
        "rtx-5080", "rtx-2080-ti", "titan-rtx", "rtx-a2000-12gb", "rtx-a4500", "rtx-4000-ada", "rtx-5000-ada",
        "rtx-pro-6000-blackwell", "tesla-p100-16gb", "tesla-t4", "a10", "l4", "a40", "h100-nvl", "b200",
        "rx-7900-xt", "rx-6800-xt", "mi210", "arc-b580",
    ],
)  # fmt: skip
def test_catalog_holds(catalog_id: str) -> None:
    assert catalog_id in BY_ID


@pytest.mark.parametrize("entry", CATALOG, ids=lambda e: e.id)
def test_every_entry_is_complete_and_sane(entry: CatalogEntry) -> None:
    assert entry.name and entry.architecture and entry.memory_type
    assert entry.vendor in ("nvidia", "amd", "intel")
    assert 4 <= entry.vram_gib <= 256
    if entry.vram_mib is not None:  # what the card reports: a little under the marketed size
        assert 0.9 * entry.vram_gib * 1024 <= entry.vram_mib <= 1.02 * entry.vram_gib * 1024
    # bandwidth = bus bytes x per-pin data rate: 1.5 (HBM2) to 32 (GDDR7) Gbit/s per pin
    per_pin_gbps = entry.bandwidth_gbps / (entry.memory_bus_bits / 8)
    assert 0.8 <= per_pin_gbps <= 32, per_pin_gbps
    assert 30 <= entry.tdp_w <= 1200
    assert entry.pcie_gen in (3, 4, 5, 6) and entry.pcie_width in (8, 16)
    assert entry.power_connectors
    assert 5 <= entry.fp16_tflops <= 3000
    assert entry.source.startswith("https://") and " " not in entry.source
    if entry.vendor == "nvidia":
        assert entry.compute_capability is not None
        assert entry.nvml_names, "an NVIDIA card needs the name NVML reports, to match detected GPUs"
    if entry.nvlink:
        assert entry.nvlink_links > 0 and entry.nvlink_version and entry.nvlink_gbps > 0
        assert entry.nvlink_topology in ("bridge", "switch")
    else:
        assert entry.nvlink_links == 0 and entry.nvlink_gbps == 0
    if entry.form_factor == "sxm":
        assert entry.nvlink and entry.nvlink_topology == "switch"


def test_known_figures() -> None:
    assert BY_ID["rtx-3090"].bandwidth_gbps == 936 and BY_ID["rtx-3090"].vram_total_mib == 24576
    assert BY_ID["rtx-3090"].nvlink_link_gbps == pytest.approx(14.0625)
    assert BY_ID["h200"].vram_total_mib == 143771  # measured on the GPU machine
    assert BY_ID["rtx-4060-ti-16gb"].pcie_width == 8
    assert not BY_ID["rtx-4090"].nvlink


@pytest.mark.parametrize("entry", CATALOG, ids=lambda e: e.id)
def test_each_alias_and_name_finds_its_own_entry(entry: CatalogEntry) -> None:
    for name in (entry.id, entry.name, *entry.aliases):
        assert find_gpu(name).id == entry.id, name


@pytest.mark.parametrize(
    ("typed", "catalog_id"),
    [
        ("3090", "rtx-3090"),
        ("rtx3090", "rtx-3090"),
        ("GeForce RTX 3090", "rtx-3090"),
        ("NVIDIA GeForce RTX 3090", "rtx-3090"),
        ("  rtx   3090 ", "rtx-3090"),
        ("4060 ti 16gb", "rtx-4060-ti-16gb"),
        ("RTX 4060 Ti 16GB", "rtx-4060-ti-16gb"),
        ("3060", "rtx-3060-12gb"),
        ("h100", "h100-sxm"),
        ("Radeon RX 7900 XTX", "rx-7900-xtx"),
        ("7900xtx", "rx-7900-xtx"),
        ("a6000", "rtx-a6000"),
    ],
)
def test_names_are_case_and_spacing_tolerant(typed: str, catalog_id: str) -> None:
    assert find_gpu(typed).id == catalog_id


def test_unknown_name_suggests_the_closest_cards() -> None:
    with pytest.raises(UnknownName, match=r"unknown GPU 'RTX 3095'; did you mean RTX 3090"):
        find_gpu("RTX 3095")


def test_ambiguous_name_lists_the_candidates() -> None:
    with pytest.raises(UnknownName, match="RTX 4060 Ti 8GB, RTX 4060 Ti 16GB"):
        find_gpu("4060 ti")


@pytest.mark.parametrize(
    ("nvml_name", "vram_mib", "catalog_id"),
    [
        ("NVIDIA GeForce RTX 3080", 10240, "rtx-3080-10gb"),
        ("NVIDIA GeForce RTX 3080", 12288, "rtx-3080-12gb"),
        ("NVIDIA GeForce RTX 4060 Ti", 16380, "rtx-4060-ti-16gb"),
        ("NVIDIA GeForce RTX 4060 Ti", 8188, "rtx-4060-ti-8gb"),
        ("NVIDIA H100 80GB HBM3", 81559, "h100-sxm"),
        ("Tesla P40", 24576, "tesla-p40"),
    ],
)
def test_detected_gpus_match_their_entry_by_nvml_name_and_memory(
    nvml_name: str, vram_mib: float, catalog_id: str
) -> None:
    entry = match_detected(nvml_name, vram_mib)
    assert entry is not None and entry.id == catalog_id


def test_a_card_not_in_the_catalog_matches_nothing() -> None:
    assert match_detected("NVIDIA GeForce GT 710", 2048) is None


def test_broken_catalog_names_the_file_and_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "gpus.toml"
    text = (Path(__file__).resolve().parents[2] / "resources" / "gpus.toml").read_text()
    path.write_text(text.replace("bandwidth_gbps = 936\n", "", 1))
    with pytest.raises(RigfitError, match=r"gpus\.toml: gpu #\d+ \(rtx-3090\): 'bandwidth_gbps' is missing"):
        load_gpu_catalog(path)
    path.write_text("[[gpu]\nid = 1")
    with pytest.raises(RigfitError, match="not valid TOML"):
        load_gpu_catalog(path)
