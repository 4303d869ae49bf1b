"""Live telemetry: a sampler thread reading every GPU, fixed-size ring buffers, and alerts.

Snapshots
=========
:class:`TelemetrySampler` reads each GPU through the same NVML backend as the probe (real ``pynvml``
or the scenario fake, :mod:`app.hardware.nvml`) and hands out immutable
:class:`TelemetrySnapshot` values: one :class:`GpuSample` per GPU with VRAM, temperature, power,
utilization, clocks, PCIe link and traffic, decoded clock-event (throttle) reasons, fan and the
slowdown temperature. A field the GPU does not report is ``None``. Static facts (name, bus id, the
slot's maximum PCIe link, the slowdown threshold) are read once when the sampler opens.

Threads
=======
Two daemon threads, neither touching Qt: the sampler (0.5–10 Hz) and a PCIe-traffic reader. NVML
measures PCIe throughput by counting bytes over 20 ms *inside* the call, so reading TX and RX of
8 GPUs blocks for about 320 ms: far longer than a 10 Hz tick. The traffic reader therefore runs on
its own, slower schedule (``pcie_interval_s``, default 1 s) and each snapshot carries its latest
figures. A GPU that falls off the bus (``GpuIsLost``) becomes all-``None`` samples (a gap in the
plots) and one message in :attr:`TelemetrySnapshot.events`; the other GPUs go on.

History
=======
:class:`TelemetryHistory` keeps a window (default 15 minutes) of samples in fixed-size float64 ring
buffers, NaN where a value is missing, so memory is allocated once and stays flat however long the
sampler runs. It is owned by one thread (the GUI thread in the window, the main thread in the CLI).

Alerts
======
:func:`evaluate_alerts` is a pure function of a snapshot and the alerts active before it: thermal
throttling, power-cap throttling, hardware slowdown, VRAM above 95 %, a PCIe link below its maximum
while the GPU is busy, temperature within 5 °C of the slowdown threshold, a lost GPU. Each alert has
a stable ``code``; it appears when its condition holds and clears when the condition has been false
for ``hold_s`` seconds (so a flickering throttle bit does not make the list blink), with a little
hysteresis on the VRAM and temperature thresholds.
"""

from __future__ import annotations

import csv
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.core.errors import RigfitError
from app.hardware.nvml import NvmlApi, NvmlMissing, error_name, load_backend
from app.hardware.probe import (
    GpuLost,
    nvml_call,
    read_clock_event_reasons,
    read_memory,
    read_power_limit_w,
    read_temperature_c,
)

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.1  # 10 Hz
MAX_INTERVAL_S = 2.0  # 0.5 Hz
DEFAULT_INTERVAL_S = 1.0
DEFAULT_PCIE_INTERVAL_S = 1.0
DEFAULT_WINDOW_S = 15 * 60.0

# NVML C API constants (stable ABI values; the fake does not carry pynvml's module constants).
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_PCIE_UTIL_TX_BYTES = 0
NVML_PCIE_UTIL_RX_BYTES = 1
NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1

# Clock event (throttle) reason bits, nvmlClocksEventReason* / nvmlClocksThrottleReason*: the stable
# code Rigfit uses for each and the words shown to the user.
CLOCK_EVENT_REASONS: tuple[tuple[int, str, str], ...] = (
    (0x1, "idle", "idle"),
    (0x2, "app-clocks", "application clocks setting"),
    (0x4, "power-cap", "power cap"),
    (0x8, "hw-slowdown", "hardware slowdown"),
    (0x10, "sync-boost", "sync boost"),
    (0x20, "sw-thermal", "thermal slowdown (driver)"),
    (0x40, "hw-thermal", "thermal slowdown (hardware)"),
    (0x80, "power-brake", "power brake (hardware)"),
    (0x100, "display-clocks", "display clock setting"),
    (0x200, "board-limit", "board limit"),
    (0x400, "reliability", "reliability limit"),
)
_REASON_WORDS: dict[str, str] = {code: words for _, code, words in CLOCK_EVENT_REASONS}
THERMAL_BITS = 0x20 | 0x40
POWER_CAP_BITS = 0x4
HW_SLOWDOWN_BITS = 0x8 | 0x80

_MIB = 1024.0


def decode_clock_events(mask: int | None) -> tuple[str, ...] | None:
    """The reason codes set in an NVML clock-event bit mask (``"idle"``, ``"power-cap"``, ...).

    Bits Rigfit does not know are kept as ``"other-0x..."``; ``None`` stays ``None``.
    """
    if mask is None:
        return None
    codes = [code for bit, code, _ in CLOCK_EVENT_REASONS if mask & bit]
    known = 0
    for bit, _, _ in CLOCK_EVENT_REASONS:
        known |= bit
    rest = mask & ~known
    if rest:
        codes.append(f"other-{rest:#x}")
    return tuple(codes)


