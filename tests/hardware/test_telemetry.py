"""The telemetry sampler, ring buffers and alerts, driven by fake NVML scenarios."""

from __future__ import annotations

import csv
import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pynvml
import pytest

from app.core.errors import RigfitError
from app.hardware.nvml import load_fake
from app.hardware.nvml_fake import FakeNvml
from app.hardware.telemetry import (
    ALERT_GPU_LOST,
    ALERT_NEAR_SLOWDOWN,
    ALERT_PCIE_DEGRADED,
    ALERT_POWER_CAP,
    ALERT_THERMAL,
    ALERT_VRAM_FULL,
    CSV_COLUMNS,
    GpuInfo,
    GpuSample,
    TelemetryAlert,
    TelemetryHistory,
    TelemetrySampler,
    TelemetrySnapshot,
    TelemetryUnavailable,
    alert_changes,
    capacity_for,
    check_interval,
    decode_clock_events,
    describe_clock_events,
    evaluate_alerts,
)
from tests.hardware.conftest import scenario


class SimClock:
    """Simulated time: each sample is ``step_s`` after the previous one."""

    def __init__(self, step_s: float) -> None:
        self.t = 1000.0
        self.step_s = step_s

    def __call__(self) -> float:
        return self.t

    def tick(self) -> None:
        self.t += self.step_s


def _open(name: str, **kwargs: object) -> tuple[TelemetrySampler, FakeNvml]:
    fake = load_fake(scenario(name))
    assert isinstance(fake, FakeNvml)
    sampler = TelemetrySampler(fake, **kwargs)  # type: ignore[arg-type]
    sampler.open()
    return sampler, fake


def _codes(alerts: tuple[TelemetryAlert, ...]) -> set[tuple[str, int]]:
    return {(a.code, a.gpu) for a in alerts}


def _telemetry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rigfit-telemetry")]


# ------------------------------------------------------------------------------------------ snapshots
def test_snapshot_carries_every_field_in_rigfit_units() -> None:
    sampler, _ = _open("3090+3060-x4")
    sampler.read_pcie()
    snap = sampler.sample()
    sampler.stop()
    big, small = snap.gpus
    assert (big.index, big.name, small.index) == (0, "NVIDIA GeForce RTX 3090", 1)
    # memory v2: used excludes the driver's reservation
    assert (big.vram_used_mib, big.vram_total_mib, big.vram_free_mib) == (210.0, 24576.0, 24014.0)
    assert (big.temperature_c, big.power_w, big.power_limit_w) == (41.0, 32.0, 350.0)
    assert (big.gpu_util_pct, big.mem_util_pct) == (3.0, 1.0)
    assert (big.sm_clock_mhz, big.mem_clock_mhz, big.fan_pct) == (210.0, 405.0, 30.0)
    assert big.pcie_tx_mib_s == pytest.approx(300 / 1024) and big.pcie_rx_mib_s == pytest.approx(200 / 1024)
    assert (small.pcie_gen, small.pcie_width, small.pcie_max_gen, small.pcie_max_width) == (1, 4, 3, 4)
    assert (big.clock_event_mask, big.clock_events) == (1, ("idle",))
    assert big.slowdown_temp_c is None  # this scenario has no thresholds
    assert snap.seq == 1 and snap.events == ()


def test_fields_the_gpu_does_not_report_are_none_and_a_failing_sensor_is_a_gap() -> None:
    sampler, _ = _open("telemetry-unsupported")
    sampler.read_pcie()
    first, second, third = (sampler.sample().gpus[0] for _ in range(3))
    sampler.stop()
    for name in (
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
        "pcie_max_gen",
        "pcie_max_width",
        "clock_event_mask",
        "clock_events",
        "fan_pct",
        "slowdown_temp_c",
    ):
        assert getattr(first, name) is None, name
    # Memory v2 is missing on this driver: v1 (used includes the reservation) answers instead.
    assert first.vram_used_mib == pytest.approx(439353344 / 2**20)
    assert first.vram_total_mib == pytest.approx(25757220864 / 2**20)
    assert (first.temperature_c, second.temperature_c, third.temperature_c) == (36.0, None, 37.0)
    assert not first.lost


