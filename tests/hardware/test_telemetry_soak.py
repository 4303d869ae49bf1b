"""Soak: one simulated hour at 10 Hz for 8 GPUs through sampler, ring buffers and alerts: memory flat.

The fake NVML replays the looping ``2x3090-inference`` demo (load, prompt, generation with thermal
throttling, unload, every 60 s) on 8 GPUs, on a simulated clock, as fast as the machine goes. Resident
memory is compared between the 15-minute mark (the window is full) and the end; tracemalloc watches
the last 5 simulated minutes, so anything retained per sample shows up as growth.
"""

from __future__ import annotations

import copy
import gc
import tracemalloc

import psutil
import pytest

from app.hardware.nvml import scenario_path
from app.hardware.nvml_fake import FakeNvml, load_scenario
from app.hardware.telemetry import (
    TelemetryAlert,
    TelemetryHistory,
    TelemetrySampler,
    evaluate_alerts,
)

RATE_HZ = 10
GPUS = 8
HOUR = 3600 * RATE_HZ


class SimClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def eight_gpu_inference(clock: SimClock) -> FakeNvml:
    """The 2-GPU inference demo scenario, repeated to 8 GPUs, on simulated time."""
    data = load_scenario(scenario_path("2x3090-inference"))
    devices = [copy.deepcopy(data["devices"][i % 2]) for i in range(GPUS)]
    scenario = {k: v for k, v in data.items() if k not in ("topology", "p2p")}
    scenario["devices"] = devices
    return FakeNvml(scenario, name="8x3090-inference", clock=clock)


@pytest.mark.slow
def test_one_simulated_hour_at_10_hz_for_8_gpus_keeps_memory_flat() -> None:
    clock = SimClock()
    sampler = TelemetrySampler(eight_gpu_inference(clock), clock=clock, wall_clock=lambda: 1.7e9 + clock.t)
    gpus = sampler.open()
    assert len(gpus) == GPUS
    history = TelemetryHistory(gpus, window_s=900.0, interval_s=1 / RATE_HZ)
    alerts: tuple[TelemetryAlert, ...] = ()
    alert_changes = 0
    process = psutil.Process()
    rss_at_window_full = 0
    watch_from = HOUR - 5 * 60 * RATE_HZ
    for k in range(HOUR):
        clock.t += 1 / RATE_HZ
        if k % RATE_HZ == 0:
            sampler.read_pcie()  # traffic once a second, as the reader thread does
        snapshot = sampler.sample()
        history.append(snapshot)
        before = alerts
        alerts = evaluate_alerts(snapshot, alerts)
        alert_changes += before != alerts
        if k == history.capacity:
            gc.collect()
            rss_at_window_full = process.memory_info().rss
        if k == watch_from:
            gc.collect()
            tracemalloc.start()
            traced_start, _ = tracemalloc.get_traced_memory()
    gc.collect()
    traced_end, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_end = process.memory_info().rss
    sampler.stop()

    growth_traced = traced_end - traced_start
    growth_rss = rss_end - rss_at_window_full
    print(
        f"\nsoak: {HOUR} samples x {GPUS} GPUs; history {history.nbytes / 2**20:.1f} MiB preallocated; "
        f"RSS {rss_at_window_full / 2**20:.1f} MiB at 15 min, {rss_end / 2**20:.1f} MiB at 60 min "
        f"({growth_rss / 2**10:+.0f} KiB); traced over the last 5 min {growth_traced / 2**10:+.1f} KiB "
        f"(peak {traced_peak / 2**10:.0f} KiB); {alert_changes} alert changes"
    )
    assert history.count == history.capacity and history.appended == HOUR
    assert alert_changes > 100  # the scenario throttles and recovers every minute: alerts really churned
    assert growth_traced < 64 * 1024  # what the last 5 minutes left behind
    assert growth_rss < 4 * 2**20
