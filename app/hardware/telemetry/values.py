"""The values telemetry hands out: static GPU facts, samples, snapshots, and the clock-event
(throttle) reasons decoded into codes and words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from app.core.errors import RigfitError

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

KIB_PER_MIB = 1024.0  # NVML reports PCIe traffic in KB/s


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
