"""Linux sysfs PCI scan: GPUs NVML does not see (AMD, Intel) and the PCIe link facts NVML lacks.

Rigfit runs models on NVIDIA GPUs only, but AMD and Intel cards are listed (for planning) with the
PCIe link the kernel reports. NVML also cannot say how wide a card's own PCIe interface is (its
"max width" is already limited by the slot), while sysfs can: a device's ``max_link_width`` is its
Link Capabilities register (LnkCap), ``current_link_width`` the negotiated width (LnkSta), and the
upstream port's ``max_link_width`` is what the slot offers.

Cards with a PCIe switch on board (AMD Radeon, Intel Arc) show the GPU behind their own switch, whose
internal link always reports full speed; the link that matters is the one between the card's upstream
switch port and the board, so the scan walks up through same-vendor bridges before reading it.

Every function takes ``root`` (default ``/sys``) so tests build a fake tree in a temporary folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from app.core.rig import VENDOR_AMD, VENDOR_INTEL, VENDOR_NVIDIA, Gpu, PcieLink
from app.hardware.pci import normalize_bus_id

PLANNING_ONLY_NOTE = "planning only: Rigfit runs models on NVIDIA GPUs"
NO_DRIVER_NOTE = "NVIDIA GPU on the PCI bus, but NVML cannot use it: install or load the NVIDIA driver"

VENDOR_IDS: dict[int, str] = {0x1002: VENDOR_AMD, 0x8086: VENDOR_INTEL, 0x10DE: VENDOR_NVIDIA}
_VENDOR_TITLES = {VENDOR_AMD: "AMD", VENDOR_INTEL: "Intel", VENDOR_NVIDIA: "NVIDIA"}
_DISPLAY_CLASS = 0x03
_BUS_ID_RE = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
# GT/s per lane -> PCIe generation, as the kernel prints it in *_link_speed ("16.0 GT/s PCIe").
_SPEED_GEN: dict[str, int] = {
    "2.5": 1,
    "5.0": 2,
    "5": 2,
    "8.0": 3,
    "8": 3,
    "16.0": 4,
    "16": 4,
    "32.0": 5,
    "32": 5,
}
_SPEED_GEN.update({"64.0": 6, "64": 6})
_PCI_IDS_FILES = ("/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids", "/usr/share/pci.ids")


@dataclass(frozen=True)
class PciLink:
    """What the kernel reports for one PCIe link: negotiated now and capability of each end."""

    gen: int | None
    width: int | None
    card_max_gen: int | None
    card_max_width: int | None
    slot_max_gen: int | None
    slot_max_width: int | None

    def to_pcie(self) -> PcieLink:
        return PcieLink(
            gen=self.gen,
            width=self.width,
            max_gen=_min_known(self.card_max_gen, self.slot_max_gen),
            max_width=_min_known(self.card_max_width, self.slot_max_width),
            gpu_max_gen=self.card_max_gen,
            gpu_max_width=self.card_max_width,
        )


def parse_link_speed(text: str | None) -> int | None:
    """PCIe generation from a sysfs speed such as ``16.0 GT/s PCIe`` (``None`` when unknown)."""
    if not text:
        return None
    m = re.match(r"\s*([0-9.]+)\s*GT/s", text)
    return _SPEED_GEN.get(m.group(1)) if m else None


def parse_link_width(text: str | None) -> int | None:
    if not text:
        return None
    try:
        width = int(text.strip())
    except ValueError:
        return None
    # 255 is what some bridges report for "unknown".
    return width if 0 < width <= 32 else None


def _min_known(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _read_hex(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def _is_pci_device(path: Path) -> bool:
    return bool(_BUS_ID_RE.match(path.name)) and (path / "vendor").exists()


def _device_dir(bus_id: str, root: Path) -> Path | None:
    path = root / "bus" / "pci" / "devices" / normalize_bus_id(bus_id)
    return path if path.exists() else None


def _card_port(device: Path) -> Path:
    """The device whose upstream link connects the card to the board (see module docstring)."""
    vendor = _read_hex(device / "vendor")
    current = device.resolve()
    while True:
        parent = current.parent
        # Stop at a root port (its parent is the host bridge folder, not a PCI device) and at a
        # bridge of another vendor (a board switch or the CPU).
        if not _is_pci_device(parent) or not _is_pci_device(parent.parent):
            return current
        if _read_hex(parent / "vendor") != vendor:
            return current
        current = parent


def read_link(device: Path) -> PciLink:
    """The card's link for the GPU function at ``device`` (a folder under ``/sys/bus/pci/devices``)."""
    port = _card_port(device)
    parent = port.parent
    slot_gen = slot_width = None
    if _is_pci_device(parent):
        slot_gen = parse_link_speed(_read(parent / "max_link_speed"))
        slot_width = parse_link_width(_read(parent / "max_link_width"))
    return PciLink(
        gen=parse_link_speed(_read(port / "current_link_speed")),
        width=parse_link_width(_read(port / "current_link_width")),
        card_max_gen=parse_link_speed(_read(port / "max_link_speed")),
        card_max_width=parse_link_width(_read(port / "max_link_width")),
        slot_max_gen=slot_gen,
        slot_max_width=slot_width,
    )