def test_clock_event_reasons_decode_to_stable_codes_and_plain_words() -> None:
    assert decode_clock_events(0) == ()
    assert decode_clock_events(None) is None
    assert decode_clock_events(0x1) == ("idle",)
    assert decode_clock_events(0x4 | 0x8 | 0x40) == ("power-cap", "hw-slowdown", "hw-thermal")
    assert decode_clock_events(0x20 | 0x80) == ("sw-thermal", "power-brake")
    assert decode_clock_events(0x1000 | 0x1) == ("idle", "other-0x1000")
    assert describe_clock_events(("power-cap", "hw-thermal")) == "power cap, thermal slowdown (hardware)"
    assert describe_clock_events(()) == "none (full speed)"


def test_pcie_traffic_is_read_apart_from_the_samples() -> None:
    sampler, _ = _open("3090+3060-x4")
    assert sampler.sample().gpus[0].pcie_tx_mib_s is None  # nothing read yet
    sampler.read_pcie()
    assert sampler.sample().gpus[0].pcie_tx_mib_s == pytest.approx(300 / 1024)
    sampler.stop()


# ------------------------------------------------------------------------------------------ lost GPUs
def test_a_gpu_lost_mid_stream_becomes_a_gap_and_one_message_while_the_other_goes_on() -> None:
    sampler, _ = _open("telemetry-lost-midrun")
    snaps = [sampler.sample() for _ in range(12)]
    sampler.stop()
    lost_flags = [s.gpus[1].lost for s in snaps]
    assert not lost_flags[0] and lost_flags[-1]
    first_lost = lost_flags.index(True)
    assert all(lost_flags[first_lost:])  # a lost GPU stays lost
    events = [e for s in snaps for e in s.events]
    assert len(events) == 1 and "GPU 1" in events[0] and "lost" in events[0]
    assert snaps[first_lost].events == tuple(events)
    # GPU 0's temperature series goes on, one value per sample
    temps = [s.gpus[0].temperature_c for s in snaps]
    assert temps[:10] == [50.0 + k for k in range(10)]
    assert all(s.gpus[1].temperature_c is None for s in snaps[first_lost:])


def test_lost_gpu_is_not_asked_again() -> None:
    sampler, fake = _open("telemetry-lost-midrun")
    while not sampler.sample().gpus[1].lost:
        pass
    before = fake.calls
    sampler.sample()
    per_sample_after = fake.calls - before
    sampler.stop()
    # Only GPU 0's calls remain (a lost GPU's calls can take seconds each on a real driver).
    sampler2, fake2 = _open("3090+3060-x4")
    before = fake2.calls
    sampler2.sample()
    per_sample_two_gpus = fake2.calls - before
    sampler2.stop()
    assert per_sample_after * 2 == per_sample_two_gpus


def test_gpu_lost_during_open_is_left_out_with_a_message() -> None:
    sampler, _ = _open("gpu-lost")
    assert [g.index for g in sampler.gpus] == [0]
    snap = sampler.sample()
    sampler.stop()
    assert len(snap.gpus) == 1
    assert "GPU 1 is lost" in snap.events[0]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("no-driver", "driver is not loaded"),
        ("no-library", "libnvidia-ml.so.1 is missing"),
        ("zero-gpus", "sees no GPU"),
    ],
)
def test_nothing_to_monitor_says_why(name: str, reason: str) -> None:
    sampler = TelemetrySampler(load_fake(scenario(name)))
    with pytest.raises(TelemetryUnavailable, match=reason) as info:
        sampler.open()
    assert str(info.value).startswith("No NVIDIA GPU to monitor")
    assert isinstance(info.value, RigfitError)


# ------------------------------------------------------------------------------------------ threads
def test_threaded_sampler_delivers_snapshots_and_stops_cleanly() -> None:
    fake = load_fake(scenario("3090+3060-x4"))
    got: list[TelemetrySnapshot] = []
    enough = threading.Event()

    def on_snapshot(snap: TelemetrySnapshot) -> None:
        got.append(snap)
        if len(got) >= 4:
            enough.set()

    sampler = TelemetrySampler(fake, interval_s=0.1, pcie_interval_s=0.1, on_snapshot=on_snapshot)
    sampler.start()
    assert enough.wait(10)
    assert {t.name for t in _telemetry_threads()} == {"rigfit-telemetry", "rigfit-telemetry-pcie"}
    sampler.stop()
    assert not _telemetry_threads()
    assert not sampler.running
    assert [s.seq for s in got[:4]] == [1, 2, 3, 4]
    assert got[0].gpus[0].pcie_tx_mib_s is not None  # the first snapshot already has traffic figures
    with pytest.raises(pynvml.NVMLError_Uninitialized):  # NVML was shut down
        fake.nvmlDeviceGetCount()


