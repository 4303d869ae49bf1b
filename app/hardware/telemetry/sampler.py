"""The sampler: two daemon threads reading every GPU through NVML into immutable snapshots."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

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
from app.hardware.telemetry.values import (
    DEFAULT_INTERVAL_S,
    DEFAULT_PCIE_INTERVAL_S,
    KIB_PER_MIB,
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    NVML_PCIE_UTIL_RX_BYTES,
    NVML_PCIE_UTIL_TX_BYTES,
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
    GpuInfo,
    GpuSample,
    TelemetrySnapshot,
    TelemetryUnavailable,
    check_interval,
    decode_clock_events,
)

log = logging.getLogger(__name__)


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
                device.pcie_tx_mib_s = tx / KIB_PER_MIB if tx is not None else None
                device.pcie_rx_mib_s = rx / KIB_PER_MIB if rx is not None else None

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
