"""The Monitor tab offscreen: samples reach the plots, alerts appear and clear, nothing left running."""

from __future__ import annotations

import csv
import ctypes
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

import shiboken6
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.rig import Rig
from app.hardware.nvml import load_fake
from app.hardware.nvml_fake import FakeNvml
from app.hardware.telemetry import (
    ALERT_NEAR_SLOWDOWN,
    ALERT_PCIE_DEGRADED,
    ALERT_POWER_CAP,
    ALERT_THERMAL,
    ALERT_VRAM_FULL,
    CSV_COLUMNS,
    TelemetrySampler,
    TelemetrySnapshot,
)
from app.ui.main_window import MainWindow
from app.ui.monitor.bridge import TelemetryBridge
from app.ui.monitor.charts import PLOT_KEYS, AgoAxis
from app.ui.monitor.view import MonitorView, predicted_from_plan
from app.ui.theme import GPU_COLORS, gpu_color, gpu_color_name

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints\(\)")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"


def _scenario(name: str) -> str:
    path = FIXTURES / f"{name}.json"
    return str(path) if path.is_file() else name


class SimClock:
    def __init__(self, step_s: float) -> None:
        self.t = 5000.0
        self.step_s = step_s

    def __call__(self) -> float:
        return self.t

    def tick(self) -> None:
        self.t += self.step_s


def _telemetry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rigfit-telemetry")]


@pytest.fixture
def views() -> Iterator[list[QtWidgets.QWidget]]:
    """Views the test made; after the test (pytest-qt has closed them) no thread or timer may run."""
    made: list[QtWidgets.QWidget] = []
    yield made
    QtCore.QThreadPool.globalInstance().waitForDone(10000)
    assert not _telemetry_threads(), "a telemetry thread outlived the test"
    for widget in made:
        if not shiboken6.isValid(widget):
            continue  # deleted: its timers went with it
        running = [t.objectName() or repr(t) for t in widget.findChildren(QtCore.QTimer) if t.isActive()]
        assert not running, f"timers still running after close: {running}"
        for view in [widget, *widget.findChildren(MonitorView)]:
            if isinstance(view, MonitorView):
                assert not view.sampling


@pytest.fixture
def make_view(qtbot: QtBot, views: list[QtWidgets.QWidget]) -> Callable[..., MonitorView]:
    def make(scenario: str = "3090+3060-x4", show: bool = True, **kwargs: object) -> MonitorView:
        kwargs.setdefault("auto_start", False)
        view = MonitorView(lambda: load_fake(_scenario(scenario)), **kwargs)  # type: ignore[arg-type]
        qtbot.addWidget(view)
        views.append(view)
        if show:
            view.resize(1100, 900)
            view.show()
        return view

    return make


def _feed(view: MonitorView, scenario: str, n: int, step_s: float = 1.0, advance: bool = False) -> None:
    """Synchronous samples from a fake into the view, on simulated time (no threads)."""
    fake = load_fake(_scenario(scenario))
    assert isinstance(fake, FakeNvml)
    clock = SimClock(step_s)
    sampler = TelemetrySampler(fake, clock=clock)  # type: ignore[arg-type]
    sampler.open()
    sampler.read_pcie()
    for _ in range(n):
        view.add_snapshot(sampler.sample())
        clock.tick()
        if advance:
            fake.advance()
    sampler.stop()


# ------------------------------------------------------------------------------------------ data path
def test_the_plot_receives_samples_from_the_sampler_thread_and_updates(
    make_view: Callable[..., MonitorView], qtbot: QtBot
) -> None:
    view = make_view(interval_s=0.1)
    view.start()
    assert view.sampling and view.timers_active()
    qtbot.waitUntil(lambda: view.history is not None and view.history.count >= 3, timeout=10000)
    qtbot.waitUntil(lambda: view.repaints >= 1, timeout=10000)
    x, y = view.charts.curves[("vram_used_mib", 0)].getData()
    assert x is not None and len(x) >= 1
    assert x[-1] == 0.0 and np.all(np.diff(x) > 0)  # seconds before the newest sample
    assert y[-1] == pytest.approx(210 / 1024)  # GiB
    assert view.readout.rowCount() == 2
    assert view.readout.item(0, 1).text() == "0.2 / 24.0 GiB"
    assert "Sampling 2 GPUs 10 times a second" in view.status_label.text()
    view.stop()
    assert not view.sampling and not view.timers_active()
    assert not _telemetry_threads()


