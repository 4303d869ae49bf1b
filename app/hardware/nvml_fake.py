"""A fake NVML driven by scenario data: the same function names and errors as ``pynvml``.

The probe (and the telemetry sampler) call NVML through "an object with pynvml's function names".
This module provides one that answers from a scenario, so every code path above it is the same for a
real GPU and for a test, a screenshot or a demo. Select it with ``RIGFIT_FAKE_NVML=<file.json or
built-in name>`` (see :mod:`app.hardware.nvml`).

Scenario format (``rigfit-nvml/1``)
===================================

A scenario is a JSON object. It is a superset of what ``python -m app.hardware.record`` writes from a
real NVML, and of the raw H200 recording (``tests/fixtures/nvml/h200-raw.json``), which replays as is.
Units are NVML's own: bytes, mW, MHz, KB/s (PCIe throughput), MB/s (PCIe speed), °C, %.

Top level::

    "format":  "rigfit-nvml/1"          optional; recordings without it are accepted
    "about":   "free text"              where the data came from
    "init":    "ERR DriverNotLoaded"    optional: nvmlInit raises this (no driver: DriverNotLoaded,
                                        no library: LibraryNotFound, ...); the rest is then unused
    "missing": ["nvmlDeviceGetTemperatureV", ...]
                                        functions that raise FunctionNotFound, as an old driver does
                                        (memory v2 is "nvmlDeviceGetMemoryInfo_v2")
    "driver":  "580.159.04"             nvmlSystemGetDriverVersion
    "nvml":    "13.580.159.04"          nvmlSystemGetNVMLVersion
    "cuda":    13000                    nvmlSystemGetCudaDriverVersion (1000*major + 10*minor)
    "devices": [ {device}, ... ]        in NVML index order
    "topology": [[level, ...], ...]     nvmlDeviceGetTopologyCommonAncestor per pair: 0/10/20/30/40/50 or
                                        "INTERNAL", "SINGLE", "MULTIPLE", "HOSTBRIDGE", "NODE", "SYSTEM"
    "p2p": {"read": [[status, ...], ...], "write": ..., "nvlink": ..., "atomics": ..., "pci": ...}
                                        nvmlDeviceGetP2PStatus per pair and caps index: 0..6 or "OK",
                                        "CHIPSET_NOT_SUPPORTED", "GPU_NOT_SUPPORTED",
                                        "IOH_TOPOLOGY_NOT_SUPPORTED", "DISABLED_BY_REGKEY",
                                        "NOT_SUPPORTED", "UNKNOWN"

A device (keys as in the raw recording; a key that is absent raises NotSupported)::

    name, uuid                          strings
    pci: {busId, busIdLegacy, domain, bus, device, pciDeviceId, pciSubSystemId}
    mem: {total, free, used}            nvmlDeviceGetMemoryInfo (v1: used includes reserved)
    mem_v2: {version, total, reserved, free, used}
                                        nvmlDeviceGetMemoryInfo(h, version=nvmlMemory_v2)
    cc: [9, 0] or "(9, 0)"              nvmlDeviceGetCudaComputeCapability
    arch: 9                             nvmlDeviceGetArchitecture (NVML_DEVICE_ARCH_*)
    temp                                nvmlDeviceGetTemperatureV / nvmlDeviceGetTemperature (GPU sensor)
    temp_shutdown, temp_slowdown, temp_mem_max, temp_gpu_max
                                        nvmlDeviceGetTemperatureThreshold (°C) for NVML's thresholds
                                        0 (shutdown), 1 (slowdown), 2 (memory max), 3 (GPU max)
    power, power_limit, power_limit_enforced (mW), energy (mJ)
    util: {gpu, memory}                 nvmlDeviceGetUtilizationRates
    fan                                 nvmlDeviceGetFanSpeed (%)
    pstate                              nvmlDeviceGetPerformanceState
    clk_graphics, clk_sm, clk_mem, clk_video            nvmlDeviceGetClockInfo
    clk_graphics_max, clk_sm_max, clk_mem_max, clk_video_max   nvmlDeviceGetMaxClockInfo
    bus_width                           nvmlDeviceGetMemoryBusWidth (bits)
    throttle                            clock event (throttle) reasons bit mask
    pcie_gen_cur, pcie_gen_max, pcie_gen_gpu_max, pcie_w_cur, pcie_w_max
    pcie_speed (MB/s), pcie_tx, pcie_rx (KB/s)
    numa, procs: [{pid, usedGpuMemory}]
    nvlink: [{link, state, version, remote_pci: {busId, ...}, remote_type}, ...]
                                        one entry per link the GPU has; asking for a link past the
                                        list raises InvalidArgument, as real NVML does
    card_link: {max_gen, max_width}     not NVML: the card's own PCIe capability as Linux sysfs
                                        reports it (LnkCap); NVML only knows the slot-limited maximum
    lost_after_calls: N                 after N calls that name this GPU, every call (handle lookup
                                        included) raises GpuIsLost; 0 means lost from the start

Any value, at any depth, may be an error or a series:

- ``"ERR NotSupported"`` (also ``"ERR NVMLError_NotSupported: Not Supported"`` as recordings write it,
  or ``"ERR GPU_IS_LOST"``): the call raises that ``pynvml.NVMLError`` subclass.
- ``{"series": [v0, v1, ...], "step": "call" | "tick" | "seconds", "period_s": 1.0, "loop": false}``:
  a value that changes. ``call`` (the default): the k-th read of this value returns item k, so a
  sampler that reads each field once per sample walks the series; ``tick``: item
  :meth:`FakeNvml.advance` has moved to; ``seconds``: item ``(now - init time) / period_s``. After the
  last item the last one holds, or the series starts over with ``"loop": true``. Items may be
  errors, so a sensor can fail for a few samples, and ``lost_after_calls`` loses a GPU mid-run.
"""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from app.core import files
from app.core.errors import RigfitError
from app.hardware.pci import same_bus_id