def card_link(bus_id: str, root: Path = Path("/sys")) -> tuple[int | None, int | None] | None:
    """The card's own PCIe capability (gen, width) for an NVML bus id, or ``None`` when sysfs lacks it.

    Only an NVIDIA display device counts, so a stale or mistyped bus id never reads another device.
    """
    device = _device_dir(bus_id, root)
    if device is None or _read_hex(device / "vendor") != 0x10DE:
        return None
    link = read_link(device)
    if link.card_max_gen is None and link.card_max_width is None:
        return None
    return link.card_max_gen, link.card_max_width


def _pci_ids_name(vendor_id: int, device_id: int) -> str | None:
    """The device's name from the system's pci.ids database, when one is installed."""
    vendor_key = f"{vendor_id:04x}"
    device_key = f"\t{device_id:04x}"
    for name in _PCI_IDS_FILES:
        path = Path(name)
        if not path.is_file():
            continue
        in_vendor = False
        try:
            with path.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if not line.startswith("\t"):
                        if in_vendor:
                            break
                        in_vendor = line.startswith(vendor_key)
                    elif in_vendor and line.startswith(device_key) and not line.startswith("\t\t"):
                        return line[len(device_key) :].strip()
        except OSError:
            continue
    return None


def _gpu_name(device: Path, vendor: str, vendor_id: int, device_id: int) -> str:
    product = _read(device / "product_name")  # amdgpu, from the board's FRU EEPROM when present
    if product:
        return product
    name = _pci_ids_name(vendor_id, device_id)
    title = _VENDOR_TITLES[vendor]
    if name:
        # pci.ids writes "Navi 31 [Radeon RX 7900 XT/7900 XTX/7900M]": the bracket is the product.
        m = re.search(r"\[([^\]]+)\]", name)
        return f"{title} {m.group(1) if m else name}"
    return f"{title} GPU [{vendor_id:04x}:{device_id:04x}]"


def scan_gpus(root: Path = Path("/sys"), include_nvidia: bool = False) -> tuple[Gpu, ...]:
    """Display-class PCI devices of AMD and Intel (and NVIDIA when asked), as planning-only GPUs.

    Intel graphics on bus 0 is the processor's integrated GPU and is left out: it has no memory of
    its own to plan with. VRAM is read where the driver publishes it (amdgpu's
    ``mem_info_vram_total``); elsewhere it is 0, meaning unknown.
    """
    devices_dir = root / "bus" / "pci" / "devices"
    if not devices_dir.is_dir():
        return ()
    found: list[Gpu] = []
    for device in sorted(devices_dir.iterdir(), key=lambda p: p.name):
        cls = _read_hex(device / "class")
        vendor_id = _read_hex(device / "vendor")
        device_id = _read_hex(device / "device")
        if cls is None or vendor_id is None or device_id is None or cls >> 16 != _DISPLAY_CLASS:
            continue
        vendor = VENDOR_IDS.get(vendor_id)
        if vendor is None or (vendor == VENDOR_NVIDIA and not include_nvidia):
            continue
        bus = device.name.split(":")
        if vendor == VENDOR_INTEL and len(bus) == 3 and int(bus[1], 16) == 0:
            continue
        vram_bytes = _read(device / "mem_info_vram_total")
        try:
            vram_mib = int(vram_bytes) / 2**20 if vram_bytes else 0.0
        except ValueError:
            vram_mib = 0.0
        found.append(
            Gpu(
                index=len(found),
                name=_gpu_name(device, vendor, vendor_id, device_id),
                vram_total_mib=vram_mib,
                vendor=vendor,
                bus_id=device.name,
                pcie=read_link(device).to_pcie(),
            )
        )
    return tuple(found)


def note_for(gpu: Gpu) -> str:
    """Why a GPU from the sysfs scan is not usable for running models."""
    return NO_DRIVER_NOTE if gpu.vendor == VENDOR_NVIDIA else PLANNING_ONLY_NOTE