def test_snapshots_are_delivered_on_the_gui_thread(qtbot: QtBot) -> None:
    bridge = TelemetryBridge(lambda: load_fake("rtx4090"))
    seen: list[bool] = []

    class Receiver(QtCore.QObject):
        @QtCore.Slot(object)
        def take(self, snapshot: object) -> None:
            seen.append(threading.current_thread() is threading.main_thread())

    receiver = Receiver()
    bridge.snapshot.connect(receiver.take)
    bridge.start(0.1)
    try:
        qtbot.waitUntil(lambda: len(seen) >= 2, timeout=10000)
    finally:
        bridge.stop()
    assert all(seen)


def test_no_repaint_without_new_samples(make_view: Callable[..., MonitorView]) -> None:
    view = make_view()
    _feed(view, "3090+3060-x4", 5)
    view.refresh()
    view.refresh()
    assert view.repaints == 1
    _feed(view, "3090+3060-x4", 1)
    view.refresh()
    assert view.repaints == 2


def test_hidden_plots_are_not_updated(make_view: Callable[..., MonitorView]) -> None:
    view = make_view()
    view.set_plot_visible("temperature", False)
    assert "temperature" not in view.visible_plots
    assert not view.metric_actions["temperature"].isChecked()
    _feed(view, "3090+3060-x4", 4)
    view.refresh()
    x, _ = view.charts.curves[("temperature_c", 0)].getData()
    assert x is None or len(x) == 0
    assert len(view.charts.curves[("power_w", 0)].getData()[0]) == 4
    view.metric_actions["temperature"].setChecked(True)  # the menu, as a user would
    assert "temperature" in view.visible_plots
    assert len(view.charts.curves[("temperature_c", 0)].getData()[0]) == 4
    with pytest.raises(RigfitError, match="no plot named"):
        view.set_plot_visible("nonsense", True)


def test_the_plot_shows_only_the_chosen_span(make_view: Callable[..., MonitorView]) -> None:
    view = make_view(span_s=60.0)
    _feed(view, "3090+3060-x4", 200, step_s=1.0)  # 200 s of history
    view.refresh()
    x, _ = view.charts.curves[("power_w", 1)].getData()
    assert x[0] >= -61.0 and len(x) <= 62  # one sample before the span reaches the left edge
    view.set_span(900.0)
    x, _ = view.charts.curves[("power_w", 1)].getData()
    assert len(x) == 200


def test_vram_plot_draws_capacity_and_the_planned_usage(make_view: Callable[..., MonitorView]) -> None:
    view = make_view()
    view.set_predicted_vram({0: 12288.0})  # before any sample: applied once the curves exist
    _feed(view, "3090+3060-x4", 2)
    assert view.charts.capacity_lines[0].value() == pytest.approx(24.0)
    assert view.charts.capacity_lines[1].value() == pytest.approx(12.0)
    assert view.charts.predicted_lines[0].isVisible() and view.charts.predicted_lines[
        0
    ].value() == pytest.approx(12.0)
    assert not view.charts.predicted_lines[1].isVisible()
    view.set_predicted_vram({0: 1024.0, 1: 6144.0})
    assert view.charts.predicted_lines[1].isVisible() and view.charts.predicted_lines[
        1
    ].value() == pytest.approx(6.0)
    view.clear_predicted_vram()
    assert not any(line.isVisible() for line in view.charts.predicted_lines.values())


def test_predicted_usage_comes_from_a_plan_plus_what_was_used_before() -> None:
    class Device:
        def __init__(self, index: int, total_mib: float) -> None:
            self.index, self.total_mib = index, total_mib

    class FakePlan:
        devices = (Device(0, 5000.0), Device(1, 3000.0))

    assert predicted_from_plan(FakePlan(), {0: 300.0}) == {0: 5300.0, 1: 3000.0}  # type: ignore[arg-type]