def test_a_start_failure_is_reported_and_leaves_no_thread() -> None:
    errors: list[str] = []
    failed = threading.Event()

    def on_error(message: str) -> None:
        errors.append(message)
        failed.set()

    sampler = TelemetrySampler(load_fake("no-driver"), on_error=on_error)
    sampler.start()
    assert failed.wait(10)
    sampler.stop()
    assert "driver is not loaded" in errors[0]
    assert not _telemetry_threads()


def test_a_failing_consumer_does_not_stop_sampling() -> None:
    calls: list[int] = []
    enough = threading.Event()

    def on_snapshot(snap: TelemetrySnapshot) -> None:
        calls.append(snap.seq)
        if len(calls) >= 3:
            enough.set()
        raise ValueError("consumer bug")

    sampler = TelemetrySampler(load_fake("rtx4090"), interval_s=0.1, on_snapshot=on_snapshot)
    sampler.start()
    assert enough.wait(10)
    assert sampler.running
    sampler.stop()


@pytest.mark.parametrize("interval", [0.05, 2.5, float("nan"), -1.0])
def test_interval_outside_half_to_ten_hertz_is_refused(interval: float) -> None:
    with pytest.raises(RigfitError, match=r"between 0.1 and 2 seconds"):
        check_interval(interval)
    with pytest.raises(RigfitError):
        TelemetrySampler(load_fake("rtx4090"), interval_s=interval)


def test_interval_limits_are_accepted() -> None:
    assert check_interval(0.1) == 0.1 and check_interval(2) == 2.0


# ------------------------------------------------------------------------------------------ history
def _sample(index: int, **values: object) -> GpuSample:
    return GpuSample(index=index, name=f"GPU {index}", **values)  # type: ignore[arg-type]


def _snap(t: float, *gpus: GpuSample, seq: int = 0) -> TelemetrySnapshot:
    return TelemetrySnapshot(seq=seq, t_s=t, unix_time=1.7e9 + t, gpus=gpus)


GPUS2 = (GpuInfo(index=0, name="GPU 0"), GpuInfo(index=1, name="GPU 1"))


def test_capacity_covers_the_window_at_the_rate() -> None:
    assert capacity_for(900, 0.1) == 9001
    assert capacity_for(900, 1.0) == 901
    assert capacity_for(1, 0.1) == 11
    with pytest.raises(RigfitError):
        capacity_for(0, 1.0)


def test_ring_buffer_wraps_around_and_keeps_the_newest_window() -> None:
    history = TelemetryHistory(GPUS2, window_s=1.0, interval_s=0.1)
    size = history.nbytes
    for k in range(25):
        history.append(_snap(k * 0.1, _sample(0, temperature_c=float(k)), _sample(1, power_w=float(100 + k))))
    assert history.count == history.capacity == 11
    assert history.nbytes == size  # nothing grew
    assert history.times() == pytest.approx([k * 0.1 for k in range(14, 25)])
    assert history.series("temperature_c", 0).tolist() == [float(k) for k in range(14, 25)]
    assert history.series("power_w", 1).tolist() == [float(100 + k) for k in range(14, 25)]
    assert np.isnan(history.series("power_w", 0)).all()  # never reported: NaN, not zero
    assert history.series("temperature_c", 0, start=8).tolist() == [22.0, 23.0, 24.0]
    assert history.last_value("temperature_c", 0) == 24.0
    assert history.last_value("power_w", 0) is None
    assert history.appended == 25


def test_ring_buffer_before_it_is_full_returns_only_what_was_stored() -> None:
    history = TelemetryHistory(GPUS2, window_s=10.0, interval_s=1.0)
    assert history.times().size == 0 and history.series("temperature_c", 0).size == 0
    history.append(_snap(5.0, _sample(0, temperature_c=50.0)))
    history.append(_snap(6.0, _sample(0, temperature_c=51.0)))
    assert history.series("temperature_c", 0).tolist() == [50.0, 51.0]
    assert np.isnan(history.series("temperature_c", 1)).all()  # GPU 1 missing from the snapshots
    assert history.start_since(5.5) == 1