def describe_clock_events(codes: Sequence[str] | None) -> str:
    """Plain words for decoded reasons: ``"power cap, thermal slowdown (hardware)"``; ``"-"`` if none."""
    if codes is None:
        return "not reported"
    if not codes:
        return "none (full speed)"
    return ", ".join(_REASON_WORDS.get(c, c) for c in codes)


# ----------------------------------------------------------------------------------------- values
@dataclass(frozen=True)
class GpuInfo:
    """What the sampler learned about a GPU when it opened (static for the run)."""

    index: int
    name: str
    uuid: str | None = None
    bus_id: str | None = None
    vram_total_mib: float | None = None
    pcie_max_gen: int | None = None
    pcie_max_width: int | None = None
    slowdown_temp_c: float | None = None


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment. Every measurement is ``None`` where the GPU does not report it.

    ``pcie_*_mib_s`` is the latest PCIe traffic figure (refreshed every ``pcie_interval_s``; NVML
    counts it over 20 ms). ``pcie_max_*`` is what the slot allows, ``pcie_gen``/``pcie_width`` what the
    link runs at now (GPUs slow the link down when idle). ``lost`` marks a GPU that fell off the bus.
    """

    index: int
    name: str
    lost: bool = False
    vram_used_mib: float | None = None
    vram_total_mib: float | None = None
    vram_free_mib: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    gpu_util_pct: float | None = None
    mem_util_pct: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    pcie_tx_mib_s: float | None = None
    pcie_rx_mib_s: float | None = None
    pcie_gen: int | None = None
    pcie_width: int | None = None
    pcie_max_gen: int | None = None
    pcie_max_width: int | None = None
    clock_event_mask: int | None = None
    clock_events: tuple[str, ...] | None = None
    fan_pct: float | None = None
    slowdown_temp_c: float | None = None

    @property
    def vram_used_fraction(self) -> float | None:
        """Share of the card's memory not available to a new allocation (0..1), from free if known."""
        total = self.vram_total_mib
        if not total or total <= 0:
            return None
        if self.vram_free_mib is not None:
            return max(0.0, min(1.0, (total - self.vram_free_mib) / total))
        if self.vram_used_mib is not None:
            return max(0.0, min(1.0, self.vram_used_mib / total))
        return None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types (``rigfit monitor --json-lines``)."""
        out = asdict(self)
        out["clock_events"] = list(self.clock_events) if self.clock_events is not None else None
        return out


@dataclass(frozen=True)
class TelemetrySnapshot:
    """All GPUs at one moment. ``t_s`` is the monotonic clock (for plotting and intervals),
    ``unix_time`` the wall clock (for people and CSV files). ``events`` are one-off messages that
    happened since the previous snapshot (a GPU lost)."""

    seq: int
    t_s: float
    unix_time: float
    gpus: tuple[GpuSample, ...]
    events: tuple[str, ...] = ()

    def gpu(self, index: int) -> GpuSample | None:
        for sample in self.gpus:
            if sample.index == index:
                return sample
        return None


class TelemetryUnavailable(RigfitError):
    """No GPU can be monitored here (no NVML, no driver, no NVIDIA GPU)."""


def check_interval(interval_s: float, what: str = "the sampling interval") -> float:
    """The sampling interval, or :class:`RigfitError` when it is outside 0.1–2 s (10–0.5 Hz)."""
    try:
        value = float(interval_s)
    except (TypeError, ValueError):
        raise RigfitError(f"{what} must be a number of seconds, not {interval_s!r}") from None
    if not math.isfinite(value) or not MIN_INTERVAL_S - 1e-9 <= value <= MAX_INTERVAL_S + 1e-9:
        raise RigfitError(
            f"{what} must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds "
            f"(10 to 0.5 samples per second), not {interval_s:g}"
        )
    return value


# ----------------------------------------------------------------------------------------- sampler
def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _whole(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if value is None:
        return None
    return str(value).strip("\x00").strip() or None


class _Device:
    """A GPU's handle, static facts and the state shared by the two sampler threads."""

    __slots__ = ("handle", "info", "lost", "pcie_rx_mib_s", "pcie_tx_mib_s")

    def __init__(self, handle: object, info: GpuInfo) -> None:
        self.handle = handle
        self.info = info
        self.lost = False
        self.pcie_tx_mib_s: float | None = None
        self.pcie_rx_mib_s: float | None = None