def test_each_gpu_has_one_colour_in_every_plot(make_view: Callable[..., MonitorView]) -> None:
    view = make_view()
    _feed(view, "3090+3060-x4", 2)
    for (metric, gpu), curve in view.charts.curves.items():
        assert curve.opts["pen"].color().name() == gpu_color_name(gpu), metric
    assert gpu_color(1).name() == GPU_COLORS[1] and gpu_color_name(11) == GPU_COLORS[1]
    assert len(set(GPU_COLORS[:8])) == 8  # an 8-GPU rig never shares a colour


def test_time_axis_reads_as_time_before_now() -> None:
    axis = AgoAxis(orientation="bottom")
    assert axis.tickStrings([-120.0, -60.0, 0.0], 1.0, 60.0) == ["-2:00", "-1:00", "now"]
    assert axis.tickStrings([-10.0, -5.0], 1.0, 5.0) == ["-10s", "-5s"]


# ------------------------------------------------------------------------------------------ alerts
def test_alerts_appear_and_clear_in_plain_words(make_view: Callable[..., MonitorView], qtbot: QtBot) -> None:
    view = make_view()
    changes: list[tuple[object, ...]] = []
    view.alerts_changed.connect(changes.append)
    fake = load_fake(_scenario("telemetry-throttle"))
    assert isinstance(fake, FakeNvml)
    clock = SimClock(5.0)  # longer than the alerts' hold time: each tick can clear
    sampler = TelemetrySampler(fake, clock=clock)  # type: ignore[arg-type]
    sampler.open()
    listed: list[set[tuple[str, int]]] = []
    for _ in range(6):
        view.add_snapshot(sampler.sample())
        listed.append(set(view.alert_codes()))
        fake.advance()
        clock.tick()
    sampler.stop()
    assert listed[0] == set() and listed[1] == set()
    assert listed[2] == {(ALERT_NEAR_SLOWDOWN, 0)}
    assert listed[3] == {
        (ALERT_THERMAL, 0),
        (ALERT_POWER_CAP, 1),
        (ALERT_VRAM_FULL, 1),
        (ALERT_PCIE_DEGRADED, 1),
    }
    assert listed[4] == set() and listed[5] == set()
    assert view.alert_panel.alert_list.item(0).text().startswith("No alerts")
    assert len(changes) == 3  # appeared, changed, cleared
    messages = [
        view.alert_panel.message_list.item(i).text() for i in range(view.alert_panel.message_list.count())
    ]
    assert any("GPU 0 (NVIDIA GeForce RTX 3090) is too hot (92 °C)" in m for m in messages)
    assert any("Cleared: GPU 0 is no longer slowed down by heat" in m for m in messages)


def test_a_lost_gpu_becomes_a_message_an_alert_and_a_gap(make_view: Callable[..., MonitorView]) -> None:
    view = make_view()
    _feed(view, "telemetry-lost-midrun", 12)
    view.refresh()
    messages = [
        view.alert_panel.message_list.item(i).text() for i in range(view.alert_panel.message_list.count())
    ]
    assert sum("GPU 1" in m and "was lost" in m for m in messages) == 1
    assert ("gpu-lost", 1) in view.alert_codes()
    assert view.history is not None
    assert np.isnan(view.history.series("temperature_c", 1)[-1])
    assert view.history.series("temperature_c", 0)[-1] == 59.0  # the other GPU goes on
    assert view.readout.item(1, 1).text() == "lost"


def test_no_gpu_shows_the_reason_and_runs_nothing(
    make_view: Callable[..., MonitorView], qtbot: QtBot
) -> None:
    view = make_view("no-driver")
    view.start()
    qtbot.waitUntil(lambda: view.error_message is not None, timeout=10000)
    assert "driver is not loaded" in view.status_label.text()
    assert view.start_button.text() == "Start"
    assert not view.timers_active()
    qtbot.waitUntil(lambda: not _telemetry_threads(), timeout=5000)


