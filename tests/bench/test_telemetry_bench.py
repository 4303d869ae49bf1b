"""Benchmarks: what live telemetry costs, as a fraction of one core, for 8 GPUs at 10 Hz.

1. The sampler threads (fake NVML replaying 8 busy GPUs): their CPU time over wall time, next to a
   thread that spins for the same time (the "one core" baseline, which also shows how loaded the
   machine is). A second pair compares one synchronous ``sample()`` with the bare NVML calls it makes.
2. The GUI thread of the Monitor tab (offscreen, the history already holding 15 minutes) while the
   real sampler feeds it at 10 Hz: CPU time over wall time, next to the same window idle and the
   spinning baseline. Also counts the plot refreshes: at most 4 a second whatever the sampling rate.

Prints the figures (``pytest tests/bench -s``); asserts only generous ratios measured in this run.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace

import pytest
from pytestqt.qtbot import QtBot

from PySide6 import QtCore, QtWidgets

from app.hardware.nvml import scenario_path
from app.hardware.nvml_fake import FakeNvml, load_scenario
from app.hardware.telemetry import TelemetrySampler, TelemetrySnapshot
from app.ui.monitor.view import REPAINT_INTERVAL_MS, MonitorView
from tests.bench.harness import Bench

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints\(\)")

GPUS = 8
INTERVAL_S = 0.1
WALL_S = 4.0


def eight_gpu_fake() -> FakeNvml:
    """The looping 2-GPU inference demo repeated to 8 GPUs (values change every second)."""
    data = load_scenario(scenario_path("2x3090-inference"))
    scenario = {k: v for k, v in data.items() if k not in ("topology", "p2p")}
    scenario["devices"] = [copy.deepcopy(data["devices"][i % 2]) for i in range(GPUS)]
    return FakeNvml(scenario, name="8x3090-inference")


def _thread_cpu_s(thread: threading.Thread) -> float:
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def busy_core_fraction(wall_s: float) -> float:
    """CPU time / wall time of a thread that spins for ``wall_s``: 1.0 on an idle core."""
    result: list[float] = []

    def spin() -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        while time.perf_counter() - t0 < wall_s:
            pass
        result.append((time.thread_time() - c0) / (time.perf_counter() - t0))

    thread = threading.Thread(target=spin)
    thread.start()
    thread.join()
    return result[0]


def test_sampler_cost_for_8_gpus_at_10_hz(bench: Bench) -> None:
    bench.ratio("telemetry sampler threads / a spinning core", _sampler_fraction, below=0.05)
    bench.ratio("one telemetry sample / the bare NVML calls", _sample_vs_bare, below=2.0)


def _sampler_fraction() -> tuple[float, str]:
    sampler = TelemetrySampler(eight_gpu_fake(), interval_s=INTERVAL_S, on_snapshot=lambda s: None)
    sampler.start()
    try:
        time.sleep(0.5)  # past open() and the first traffic read
        threads = [t for t in threading.enumerate() if t.name.startswith("rigfit-telemetry")]
        cpu0 = sum(_thread_cpu_s(t) for t in threads)
        t0 = time.perf_counter()
        time.sleep(WALL_S)
        cpu = sum(_thread_cpu_s(t) for t in threads) - cpu0
        wall = time.perf_counter() - t0
    finally:
        sampler.stop()
    sampler_fraction = cpu / wall
    busy = busy_core_fraction(WALL_S)
    return sampler_fraction / busy, (
        f"sampler, 8 GPUs at 10 Hz (fake NVML): {sampler_fraction:.4f} of a core "
        f"({cpu * 1e3:.0f} ms CPU in {wall:.1f} s); spinning baseline {busy:.2f} of a core"
    )


def _sample_vs_bare() -> tuple[float, str]:
    """One sample against the bare NVML calls it makes (the same fake, the same fields)."""
    fake = eight_gpu_fake()
    sync = TelemetrySampler(fake)
    sync.open()
    handles = [fake.nvmlDeviceGetHandleByIndex(i) for i in range(GPUS)]

    def bare() -> None:
        for h in handles:
            fake.nvmlDeviceGetMemoryInfo(h, version=0x02000028)
            fake.nvmlDeviceGetUtilizationRates(h)
            fake.nvmlDeviceGetPowerUsage(h)
            fake.nvmlDeviceGetCurrentClocksEventReasons(h)
            fake.nvmlDeviceGetTemperatureV(h, 0)
            fake.nvmlDeviceGetEnforcedPowerLimit(h)
            fake.nvmlDeviceGetClockInfo(h, 1)
            fake.nvmlDeviceGetClockInfo(h, 2)
            fake.nvmlDeviceGetCurrPcieLinkGeneration(h)
            fake.nvmlDeviceGetCurrPcieLinkWidth(h)
            fake.nvmlDeviceGetFanSpeed(h)

    def per_call_us(fn: object, n: int = 300) -> float:
        best = float("inf")
        for _ in range(3):  # best of three: the shared machine's noise only ever adds time
            start = time.perf_counter()
            for _ in range(n):
                fn()  # type: ignore[operator]
            best = min(best, (time.perf_counter() - start) / n * 1e6)
        return best

    try:
        # Interleaved, so a slow spell of the machine hits both sides alike.
        pairs = [(per_call_us(sync.sample), per_call_us(bare)) for _ in range(2)]
        sample_us = min(s for s, _ in pairs)
        bare_us = min(b for _, b in pairs)
    finally:
        sync.stop()
    return (
        sample_us / bare_us,
        f"one sample of 8 GPUs: {sample_us:.0f} us; the bare NVML calls: {bare_us:.0f} us",
    )


def _prefill(view: MonitorView, seconds: float) -> None:
    """Give the view a full history ending now, as if it had been sampling for ``seconds``."""
    fake = eight_gpu_fake()
    sampler = TelemetrySampler(fake)
    sampler.open()
    sampler.read_pcie()
    template = [sampler.sample() for _ in range(10)]
    sampler.stop()
    now = time.monotonic()
    n = int(seconds / INTERVAL_S)
    for k in range(n):
        snap: TelemetrySnapshot = template[k % len(template)]
        t = now - (n - k) * INTERVAL_S
        view.add_snapshot(replace(snap, seq=k + 1, t_s=t, unix_time=time.time() - (n - k) * INTERVAL_S))


def _gui_fraction(app: QtWidgets.QApplication, wall_s: float) -> tuple[float, float]:
    """Run the event loop for ``wall_s``: (GUI thread CPU / wall, wall)."""
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(int(wall_s * 1000), loop.quit)
    c0, t0 = time.thread_time(), time.perf_counter()
    loop.exec()
    return (time.thread_time() - c0) / (time.perf_counter() - t0), time.perf_counter() - t0


def test_gui_update_cost_for_8_gpus_at_10_hz(qtbot: QtBot, bench: Bench) -> None:
    app = QtWidgets.QApplication.instance()
    assert isinstance(app, QtWidgets.QApplication)
    view = MonitorView(eight_gpu_fake, interval_s=INTERVAL_S, auto_start=False)
    qtbot.addWidget(view)
    view.resize(1280, 1000)
    view.show()
    _prefill(view, 900.0)
    view.refresh()

    def measure() -> tuple[float, str]:
        idle_fraction, _ = _gui_fraction(app, WALL_S)  # the same window, nothing arriving
        view.start()
        qtbot.waitUntil(
            lambda: view.history is not None and view.history.latest is not None and view.sampling
        )
        repaints0 = view.repaints
        appended0 = view.history.appended if view.history else 0
        gui_fraction, wall = _gui_fraction(app, WALL_S)
        repaints = view.repaints - repaints0
        samples = (view.history.appended if view.history else 0) - appended0
        view.stop()
        busy = busy_core_fraction(WALL_S)
        assert samples >= WALL_S / INTERVAL_S * 0.5  # the feed really ran near 10 Hz
        # Plots refresh on the timer, not per sample: at most one refresh per timer tick.
        assert 1 <= repaints <= wall * 1000 / REPAINT_INTERVAL_MS + 2
        return gui_fraction / busy, (
            f"Monitor GUI thread, 8 GPUs at 10 Hz, 15 min buffered, 5 plots of 5 min: {gui_fraction:.3f} "
            f"of a core ({samples} samples, {repaints} plot refreshes in {wall:.1f} s); idle window "
            f"{idle_fraction:.3f}; spinning baseline {busy:.2f}"
        )

    # Generous: well under half a core on a slow, shared machine.
    bench.ratio("Monitor GUI thread at 10 Hz / a spinning core", measure, below=0.5)