FORMAT = "rigfit-nvml/1"

TOPOLOGY_LEVELS: dict[str, int] = {
    "INTERNAL": 0,
    "SINGLE": 10,
    "MULTIPLE": 20,
    "HOSTBRIDGE": 30,
    "NODE": 40,
    "CPU": 40,
    "SYSTEM": 50,
}
P2P_STATUSES: dict[str, int] = {
    "OK": 0,
    "CHIPSET_NOT_SUPPORTED": 1,
    "GPU_NOT_SUPPORTED": 2,
    "IOH_TOPOLOGY_NOT_SUPPORTED": 3,
    "DISABLED_BY_REGKEY": 4,
    "NOT_SUPPORTED": 5,
    "UNKNOWN": 6,
}
P2P_INDEXES: dict[str, int] = {"read": 0, "write": 1, "nvlink": 2, "atomics": 3, "pci": 4, "prop": 4}
_CLOCK_KEYS: dict[int, str] = {0: "graphics", 1: "sm", 2: "mem", 3: "video"}
_MEMORY_V2 = 0x02000028  # pynvml.nvmlMemory_v2
# nvmlTemperatureThresholds_t values -> scenario keys
_THRESHOLD_KEYS: dict[int, str] = {
    0: "temp_shutdown",
    1: "temp_slowdown",
    2: "temp_mem_max",
    3: "temp_gpu_max",
}


def _pynvml() -> ModuleType:
    # The fake raises pynvml's own exception classes so callers catch one family for real and fake.
    import pynvml

    module: ModuleType = pynvml
    return module


