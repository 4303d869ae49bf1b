"""Detect the rig: NVIDIA GPUs through NVML, other GPUs through sysfs, the host through psutil.

The probe is tolerant the way nvitop is: an NVML error on one field makes that field ``None`` ("not
available") and never reaches the caller; versioned calls fall back to older ones (memory v2 -> v1,
TemperatureV -> Temperature, ClocksEventReasons -> ClocksThrottleReasons). A missing library, an
unloaded driver, zero GPUs or a GPU that fell off the bus each give a :class:`~app.core.rig.Rig`
with a clear ``status`` (and ``status_code``); only a broken ``RIGFIT_FAKE_NVML`` selection (the
user's own input) raises :class:`~app.core.errors.RigfitError`.

Memory bandwidth
================
``bandwidth_gbps = bus_width_bits / 8 * max_memory_clock_mhz * 2 / 1000``. NVML reports the memory
clock at half the per-pin data rate for every memory type, so the factor 2 holds for GDDR5/5X/6/6X/7
and HBM alike. Checked against makers' figures: RTX 3090 (384-bit GDDR6X, NVML 9751 MHz) ->
936.1 GB/s (spec 936); RTX 3060 (192-bit, 7501 MHz) -> 360.0 (360); RTX 4090 (384-bit, 10501 MHz) ->
1008.1 (1008); V100 (4096-bit HBM2, 877 MHz) -> 898.0 (900); A100 40GB (5120-bit, 1215 MHz) ->
1555.2 (1555); H200 (6016-bit HBM3e, 3201 MHz, measured) -> 4814.3 (4800). When the driver does not
report the bus width or clock, the catalog's figure for the matched card is used.

Topology
========
Labels follow ``nvidia-smi topo -m``: NVML's common ancestor level gives PIX (one bridge; also a
dual-GPU board), PXB (several bridges), PHB (through the CPU's host bridge), NODE (across host bridges
of one NUMA node) and SYS (across NUMA nodes). ``NV#`` replaces it where # NVLink links join the two
GPUs: links whose remote end is the other GPU's bus id, or, on NVSwitch systems, the links both GPUs
have to the switch (``NV18`` on an HGX H100). P2P read status uses nvidia-smi's letters.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.core.errors import RigfitError
from app.core.rig import Gpu, Host, NvLink, NvLinkPeer, PcieLink, Rig
from app.hardware.nvml import (
    NvmlApi,
    NvmlMissing,
    card_link_reader,
    error_name,
    is_fake,
    load_backend,
)
from app.hardware.pci import normalize_bus_id

log = logging.getLogger(__name__)

ENV_SYSFS_ROOT = "RIGFIT_SYSFS_ROOT"  # tests and screenshots point the sysfs scan at a fake tree

# NVML C API constants (stable ABI values; the fake does not carry pynvml's module constants).
NVML_MEMORY_V2 = 0x02000028
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_P2P_CAPS_INDEX_READ = 0  # nvidia-ml-py 13.x defines its constant as the tuple (0,) by mistake
NVML_NVLINK_MAX_LINKS = 36
_MIB = 2**20

ARCHITECTURES: dict[int, str] = {
    2: "Kepler",
    3: "Maxwell",
    4: "Pascal",
    5: "Volta",
    6: "Turing",
    7: "Ampere",
    8: "Ada Lovelace",
    9: "Hopper",
    10: "Blackwell",
    13: "Rubin",
}
TOPOLOGY_LABELS: dict[int, str] = {0: "PIX", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
P2P_LABELS: dict[int, str] = {0: "OK", 1: "CNS", 2: "GNS", 3: "TNS", 4: "NS", 5: "NS", 6: "U"}
NVLINK_REMOTE_KINDS: dict[int, str] = {0: "gpu", 1: "cpu", 2: "switch"}

STATUS_OK = "ok"
STATUS_NO_NVML = "no-nvml"
STATUS_NO_LIBRARY = "no-library"
STATUS_NO_DRIVER = "no-driver"
STATUS_NO_GPUS = "no-gpus"
STATUS_GPU_LOST = "gpu-lost"
STATUS_NVML_ERROR = "nvml-error"


class GpuLost(Exception):
    """A call said GpuIsLost: stop reading that GPU."""


class _LostWhileProbing(Exception):
    """A GPU was lost part-way through its probe; carries what was read before (for the message)."""

    def __init__(self, name: str | None, bus_id: str | None) -> None:
        super().__init__(name, bus_id)
        self.name = name
        self.bus_id = bus_id


def nvml_call(nv: object, function: str, *args: Any, **kwargs: Any) -> Any:
    """One NVML call; ``None`` on any error except a lost GPU (which stops that GPU's probe)."""
    fn = getattr(nv, function, None)
    if fn is None:  # an older nvidia-ml-py without this function
        return None
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # tolerant probe: every failure is "not available"
        if error_name(exc) == "GpuIsLost":
            raise GpuLost from exc
        log.debug("NVML %s failed: %s", function, error_name(exc))
        return None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace").strip("\x00").strip() or None
    return str(value).strip() or None


def _int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float | str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def bandwidth_gbps(bus_width_bits: int | None, max_memory_clock_mhz: int | None) -> float | None:
    """Peak memory bandwidth in GB/s from NVML's bus width and max memory clock (see module docstring)."""
    if not bus_width_bits or not max_memory_clock_mhz or bus_width_bits <= 0 or max_memory_clock_mhz <= 0:
        return None
    return bus_width_bits / 8 * max_memory_clock_mhz * 2 / 1000


def cuda_version_text(version: int | None) -> str | None:
    """NVML's CUDA driver version 13000 -> ``"13.0"``, 12040 -> ``"12.4"``."""
    if version is None or version <= 0:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def architecture_name(arch: int | None, cc: tuple[int, int] | None) -> str | None:
    """NVML's architecture id to a name; from the compute capability when the driver does not say."""
    if arch is not None and arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if cc is None:
        return None
    major, minor = cc
    if major == 6:
        return "Pascal"
    if major == 7:
        return "Turing" if minor >= 5 else "Volta"
    if major == 8:
        return "Ada Lovelace" if minor >= 9 else "Ampere"
    if major == 9:
        return "Hopper"
    if major in (10, 11, 12):
        return "Blackwell"
    return None


# ----------------------------------------------------------------------------- tolerant field readers
@dataclass(frozen=True)
class MemoryReading:
    """One GPU's memory in MiB. ``used_mib`` excludes the driver's reservation when ``v2`` is True."""

    total_mib: float
    free_mib: float
    used_mib: float
    reserved_mib: float | None
    v2: bool


def read_memory(nv: object, handle: object) -> MemoryReading | None:
    """Memory v2 (used excludes reserved) with fallback to v1. Raises only for a lost GPU."""
    info = nvml_call(nv, "nvmlDeviceGetMemoryInfo", handle, version=NVML_MEMORY_V2)
    v2 = info is not None
    if info is None:
        info = nvml_call(nv, "nvmlDeviceGetMemoryInfo", handle)
    if info is None:
        return None
    try:
        reserved = getattr(info, "reserved", None) if v2 else None
        return MemoryReading(
            total_mib=int(info.total) / _MIB,
            free_mib=int(info.free) / _MIB,
            used_mib=int(info.used) / _MIB,
            reserved_mib=int(reserved) / _MIB if reserved is not None else None,
            v2=v2,
        )
    except (AttributeError, TypeError, ValueError):
        return None


def read_temperature_c(nv: object, handle: object) -> float | None:
    """GPU temperature: TemperatureV, falling back to the older Temperature call."""
    value = nvml_call(nv, "nvmlDeviceGetTemperatureV", handle, NVML_TEMPERATURE_GPU)
    if value is None:
        value = nvml_call(nv, "nvmlDeviceGetTemperature", handle, NVML_TEMPERATURE_GPU)
    number = _int(value)
    return float(number) if number is not None else None


def read_clock_event_reasons(nv: object, handle: object) -> int | None:
    """Why clocks are held down (bit mask): ClocksEventReasons, falling back to ClocksThrottleReasons."""
    value = nvml_call(nv, "nvmlDeviceGetCurrentClocksEventReasons", handle)
    if value is None:
        value = nvml_call(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    return _int(value)


def read_power_limit_w(nv: object, handle: object) -> float | None:
    """The power limit in force (enforced limit, else the management limit), in W."""
    value = nvml_call(nv, "nvmlDeviceGetEnforcedPowerLimit", handle)
    if value is None:
        value = nvml_call(nv, "nvmlDeviceGetPowerManagementLimit", handle)
    number = _int(value)
    return number / 1000 if number is not None and number > 0 else None


def _bus_id(pci: object) -> str | None:
    if pci is None:
        return None
    return _text(getattr(pci, "busId", None)) or _text(getattr(pci, "busIdLegacy", None))


# NVLink generation by architecture. NVML's version call returns an nvmlNvlinkVersion_t on current
# drivers (4 = "3.0", 6 = "4.0") but a plain major number on older ones, so the architecture decides.
NVLINK_VERSION_BY_ARCH: dict[str, int] = {
    "Pascal": 1,
    "Volta": 2,
    "Turing": 2,
    "Ampere": 3,
    "Hopper": 4,
    "Blackwell": 5,
}
_NVLINK_ENUM_MAJOR: dict[int, int] = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 5, 8: 6}


def _read_nvlink(nv: object, handle: object, architecture: str | None) -> NvLink:
    """Active links, their version and far ends. Stops at the first link index the GPU does not have
    (InvalidArgument) or when the GPU has no NVLink at all (NotSupported on link 0)."""
    peers: list[NvLinkPeer] = []
    raw_versions: list[int] = []
    supported: bool | None = None
    get_state = getattr(nv, "nvmlDeviceGetNvLinkState", None)
    if get_state is None:
        return NvLink()
    for link in range(NVML_NVLINK_MAX_LINKS):
        try:
            state = get_state(handle, link)
        except Exception as exc:
            name = error_name(exc)
            if name == "GpuIsLost":
                raise GpuLost from exc
            if name in ("InvalidArgument", "NotSupported", "FunctionNotFound"):
                if link == 0:
                    supported = False
                break
            continue  # one unreadable link; the next may answer
        supported = True
        if not state:
            continue
        version = _int(nvml_call(nv, "nvmlDeviceGetNvLinkVersion", handle, link))
        if version:
            raw_versions.append(version)
        remote = _bus_id(nvml_call(nv, "nvmlDeviceGetNvLinkRemotePciInfo", handle, link))
        kind_id = _int(nvml_call(nv, "nvmlDeviceGetNvLinkRemoteDeviceType", handle, link))
        kind = NVLINK_REMOTE_KINDS.get(kind_id, "unknown") if kind_id is not None else "unknown"
        peers.append(NvLinkPeer(link=link, remote_bus_id=remote, remote_kind=kind))
    version_out: int | None = None
    if peers:
        version_out = NVLINK_VERSION_BY_ARCH.get(architecture or "")
        if version_out is None and raw_versions:
            version_out = _NVLINK_ENUM_MAJOR.get(max(raw_versions))
    return NvLink(links=len(peers), version=version_out, peers=tuple(peers), supported=supported)


def _probe_gpu(nv: NvmlApi, index: int, handle: object, card_link: Callable[[str], Any]) -> Gpu:
    seen: dict[str, str | None] = {"name": None, "bus_id": None}
    try:
        return _probe_gpu_fields(nv, index, handle, card_link, seen)
    except GpuLost:
        raise _LostWhileProbing(seen["name"], seen["bus_id"]) from None


def _probe_gpu_fields(
    nv: NvmlApi, index: int, handle: object, card_link: Callable[[str], Any], seen: dict[str, str | None]
) -> Gpu:
    from app.hardware.catalog import match_detected

    seen["name"] = _text(nvml_call(nv, "nvmlDeviceGetName", handle))
    name = seen["name"] or f"NVIDIA GPU {index}"
    seen["bus_id"] = bus_id = _bus_id(nvml_call(nv, "nvmlDeviceGetPciInfo", handle))
    uuid = _text(nvml_call(nv, "nvmlDeviceGetUUID", handle))
    memory = read_memory(nv, handle)
    cc_raw = nvml_call(nv, "nvmlDeviceGetCudaComputeCapability", handle)
    cc: tuple[int, int] | None = None
    if isinstance(cc_raw, tuple | list) and len(cc_raw) == 2:
        major, minor = _int(cc_raw[0]), _int(cc_raw[1])
        cc = (major, minor) if major is not None and minor is not None else None
    architecture = architecture_name(_int(nvml_call(nv, "nvmlDeviceGetArchitecture", handle)), cc)
    power_limit_w = read_power_limit_w(nv, handle)
    temperature_c = read_temperature_c(nv, handle)
    bus_width = _int(nvml_call(nv, "nvmlDeviceGetMemoryBusWidth", handle))
    mem_clock = _int(nvml_call(nv, "nvmlDeviceGetMaxClockInfo", handle, NVML_CLOCK_MEM))
    gen = _int(nvml_call(nv, "nvmlDeviceGetCurrPcieLinkGeneration", handle))
    max_gen = _int(nvml_call(nv, "nvmlDeviceGetMaxPcieLinkGeneration", handle))
    gpu_max_gen = _int(nvml_call(nv, "nvmlDeviceGetGpuMaxPcieLinkGeneration", handle))
    width = _int(nvml_call(nv, "nvmlDeviceGetCurrPcieLinkWidth", handle))
    max_width = _int(nvml_call(nv, "nvmlDeviceGetMaxPcieLinkWidth", handle))
    nvlink = _read_nvlink(nv, handle, architecture)

    total_mib = memory.total_mib if memory else None
    entry = match_detected(name, total_mib)
    # NVML has no "card's own width": sysfs LnkCap (or the scenario) says it, else the catalog.
    card_gen = card_width = None
    if bus_id:
        try:
            caps = card_link(bus_id)
        except OSError:
            caps = None
        if caps:
            card_gen, card_width = caps
    if card_width is None and entry is not None:
        card_width = entry.pcie_width
    if gpu_max_gen is None:
        gpu_max_gen = card_gen if card_gen is not None else (entry.pcie_gen if entry else None)
    bandwidth = bandwidth_gbps(bus_width, mem_clock)
    if bandwidth is None and entry is not None:
        bandwidth = entry.bandwidth_gbps
    if nvlink.links and entry is not None and entry.nvlink_link_gbps is not None:
        nvlink = replace(nvlink, link_gbps=entry.nvlink_link_gbps)
    if nvlink.supported is None and entry is not None:
        nvlink = replace(nvlink, supported=entry.nvlink)
    return Gpu(
        index=index,
        name=name,
        vram_total_mib=total_mib if total_mib is not None else 0.0,
        uuid=uuid,
        bus_id=bus_id,
        vram_free_mib=memory.free_mib if memory else None,
        vram_used_mib=memory.used_mib if memory else None,
        bandwidth_gbps=bandwidth,
        compute_capability=cc,
        architecture=architecture or (entry.architecture if entry else None),
        power_limit_w=power_limit_w,
        tdp_w=entry.tdp_w if entry else None,
        fp16_tflops=entry.fp16_tflops if entry else None,
        power_connectors=entry.power_connectors if entry else (),
        pcie=PcieLink(
            gen=gen,
            width=width,
            max_gen=max_gen,
            max_width=max_width,
            gpu_max_gen=gpu_max_gen,
            # The card cannot be narrower than the link NVML negotiated.
            gpu_max_width=max(card_width, max_width or 0) if card_width is not None else None,
        ),
        nvlink=nvlink,
        catalog_id=entry.id if entry else None,
        temperature_c=temperature_c,
    )


def _nvlink_count(gpus: list[Gpu], i: int, j: int) -> int:
    """Links that join GPU i and GPU j: direct ones, or through an NVSwitch both reach."""
    target = normalize_bus_id(gpus[j].bus_id)
    direct = sum(1 for p in gpus[i].nvlink.peers if target and normalize_bus_id(p.remote_bus_id) == target)
    if direct:
        return direct
    to_switch_i = sum(1 for p in gpus[i].nvlink.peers if p.remote_kind == "switch")
    to_switch_j = sum(1 for p in gpus[j].nvlink.peers if p.remote_kind == "switch")
    return min(to_switch_i, to_switch_j)


Matrix = tuple[tuple[str, ...], ...]


def _topology(nv: NvmlApi, gpus: list[Gpu], handles: list[object]) -> tuple[Matrix, Matrix]:
    n = len(gpus)
    topo = [["X" if i == j else "?" for j in range(n)] for i in range(n)]
    p2p = [["X" if i == j else "U" for j in range(n)] for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            links = max(_nvlink_count(gpus, i, j), _nvlink_count(gpus, j, i))
            label = f"NV{links}" if links else None
            if label is None:
                try:
                    level = _int(nvml_call(nv, "nvmlDeviceGetTopologyCommonAncestor", handles[i], handles[j]))
                except GpuLost:
                    level = None
                label = TOPOLOGY_LABELS.get(level, "?") if level is not None else "?"
            topo[i][j] = topo[j][i] = label
            for a, b in ((i, j), (j, i)):
                try:
                    status = _int(
                        nvml_call(
                            nv, "nvmlDeviceGetP2PStatus", handles[a], handles[b], NVML_P2P_CAPS_INDEX_READ
                        )
                    )
                except GpuLost:
                    status = None
                p2p[a][b] = P2P_LABELS.get(status, "U") if status is not None else "U"
    return tuple(tuple(r) for r in topo), tuple(tuple(r) for r in p2p)


def _library_name() -> str:
    return "nvml.dll" if sys.platform.startswith("win") else "libnvidia-ml.so.1"


def _other_gpus(sysfs_root: Path, include_nvidia: bool) -> tuple[Gpu, ...]:
    from app.hardware.catalog import match_detected
    from app.hardware.sysfs import scan_gpus

    try:
        found = scan_gpus(sysfs_root, include_nvidia=include_nvidia)
    except OSError as exc:
        log.debug("sysfs scan failed: %s", exc)
        return ()
    out = []
    for gpu in found:
        entry = match_detected(gpu.name, gpu.vram_total_mib or None)
        if entry is not None:
            gpu = replace(
                gpu,
                catalog_id=entry.id,
                bandwidth_gbps=entry.bandwidth_gbps,
                architecture=entry.architecture,
                tdp_w=entry.tdp_w,
                fp16_tflops=entry.fp16_tflops,
                power_connectors=entry.power_connectors,
                vram_total_mib=gpu.vram_total_mib or entry.vram_total_mib,
            )
        out.append(gpu)
    return tuple(out)


def _default_sysfs_root() -> Path:
    return Path(os.environ.get(ENV_SYSFS_ROOT) or "/sys")


def _without_nvml(
    status_code: str, status: str, host: Host, sysfs_root: Path, nvml: str | None = None
) -> Rig:
    others = _other_gpus(sysfs_root, include_nvidia=True)
    nvidia_seen = [g for g in others if g.vendor == "nvidia"]
    if nvidia_seen:
        status += f"; {len(nvidia_seen)} NVIDIA GPU{'s' if len(nvidia_seen) > 1 else ''} on the PCI bus"
    return Rig(
        gpus=(),
        host=host,
        source="detected",
        status=status,
        status_code=status_code,
        other_gpus=others,
        nvml=nvml,
    )


def detect_rig(
    *,
    backend: NvmlApi | None = None,
    sysfs_root: Path | None = None,
    host: Host | None = None,
) -> Rig:
    """The rig this computer has. Never raises for hardware problems: ``status`` says what happened.

    ``backend`` defaults to :func:`app.hardware.nvml.load_backend` (the fake when
    ``RIGFIT_FAKE_NVML`` is set); ``sysfs_root`` to ``$RIGFIT_SYSFS_ROOT`` or ``/sys``; ``host`` to
    this computer's CPU and RAM.
    """
    from app.hardware.host import detect_host

    host = host if host is not None else detect_host()
    root = sysfs_root if sysfs_root is not None else _default_sysfs_root()
    try:
        nv = backend if backend is not None else load_backend()
    except NvmlMissing:
        return _without_nvml(
            STATUS_NO_NVML,
            "NVIDIA GPUs cannot be detected: the nvidia-ml-py package is not installed (planning only)",
            host,
            root,
        )
    try:
        nv.nvmlInit()
    except RigfitError:
        raise
    except Exception as exc:  # every NVML init failure is a status, not a crash
        name = error_name(exc)
        if name == "LibraryNotFound":
            return _without_nvml(
                STATUS_NO_LIBRARY,
                f"No NVIDIA driver found ({_library_name()} is missing): models run on the CPU here, slowly",
                host,
                root,
            )
        if name == "DriverNotLoaded":
            return _without_nvml(
                STATUS_NO_DRIVER,
                "The NVIDIA driver is not loaded (NVML: Driver Not Loaded): load or reinstall it to use the GPUs",
                host,
                root,
            )
        if name == "LibRmVersionMismatch":
            return _without_nvml(
                STATUS_NVML_ERROR,
                "The NVIDIA driver and its kernel module have different versions: reboot after the driver update",
                host,
                root,
            )
        if name == "NoPermission":
            return _without_nvml(
                STATUS_NVML_ERROR,
                "No permission to use the NVIDIA driver (NVML: Insufficient Permissions)",
                host,
                root,
            )
        return _without_nvml(STATUS_NVML_ERROR, f"NVML could not start: {name} ({exc})", host, root)
    try:
        return _detect_with(nv, host, root)
    finally:
        nvml_call(nv, "nvmlShutdown")


def _detect_with(nv: NvmlApi, host: Host, sysfs_root: Path) -> Rig:
    driver = _text(nvml_call(nv, "nvmlSystemGetDriverVersion"))
    nvml_version = _text(nvml_call(nv, "nvmlSystemGetNVMLVersion"))
    cuda = cuda_version_text(_int(nvml_call(nv, "nvmlSystemGetCudaDriverVersion")))
    count = _int(nvml_call(nv, "nvmlDeviceGetCount"))
    others = _other_gpus(sysfs_root, include_nvidia=False)
    if count is None:
        return Rig(
            gpus=(),
            host=host,
            source="detected",
            status="NVML started but could not count the GPUs",
            status_code=STATUS_NVML_ERROR,
            other_gpus=others,
            driver=driver,
            cuda=cuda,
            nvml=nvml_version,
        )
    card_link = card_link_reader(nv, None if is_fake(nv) else sysfs_root)
    gpus: list[Gpu] = []
    handles: list[object] = []
    notes: list[str] = []
    lost: list[str] = []
    for index in range(count):
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            if error_name(exc) == "GpuIsLost":
                lost.append(f"GPU {index}")
            else:
                notes.append(f"GPU {index}: NVML cannot open it ({error_name(exc)})")
            continue
        try:
            gpu = _probe_gpu(nv, index, handle, card_link)
        except _LostWhileProbing as exc:
            where = ", ".join(x for x in (exc.name, exc.bus_id) if x)
            lost.append(f"GPU {index}" + (f" ({where})" if where else ""))
            continue
        if gpu.vram_total_mib <= 0:
            notes.append(f"GPU {index} ({gpu.name}): NVML did not report its memory")
        gpus.append(gpu)
        handles.append(handle)
    for text in lost:
        notes.append(f"{text} is lost (fell off the bus): NVML cannot reach it until the machine is rebooted")
    topology: Matrix = ()
    p2p: Matrix = ()
    if gpus:
        topology, p2p = _topology(nv, gpus, handles)
    if lost:
        code = STATUS_GPU_LOST
        status = (
            f"{len(gpus)} of {count} NVIDIA GPUs usable: {', '.join(lost)} "
            f"{'is' if len(lost) == 1 else 'are'} lost; reboot to recover"
        )
    elif not gpus and count == 0:
        code = STATUS_NO_GPUS
        status = f"The NVIDIA driver{' ' + driver if driver else ''} is loaded but sees no GPU"
    elif not gpus:
        code = STATUS_NVML_ERROR
        status = f"NVML lists {count} GPU{'s' if count > 1 else ''} but none could be read"
    else:
        code = STATUS_OK
        extra = ", ".join(f"{k} {v}" for k, v in (("driver", driver), ("CUDA", cuda)) if v)
        status = f"{len(gpus)} NVIDIA GPU{'s' if len(gpus) > 1 else ''} detected" + (
            f" ({extra})" if extra else ""
        )
    return Rig(
        gpus=tuple(gpus),
        host=host,
        topology=topology,
        p2p=p2p,
        source="detected",
        name="this computer",
        status=status,
        status_code=code,
        other_gpus=others,
        notes=tuple(notes),
        driver=driver,
        cuda=cuda,
        nvml=nvml_version,
    )


def nvml_versions() -> dict[str, str | None]:
    """NVML, driver and CUDA driver versions (``None`` each when NVML is unavailable)."""
    out: dict[str, str | None] = {"nvml": None, "driver": None, "cuda": None}
    try:
        nv = load_backend()
        nv.nvmlInit()
    except Exception:  # no NVML: no versions
        return out
    try:
        out["nvml"] = _text(nvml_call(nv, "nvmlSystemGetNVMLVersion"))
        out["driver"] = _text(nvml_call(nv, "nvmlSystemGetDriverVersion"))
        out["cuda"] = cuda_version_text(_int(nvml_call(nv, "nvmlSystemGetCudaDriverVersion")))
    finally:
        nvml_call(nv, "nvmlShutdown")
    return out


def vram_used_mib(backend: NvmlApi | None = None) -> dict[int, float] | None:
    """Used VRAM per NVML index in MiB (v2: excluding the driver's reservation), ``None`` without NVML.

    Light enough to call before and after a model load to measure what the load took. A GPU that
    cannot be read is left out of the dict.
    """
    try:
        nv = backend if backend is not None else load_backend()
        nv.nvmlInit()
    except Exception:  # no NVML, no measurement
        return None
    out: dict[int, float] = {}
    try:
        count = _int(nvml_call(nv, "nvmlDeviceGetCount")) or 0
        for index in range(count):
            try:
                handle = nvml_call(nv, "nvmlDeviceGetHandleByIndex", index)
                memory = read_memory(nv, handle) if handle is not None else None
            except GpuLost:
                continue
            if memory is not None:
                out[index] = memory.used_mib
    finally:
        nvml_call(nv, "nvmlShutdown")
    return out
