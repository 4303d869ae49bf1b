"""Record what NVML answers on this machine as a fake-NVML scenario: ``python -m app.hardware.record``.

The output replays with ``RIGFIT_FAKE_NVML=<file>`` (format in :mod:`app.hardware.nvml_fake`), so a
user's rig, or the GPU machine, can become a test. Every call is made the way the probe and the
telemetry sampler make it; a call that raises is stored as ``"ERR <NVMLError class>: <message>"``,
and a versioned call the driver lacks (FunctionNotFound) goes to the scenario's ``missing`` list
while its older twin's answer is recorded. UUIDs are blanked unless ``--keep-uuids`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.errors import RigfitError
from app.hardware.nvml import NvmlMissing, card_link_reader, error_name, load_backend
from app.hardware.nvml_fake import FORMAT, P2P_INDEXES

_PCI_FIELDS = ("busIdLegacy", "domain", "bus", "device", "pciDeviceId", "pciSubSystemId", "busId")
_CLOCKS = {"graphics": 0, "sm": 1, "mem": 2, "video": 3}
_MEMORY_V2 = 0x02000028
_MAX_LINKS = 36


class _Missing(Exception):
    pass


def _err(exc: BaseException) -> str:
    return f"ERR NVMLError_{error_name(exc)}: {exc}"


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _get(nv: object, function: str, *args: Any, **kwargs: Any) -> Any:
    """The call's answer, or its error as an ``ERR`` string; :class:`_Missing` when the function is absent."""
    fn = getattr(nv, function, None)
    if fn is None:
        raise _Missing(function)
    try:
        return _plain(fn(*args, **kwargs))
    except Exception as exc:  # every error is data here
        if error_name(exc) == "FunctionNotFound":
            raise _Missing(function) from None
        return _err(exc)


def _struct(value: Any, fields: tuple[str, ...]) -> Any:
    if isinstance(value, str):  # an ERR string
        return value
    return {f: _plain(getattr(value, f)) for f in fields if hasattr(value, f)}


class _Recorder:
    def __init__(self, nv: object) -> None:
        self.nv = nv
        self.missing: list[str] = []

    def get(self, function: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return _get(self.nv, function, *args, **kwargs)
        except _Missing:
            return _Missing

    def versioned(
        self, key: str, out: dict[str, Any], calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]
    ) -> None:
        """Record the first call of ``calls`` the driver has; the ones it lacks go to ``missing``."""
        for function, args, kwargs in calls:
            value = self.get(function, *args, **kwargs)
            if value is _Missing:
                self.missing.append(function)
                continue
            out[key] = value
            return


