"""Which NVML Rigfit talks to: the real ``pynvml`` (nvidia-ml-py, imported lazily) or the fake.

The backend is "an object with pynvml's function names" (:class:`NvmlApi`) that raises
``pynvml.NVMLError`` subclasses, so the probe and the telemetry sampler run the same code on a real
GPU, in tests, for screenshots and in demos.

``RIGFIT_FAKE_NVML`` selects the fake everywhere (CLI, window, tests): either a path to a scenario JSON
file (format in :mod:`app.hardware.nvml_fake`) or the name of a built-in scenario shipped in
``resources/scenarios/`` (``rigfit detect --list-scenarios`` prints them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

from app.core.errors import RigfitError

ENV_FAKE = "RIGFIT_FAKE_NVML"


def resources_dir() -> Path:
    """The ``resources/`` folder: next to the package in a checkout, inside the bundle when frozen."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def scenarios_dir() -> Path:
    return resources_dir() / "scenarios"


class NvmlApi(Protocol):
    """The part of pynvml that Rigfit calls. ``handle`` is whatever the backend's handle lookup returns."""

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str: ...
    def nvmlSystemGetNVMLVersion(self) -> str: ...
    def nvmlSystemGetCudaDriverVersion(self) -> int: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int, /) -> Any: ...
    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str, /) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any, /) -> str: ...
    def nvmlDeviceGetUUID(self, handle: Any, /) -> str: ...
    def nvmlDeviceGetPciInfo(self, handle: Any, /) -> Any: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any, /, version: int | None = None) -> Any: ...
    def nvmlDeviceGetCudaComputeCapability(self, handle: Any, /) -> tuple[int, int]: ...
    def nvmlDeviceGetArchitecture(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetPowerManagementLimit(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetPowerUsage(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetMemoryBusWidth(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetMaxClockInfo(self, handle: Any, type: int, /) -> int: ...
    def nvmlDeviceGetClockInfo(self, handle: Any, type: int, /) -> int: ...
    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetGpuMaxPcieLinkGeneration(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetPcieThroughput(self, handle: Any, counter: int, /) -> int: ...
    def nvmlDeviceGetTemperatureV(self, handle: Any, sensor: int, /) -> int: ...
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int, /) -> int: ...
    def nvmlDeviceGetFanSpeed(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any, /) -> Any: ...
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any, /) -> int: ...
    def nvmlDeviceGetNvLinkState(self, handle: Any, link: int, /) -> int: ...
    def nvmlDeviceGetNvLinkVersion(self, handle: Any, link: int, /) -> int: ...
    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: Any, link: int, /) -> Any: ...
    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle: Any, link: int, /) -> int: ...
    def nvmlDeviceGetTopologyCommonAncestor(self, h1: Any, h2: Any, /) -> int: ...
    def nvmlDeviceGetP2PStatus(self, h1: Any, h2: Any, p2p_index: int, /) -> int: ...


class NvmlMissing(Exception):
    """The nvidia-ml-py package (``pynvml``) cannot be imported: NVML cannot even be tried."""


def builtin_scenarios() -> tuple[str, ...]:
    """Names of the scenarios shipped in ``resources/scenarios`` (file names without ``.json``)."""
    folder = scenarios_dir()
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.stem for p in folder.glob("*.json")))


def scenario_path(selection: str) -> Path:
    """The scenario file a ``RIGFIT_FAKE_NVML`` value means: an existing path, or a built-in name."""
    text = selection.strip()
    candidate = Path(text).expanduser()
    if candidate.suffix == ".json" or os.sep in text or "/" in text:
        if not candidate.is_file():
            raise RigfitError(f"{ENV_FAKE}: scenario file not found: {candidate}")
        return candidate
    builtin = scenarios_dir() / f"{text}.json"
    if builtin.is_file():
        return builtin
    names = ", ".join(builtin_scenarios()) or "none installed"
    raise RigfitError(f"{ENV_FAKE}: no scenario file or built-in scenario named '{text}' (built-in: {names})")


def fake_selection() -> str | None:
    """The ``RIGFIT_FAKE_NVML`` value, or ``None`` when the real NVML is wanted."""
    value = os.environ.get(ENV_FAKE, "").strip()
    return value or None


def load_fake(selection: str) -> NvmlApi:
    """A fresh fake NVML for a scenario file or built-in name. Its state (series positions, lost
    counters) lives in the returned object, so a sampler keeps the one it got."""
    from app.hardware.nvml_fake import FakeNvml, load_scenario

    path = scenario_path(selection)
    return cast(NvmlApi, FakeNvml(load_scenario(path), name=path.stem))


def load_backend() -> NvmlApi:
    """The NVML to use: the fake when ``RIGFIT_FAKE_NVML`` is set, else the real ``pynvml`` module.

    Raises :class:`NvmlMissing` when nvidia-ml-py is not installed, :class:`RigfitError` for a broken
    fake selection. Loading the real module does not touch the driver; ``nvmlInit`` does.
    """
    selection = fake_selection()
    if selection is not None:
        return load_fake(selection)
    try:
        import pynvml
    except ImportError as exc:  # also OSError-free: pynvml loads libnvidia-ml only in nvmlInit
        raise NvmlMissing(str(exc)) from None
    return cast(NvmlApi, pynvml)


def is_fake(backend: object) -> bool:
    return bool(getattr(backend, "rigfit_fake", False))


def error_name(exc: BaseException) -> str:
    """``NotSupported`` for ``pynvml.NVMLError_NotSupported``; the class name for anything else."""
    name = type(exc).__name__
    return name[len("NVMLError_") :] if name.startswith("NVMLError_") else name


def is_nvml_error(exc: BaseException) -> bool:
    try:
        import pynvml
    except ImportError:
        return False
    return isinstance(exc, pynvml.NVMLError)


CardLinkReader = Callable[[str], "tuple[int | None, int | None] | None"]


def card_link_reader(backend: object, sysfs_root: Path | None = None) -> CardLinkReader:
    """How to learn a card's own PCIe capability (gen, width) by bus id.

    NVML reports only the slot-limited maximum width, so the card's own x16 comes from Linux sysfs
    (the device's LnkCap) on a real system, and from the scenario's ``card_link`` for the fake.
    """
    fake_reader = getattr(backend, "rigfit_card_link", None)
    if callable(fake_reader):
        return cast(CardLinkReader, fake_reader)
    from app.hardware.sysfs import card_link

    root = sysfs_root if sysfs_root is not None else Path("/sys")

    def read(bus_id: str) -> tuple[int | None, int | None] | None:
        return card_link(bus_id, root=root)

    return read
