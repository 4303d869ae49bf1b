"""What every test's fresh cache folder holds for this machine's RAM read bandwidth (tests/conftest.py
writes it), so detecting the host does not run the one-second probe in each test;
tests/hardware/test_membw.py runs the probe itself and removes the figure to see detection measure.

Its own module: importing tests/conftest.py from a test would run its set-up a second time.
"""

from __future__ import annotations

from pathlib import Path

TEST_RAM_BANDWIDTH_GBPS = 30.0


def keep_a_ram_bandwidth(cache_home: Path) -> None:
    """Write :data:`TEST_RAM_BANDWIDTH_GBPS` as this machine's kept measurement under ``cache_home``."""
    import psutil

    from app.hardware import membw
    from app.hardware.host import cpu_name

    key = membw.machine_key(cpu_name(), psutil.cpu_count(logical=True), psutil.virtual_memory().total / 2**20)
    membw.store(
        membw.BandwidthMeasurement(TEST_RAM_BANDWIDTH_GBPS, key, "2026-01-01T00:00:00+00:00", 512, 5),
        cache_home / "rigfit",
    )