def test_messages_are_bounded(make_view: Callable[..., MonitorView]) -> None:
    view = make_view()
    for k in range(260):
        view.alert_panel.add_message(f"message {k}", 1.7e9)
    assert view.alert_panel.message_list.count() == 200
    assert view.alert_panel.message_list.item(199).text().endswith("message 259")


# ------------------------------------------------------------------------------------------ controls
def test_changing_the_rate_keeps_the_window_and_the_newest_samples(
    make_view: Callable[..., MonitorView],
) -> None:
    view = make_view(interval_s=1.0)
    _feed(view, "3090+3060-x4", 30)
    assert view.history is not None and view.history.capacity == 901
    view.rate_combo.setCurrentIndex(view.rate_combo.findText("10"))
    assert view.interval_s == pytest.approx(0.1)
    assert view.history.capacity == 9001 and view.history.count == 30


def test_pause_and_resume_leave_a_gap(make_view: Callable[..., MonitorView], qtbot: QtBot) -> None:
    view = make_view(interval_s=0.1)
    view.start_button.click()
    qtbot.waitUntil(lambda: view.history is not None and view.history.count >= 2, timeout=10000)
    view.start_button.click()
    assert not view.sampling and "Paused" in view.status_label.text()
    assert view.history is not None
    before = view.history.count
    view.start_button.click()
    qtbot.waitUntil(lambda: view.history is not None and view.history.count >= before + 2, timeout=10000)
    view.stop()
    assert np.isnan(view.history.series("temperature_c", 0)[before])


def test_export_csv_and_png(make_view: Callable[..., MonitorView], qtbot: QtBot, tmp_path: Path) -> None:
    view = make_view()
    _feed(view, "3090+3060-x4", 7)
    with pytest.raises(RigfitError, match="nothing to export"):
        make_view(show=False).export_csv(tmp_path / "empty.csv")
    csv_path = tmp_path / "history.csv"
    with qtbot.waitSignal(view.export_finished, timeout=10000) as blocker:
        view.export_csv(csv_path)
    assert blocker.args == [f"Wrote 14 rows to {csv_path}"]
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 14
    assert {r["name"] for r in rows} == {"NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3060"}
    png = tmp_path / "plots.png"
    view.export_png(png)
    image = QtGui.QImage(str(png))
    assert not image.isNull() and image.width() > 300 and image.height() > 300
    with qtbot.waitSignal(view.export_finished, timeout=10000) as blocker:
        view.export_csv(tmp_path / "no" / "such" / "folder.csv")
    assert "cannot write the telemetry history" in blocker.args[0]


def test_auto_start_on_first_show_and_stop_on_close(
    make_view: Callable[..., MonitorView], qtbot: QtBot
) -> None:
    view = make_view(show=False, auto_start=True, interval_s=0.1)
    assert not view.sampling  # built but never shown: no NVML, no thread
    view.show()
    qtbot.waitUntil(lambda: view.history is not None and view.history.count >= 1, timeout=10000)
    view.hide()
    assert view.sampling and not view.timers_active()  # sampling goes on, painting stops
    view.close()
    assert not view.sampling and not _telemetry_threads()


def test_main_window_has_the_monitor_tab_and_stops_it_on_close(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, views: list[QtWidgets.QWidget]
) -> None:
    monkeypatch.setenv("RIGFIT_FAKE_NVML", "2x3090-inference")
    window = MainWindow(detect=lambda: Rig(gpus=()), restore=False, discover=None)
    qtbot.addWidget(window)
    views.append(window)
    window.show()
    titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert "Monitor" in titles
    assert not _telemetry_threads()  # another tab is current: nothing sampled yet
    assert window.show_tab("monitor")
    monitor = window.monitor
    assert isinstance(monitor, MonitorView)
    qtbot.waitUntil(lambda: monitor.history is not None and monitor.history.count >= 1, timeout=10000)
    assert monitor.sampling
    window.set_predicted_vram({0: 20480.0})
    assert monitor.charts.predicted_lines[0].isVisible()
    window.wait_for_tasks()
    window.close()
    assert not monitor.sampling and not _telemetry_threads()


