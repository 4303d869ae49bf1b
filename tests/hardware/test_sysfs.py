"""The sysfs PCI scan on a fake /sys tree: AMD/Intel GPUs, their real slot link, NVIDIA link caps."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.hardware import sysfs
from app.hardware.sysfs import PLANNING_ONLY_NOTE, card_link, note_for, parse_link_speed, scan_gpus


def _device(
    root: Path,
    chain: list[str],
    vendor: int,
    cls: int,
    device_id: int = 0,
    link: tuple[str, int, str, int] | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """A PCI function at the end of ``chain`` (root port first), linked from /sys/bus/pci/devices."""
    path = root / "devices" / "pci0000:00"
    for name in chain:
        path = path / name
    path.mkdir(parents=True, exist_ok=True)
    files = {"vendor": f"0x{vendor:04x}", "device": f"0x{device_id:04x}", "class": f"0x{cls:06x}"}
    if link:
        cur_speed, cur_width, max_speed, max_width = link
        files |= {
            "current_link_speed": cur_speed,
            "current_link_width": str(cur_width),
            "max_link_speed": max_speed,
            "max_link_width": str(max_width),
        }
    files |= extra or {}
    for name, value in files.items():
        (path / name).write_text(value + "\n")
    bus = root / "bus" / "pci" / "devices"
    bus.mkdir(parents=True, exist_ok=True)
    (bus / chain[-1]).symlink_to(path)
    return path


GEN4 = "16.0 GT/s PCIe"
GEN3 = "8.0 GT/s PCIe"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sysfs, "_PCI_IDS_FILES", ())  # no pci.ids: names must not depend on the machine
    root = tmp_path / "sys"
    # AMD Radeon with its on-card switch (USP 01:00.0, DSP 02:00.0) in a slot wired x4 (root port 00:01.1).
    _device(root, ["0000:00:01.1"], 0x1022, 0x060400, link=(GEN4, 4, GEN4, 4))
    _device(root, ["0000:00:01.1", "0000:01:00.0"], 0x1002, 0x060400, link=(GEN4, 4, GEN4, 16))
    _device(
        root, ["0000:00:01.1", "0000:01:00.0", "0000:02:00.0"], 0x1002, 0x060400, link=(GEN4, 16, GEN4, 16)
    )
    _device(
        root,
        ["0000:00:01.1", "0000:01:00.0", "0000:02:00.0", "0000:03:00.0"],
        0x1002,
        0x030000,
        0x744C,
        link=(GEN4, 16, GEN4, 16),  # the on-card link: always full speed, says nothing about the slot
        extra={"mem_info_vram_total": str(24 * 2**30)},
    )
    # Intel integrated graphics on bus 0 (left out) and an NVIDIA card in an x8 slot.
    _device(root, ["0000:00:02.0"], 0x8086, 0x030000, 0x9A49)
    _device(root, ["0000:00:03.1"], 0x1022, 0x060400, link=(GEN4, 8, GEN4, 8))
    _device(root, ["0000:00:03.1", "0000:0a:00.0"], 0x10DE, 0x030000, 0x2204, link=(GEN3, 8, GEN4, 16))
    # An NVMe drive (not a display device).
    _device(root, ["0000:00:04.0"], 0x144D, 0x010802, link=(GEN4, 4, GEN4, 4))
    return root


@pytest.mark.parametrize(
    ("text", "gen"),
    [
        ("2.5 GT/s PCIe", 1),
        ("5.0 GT/s PCIe", 2),
        ("8.0 GT/s PCIe", 3),
        ("16.0 GT/s PCIe", 4),
        ("32.0 GT/s PCIe", 5),
        ("64.0 GT/s PCIe", 6),
        ("Unknown", None),
        ("", None),
    ],
)
def test_link_speed_to_generation(text: str, gen: int | None) -> None:
    assert parse_link_speed(text) == gen


def test_amd_card_behind_its_own_switch_reports_the_slot_link(tree: Path) -> None:
    (amd,) = scan_gpus(tree)
    assert amd.vendor == "amd"
    assert amd.bus_id == "0000:03:00.0"
    assert amd.name == "AMD GPU [1002:744c]"
    assert amd.vram_total_mib == 24 * 1024
    assert (amd.pcie.gen, amd.pcie.width) == (4, 4)
    assert (amd.pcie.max_width, amd.pcie.gpu_max_width) == (4, 16)
    assert amd.pcie.slot_limited
    assert note_for(amd) == PLANNING_ONLY_NOTE


def test_integrated_intel_graphics_and_non_display_devices_are_left_out(tree: Path) -> None:
    assert [g.bus_id for g in scan_gpus(tree)] == ["0000:03:00.0"]


def test_nvidia_cards_are_listed_only_when_asked(tree: Path) -> None:
    gpus = scan_gpus(tree, include_nvidia=True)
    nvidia = [g for g in gpus if g.vendor == "nvidia"]
    assert [g.bus_id for g in nvidia] == ["0000:0a:00.0"]
    assert "driver" in note_for(nvidia[0])


def test_nvidia_card_link_is_its_own_capability_not_the_slot(tree: Path) -> None:
    assert card_link("00000000:0A:00.0", root=tree) == (4, 16)


def test_card_link_ignores_non_nvidia_devices_and_unknown_bus_ids(tree: Path) -> None:
    assert card_link("0000:03:00.0", root=tree) is None
    assert card_link("0000:7f:00.0", root=tree) is None


def test_name_comes_from_pci_ids_when_installed(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = tmp_path / "pci.ids"
    ids.write_text(
        "1000  Broadcom\n\t0001  Something\n"
        "1002  Advanced Micro Devices, Inc. [AMD/ATI]\n"
        "\t744c  Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]\n"
        "\t\t1002 0e3b  a subsystem line\n"
        "10de  NVIDIA Corporation\n"
    )
    monkeypatch.setattr(sysfs, "_PCI_IDS_FILES", (str(ids),))
    (amd,) = scan_gpus(tree)
    assert amd.name == "AMD Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M"


def test_missing_sysfs_is_an_empty_scan(tmp_path: Path) -> None:
    assert scan_gpus(tmp_path / "nothing") == ()