def test_window_returns_one_block_per_metric_from_a_time_on() -> None:
    history = TelemetryHistory(GPUS2, window_s=2.0, interval_s=0.1)
    for k in range(40):
        history.append(
            _snap(k * 0.1, _sample(0, vram_used_mib=float(k)), _sample(1, vram_used_mib=-float(k)))
        )
    t, block = history.window(since_t_s=3.55)
    assert t == pytest.approx([3.6, 3.7, 3.8, 3.9])
    assert block["vram_used_mib"].shape == (2, 4)
    assert block["vram_used_mib"][1].tolist() == [-36.0, -37.0, -38.0, -39.0]


def test_lost_gpu_and_gaps_are_nan_in_the_buffers() -> None:
    history = TelemetryHistory(GPUS2, window_s=10.0, interval_s=1.0)
    history.append(_snap(1.0, _sample(0, temperature_c=40.0), _sample(1, temperature_c=41.0)))
    history.append(_snap(2.0, _sample(0, temperature_c=42.0), GpuSample(index=1, name="GPU 1", lost=True)))
    history.mark_gap()
    history.append(_snap(9.0, _sample(0, temperature_c=43.0), GpuSample(index=1, name="GPU 1", lost=True)))
    gpu0 = history.series("temperature_c", 0)
    assert gpu0[:2].tolist() == [40.0, 42.0] and math.isnan(gpu0[2]) and gpu0[3] == 43.0
    assert history.times()[2] == pytest.approx(2.5)  # the gap sits between the two runs
    gpu1 = history.series("temperature_c", 1)
    assert gpu1[0] == 41.0 and np.isnan(gpu1[1:]).all()


def test_resizing_keeps_the_newest_samples() -> None:
    history = TelemetryHistory(GPUS2, window_s=10.0, interval_s=0.1)
    for k in range(50):
        history.append(_snap(k * 0.1, _sample(0, temperature_c=float(k))))
    smaller = history.resized(interval_s=1.0)  # 10 s at 1 Hz: 11 slots
    assert smaller.capacity == 11 and smaller.count == 11
    assert smaller.series("temperature_c", 0).tolist() == [float(k) for k in range(39, 50)]
    smaller.append(_snap(5.0, _sample(0, temperature_c=99.0)))
    assert smaller.series("temperature_c", 0)[-1] == 99.0
    bigger = history.resized(window_s=60.0)
    assert bigger.count == 50 and bigger.series("temperature_c", 0)[0] == 0.0


def test_csv_export_has_a_row_per_sample_and_gpu_with_empty_cells_for_missing_values(tmp_path: Path) -> None:
    history = TelemetryHistory(GPUS2, window_s=10.0, interval_s=1.0)
    history.append(
        _snap(
            100.0,
            _sample(0, temperature_c=61.5, vram_used_mib=1024.0, clock_event_mask=0x44),
            _sample(1, temperature_c=55.0),
        )
    )
    history.append(_snap(101.0, _sample(0, temperature_c=62.0), GpuSample(index=1, name="GPU 1", lost=True)))
    path = tmp_path / "history.csv"
    assert history.to_csv(path) == 4
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["gpu"], r["seconds"]) for r in rows] == [
        ("0", "0.000"),
        ("1", "0.000"),
        ("0", "1.000"),
        ("1", "1.000"),
    ]
    assert rows[0]["temperature_c"] == "61.5" and rows[0]["vram_used_mib"] == "1024"
    assert rows[0]["clock_events"] == "power-cap hw-thermal"
    assert rows[0]["fan_pct"] == "" and rows[3]["temperature_c"] == ""
    assert rows[0]["unix_time"] == "1700000100.000"


def test_csv_export_to_a_folder_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    history = TelemetryHistory(GPUS2, window_s=10.0, interval_s=1.0)
    history.append(_snap(1.0, _sample(0, temperature_c=40.0)))
    with pytest.raises(RigfitError, match="cannot write the telemetry history"):
        history.to_csv(tmp_path / "missing" / "h.csv")