def test_plot_keys_cover_the_issue_metrics() -> None:
    assert {"vram", "temperature", "power", "utilization", "pcie", "clocks", "fan"} == set(PLOT_KEYS)


def test_pyside_calls_keep_python_objects_alive() -> None:
    # PySide6 6.12.0 returned None (void methods) and True (Signal.emit) without a reference, and
    # Python 3.11 aborts once the count reaches zero: pyproject keeps PySide6 below 6.12. This catches
    # any installed PySide6 with the same bug.
    class Emitter(QtCore.QObject):
        fired = QtCore.Signal(object)

    emitter = Emitter()
    emitter.fired.connect(lambda value: None)
    before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(100):
        emitter.fired.emit(None)
        emitter.setObjectName("x")  # a void method
    lost_none = before[0] - sys.getrefcount(None)
    lost_true = before[1] - sys.getrefcount(True)
    # Give back what the broken calls took, so this test cannot abort the run.
    for value, lost in ((None, lost_none), (True, lost_true)):
        for _ in range(max(0, lost)):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(value))
    # The Monitor makes thousands of these calls a minute (a 10 Hz bridge, pyqtgraph painting).
    assert lost_none <= 5 and lost_true <= 5


@pytest.mark.slow
def test_an_hour_at_10_hz_for_8_gpus_keeps_the_view_flat(make_view: Callable[..., MonitorView]) -> None:
    """Soak of the GUI side: 36,000 snapshots of 8 GPUs (the looping inference demo, alerts churning)
    into the view, a plot refresh every simulated minute. Python objects and resident memory must not
    grow after the 15-minute window is full."""
    import copy
    import gc

    import psutil

    from app.hardware.nvml import scenario_path
    from app.hardware.nvml_fake import load_scenario

    data = load_scenario(scenario_path("2x3090-inference"))
    scenario = {k: v for k, v in data.items() if k not in ("topology", "p2p")}
    scenario["devices"] = [copy.deepcopy(data["devices"][i % 2]) for i in range(8)]
    clock = SimClock(0.1)
    fake = FakeNvml(scenario, clock=clock)
    sampler = TelemetrySampler(fake, interval_s=0.1, clock=clock)  # type: ignore[arg-type]
    sampler.open()
    # One simulated minute of distinct snapshots, replayed with advancing times (sampling the fake
    # for an hour is the hardware soak's job; this one is about what the view keeps).
    minute: list[TelemetrySnapshot] = []
    for _ in range(600):
        if len(minute) % 10 == 0:
            sampler.read_pcie()
        minute.append(sampler.sample())
        clock.tick()
    sampler.stop()
    view = make_view(interval_s=0.1, span_s=300.0)
    process = psutil.Process()
    objects_full = rss_full = 0
    for k in range(36000):
        snap = minute[k % 600]
        view.add_snapshot(replace(snap, seq=k + 1, t_s=k * 0.1, unix_time=1.7e9 + k * 0.1))
        if k % 600 == 599:
            view.refresh()
            QtWidgets.QApplication.processEvents()
        if k == 9600:  # the window (9001 samples) is full
            gc.collect()
            objects_full, rss_full = len(gc.get_objects()), process.memory_info().rss
    gc.collect()
    objects_end, rss_end = len(gc.get_objects()), process.memory_info().rss
    print(
        f"\nview soak: objects {objects_full} -> {objects_end}, RSS {rss_full / 2**20:.1f} -> "
        f"{rss_end / 2**20:.1f} MiB, {view.alert_panel.message_list.count()} messages kept, {view.repaints} refreshes"
    )
    assert view.history is not None and view.history.count == view.history.capacity
    assert view.alert_panel.message_list.count() == 200
    assert objects_end - objects_full < 500
    assert rss_end - rss_full < 8 * 2**20


def test_a_rate_outside_the_range_is_refused_even_when_not_sampling(
    make_view: Callable[..., MonitorView],
) -> None:
    view = make_view()
    with pytest.raises(RigfitError, match=r"between 0\.1 and 2 seconds"):
        view.set_interval(5.0)
    assert view.interval_s == 0.5
