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

Modules: :mod:`~app.hardware.telemetry.values` (what a snapshot holds),
:mod:`~app.hardware.telemetry.sampler`, :mod:`~app.hardware.telemetry.history`,
:mod:`~app.hardware.telemetry.alerts`; everything public is importable from this package.
"""

from __future__ import annotations

from app.hardware.telemetry.alerts import (
    ALERT_CODES,
    ALERT_GPU_LOST,
    ALERT_HOLD_S,
    ALERT_HW_SLOWDOWN,
    ALERT_NEAR_SLOWDOWN,
    ALERT_PCIE_DEGRADED,
    ALERT_POWER_CAP,
    ALERT_THERMAL,
    ALERT_VRAM_FULL,
    BUSY_UTIL_PCT,
    LEVEL_ERROR,
    LEVEL_INFO,
    LEVEL_WARNING,
    NEAR_SLOWDOWN_OFF_C,
    NEAR_SLOWDOWN_ON_C,
    VRAM_FULL_OFF,
    VRAM_FULL_ON,
    TelemetryAlert,
    alert_changes,
    evaluate_alerts,
)
from app.hardware.telemetry.history import (
    CSV_COLUMNS,
    METRIC_INDEX,
    METRICS,
    HistoryExport,
    TelemetryHistory,
    capacity_for,
)
from app.hardware.telemetry.sampler import (
    TelemetrySampler,
)
from app.hardware.telemetry.values import (
    CLOCK_EVENT_REASONS,
    DEFAULT_INTERVAL_S,
    DEFAULT_PCIE_INTERVAL_S,
    DEFAULT_WINDOW_S,
    HW_SLOWDOWN_BITS,
    KIB_PER_MIB,
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    NVML_PCIE_UTIL_RX_BYTES,
    NVML_PCIE_UTIL_TX_BYTES,
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
    POWER_CAP_BITS,
    THERMAL_BITS,
    GpuInfo,
    GpuSample,
    TelemetrySnapshot,
    TelemetryUnavailable,
    check_interval,
    decode_clock_events,
    describe_clock_events,
)

__all__ = [
    "ALERT_CODES",
    "ALERT_GPU_LOST",
    "ALERT_HOLD_S",
    "ALERT_HW_SLOWDOWN",
    "ALERT_NEAR_SLOWDOWN",
    "ALERT_PCIE_DEGRADED",
    "ALERT_POWER_CAP",
    "ALERT_THERMAL",
    "ALERT_VRAM_FULL",
    "BUSY_UTIL_PCT",
    "CLOCK_EVENT_REASONS",
    "CSV_COLUMNS",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_PCIE_INTERVAL_S",
    "DEFAULT_WINDOW_S",
    "HW_SLOWDOWN_BITS",
    "KIB_PER_MIB",
    "LEVEL_ERROR",
    "LEVEL_INFO",
    "LEVEL_WARNING",
    "MAX_INTERVAL_S",
    "METRICS",
    "METRIC_INDEX",
    "MIN_INTERVAL_S",
    "NEAR_SLOWDOWN_OFF_C",
    "NEAR_SLOWDOWN_ON_C",
    "NVML_CLOCK_MEM",
    "NVML_CLOCK_SM",
    "NVML_PCIE_UTIL_RX_BYTES",
    "NVML_PCIE_UTIL_TX_BYTES",
    "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN",
    "POWER_CAP_BITS",
    "THERMAL_BITS",
    "VRAM_FULL_OFF",
    "VRAM_FULL_ON",
    "GpuInfo",
    "GpuSample",
    "HistoryExport",
    "TelemetryAlert",
    "TelemetryHistory",
    "TelemetrySampler",
    "TelemetrySnapshot",
    "TelemetryUnavailable",
    "alert_changes",
    "capacity_for",
    "check_interval",
    "decode_clock_events",
    "describe_clock_events",
    "evaluate_alerts",
]