# ------------------------------------------------------------------------------------------ alerts
def test_throttling_appears_and_clears_over_a_scenario() -> None:
    clock = SimClock(step_s=5.0)
    sampler, fake = _open("telemetry-throttle", clock=clock)
    seen: list[set[tuple[str, int]]] = []
    alerts: tuple[TelemetryAlert, ...] = ()
    for _ in range(6):
        alerts = evaluate_alerts(sampler.sample(), alerts, hold_s=3.0)
        seen.append(_codes(alerts))
        fake.advance()
        clock.tick()
    sampler.stop()
    assert seen[0] == set()  # idle: the link at Gen1 is power saving, not a fault
    assert seen[1] == set()  # busy at full link speed, cool
    assert seen[2] == {(ALERT_NEAR_SLOWDOWN, 0)}  # 86 °C, slowdown at 90
    assert seen[3] == {
        (ALERT_THERMAL, 0),  # replaces "near slowdown": it is slowing down now
        (ALERT_POWER_CAP, 1),
        (ALERT_VRAM_FULL, 1),
        (ALERT_PCIE_DEGRADED, 1),
    }
    assert seen[4] == set() and seen[5] == set()


def test_alert_messages_are_plain_words_with_the_numbers() -> None:
    sample = _sample(
        1,
        temperature_c=92.0,
        clock_event_mask=0x40 | 0x4,
        power_w=349.6,
        power_limit_w=350.0,
        vram_total_mib=24576.0,
        vram_free_mib=512.0,
        gpu_util_pct=97.0,
        pcie_gen=1,
        pcie_width=16,
        pcie_max_gen=4,
        pcie_max_width=16,
        slowdown_temp_c=90.0,
    )
    by_code = {a.code: a for a in evaluate_alerts(_snap(1.0, sample))}
    assert set(by_code) == {ALERT_THERMAL, ALERT_POWER_CAP, ALERT_VRAM_FULL, ALERT_PCIE_DEGRADED}
    assert "GPU 1 (GPU 1) is too hot (92 °C)" in by_code[ALERT_THERMAL].message
    assert "(350 W of 350 W)" in by_code[ALERT_POWER_CAP].message
    assert "VRAM is 98% full (23.5 GiB of 24.0 GiB)" in by_code[ALERT_VRAM_FULL].message
    assert "Gen1 x16, below the Gen4 x16" in by_code[ALERT_PCIE_DEGRADED].message
    assert by_code[ALERT_POWER_CAP].level == "info" and by_code[ALERT_THERMAL].level == "warning"


def test_an_alert_stays_until_its_condition_has_been_false_for_hold_s() -> None:
    hot = _sample(0, clock_event_mask=0x40)
    cool = _sample(0, clock_event_mask=0)
    a1 = evaluate_alerts(_snap(10.0, hot), hold_s=3.0)
    a2 = evaluate_alerts(_snap(11.0, cool), a1, hold_s=3.0)
    a3 = evaluate_alerts(_snap(12.0, hot), a2, hold_s=3.0)
    a4 = evaluate_alerts(_snap(14.9, cool), a3, hold_s=3.0)
    a5 = evaluate_alerts(_snap(15.0, cool), a4, hold_s=3.0)
    assert [_codes(a) for a in (a1, a2, a3, a4)] == [{(ALERT_THERMAL, 0)}] * 4
    assert a4[0].since_t_s == 10.0 and a4[0].last_seen_t_s == 12.0  # one alert, not four
    assert a5 == ()
    assert alert_changes(a4, a5) == ((), a4)
    assert alert_changes((), a1) == (a1, ())


def test_vram_alert_has_hysteresis() -> None:
    def at(fraction: float, t: float, before: tuple[TelemetryAlert, ...]) -> tuple[TelemetryAlert, ...]:
        sample = _sample(0, vram_total_mib=1000.0, vram_free_mib=1000.0 * (1 - fraction))
        return evaluate_alerts(_snap(t, sample), before, hold_s=0.0)

    a = at(0.94, 1.0, ())
    assert a == ()
    a = at(0.96, 2.0, a)
    assert _codes(a) == {(ALERT_VRAM_FULL, 0)}
    a = at(0.94, 3.0, a)  # still above the 93 % it takes to clear
    assert _codes(a) == {(ALERT_VRAM_FULL, 0)}
    assert at(0.92, 4.0, a) == ()