class TelemetrySampler:
    """Samples every NVIDIA GPU on a background thread (see the module docstring).

    ``on_snapshot`` is called on the sampler thread with each :class:`TelemetrySnapshot`;
    ``on_error`` with a one-line message when sampling cannot start. Use :meth:`start` /
    :meth:`stop` for the threads, or :meth:`open`, :meth:`read_pcie` and :meth:`sample` to drive it
    synchronously (tests, benchmarks). ``clock`` and ``wall_clock`` may be replaced for simulated time.
    """

    def __init__(
        self,
        backend: NvmlApi | None = None,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        pcie_interval_s: float | None = DEFAULT_PCIE_INTERVAL_S,
        on_snapshot: Callable[[TelemetrySnapshot], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        backend_factory: Callable[[], NvmlApi] = load_backend,
    ) -> None:
        self.interval_s = check_interval(interval_s)
        if pcie_interval_s is not None and not pcie_interval_s > 0:
            raise RigfitError("the PCIe traffic interval must be a positive number of seconds")
        self.pcie_interval_s = pcie_interval_s
        self.on_snapshot = on_snapshot
        self.on_error = on_error
        self._clock = clock
        self._wall = wall_clock
        self._backend = backend
        self._backend_factory = backend_factory
        self._nv: NvmlApi | None = None
        self._devices: list[_Device] = []
        self._lock = threading.Lock()
        self._events: list[str] = []
        self._seq = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._opened = False

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def gpus(self) -> tuple[GpuInfo, ...]:
        """The GPUs being sampled (known after :meth:`open`)."""
        return tuple(d.info for d in self._devices)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def open(self) -> tuple[GpuInfo, ...]:
        """Start NVML and read each GPU's static facts.

        Raises :class:`TelemetryUnavailable` (a :class:`RigfitError`) with the reason in the user's
        words when there is nothing to monitor: no nvidia-ml-py, no driver, no NVIDIA GPU.
        """
        if self._opened:
            return self.gpus
        try:
            nv = self._backend if self._backend is not None else self._backend_factory()
        except NvmlMissing:
            raise TelemetryUnavailable(
                "No NVIDIA GPU to monitor: the nvidia-ml-py package is not installed"
            ) from None
        try:
            nv.nvmlInit()
        except RigfitError:
            raise
        except Exception as exc:  # every NVML start failure becomes the probe's explanation
            raise TelemetryUnavailable(f"No NVIDIA GPU to monitor: {_why_unavailable(nv, exc)}") from None
        self._nv = nv
        self._opened = True
        try:
            count = _whole(nvml_call(nv, "nvmlDeviceGetCount")) or 0
            devices: list[_Device] = []
            lost: list[str] = []
            for index in range(count):
                try:
                    handle = nv.nvmlDeviceGetHandleByIndex(index)
                    devices.append(_Device(handle, self._static_info(nv, index, handle)))
                except GpuLost:
                    lost.append(f"GPU {index}")
                except Exception as exc:  # a GPU NVML cannot open is left out, like the probe does
                    if error_name(exc) == "GpuIsLost":
                        lost.append(f"GPU {index}")
                    else:
                        log.debug("GPU %d cannot be opened: %s", index, error_name(exc))
            if not devices:
                if lost:
                    reason = f"{', '.join(lost)} {'is' if len(lost) == 1 else 'are'} lost (fell off the bus)"
                elif count:
                    reason = f"NVML lists {count} GPU{'s' if count > 1 else ''} but none can be read"
                else:
                    reason = "the NVIDIA driver is loaded but sees no GPU"
                raise TelemetryUnavailable(f"No NVIDIA GPU to monitor: {reason}")
        except BaseException:
            self.close()
            raise
        self._devices = devices
        for text in lost:
            self._events.append(f"{text} is lost (fell off the bus) and is not monitored; reboot to recover")
        return self.gpus

    @staticmethod
    def _static_info(nv: NvmlApi, index: int, handle: object) -> GpuInfo:
        pci = nvml_call(nv, "nvmlDeviceGetPciInfo", handle)
        bus_id = None
        if pci is not None:
            bus_id = _text(getattr(pci, "busId", None)) or _text(getattr(pci, "busIdLegacy", None))
        memory = read_memory(nv, handle)
        return GpuInfo(
            index=index,
            name=_text(nvml_call(nv, "nvmlDeviceGetName", handle)) or f"NVIDIA GPU {index}",
            uuid=_text(nvml_call(nv, "nvmlDeviceGetUUID", handle)),
            bus_id=bus_id,
            vram_total_mib=memory.total_mib if memory else None,
            pcie_max_gen=_whole(nvml_call(nv, "nvmlDeviceGetMaxPcieLinkGeneration", handle)),
            pcie_max_width=_whole(nvml_call(nv, "nvmlDeviceGetMaxPcieLinkWidth", handle)),
            slowdown_temp_c=_number(
                nvml_call(
                    nv, "nvmlDeviceGetTemperatureThreshold", handle, NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
                )
            ),
        )

    def close(self) -> None:
        """Shut NVML down (once). The threads must have stopped (:meth:`stop` does both)."""
        nv, self._nv = self._nv, None
        if nv is not None:
            nvml_call(nv, "nvmlShutdown")

    def __enter__(self) -> TelemetrySampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start sampling on background threads. Opening happens there too: a slow or hung driver
        never blocks the caller; failures go to ``on_error``."""
        if self.running:
            return
        self._stop.clear()
        sampler = threading.Thread(target=self._run, name="rigfit-telemetry", daemon=True)
        self._threads = [sampler]
        sampler.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the threads, wait for them, shut NVML down. Safe to call more than once."""
        self._stop.set()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(timeout_s)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:  # a driver call that hangs: the daemon thread is abandoned, never waited on forever
            log.warning("telemetry threads still inside NVML after %.0f s: %s", timeout_s, alive)
        self._threads = []
        self.close()
        self._opened = False
        self._devices = []

    def set_interval(self, interval_s: float) -> None:
        """Change the sampling rate; a running sampler uses it from its next tick."""
        self.interval_s = check_interval(interval_s)

    # -- threads ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            try:
                self.open()
            except RigfitError as exc:
                self._report_error(str(exc))
                return
            except Exception as exc:  # a bug below must reach the user as a message, not a dead thread
                log.exception("telemetry could not start")
                self._report_error(f"Telemetry could not start: {type(exc).__name__}: {exc}")
                return
            if self.pcie_interval_s is not None:
                # The first snapshot already carries traffic figures; afterwards the reader runs apart.
                self.read_pcie()
                reader = threading.Thread(target=self._run_pcie, name="rigfit-telemetry-pcie", daemon=True)
                self._threads.append(reader)
                reader.start()
            # Ticks follow the real clock even when snapshots carry a simulated one (``clock``).
            next_t = time.monotonic()
            while not self._stop.is_set():
                snapshot = self.sample()
                if self.on_snapshot is not None:
                    try:
                        self.on_snapshot(snapshot)
                    except Exception:  # the consumer's bug must not stop sampling
                        log.exception("telemetry consumer failed")
                next_t += self.interval_s
                now = time.monotonic()
                if next_t < now:  # overran (slow driver): skip the missed ticks instead of bursting
                    next_t = now + self.interval_s
                if self._stop.wait(max(0.0, next_t - now)):
                    break
        finally:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    self._stop.set()
                    thread.join(5.0)
            self.close()

    def _run_pcie(self) -> None:
        assert self.pcie_interval_s is not None
        while not self._stop.wait(self.pcie_interval_s):
            self.read_pcie()

    def _report_error(self, message: str) -> None:
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                log.exception("telemetry error consumer failed")
        else:
            log.warning("%s", message)

    # -- reading -------------------------------------------------------------------------------------
    def _mark_lost(self, device: _Device, when: float) -> None:
        with self._lock:
            if device.lost:
                return
            device.lost = True
            info = device.info
            where = ", ".join(x for x in (info.name, info.bus_id) if x)
            stamp = datetime.fromtimestamp(when).strftime("%H:%M:%S")
            self._events.append(
                f"GPU {info.index} ({where}) was lost at {stamp} (fell off the bus): its curves stop "
                "there; the other GPUs go on. Reboot to recover it."
            )

    def read_pcie(self) -> None:
        """Refresh the PCIe TX/RX figures of every GPU (each read blocks about 20 ms in NVML)."""
        nv = self._nv
        if nv is None:
            return
        in_thread = threading.current_thread() in self._threads
        for device in self._devices:
            if in_thread and self._stop.is_set():
                return  # stopping: do not spend another 40 ms per GPU in NVML
            if device.lost:
                continue
            try:
                tx = _number(
                    nvml_call(nv, "nvmlDeviceGetPcieThroughput", device.handle, NVML_PCIE_UTIL_TX_BYTES)
                )
                rx = _number(
                    nvml_call(nv, "nvmlDeviceGetPcieThroughput", device.handle, NVML_PCIE_UTIL_RX_BYTES)
                )
            except GpuLost:
                self._mark_lost(device, self._wall())
                continue
            with self._lock:
                # NVML says KB/s; like nvidia-smi and nvitop, Rigfit takes K as 1024.
                device.pcie_tx_mib_s = tx / _MIB if tx is not None else None
                device.pcie_rx_mib_s = rx / _MIB if rx is not None else None

    def sample(self) -> TelemetrySnapshot:
        """Read every GPU now and return the snapshot (the PCIe traffic figures are the latest ones)."""
        nv = self._nv
        if nv is None:
            raise RigfitError("the telemetry sampler is not open")
        t_s = self._clock()
        unix = self._wall()
        samples = []
        for device in self._devices:
            info = device.info
            if device.lost:
                samples.append(GpuSample(index=info.index, name=info.name, lost=True))
                continue
            try:
                sample = self._read_device(nv, device)
            except GpuLost:
                self._mark_lost(device, unix)
                sample = GpuSample(index=info.index, name=info.name, lost=True)
            samples.append(sample)
        with self._lock:
            events, self._events = tuple(self._events), []
            self._seq += 1
            seq = self._seq
        return TelemetrySnapshot(seq=seq, t_s=t_s, unix_time=unix, gpus=tuple(samples), events=events)

    @staticmethod
    def _read_device(nv: NvmlApi, device: _Device) -> GpuSample:
        h = device.handle
        info = device.info
        memory = read_memory(nv, h)
        util = nvml_call(nv, "nvmlDeviceGetUtilizationRates", h)
        power_mw = _number(nvml_call(nv, "nvmlDeviceGetPowerUsage", h))
        mask = read_clock_event_reasons(nv, h)
        return GpuSample(
            index=info.index,
            name=info.name,
            vram_used_mib=memory.used_mib if memory else None,
            vram_total_mib=memory.total_mib if memory else info.vram_total_mib,
            vram_free_mib=memory.free_mib if memory else None,
            temperature_c=read_temperature_c(nv, h),
            power_w=power_mw / 1000.0 if power_mw is not None else None,
            power_limit_w=read_power_limit_w(nv, h),
            gpu_util_pct=_number(getattr(util, "gpu", None)) if util is not None else None,
            mem_util_pct=_number(getattr(util, "memory", None)) if util is not None else None,
            sm_clock_mhz=_number(nvml_call(nv, "nvmlDeviceGetClockInfo", h, NVML_CLOCK_SM)),
            mem_clock_mhz=_number(nvml_call(nv, "nvmlDeviceGetClockInfo", h, NVML_CLOCK_MEM)),
            pcie_tx_mib_s=device.pcie_tx_mib_s,
            pcie_rx_mib_s=device.pcie_rx_mib_s,
            pcie_gen=_whole(nvml_call(nv, "nvmlDeviceGetCurrPcieLinkGeneration", h)),
            pcie_width=_whole(nvml_call(nv, "nvmlDeviceGetCurrPcieLinkWidth", h)),
            pcie_max_gen=info.pcie_max_gen,
            pcie_max_width=info.pcie_max_width,
            clock_event_mask=mask,
            clock_events=decode_clock_events(mask),
            fan_pct=_number(nvml_call(nv, "nvmlDeviceGetFanSpeed", h)),
            slowdown_temp_c=info.slowdown_temp_c,
        )


def _why_unavailable(nv: NvmlApi, exc: BaseException) -> str:
    """The probe's plain explanation of an NVML start failure (no library, no driver, ...)."""
    from app.hardware.probe import detect_rig

    try:
        rig = detect_rig(backend=nv)
    except Exception:  # the explanation is a courtesy; the NVML error name still says something
        return f"NVML could not start ({error_name(exc)})"
    return rig.status or f"NVML could not start ({error_name(exc)})"


# ----------------------------------------------------------------------------------------- history
# The float metrics kept per GPU, in ring-buffer order. Integers (PCIe gen/width, the reason mask)
# are exact in float64.
METRICS: tuple[str, ...] = (
    "vram_used_mib",
    "vram_total_mib",
    "vram_free_mib",
    "temperature_c",
    "power_w",
    "power_limit_w",
    "gpu_util_pct",
    "mem_util_pct",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "pcie_tx_mib_s",
    "pcie_rx_mib_s",
    "pcie_gen",
    "pcie_width",
    "fan_pct",
    "clock_event_mask",
    "slowdown_temp_c",
)
METRIC_INDEX: dict[str, int] = {name: i for i, name in enumerate(METRICS)}
_SAMPLE_FIELDS = {f.name for f in fields(GpuSample)}
assert set(METRICS) <= _SAMPLE_FIELDS

FloatArray = npt.NDArray[np.float64]


def capacity_for(window_s: float, interval_s: float) -> int:
    """Ring slots needed to hold ``window_s`` of samples taken every ``interval_s`` (plus one)."""
    if not window_s > 0:
        raise RigfitError("the history window must be a positive number of seconds")
    # The tolerance keeps 900 s / 0.1 s at 9000 slots despite float rounding (9000.000000000002).
    return math.ceil(window_s / check_interval(interval_s) - 1e-9) + 1


class TelemetryHistory:
    """The last ``window_s`` seconds of samples in fixed-size float64 ring buffers (NaN = missing).

    All memory is allocated here, once: ``len(METRICS) x GPUs x capacity`` floats plus two time
    rows. Not thread-safe: one thread owns it.
    """

    def __init__(
        self,
        gpus: Sequence[GpuInfo],
        window_s: float = DEFAULT_WINDOW_S,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.gpus: tuple[GpuInfo, ...] = tuple(gpus)
        self.window_s = float(window_s)
        self.interval_s = check_interval(interval_s)
        self.capacity = capacity_for(self.window_s, self.interval_s)
        self._column: dict[int, int] = {g.index: i for i, g in enumerate(self.gpus)}
        n = len(self.gpus)
        # Layout (metric, gpu, slot): one series is contiguous, which is what the plots read.
        self._data: FloatArray = np.full((len(METRICS), n, self.capacity), np.nan, dtype=np.float64)
        self._t: FloatArray = np.full(self.capacity, np.nan, dtype=np.float64)
        self._unix: FloatArray = np.full(self.capacity, np.nan, dtype=np.float64)
        self._row: FloatArray = np.empty((len(METRICS), n), dtype=np.float64)
        self._pos = 0  # next slot to write
        self.count = 0
        self.appended = 0  # samples ever appended (a counter for "has anything changed")
        self.latest: TelemetrySnapshot | None = None

    @property
    def gpu_indexes(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes + self._t.nbytes + self._unix.nbytes + self._row.nbytes)

    def append(self, snapshot: TelemetrySnapshot) -> None:
        """Store one snapshot; the oldest sample goes once the window is full. GPUs not in the
        history are ignored; a GPU missing from the snapshot (or lost) becomes NaN: a gap."""
        row = self._row
        row.fill(np.nan)
        column = self._column
        for sample in snapshot.gpus:
            g = column.get(sample.index)
            if g is None or sample.lost:
                continue
            for m, name in enumerate(METRICS):
                value = getattr(sample, name)
                if value is not None:
                    row[m, g] = value
        self._write(snapshot.t_s, snapshot.unix_time, row)
        self.latest = snapshot

    def mark_gap(self) -> None:
        """A break in sampling (paused, restarted): the curves do not join across it."""
        if self.count == 0:
            return
        last = int((self._pos - 1) % self.capacity)
        t = float(self._t[last]) + self.interval_s / 2
        unix = float(self._unix[last]) + self.interval_s / 2
        self._row.fill(np.nan)
        self._write(t, unix, self._row)

    def _write(self, t_s: float, unix: float, row: FloatArray) -> None:
        pos = self._pos
        self._data[:, :, pos] = row
        self._t[pos] = t_s
        self._unix[pos] = unix
        self._pos = (pos + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        self.appended += 1

    # -- reading ---------------------------------------------------------------------------------------
    def _ordered(self, array: FloatArray, start: int = 0) -> FloatArray:
        """A copy of the last ``count - start`` slots of ``array`` (ring on its last axis), oldest first."""
        n = self.count - start
        if n <= 0:
            return np.empty((*array.shape[:-1], 0), dtype=np.float64)
        first = (self._pos - self.count + start) % self.capacity
        end = first + n
        if end <= self.capacity:
            return array[..., first:end].copy()
        return np.concatenate((array[..., first:], array[..., : end - self.capacity]), axis=-1)

    def times(self) -> FloatArray:
        """Monotonic times of the stored samples, oldest first."""
        return self._ordered(self._t)

    def unix_times(self) -> FloatArray:
        return self._ordered(self._unix)

    def start_since(self, t_s: float) -> int:
        """Index (in oldest-first order) of the first sample at or after ``t_s``."""
        if self.count == 0:
            return 0
        return int(np.searchsorted(self.times(), t_s, side="left"))

    def series(self, metric: str, gpu: int, start: int = 0) -> FloatArray:
        """One metric of one GPU (by NVML index), oldest first, from ordered index ``start``."""
        m = METRIC_INDEX[metric]
        g = self._column[gpu]
        return self._ordered(self._data[m, g], start)

    def window(self, since_t_s: float | None = None) -> tuple[FloatArray, dict[str, FloatArray]]:
        """Times and a ``(metric, gpu)`` block per metric for samples at or after ``since_t_s``:
        ``(t, {metric: array[gpu_column, sample]})``. One ordered copy per metric for all GPUs."""
        t = self.times()
        start = int(np.searchsorted(t, since_t_s, side="left")) if since_t_s is not None else 0
        return t[start:], {name: self._ordered(self._data[i], start) for i, name in enumerate(METRICS)}

    def last_value(self, metric: str, gpu: int) -> float | None:
        if self.count == 0:
            return None
        value = float(self._data[METRIC_INDEX[metric], self._column[gpu], (self._pos - 1) % self.capacity])
        return None if math.isnan(value) else value

    def resized(self, window_s: float | None = None, interval_s: float | None = None) -> TelemetryHistory:
        """A new history with another window or rate, holding as many of the newest samples as fit."""
        new = TelemetryHistory(
            self.gpus,
            window_s=self.window_s if window_s is None else window_s,
            interval_s=self.interval_s if interval_s is None else interval_s,
        )
        keep = min(self.count, new.capacity)
        start = self.count - keep
        data = self._ordered(self._data, start)
        new._data[:, :, :keep] = data
        new._t[:keep] = self._ordered(self._t, start)
        new._unix[:keep] = self._ordered(self._unix, start)
        new._pos = keep % new.capacity
        new.count = keep
        new.appended = keep
        new.latest = self.latest
        return new

    def export_data(self) -> HistoryExport:
        """An immutable copy of everything stored, for writing a CSV file off the GUI thread."""
        return HistoryExport(
            gpus=self.gpus,
            t_s=self.times(),
            unix_time=self.unix_times(),
            data=self._ordered(self._data),
        )

    def to_csv(self, path: str | Path) -> int:
        """Write the buffered history as CSV (see :meth:`HistoryExport.to_csv`); returns the rows."""
        return self.export_data().to_csv(path)


CSV_COLUMNS: tuple[str, ...] = ("time", "unix_time", "seconds", "gpu", "name", *METRICS, "clock_events")


@dataclass(frozen=True)
class HistoryExport:
    """A copy of a history's samples: ``data[metric, gpu, sample]``, times oldest first."""

    gpus: tuple[GpuInfo, ...]
    t_s: FloatArray
    unix_time: FloatArray
    data: FloatArray

    def rows(self) -> Iterable[list[str]]:
        """CSV rows, one per sample and GPU; empty cells where the GPU reported nothing."""
        if self.t_s.size == 0:
            return
        t0 = float(self.t_s[0])
        # Cells are formatted per column with numpy: far faster than Python formatting per cell.
        text = np.char.mod("%.7g", self.data)
        text[np.isnan(self.data)] = ""
        mask_row = METRIC_INDEX["clock_event_mask"]
        for k in range(self.t_s.size):
            t = float(self.t_s[k])
            unix = float(self.unix_time[k])
            stamp = (
                datetime.fromtimestamp(unix).isoformat(timespec="milliseconds") if math.isfinite(unix) else ""
            )
            for g, info in enumerate(self.gpus):
                cells = text[:, g, k].tolist()
                mask = self.data[mask_row, g, k]
                reasons = decode_clock_events(int(mask)) if math.isfinite(mask) else None
                yield [
                    stamp,
                    f"{unix:.3f}" if math.isfinite(unix) else "",
                    f"{t - t0:.3f}",
                    str(info.index),
                    info.name,
                    *cells,
                    " ".join(reasons) if reasons else "",
                ]

    def to_csv(self, path: str | Path) -> int:
        """Write the CSV file (header ``CSV_COLUMNS``); returns the number of data rows."""
        p = Path(path)
        count = 0
        try:
            with p.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(CSV_COLUMNS)
                for row in self.rows():
                    writer.writerow(row)
                    count += 1
        except OSError as exc:
            raise RigfitError(f"cannot write the telemetry history to {p}: {exc.strerror or exc}") from None
        return count


# ----------------------------------------------------------------------------------------- alerts
ALERT_THERMAL = "thermal-throttle"
ALERT_POWER_CAP = "power-cap"
ALERT_HW_SLOWDOWN = "hw-slowdown"
ALERT_VRAM_FULL = "vram-full"
ALERT_PCIE_DEGRADED = "pcie-below-max"
ALERT_NEAR_SLOWDOWN = "near-slowdown-temp"
ALERT_GPU_LOST = "gpu-lost"
ALERT_CODES: tuple[str, ...] = (
    ALERT_GPU_LOST,
    ALERT_THERMAL,
    ALERT_HW_SLOWDOWN,
    ALERT_NEAR_SLOWDOWN,
    ALERT_VRAM_FULL,
    ALERT_PCIE_DEGRADED,
    ALERT_POWER_CAP,
)
LEVEL_ERROR = "error"
LEVEL_WARNING = "warning"
LEVEL_INFO = "info"

VRAM_FULL_ON = 0.95
VRAM_FULL_OFF = 0.93
NEAR_SLOWDOWN_ON_C = 5.0
NEAR_SLOWDOWN_OFF_C = 7.0
BUSY_UTIL_PCT = 30.0  # GPUs drop the link to Gen1 when idle on purpose; only a busy GPU counts
ALERT_HOLD_S = 3.0


@dataclass(frozen=True)
class TelemetryAlert:
    """Something worth the user's attention on one GPU, in plain words.

    ``code`` is stable (``thermal-throttle``, ``power-cap``, ``hw-slowdown``, ``vram-full``,
    ``pcie-below-max``, ``near-slowdown-temp``, ``gpu-lost``); ``since_t_s`` is when it appeared and
    ``last_seen_t_s`` the last sample whose condition held (both on the snapshot's clock).
    """

    code: str
    gpu: int
    level: str
    message: str
    since_t_s: float
    last_seen_t_s: float

    @property
    def key(self) -> tuple[str, int]:
        return (self.code, self.gpu)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "gpu": self.gpu, "level": self.level, "message": self.message}


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def _conditions(sample: GpuSample, active: set[str]) -> list[tuple[str, str, str]]:
    """(code, level, message) for every alert whose condition holds for this sample. ``active``
    holds the codes active before, for the hysteresis of the threshold alerts."""
    who = f"GPU {sample.index} ({sample.name})"
    if sample.lost:
        return [
            (
                ALERT_GPU_LOST,
                LEVEL_ERROR,
                f"{who} is lost: it fell off the bus and NVML cannot reach it. Reboot to recover; "
                "check its power cables and riser if it happens again.",
            )
        ]
    out: list[tuple[str, str, str]] = []
    mask = sample.clock_event_mask or 0
    temp = sample.temperature_c
    temp_text = f" ({temp:.0f} °C)" if temp is not None else ""
    if mask & THERMAL_BITS:
        out.append(
            (
                ALERT_THERMAL,
                LEVEL_WARNING,
                f"{who} is too hot{temp_text} and is slowing its clocks down: give it more airflow or a "
                "free slot next to it.",
            )
        )
    elif mask & HW_SLOWDOWN_BITS:
        out.append(
            (
                ALERT_HW_SLOWDOWN,
                LEVEL_WARNING,
                f"{who}: the hardware is forcing its clocks down (power brake or hardware slowdown): "
                "check its power cables and that the power supply is big enough.",
            )
        )
    if mask & POWER_CAP_BITS:
        if sample.power_w is not None and sample.power_limit_w is not None:
            watts = f" ({sample.power_w:.0f} W of {sample.power_limit_w:.0f} W)"
        else:
            watts = ""
        out.append(
            (
                ALERT_POWER_CAP,
                LEVEL_INFO,
                f"{who} is held at its power limit{watts}: it lowers its clocks to stay within it.",
            )
        )
    fraction = sample.vram_used_fraction
    if fraction is not None and sample.vram_total_mib:
        threshold = VRAM_FULL_OFF if ALERT_VRAM_FULL in active else VRAM_FULL_ON
        if fraction > threshold:
            used = fraction * sample.vram_total_mib
            out.append(
                (
                    ALERT_VRAM_FULL,
                    LEVEL_WARNING,
                    f"{who} VRAM is {fraction * 100:.0f}% full ({_gib(used)} of "
                    f"{_gib(sample.vram_total_mib)}): a longer context or another program may not fit.",
                )
            )
    busy = sample.gpu_util_pct is not None and sample.gpu_util_pct >= BUSY_UTIL_PCT
    gen, width = sample.pcie_gen, sample.pcie_width
    max_gen, max_width = sample.pcie_max_gen, sample.pcie_max_width
    slow_gen = gen is not None and max_gen is not None and gen < max_gen
    narrow = width is not None and max_width is not None and width < max_width
    if busy and (slow_gen or narrow):
        out.append(
            (
                ALERT_PCIE_DEGRADED,
                LEVEL_WARNING,
                f"{who} is busy but its PCIe link runs at Gen{gen} x{width}, below the Gen{max_gen} "
                f"x{max_width} the slot allows: check the riser cable, reseat the card, or set the "
                "slot's PCIe generation in the BIOS.",
            )
        )
    slowdown = sample.slowdown_temp_c
    if temp is not None and slowdown is not None:
        margin = NEAR_SLOWDOWN_OFF_C if ALERT_NEAR_SLOWDOWN in active else NEAR_SLOWDOWN_ON_C
        if temp >= slowdown - margin and not mask & THERMAL_BITS:
            out.append(
                (
                    ALERT_NEAR_SLOWDOWN,
                    LEVEL_WARNING,
                    f"{who} is at {temp:.0f} °C, {max(0.0, slowdown - temp):.0f} °C below the "
                    f"{slowdown:.0f} °C where it starts slowing down.",
                )
            )
    return out


def evaluate_alerts(
    snapshot: TelemetrySnapshot,
    previous: Sequence[TelemetryAlert] = (),
    hold_s: float = ALERT_HOLD_S,
) -> tuple[TelemetryAlert, ...]:
    """The alerts active after ``snapshot``, given those active before it. Pure.

    An alert appears on the first sample whose condition holds; it clears once its condition has
    been false for ``hold_s`` seconds. A GPU missing from the snapshot keeps its alerts unchanged.
    Sorted by GPU, then by severity (``ALERT_CODES`` order).
    """
    before: dict[tuple[str, int], TelemetryAlert] = {a.key: a for a in previous}
    active_codes: dict[int, set[str]] = {}
    for alert in previous:
        active_codes.setdefault(alert.gpu, set()).add(alert.code)
    now = snapshot.t_s
    out: dict[tuple[str, int], TelemetryAlert] = {}
    seen_gpus = set()
    for sample in snapshot.gpus:
        seen_gpus.add(sample.index)
        for code, level, message in _conditions(sample, active_codes.get(sample.index, set())):
            old = before.get((code, sample.index))
            if old is None:
                out[(code, sample.index)] = TelemetryAlert(code, sample.index, level, message, now, now)
            else:
                out[old.key] = replace(old, level=level, message=message, last_seen_t_s=now)
    for key, old in before.items():
        if key in out:
            continue
        if old.gpu not in seen_gpus or now - old.last_seen_t_s < hold_s:
            out[key] = old
    order = {code: i for i, code in enumerate(ALERT_CODES)}
    return tuple(sorted(out.values(), key=lambda a: (a.gpu, order.get(a.code, len(order)), a.code)))


def alert_changes(
    before: Sequence[TelemetryAlert], after: Sequence[TelemetryAlert]
) -> tuple[tuple[TelemetryAlert, ...], tuple[TelemetryAlert, ...]]:
    """``(appeared, cleared)`` between two alert sets, matched by ``(code, gpu)``."""
    old = {a.key for a in before}
    new = {a.key for a in after}
    return tuple(a for a in after if a.key not in old), tuple(a for a in before if a.key not in new)