def error_class(spec: str) -> type[Exception]:
    """The ``pynvml.NVMLError`` subclass an ``"ERR ..."`` string names; :class:`RigfitError` if none."""
    nv = _pynvml()
    text = spec.strip()
    if text.upper().startswith("ERR"):
        text = text[3:].strip()
    text = text.split(":", 1)[0].strip()
    if text.startswith("NVMLError_"):
        text = text[len("NVMLError_") :]
    candidates = [text, text.replace("_", "")]
    if text.upper().startswith("NVML_ERROR_"):
        text = text[len("NVML_ERROR_") :]
    # "GPU_IS_LOST" -> "GpuIsLost", as pynvml derives its class names.
    candidates.append("".join(part.capitalize() for part in text.lower().split("_")))
    for name in candidates:
        cls = getattr(nv, f"NVMLError_{name}", None)
        if isinstance(cls, type) and issubclass(cls, nv.NVMLError):
            return cls
    raise RigfitError(f"unknown NVML error '{spec}' in the fake NVML scenario")


def _is_error(value: object) -> bool:
    return isinstance(value, str) and value.strip().upper().startswith("ERR")


def _is_series(value: object) -> bool:
    return isinstance(value, dict) and "series" in value


def _validate(value: object, where: str) -> None:
    """Fail on load, not in the middle of a probe, when a scenario names an unknown error or a bad series."""
    if _is_error(value):
        error_class(str(value))
    elif _is_series(value):
        assert isinstance(value, dict)
        items = value["series"]
        if not isinstance(items, list) or not items:
            raise RigfitError(f"fake NVML scenario: {where}: 'series' must be a non-empty list")
        step = value.get("step", "call")
        if step not in ("call", "tick", "seconds"):
            raise RigfitError(
                f"fake NVML scenario: {where}: step must be call, tick or seconds, not {step!r}"
            )
        if step == "seconds" and not float(value.get("period_s", 1.0)) > 0:
            raise RigfitError(f"fake NVML scenario: {where}: period_s must be positive")
        for i, item in enumerate(items):
            _validate(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _validate(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _validate(item, f"{where}[{i}]")


def validate_scenario(data: object, origin: str = "scenario") -> dict[str, Any]:
    """Check a scenario's shape; returns it as a dict or raises :class:`RigfitError` naming the problem."""
    if not isinstance(data, dict):
        raise RigfitError(f"{origin}: a fake NVML scenario must be a JSON object")
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise RigfitError(f"{origin}: unsupported scenario format {fmt!r} (expected {FORMAT!r})")
    devices = data.get("devices", [])
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise RigfitError(f"{origin}: 'devices' must be a list of objects")
    n = len(devices)
    for key in ("topology",):
        matrix = data.get(key)
        if matrix is not None and (
            not isinstance(matrix, list) or len(matrix) != n or any(len(row) != n for row in matrix)
        ):
            raise RigfitError(f"{origin}: '{key}' must be a {n}x{n} matrix")
    p2p = data.get("p2p", {})
    if not isinstance(p2p, dict):
        raise RigfitError(f"{origin}: 'p2p' must map a caps index name to a matrix")
    for name, matrix in p2p.items():
        if name not in P2P_INDEXES:
            raise RigfitError(f"{origin}: unknown p2p index {name!r} (use {', '.join(P2P_INDEXES)})")
        if not isinstance(matrix, list) or len(matrix) != n or any(len(row) != n for row in matrix):
            raise RigfitError(f"{origin}: p2p '{name}' must be a {n}x{n} matrix")
    missing = data.get("missing", [])
    if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
        raise RigfitError(f"{origin}: 'missing' must be a list of function names")
    for i, dev in enumerate(devices):
        lost = dev.get("lost_after_calls")
        if lost is not None and (not isinstance(lost, int) or lost < 0):
            raise RigfitError(f"{origin}: devices[{i}].lost_after_calls must be a whole number >= 0")
        nvlink = dev.get("nvlink", [])
        if not isinstance(nvlink, list):
            raise RigfitError(f"{origin}: devices[{i}].nvlink must be a list of links")
    _validate(data, origin)
    return data


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read and check a scenario file."""
    p = Path(path)
    text = files.read_text(p, "fake NVML scenario", files.MAX_RECORDING_BYTES)
    data = files.parse_json(text, f"fake NVML scenario {files.show_path(p)}")
    return validate_scenario(data, files.show_path(p))


class FakeHandle:
    """Stands in for ``c_nvmlDevice_t``: identifies one device of the scenario."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"FakeHandle({self.index})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeHandle) and other.index == self.index

    def __hash__(self) -> int:
        return hash(("FakeHandle", self.index))


def _struct(value: Mapping[str, Any], bytes_fields: Sequence[str] = ()) -> SimpleNamespace:
    # pynvml returns ctypes structures whose char arrays read as bytes; keep that so probe code that
    # decodes them is exercised by the fake too.
    fields = {k: (v.encode() if k in bytes_fields and isinstance(v, str) else v) for k, v in value.items()}
    return SimpleNamespace(**fields)


class FakeNvml:
    """An object with pynvml's function names, answering from a scenario (see the module docstring).

    Thread-safe: the telemetry sampler calls it from its own thread.
    """

    rigfit_fake = True

    def __init__(
        self, scenario: Mapping[str, Any], name: str = "scenario", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.scenario: dict[str, Any] = validate_scenario(
            dict(scenario) if isinstance(scenario, Mapping) else scenario, name
        )
        self.name = name
        self._clock = clock
        self._lock = threading.RLock()
        self._init_count = 0
        self._t0 = clock()
        self._tick = 0
        self._reads: dict[str, int] = {}
        self._device_calls: dict[int, int] = {}
        self._missing = frozenset(self.scenario.get("missing", []))
        self.calls = 0  # every NVML call made, for tests that check caching

    # -- the fake's own controls (not NVML) ------------------------------------------------------------
    def advance(self, ticks: int = 1) -> None:
        """Move ``"step": "tick"`` series forward."""
        with self._lock:
            self._tick += ticks

    def rigfit_card_link(self, bus_id: str) -> tuple[int | None, int | None] | None:
        """The card's own PCIe (gen, width) capability, the scenario's stand-in for Linux sysfs."""
        with self._lock:
            for i, dev in enumerate(self._devices):
                pci = dev.get("pci")
                if isinstance(pci, dict) and same_bus_id(str(pci.get("busId", "")), bus_id):
                    link = dev.get("card_link")
                    if not isinstance(link, dict):
                        return None
                    gen = _opt_int(self._resolve(link.get("max_gen"), f"{i}.card_link.max_gen"))
                    width = _opt_int(self._resolve(link.get("max_width"), f"{i}.card_link.max_width"))
                    return gen, width
        return None

    # -- internals -------------------------------------------------------------------------------------
    @property
    def _devices(self) -> list[dict[str, Any]]:
        devices: list[dict[str, Any]] = self.scenario.get("devices", [])
        return devices

    def _nv_error(self, name: str) -> Exception:
        cls: type[Exception] = getattr(_pynvml(), f"NVMLError_{name}")
        return cls()

    def _enter(self, function: str) -> None:
        self.calls += 1
        if function in self._missing:
            raise self._nv_error("FunctionNotFound")
        if self._init_count <= 0:
            raise self._nv_error("Uninitialized")

    def _series_item(self, value: dict[str, Any], path: str) -> Any:
        items: list[Any] = value["series"]
        step = value.get("step", "call")
        if step == "tick":
            k = self._tick
        elif step == "seconds":
            k = int((self._clock() - self._t0) / float(value.get("period_s", 1.0)))
        else:
            k = self._reads.get(path, 0)
            self._reads[path] = k + 1
        k = k % len(items) if value.get("loop", False) else min(k, len(items) - 1)
        return items[k]

    def _resolve(self, value: Any, path: str) -> Any:
        if _is_series(value):
            value = self._series_item(value, path)
            return self._resolve(value, path + "#")
        if _is_error(value):
            raise error_class(value)()
        if isinstance(value, dict):
            return {k: self._resolve(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def _device(self, handle: object, function: str) -> tuple[int, dict[str, Any]]:
        self._enter(function)
        if not isinstance(handle, FakeHandle) or not 0 <= handle.index < len(self._devices):
            raise self._nv_error("InvalidArgument")
        index = handle.index
        dev = self._devices[index]
        lost_after = dev.get("lost_after_calls")
        count = self._device_calls.get(index, 0)
        self._device_calls[index] = count + 1
        if lost_after is not None and count >= lost_after:
            raise self._nv_error("GpuIsLost")
        return index, dev

    def _field(self, handle: object, function: str, key: str) -> Any:
        with self._lock:
            index, dev = self._device(handle, function)
            if key not in dev:
                raise self._nv_error("NotSupported")
            return self._resolve(dev[key], f"{index}.{key}")

    def _pair(self, h1: object, h2: object, function: str) -> tuple[int, int]:
        i, _ = self._device(h1, function)
        j, _ = self._device(h2, function)
        return i, j

    def _link(self, handle: object, link: int, function: str, key: str) -> Any:
        with self._lock:
            index, dev = self._device(handle, function)
            links = dev.get("nvlink", [])
            if isinstance(links, str):  # the whole NVLink block is an error
                raise error_class(links)()
            for entry in links:
                if isinstance(entry, dict) and entry.get("link") == link:
                    if key not in entry:
                        raise self._nv_error("NotSupported")
                    return self._resolve(entry[key], f"{index}.nvlink{link}.{key}")
            raise self._nv_error("InvalidArgument")

    # -- NVML: library and system ----------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.nvmlInitWithFlags(0)

    def nvmlInitWithFlags(self, flags: int) -> None:
        with self._lock:
            self.calls += 1
            init = self.scenario.get("init")
            if init is not None and init != "ok":
                self._resolve(init, "init")  # raises for "ERR ..."
            if self._init_count == 0:
                self._t0 = self._clock()
            self._init_count += 1

    def nvmlShutdown(self) -> None:
        with self._lock:
            self._enter("nvmlShutdown")
            self._init_count -= 1

    def _system(self, function: str, key: str) -> Any:
        with self._lock:
            self._enter(function)
            if key not in self.scenario:
                raise self._nv_error("NotSupported")
            return self._resolve(self.scenario[key], key)

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._system("nvmlSystemGetDriverVersion", "driver"))

    def nvmlSystemGetNVMLVersion(self) -> str:
        return str(self._system("nvmlSystemGetNVMLVersion", "nvml"))

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return int(self._system("nvmlSystemGetCudaDriverVersion", "cuda"))

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return int(self._system("nvmlSystemGetCudaDriverVersion_v2", "cuda"))

    def nvmlDeviceGetCount(self) -> int:
        with self._lock:
            self._enter("nvmlDeviceGetCount")
            return len(self._devices)

    # -- NVML: handles ---------------------------------------------------------------------------------
    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        with self._lock:
            self._enter("nvmlDeviceGetHandleByIndex")
            if not isinstance(index, int) or not 0 <= index < len(self._devices):
                raise self._nv_error("InvalidArgument")
            handle = FakeHandle(index)
            self._device(handle, "nvmlDeviceGetHandleByIndex")
            self.calls -= 1  # _device counted the call again
            return handle

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str | bytes) -> FakeHandle:
        wanted = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
        with self._lock:
            self._enter("nvmlDeviceGetHandleByPciBusId")
            for i, dev in enumerate(self._devices):
                pci = dev.get("pci")
                if isinstance(pci, dict) and same_bus_id(str(pci.get("busId", "")), wanted):
                    handle = FakeHandle(i)
                    self._device(handle, "nvmlDeviceGetHandleByPciBusId")
                    return handle
            raise self._nv_error("NotFound")

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeHandle:
        wanted = uuid.decode() if isinstance(uuid, bytes) else uuid
        with self._lock:
            self._enter("nvmlDeviceGetHandleByUUID")
            for i, dev in enumerate(self._devices):
                if dev.get("uuid") == wanted:
                    handle = FakeHandle(i)
                    self._device(handle, "nvmlDeviceGetHandleByUUID")
                    return handle
            raise self._nv_error("NotFound")

    def nvmlDeviceGetIndex(self, handle: FakeHandle) -> int:
        with self._lock:
            index, _ = self._device(handle, "nvmlDeviceGetIndex")
            return index

    # -- NVML: static device facts ---------------------------------------------------------------------
    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return str(self._field(handle, "nvmlDeviceGetName", "name"))

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return str(self._field(handle, "nvmlDeviceGetUUID", "uuid"))

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> SimpleNamespace:
        return self.nvmlDeviceGetPciInfo_v3(handle)

    def nvmlDeviceGetPciInfo_v3(self, handle: FakeHandle) -> SimpleNamespace:
        pci = self._field(handle, "nvmlDeviceGetPciInfo_v3", "pci")
        return _struct(pci, ("busId", "busIdLegacy"))

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeHandle) -> tuple[int, int]:
        cc = self._field(handle, "nvmlDeviceGetCudaComputeCapability", "cc")
        if isinstance(cc, str):  # recordings store the tuple's repr: "(9, 0)"
            cc = ast.literal_eval(cc)
        major, minor = cc
        return int(major), int(minor)

    def nvmlDeviceGetArchitecture(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetArchitecture", "arch"))

    def nvmlDeviceGetMemoryBusWidth(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetMemoryBusWidth", "bus_width"))

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeHandle, type: int) -> int:
        key = f"clk_{_CLOCK_KEYS.get(type, str(type))}_max"
        return int(self._field(handle, "nvmlDeviceGetMaxClockInfo", key))

    def nvmlDeviceGetPowerManagementLimit(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetPowerManagementLimit", "power_limit"))

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        with self._lock:
            ok = isinstance(handle, FakeHandle) and 0 <= handle.index < len(self._devices)
            dev = self._devices[handle.index] if ok else {}
            key = "power_limit_enforced" if "power_limit_enforced" in dev else "power_limit"
        return int(self._field(handle, "nvmlDeviceGetEnforcedPowerLimit", key))

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetCurrPcieLinkGeneration", "pcie_gen_cur"))

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetMaxPcieLinkGeneration", "pcie_gen_max"))

    def nvmlDeviceGetGpuMaxPcieLinkGeneration(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetGpuMaxPcieLinkGeneration", "pcie_gen_gpu_max"))

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetCurrPcieLinkWidth", "pcie_w_cur"))

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetMaxPcieLinkWidth", "pcie_w_max"))

    def nvmlDeviceGetNumaNodeId(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetNumaNodeId", "numa"))

    # -- NVML: values that change (telemetry) ----------------------------------------------------------
    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> SimpleNamespace:
        if version:
            if version != _MEMORY_V2:
                raise self._nv_error("ArgumentVersionMismatch")
            return _struct(self._field(handle, "nvmlDeviceGetMemoryInfo_v2", "mem_v2"))
        return _struct(self._field(handle, "nvmlDeviceGetMemoryInfo", "mem"))

    def nvmlDeviceGetTemperatureV(self, handle: FakeHandle, sensor: int, version: int | None = None) -> int:
        if sensor != 0:
            with self._lock:
                self._device(handle, "nvmlDeviceGetTemperatureV")
                raise self._nv_error("NotSupported")
        return int(self._field(handle, "nvmlDeviceGetTemperatureV", "temp"))

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        if sensor != 0:
            with self._lock:
                self._device(handle, "nvmlDeviceGetTemperature")
                raise self._nv_error("NotSupported")
        return int(self._field(handle, "nvmlDeviceGetTemperature", "temp"))

    def nvmlDeviceGetTemperatureThreshold(self, handle: FakeHandle, threshold: int) -> int:
        key = _THRESHOLD_KEYS.get(threshold, f"temp_threshold{threshold}")
        return int(self._field(handle, "nvmlDeviceGetTemperatureThreshold", key))

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetPowerUsage", "power"))

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetTotalEnergyConsumption", "energy"))

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> SimpleNamespace:
        return _struct(self._field(handle, "nvmlDeviceGetUtilizationRates", "util"))

    def nvmlDeviceGetFanSpeed(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetFanSpeed", "fan"))

    def nvmlDeviceGetPerformanceState(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetPerformanceState", "pstate"))

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, type: int) -> int:
        key = f"clk_{_CLOCK_KEYS.get(type, str(type))}"
        return int(self._field(handle, "nvmlDeviceGetClockInfo", key))

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetCurrentClocksEventReasons", "throttle"))

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetCurrentClocksThrottleReasons", "throttle"))

    def nvmlDeviceGetPcieSpeed(self, handle: FakeHandle) -> int:
        return int(self._field(handle, "nvmlDeviceGetPcieSpeed", "pcie_speed"))

    def nvmlDeviceGetPcieThroughput(self, handle: FakeHandle, counter: int) -> int:
        key = {0: "pcie_tx", 1: "pcie_rx"}.get(counter, f"pcie_counter{counter}")
        return int(self._field(handle, "nvmlDeviceGetPcieThroughput", key))

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[SimpleNamespace]:
        procs = self._field(handle, "nvmlDeviceGetComputeRunningProcesses", "procs")
        return [_struct(p) for p in procs]

    # -- NVML: NVLink, topology, P2P -------------------------------------------------------------------
    def nvmlDeviceGetNvLinkState(self, handle: FakeHandle, link: int) -> int:
        return int(self._link(handle, link, "nvmlDeviceGetNvLinkState", "state"))

    def nvmlDeviceGetNvLinkVersion(self, handle: FakeHandle, link: int) -> int:
        return int(self._link(handle, link, "nvmlDeviceGetNvLinkVersion", "version"))

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: FakeHandle, link: int) -> SimpleNamespace:
        pci = self._link(handle, link, "nvmlDeviceGetNvLinkRemotePciInfo", "remote_pci")
        return _struct(pci, ("busId", "busIdLegacy"))

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle: FakeHandle, link: int) -> int:
        return int(self._link(handle, link, "nvmlDeviceGetNvLinkRemoteDeviceType", "remote_type"))

    def nvmlDeviceGetTopologyCommonAncestor(self, h1: FakeHandle, h2: FakeHandle) -> int:
        with self._lock:
            i, j = self._pair(h1, h2, "nvmlDeviceGetTopologyCommonAncestor")
            matrix = self.scenario.get("topology")
            if matrix is None:
                raise self._nv_error("NotSupported")
            value = self._resolve(matrix[i][j], f"topology[{i}][{j}]")
            return TOPOLOGY_LEVELS[value] if isinstance(value, str) else int(value)

    def nvmlDeviceGetP2PStatus(self, h1: FakeHandle, h2: FakeHandle, p2p_index: int) -> int:
        with self._lock:
            i, j = self._pair(h1, h2, "nvmlDeviceGetP2PStatus")
            if not isinstance(p2p_index, int):  # nvidia-ml-py 13's READ constant is a tuple
                raise self._nv_error("InvalidArgument")
            names = [k for k, v in P2P_INDEXES.items() if v == p2p_index]
            p2p = self.scenario.get("p2p", {})
            matrix = next((p2p[n] for n in names if n in p2p), None)
            if matrix is None:
                raise self._nv_error("NotSupported")
            value = self._resolve(matrix[i][j], f"p2p.{names[0]}[{i}][{j}]")
            return P2P_STATUSES[value] if isinstance(value, str) else int(value)


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int | float | str):
        try:
            return int(value)
        except ValueError:
            return None
    return None