def test_temperature_alert_has_hysteresis_and_needs_a_threshold() -> None:
    def at(temp: float, t: float, before: tuple[TelemetryAlert, ...], slowdown: float | None = 90.0):
        sample = _sample(0, temperature_c=temp, slowdown_temp_c=slowdown)
        return evaluate_alerts(_snap(t, sample), before, hold_s=0.0)

    assert at(84.0, 1.0, ()) == ()
    a = at(85.0, 2.0, ())
    assert _codes(a) == {(ALERT_NEAR_SLOWDOWN, 0)}
    assert "85 °C, 5 °C below the 90 °C" in a[0].message
    a = at(84.0, 3.0, a)
    assert _codes(a) == {(ALERT_NEAR_SLOWDOWN, 0)}
    assert at(82.0, 4.0, a) == ()
    assert at(95.0, 5.0, (), slowdown=None) == ()  # no threshold reported: no guess


def test_pcie_link_below_maximum_only_counts_while_busy() -> None:
    def alerts(util: float | None, gen: int, width: int) -> set[tuple[str, int]]:
        sample = _sample(
            0, gpu_util_pct=util, pcie_gen=gen, pcie_width=width, pcie_max_gen=4, pcie_max_width=16
        )
        return _codes(evaluate_alerts(_snap(1.0, sample)))

    assert alerts(2.0, 1, 16) == set()  # idle power saving
    assert alerts(None, 1, 16) == set()  # utilization unknown: no claim
    assert alerts(80.0, 4, 16) == set()
    assert alerts(80.0, 4, 8) == {(ALERT_PCIE_DEGRADED, 0)}
    assert alerts(80.0, 3, 16) == {(ALERT_PCIE_DEGRADED, 0)}


def test_a_lost_gpu_alert_never_clears_and_other_gpus_keep_theirs() -> None:
    lost = GpuSample(index=1, name="GPU 1", lost=True)
    a = evaluate_alerts(_snap(1.0, _sample(0, clock_event_mask=0x4), lost), hold_s=0.0)
    assert _codes(a) == {(ALERT_POWER_CAP, 0), (ALERT_GPU_LOST, 1)}
    assert a[-1].level == "error"
    for t in (2.0, 100.0):
        a = evaluate_alerts(_snap(t, _sample(0, clock_event_mask=0), lost), a, hold_s=0.0)
    assert _codes(a) == {(ALERT_GPU_LOST, 1)}


def test_alerts_of_a_gpu_missing_from_a_snapshot_stay_as_they_were() -> None:
    a = evaluate_alerts(_snap(1.0, _sample(0, clock_event_mask=0x40)), hold_s=0.0)
    b = evaluate_alerts(_snap(50.0, _sample(1)), a, hold_s=0.0)
    assert b == a


def test_alerts_are_sorted_by_gpu_then_severity() -> None:
    s0 = _sample(0, clock_event_mask=0x4 | 0x40)
    s1 = GpuSample(index=1, name="GPU 1", lost=True)
    assert [(a.gpu, a.code) for a in evaluate_alerts(_snap(1.0, s1, s0))] == [
        (0, ALERT_THERMAL),
        (0, ALERT_POWER_CAP),
        (1, ALERT_GPU_LOST),
    ]


def test_json_form_of_a_sample_is_plain_types() -> None:
    sample = _sample(0, clock_events=("idle",), temperature_c=40.0)
    data = sample.as_dict()
    assert data["clock_events"] == ["idle"] and data["temperature_c"] == 40.0 and data["fan_pct"] is None
    assert replace(sample, lost=True).as_dict()["lost"] is True


def test_stop_interrupts_the_wait_between_slow_samples() -> None:
    got: list[int] = []
    started = threading.Event()

    def on_snapshot(snap: TelemetrySnapshot) -> None:
        got.append(snap.seq)
        started.set()

    sampler = TelemetrySampler(load_fake("rtx4090"), interval_s=2.0, on_snapshot=on_snapshot)
    sampler.start()
    assert started.wait(10)
    sampler.stop()
    assert not _telemetry_threads()
    assert got == [1]  # stopped inside the 2 s wait, before a second sample