def _record_device(
    rec: _Recorder, handle: object, keep_uuids: bool, card_link: Callable[[str], Any]
) -> dict[str, Any]:
    dev: dict[str, Any] = {}
    simple: dict[str, tuple[str, tuple[Any, ...]]] = {
        "name": ("nvmlDeviceGetName", ()),
        "uuid": ("nvmlDeviceGetUUID", ()),
        "cc": ("nvmlDeviceGetCudaComputeCapability", ()),
        "arch": ("nvmlDeviceGetArchitecture", ()),
        "power": ("nvmlDeviceGetPowerUsage", ()),
        "power_limit": ("nvmlDeviceGetPowerManagementLimit", ()),
        "power_limit_enforced": ("nvmlDeviceGetEnforcedPowerLimit", ()),
        "energy": ("nvmlDeviceGetTotalEnergyConsumption", ()),
        "fan": ("nvmlDeviceGetFanSpeed", ()),
        "pstate": ("nvmlDeviceGetPerformanceState", ()),
        "bus_width": ("nvmlDeviceGetMemoryBusWidth", ()),
        "pcie_gen_cur": ("nvmlDeviceGetCurrPcieLinkGeneration", ()),
        "pcie_gen_max": ("nvmlDeviceGetMaxPcieLinkGeneration", ()),
        "pcie_gen_gpu_max": ("nvmlDeviceGetGpuMaxPcieLinkGeneration", ()),
        "pcie_w_cur": ("nvmlDeviceGetCurrPcieLinkWidth", ()),
        "pcie_w_max": ("nvmlDeviceGetMaxPcieLinkWidth", ()),
        "pcie_speed": ("nvmlDeviceGetPcieSpeed", ()),
        "pcie_tx": ("nvmlDeviceGetPcieThroughput", (0,)),
        "pcie_rx": ("nvmlDeviceGetPcieThroughput", (1,)),
        "numa": ("nvmlDeviceGetNumaNodeId", ()),
        "temp_slowdown": ("nvmlDeviceGetTemperatureThreshold", (1,)),  # the telemetry sampler reads it
    }
    for key, (function, args) in simple.items():
        value = rec.get(function, handle, *args)
        if value is _Missing:
            rec.missing.append(function)
        else:
            dev[key] = value
    if not keep_uuids and isinstance(dev.get("uuid"), str) and dev["uuid"].startswith("GPU-"):
        dev["uuid"] = "GPU-00000000-0000-0000-0000-000000000000"
    pci = rec.get("nvmlDeviceGetPciInfo", handle)
    if pci is not _Missing:
        dev["pci"] = _struct(pci, _PCI_FIELDS)
    mem = rec.get("nvmlDeviceGetMemoryInfo", handle)
    if mem is not _Missing:
        dev["mem"] = _struct(mem, ("total", "free", "used"))
    mem2 = rec.get("nvmlDeviceGetMemoryInfo", handle, version=_MEMORY_V2)
    if mem2 is _Missing:
        rec.missing.append("nvmlDeviceGetMemoryInfo_v2")
    else:
        dev["mem_v2"] = _struct(mem2, ("version", "total", "reserved", "free", "used"))
    rec.versioned(
        "temp",
        dev,
        [("nvmlDeviceGetTemperatureV", (handle, 0), {}), ("nvmlDeviceGetTemperature", (handle, 0), {})],
    )
    rec.versioned(
        "throttle",
        dev,
        [
            ("nvmlDeviceGetCurrentClocksEventReasons", (handle,), {}),
            ("nvmlDeviceGetCurrentClocksThrottleReasons", (handle,), {}),
        ],
    )
    util = rec.get("nvmlDeviceGetUtilizationRates", handle)
    if util is not _Missing:
        dev["util"] = _struct(util, ("gpu", "memory"))
    for clock, number in _CLOCKS.items():
        for suffix, function in (("", "nvmlDeviceGetClockInfo"), ("_max", "nvmlDeviceGetMaxClockInfo")):
            value = rec.get(function, handle, number)
            if value is not _Missing:
                dev[f"clk_{clock}{suffix}"] = value
    procs = rec.get("nvmlDeviceGetComputeRunningProcesses", handle)
    if procs is not _Missing:
        dev["procs"] = (
            procs if isinstance(procs, str) else [_struct(p, ("pid", "usedGpuMemory")) for p in procs]
        )
    links: list[dict[str, Any]] = []
    for link in range(_MAX_LINKS):
        state = rec.get("nvmlDeviceGetNvLinkState", handle, link)
        if state is _Missing:
            rec.missing.append("nvmlDeviceGetNvLinkState")
            break
        if isinstance(state, str) and "InvalidArgument" in state:
            break  # past the GPU's last link: the replay raises this for any link not listed
        entry: dict[str, Any] = {"link": link, "state": state}
        if state == 1:
            entry["version"] = rec.get("nvmlDeviceGetNvLinkVersion", handle, link)
            entry["remote_type"] = rec.get("nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
            entry["remote_pci"] = _struct(
                rec.get("nvmlDeviceGetNvLinkRemotePciInfo", handle, link), _PCI_FIELDS
            )
        links.append(entry)
        if isinstance(state, str) and "NotSupported" in state:
            break
    dev["nvlink"] = links
    bus = dev.get("pci", {}).get("busId") if isinstance(dev.get("pci"), dict) else None
    if isinstance(bus, str):
        try:
            caps = card_link(bus)
        except OSError:
            caps = None
        if caps:
            dev["card_link"] = {"max_gen": caps[0], "max_width": caps[1]}
    return dev


def record(
    nv: Any, keep_uuids: bool = False, card_link: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """Everything the probe and the telemetry sampler ask NVML, answered by ``nv``, as a scenario dict."""
    rec = _Recorder(nv)
    reader = card_link or card_link_reader(nv)
    out: dict[str, Any] = {
        "format": FORMAT,
        "about": f"Recorded by python -m app.hardware.record on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
    }
    try:
        nv.nvmlInit()
    except Exception as exc:  # recorded as the scenario's init failure
        out["init"] = _err(exc)
        return out
    try:
        for key, function in (
            ("driver", "nvmlSystemGetDriverVersion"),
            ("nvml", "nvmlSystemGetNVMLVersion"),
            ("cuda", "nvmlSystemGetCudaDriverVersion"),
        ):
            value = rec.get(function)
            if value is not _Missing:
                out[key] = value
        count = rec.get("nvmlDeviceGetCount")
        if not isinstance(count, int):
            out["devices"] = []
            out["about"] += f" nvmlDeviceGetCount failed: {count}"
            return out
        handles: list[Any] = []
        devices: list[dict[str, Any]] = []
        for index in range(count):
            handle = rec.get("nvmlDeviceGetHandleByIndex", index)
            if isinstance(handle, str) or handle is _Missing:
                devices.append({"lost_after_calls": 0} if "GpuIsLost" in str(handle) else {"name": handle})
                handles.append(None)
                continue
            handles.append(handle)
            devices.append(_record_device(rec, handle, keep_uuids, reader))
        out["devices"] = devices
        n = len(handles)
        if n > 1:
            topo: list[list[Any]] = [[0] * n for _ in range(n)]
            for i in range(n):
                for j in range(n):
                    if i != j and handles[i] is not None and handles[j] is not None:
                        value = rec.get("nvmlDeviceGetTopologyCommonAncestor", handles[i], handles[j])
                        topo[i][j] = "ERR NVMLError_NotSupported: missing" if value is _Missing else value
            out["topology"] = topo
            p2p: dict[str, list[list[Any]]] = {}
            for name, caps_index in P2P_INDEXES.items():
                if name == "prop":
                    continue
                matrix: list[list[Any]] = [[0] * n for _ in range(n)]
                for i in range(n):
                    for j in range(n):
                        if i != j and handles[i] is not None and handles[j] is not None:
                            value = rec.get("nvmlDeviceGetP2PStatus", handles[i], handles[j], caps_index)
                            matrix[i][j] = (
                                "ERR NVMLError_NotSupported: missing" if value is _Missing else value
                            )
                p2p[name] = matrix
            out["p2p"] = p2p
        if rec.missing:
            out["missing"] = sorted(set(rec.missing))
        return out
    finally:
        # Recording is done; a failing shutdown changes nothing.
        with contextlib.suppress(Exception):
            nv.nvmlShutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.hardware.record",
        description="Record this machine's NVML answers as a Rigfit fake-NVML scenario (JSON).",
    )
    parser.add_argument("-o", "--output", metavar="FILE.json", help="write here instead of standard output")
    parser.add_argument("--keep-uuids", action="store_true", help="keep the GPUs' UUIDs (blanked by default)")
    args = parser.parse_args(argv)
    try:
        nv = load_backend()
    except NvmlMissing as exc:
        print(f"record: nvidia-ml-py is not installed ({exc})", file=sys.stderr)
        return 2
    except RigfitError as exc:
        print(f"record: {exc}", file=sys.stderr)
        return 2
    data = record(nv, keep_uuids=args.keep_uuids)
    text = json.dumps(data, indent=1) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"record: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"recorded {len(data.get('devices', []))} GPU(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
