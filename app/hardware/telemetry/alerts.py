"""Alerts: a pure function of a snapshot and the alerts active before it, each with a stable code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from app.hardware.telemetry.values import (
    HW_SLOWDOWN_BITS,
    POWER_CAP_BITS,
    THERMAL_BITS,
    GpuSample,
    TelemetrySnapshot,
)

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
