"""The RAM read-bandwidth probe: measured once per machine, kept in the user's cache, read by detection."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from app.hardware import membw
from app.hardware.host import detect_host
from tests.ram_bandwidth import TEST_RAM_BANDWIDTH_GBPS


def test_the_probe_measures_a_positive_bandwidth() -> None:
    for threads in (1, 2):
        gbps = membw.measure_ram_read_gbps(membw.MIN_PROBE_BYTES, passes=2, threads=threads)
        assert 0.1 < gbps < 10_000.0


def test_the_probe_takes_at_most_a_quarter_of_the_free_ram() -> None:
    assert membw.probe_bytes(None) == membw.PROBE_BYTES
    assert membw.probe_bytes(1024.0) == 256 << 20
    assert membw.probe_bytes(100.0) == membw.MIN_PROBE_BYTES
    assert membw.probe_bytes(64 * 1024.0) == membw.PROBE_BYTES


def test_a_measurement_is_kept_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_measure(n_bytes: int, passes: int, threads: int) -> float:
        calls.append(n_bytes)
        return 23.4

    monkeypatch.setattr(membw, "measure_ram_read_gbps", fake_measure)
    monkeypatch.setattr(membw, "machine_busy", lambda: False)  # the test machine may well be busy
    key = membw.machine_key("Test CPU", 8, 32768.0)
    first = membw.ram_bandwidth(key, 16384.0, cache_dir=tmp_path)
    assert first is not None and first.gbps == 23.4 and first.machine == key and first.probe_mib == 512
    again = membw.ram_bandwidth(key, 16384.0, cache_dir=tmp_path)
    assert again is not None and again.gbps == 23.4 and len(calls) == 1  # measured once
    # More RAM (more channels) or another CPU is another machine: measured again.
    assert membw.load_cached(membw.machine_key("Test CPU", 8, 65536.0), tmp_path) is None
    assert membw.ram_bandwidth(membw.machine_key("Test CPU", 8, 65536.0), None, cache_dir=tmp_path)
    assert len(calls) == 2
    # Without measure, nothing new is measured.
    assert (
        membw.ram_bandwidth(membw.machine_key("Other", 2, 4096.0), None, measure=False, cache_dir=tmp_path)
        is None
    )
    assert len(calls) == 2


def test_a_figure_measured_on_a_busy_machine_is_used_but_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The probe ran while a compiler kept both cores busy: 9.6 GB/s kept, against 34.5 quiet.
    readings = iter([9.6, 34.5])
    monkeypatch.setattr(membw, "measure_ram_read_gbps", lambda n_bytes, passes, threads: next(readings))
    key = membw.machine_key("Test CPU", 2, 24576.0)
    busy = membw.ram_bandwidth(key, 16384.0, cache_dir=tmp_path, busy=lambda: True)
    assert busy is not None and busy.gbps == 9.6 and not busy.kept
    assert membw.load_cached(key, tmp_path) is None
    # Busy only once the probe ran (a burst during it): not kept either.
    states = iter([False, True])
    monkeypatch.setattr(membw, "measure_ram_read_gbps", lambda n_bytes, passes, threads: 9.6)
    assert not membw.ram_bandwidth(key, None, cache_dir=tmp_path, busy=lambda: next(states)).kept
    assert membw.load_cached(key, tmp_path) is None
    monkeypatch.setattr(membw, "measure_ram_read_gbps", lambda n_bytes, passes, threads: 34.5)
    quiet = membw.ram_bandwidth(key, 16384.0, cache_dir=tmp_path, busy=lambda: False)
    assert quiet is not None and quiet.kept
    kept = membw.load_cached(key, tmp_path)
    assert kept is not None and kept.gbps == 34.5


def test_busy_means_every_logical_cpu_has_a_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(membw.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(membw.os, "getloadavg", lambda: (9.1, 5.0, 3.0))
    assert membw.machine_busy()
    monkeypatch.setattr(membw.os, "getloadavg", lambda: (0.7, 0.5, 0.3))
    assert not membw.machine_busy()

    def no_load() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(membw.os, "getloadavg", no_load)
    assert not membw.machine_busy()


@pytest.mark.parametrize(
    "content", ["not json", '{"version": 1}', '{"version": 1, "machine": "m", "gbps": -3}', "[]"]
)
def test_an_unreadable_cache_is_measured_again(tmp_path: Path, content: str) -> None:
    membw.cache_path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    membw.cache_path(tmp_path).write_text(content)
    assert membw.load_cached("m", tmp_path) is None


def test_detection_reads_the_kept_figure_and_measures_when_there_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tests/conftest.py keeps a figure for this machine in every test's cache folder.
    assert detect_host().ram_bandwidth_gbps == TEST_RAM_BANDWIDTH_GBPS
    path = membw.cache_path()
    assert json.loads(path.read_text())["gbps"] == TEST_RAM_BANDWIDTH_GBPS
    path.unlink()
    assert detect_host(measure_bandwidth=False).ram_bandwidth_gbps is None
    asked: list[int] = []

    def probe(n_bytes: int, passes: int, threads: int) -> float:
        asked.append(threads)
        return 17.31

    monkeypatch.setattr(membw, "measure_ram_read_gbps", probe)
    monkeypatch.setattr(membw, "machine_busy", lambda: False)  # the test machine may well be busy
    assert detect_host().ram_bandwidth_gbps == 17.3
    kept = json.loads(path.read_text())
    assert kept["gbps"] == 17.31
    # llama.cpp decodes with one thread per physical core: the probe reads with as many.
    physical = psutil.cpu_count(logical=False) or psutil.cpu_count(logical=True)
    assert asked == [physical] and kept["threads"] == physical
    # A figure kept by the one-thread probe (version 1) is measured again.
    path.write_text(json.dumps({**kept, "version": 1}))
    detect_host()
    assert asked == [physical, physical]
