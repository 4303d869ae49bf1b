"""The NVML probe on every fake scenario: the Rig, topology labels, P2P and the statuses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.advice import rig_advice
from app.core.rig import Rig
from app.hardware import probe
from app.hardware.nvml import NvmlMissing, load_fake
from app.hardware.probe import bandwidth_gbps, cuda_version_text, detect_rig, nvml_versions, vram_used_mib

Detect = Callable[[str], Rig]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"


def test_h200_recording_gives_the_measured_gpu(detect: Detect) -> None:
    rig = detect("h200")
    assert rig.status_code == "ok"
    assert rig.status == "1 NVIDIA GPU detected (driver 580.159.04, CUDA 13.0)"
    assert (rig.driver, rig.cuda, rig.nvml) == ("580.159.04", "13.0", "13.580.159.04")
    (gpu,) = rig.gpus
    assert gpu.name == "NVIDIA H200"
    assert gpu.bus_id == "00000000:00:06.0"
    assert gpu.vram_total_mib == pytest.approx(143771.0)
    # memory v2: "used" excludes the 615 MiB the driver reserves, so an idle H200 uses 0.
    assert gpu.vram_used_mib == 0
    assert gpu.vram_free_mib == pytest.approx(150109880320 / 2**20)
    assert gpu.bandwidth_gbps == pytest.approx(6016 / 8 * 3201 * 2 / 1000)
    assert gpu.compute_capability == (9, 0)
    assert gpu.architecture == "Hopper"
    assert gpu.power_limit_w == 700
    assert gpu.temperature_c == 35
    assert (gpu.pcie.gen, gpu.pcie.width, gpu.pcie.max_gen, gpu.pcie.max_width) == (5, 16, 5, 16)
    assert not gpu.pcie.slot_limited
    assert gpu.nvlink.links == 0 and gpu.nvlink.supported is False  # link 0 NotSupported in the VM
    assert gpu.catalog_id == "h200"
    assert rig.topology == (("X",),)
    assert rig_advice(rig) == ()


def test_raw_recording_and_built_in_h200_scenario_detect_the_same_rig(detect: Detect) -> None:
    assert detect("h200-raw") == detect("h200")


def test_recording_made_by_app_hardware_record_on_the_real_h200_detects_the_same_gpu(detect: Detect) -> None:
    """tests/fixtures/nvml/h200-recorded.json: `python -m app.hardware.record` on the GPU machine."""
    real = detect("h200-recorded")
    raw = detect("h200-raw")
    assert real.status == raw.status
    assert [replace(g, temperature_c=None) for g in real.gpus] == [
        replace(g, temperature_c=None) for g in raw.gpus
    ]
    assert real.gpus[0].pcie.gpu_max_width == 16  # from the card_link sysfs reading it recorded


def test_geforce_without_nvlink_and_fan_not_supported_is_an_ordinary_gpu(detect: Detect) -> None:
    rig = detect("rtx4090")
    (gpu,) = rig.gpus
    assert rig.status_code == "ok"
    assert gpu.name == "NVIDIA GeForce RTX 4090"
    assert gpu.nvlink.links == 0 and gpu.nvlink.supported is False
    assert gpu.bandwidth_gbps == pytest.approx(1008.1, abs=0.1)
    assert gpu.vram_total_mib == 24564
    assert gpu.catalog_id == "rtx-4090" and gpu.power_connectors == ("12VHPWR",)
    # Idle at Gen1 is power saving: an info, never a slot warning.
    assert [a.code for a in rig_advice(rig)] == ["pcie-idle-downclock"]
    assert [a.level for a in rig_advice(rig)] == ["info"]


def test_two_3090s_with_a_bridge_show_nv4_and_p2p_ok(detect: Detect) -> None:
    rig = detect("2x3090-nvlink")
    assert rig.topology == (("X", "NV4"), ("NV4", "X"))
    assert rig.p2p == (("X", "OK"), ("OK", "X"))
    a, b = rig.gpus
    assert a.nvlink.links == b.nvlink.links == 4
    assert a.nvlink.version == 3  # Ampere: NVLink 3, whatever enum the driver returns
    assert {p.remote_bus_id for p in a.nvlink.peers} == {b.bus_id}
    assert {p.remote_kind for p in a.nvlink.peers} == {"gpu"}
    # A GeForce bridge is 4 narrow links: 112.5 GB/s both ways, 56.25 GB/s each way.
    assert a.nvlink.bandwidth_gbps == pytest.approx(56.25)
    assert rig.nvlinked(0, 1)
    assert not any(a.code == "pcie-narrow-slot" for a in rig_advice(rig))


def test_3090_plus_3060_in_a_chipset_x4_slot_warns_about_gpu_1_only(detect: Detect) -> None:
    rig = detect("3090+3060-x4")
    big, small = rig.gpus
    assert rig.topology == (("X", "PHB"), ("PHB", "X"))
    assert rig.p2p == (("X", "CNS"), ("CNS", "X"))
    assert not big.pcie.slot_limited
    assert (small.pcie.max_gen, small.pcie.max_width, small.pcie.gpu_max_gen, small.pcie.gpu_max_width) == (
        3,
        4,
        4,
        16,
    )
    assert small.pcie.slot_limited
    assert small.pcie.describe() == "Gen3 x4 (card supports Gen4 x16)"
    warnings = [a for a in rig_advice(rig) if a.level == "warning"]
    assert [(a.code, a.gpu) for a in warnings] == [("pcie-narrow-slot", 1)]
    assert "35-40% slower" in warnings[0].message and "layer split" in warnings[0].message
    assert big.nvlink.supported is True and big.nvlink.links == 0  # an NVLink card without a bridge


def test_four_h100_on_an_nvswitch_are_nv18_everywhere(detect: Detect) -> None:
    rig = detect("4xh100-nvswitch")
    assert rig.n_gpus == 4
    assert all(rig.topology[i][j] == ("X" if i == j else "NV18") for i in range(4) for j in range(4))
    assert all(p.remote_kind == "switch" for g in rig.gpus for p in g.nvlink.peers)
    assert rig.gpus[0].nvlink.version == 4


@pytest.mark.parametrize(
    ("level", "label"),
    [(0, "PIX"), (10, "PIX"), (20, "PXB"), (30, "PHB"), (40, "NODE"), (50, "SYS"), ("ERR NotSupported", "?")],
)
def test_topology_labels_follow_the_common_ancestor_without_nvlink(
    level: object, label: str, empty_sysfs: Path
) -> None:
    from app.hardware.nvml_fake import FakeNvml

    gpu = {"name": "NVIDIA RTX A6000", "mem": {"total": 2**30, "free": 2**30, "used": 0}}
    data = {"devices": [gpu, gpu], "topology": [[0, level], [level, 0]]}
    rig = detect_rig(backend=FakeNvml(data), sysfs_root=empty_sysfs)  # type: ignore[arg-type]
    assert rig.topology == (("X", label), (label, "X"))
    assert rig.p2p == (("X", "U"), ("U", "X"))  # no P2P data: unknown


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("no-driver", "no-driver", "driver is not loaded"),
        ("no-library", "no-library", "libnvidia-ml.so.1"),
        ("zero-gpus", "no-gpus", "sees no GPU"),
    ],
)
def test_no_driver_no_library_zero_gpus_give_a_clear_status_and_no_gpus(
    detect: Detect, name: str, code: str, words: str
) -> None:
    rig = detect(name)
    assert rig.status_code == code
    assert words in rig.status
    assert rig.gpus == () and rig.topology == ()
    assert rig.source == "detected"


def test_gpu_lost_mid_probe_keeps_the_others_and_says_which(detect: Detect) -> None:
    rig = detect("gpu-lost")
    assert rig.status_code == "gpu-lost"
    assert [g.index for g in rig.gpus] == [0]
    assert "GPU 1 (NVIDIA RTX A6000, 00000000:61:00.0)" in rig.status
    assert any("lost" in n for n in rig.notes)
    advice = rig_advice(rig)
    assert advice[0].code == "gpu-lost" and advice[0].level == "error"


def test_gpu_lost_before_the_probe(detect: Detect) -> None:
    rig = detect("lost-at-start")
    assert rig.status_code == "gpu-lost"
    assert [g.index for g in rig.gpus] == [0]
    assert rig.status.startswith("1 of 2 NVIDIA GPUs usable: GPU 1 is lost")


def test_old_driver_falls_back_to_the_older_calls_and_the_catalog(detect: Detect) -> None:
    (gpu,) = detect("old-driver").gpus
    assert gpu.temperature_c == 36  # TemperatureV missing -> Temperature
    # memory v1: "used" includes the driver's reservation.
    assert gpu.vram_used_mib == pytest.approx(419)
    assert gpu.bandwidth_gbps == 1008  # no bus width: the catalog's figure
    assert gpu.pcie.gpu_max_gen == 4  # no GpuMaxPcieLinkGeneration: the card's own link capability
    assert gpu.nvlink.links == 0


def test_every_field_failing_gives_none_fields_not_an_exception(detect: Detect) -> None:
    rig = detect("errors-everywhere")
    (gpu,) = rig.gpus
    assert gpu.name == "NVIDIA GPU 0"
    assert gpu.bandwidth_gbps is None and gpu.compute_capability is None and gpu.temperature_c is None
    assert gpu.pcie.describe() == "PCIe link not reported"
    assert rig.topology == (("X",),)
    assert any("did not report its memory" in n for n in rig.notes)
    assert rig.driver is None


def test_missing_nvidia_ml_py_is_a_status(monkeypatch: pytest.MonkeyPatch, empty_sysfs: Path) -> None:
    def missing() -> object:
        raise NvmlMissing("No module named 'pynvml'")

    monkeypatch.setattr(probe, "load_backend", missing)
    rig = detect_rig(sysfs_root=empty_sysfs)
    assert rig.status_code == "no-nvml" and "nvidia-ml-py" in rig.status


def test_without_a_driver_nvidia_cards_on_the_pci_bus_are_still_listed(empty_sysfs: Path) -> None:
    device = empty_sysfs / "bus" / "pci" / "devices" / "0000:01:00.0"
    device.mkdir()
    for name, value in (("vendor", "0x10de"), ("device", "0x2204"), ("class", "0x030000")):
        (device / name).write_text(value + "\n")
    rig = detect_rig(backend=load_fake("no-driver"), sysfs_root=empty_sysfs)
    assert rig.status.endswith("1 NVIDIA GPU on the PCI bus")
    (other,) = rig.other_gpus
    assert other.vendor == "nvidia" and other.bus_id == "0000:01:00.0"


@pytest.mark.parametrize(
    ("bits", "mhz", "spec_gbps"),
    [
        (384, 9751, 936),  # RTX 3090, GDDR6X
        (192, 7501, 360),  # RTX 3060, GDDR6
        (384, 10501, 1008),  # RTX 4090, GDDR6X
        (512, 14001, 1792),  # RTX 5090, GDDR7
        (4096, 877, 900),  # V100, HBM2
        (5120, 1215, 1555),  # A100 40GB, HBM2
        (6016, 3201, 4800),  # H200, HBM3e (measured)
    ],
)
def test_bandwidth_formula_matches_the_makers_figures_for_gddr_and_hbm(
    bits: int, mhz: int, spec_gbps: float
) -> None:
    assert bandwidth_gbps(bits, mhz) == pytest.approx(spec_gbps, rel=0.01)


def test_bandwidth_is_none_when_either_input_is_missing() -> None:
    assert bandwidth_gbps(None, 9751) is None and bandwidth_gbps(384, 0) is None


def test_cuda_version_text() -> None:
    assert (cuda_version_text(13000), cuda_version_text(12040), cuda_version_text(None)) == (
        "13.0",
        "12.4",
        None,
    )


def test_vram_used_per_index_from_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIGFIT_FAKE_NVML", "2x3090-nvlink")
    assert vram_used_mib() == {0: pytest.approx(3.0), 1: pytest.approx(3.0)}


def test_vram_used_skips_a_lost_gpu_and_is_none_without_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vram_used_mib(load_fake(str(FIXTURES / "lost-at-start.json"))) == {0: pytest.approx(5.0)}
    assert vram_used_mib(load_fake("no-library")) is None


def test_nvml_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIGFIT_FAKE_NVML", "h200")
    assert nvml_versions() == {"nvml": "13.580.159.04", "driver": "580.159.04", "cuda": "13.0"}
    monkeypatch.setenv("RIGFIT_FAKE_NVML", "no-driver")
    assert nvml_versions() == {"nvml": None, "driver": None, "cuda": None}


def test_detection_shuts_nvml_down_again() -> None:
    backend = load_fake("2x3090-nvlink")
    detect_rig(backend=backend, sysfs_root=Path("/nonexistent"))
    with pytest.raises(Exception, match="Uninitialized"):
        backend.nvmlDeviceGetCount()
