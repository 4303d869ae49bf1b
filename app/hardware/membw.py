"""This computer's system-RAM read bandwidth: a short probe, measured once and kept on disk.

Decoding on the CPU, and the layers a GPU rig leaves in system RAM, run at the speed RAM can be
read, so the speed model (:mod:`app.core.perf`) needs the figure. Nothing reports it, and a desktop
default is off by a factor of two on many machines (the issue that asked for this: 60 GB/s assumed,
31 GB/s here, a demo-model prediction 68% too fast), so Rigfit measures it.

The probe is what the CPU constants of the speed model were calibrated against (docs/speed-model.md):
numpy summing a large array, one slice per physical core at the same time (numpy lets go of the GIL
while it sums), best of several passes — llama.cpp decodes with one thread per physical core, and
one core alone reads far less than all of them on many CPUs (14 against 27 GB/s on the two-core
Xeon this was calibrated on). A sum reads every byte once and does almost no arithmetic; the array
(512 MiB, less on a machine short of RAM) is several times any CPU's last-level cache, so the passes
stream from RAM; the best pass is the one another program disturbed least. About a second on a desktop, so it runs once per machine and the answer is kept in
the user's cache folder (platformdirs), keyed by what would change it: the CPU, its core count and
the installed RAM. Detection (:func:`app.hardware.host.detect_host`) reads the kept figure and
measures only when there is none; the window detects off the GUI thread.

A probe taken while other programs keep every core busy reads what they leave: on the two-core
development machine, during a compiler run (load average 9), it read 9.6 GB/s against 34.5 quiet,
and the kept figure made every CPU prediction 3.6× too slow until the cache was deleted. So a figure
measured while the last minute's load average is at least one task per logical CPU
(:func:`machine_busy`) is used but not kept: the next detection measures again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

PROBE_BYTES = 512 << 20  # several times any desktop CPU's last-level cache (96-128 MiB on X3D parts)
MIN_PROBE_BYTES = 64 << 20
PROBE_PASSES = 5
CACHE_FILE = "ram-bandwidth.json"
BUSY_LOAD_PER_CPU = 1.0  # load average per logical CPU from which a probe is not kept
CACHE_VERSION = 2  # 1: a one-thread figure, which reads half as much on some CPUs: measured again


@dataclass(frozen=True)
class BandwidthMeasurement:
    """One probe result: GB/s (10^9 bytes per second), when, and on which machine."""

    gbps: float
    machine: str
    measured_at: str  # ISO 8601, UTC
    probe_mib: int
    passes: int
    threads: int = 1
    kept: bool = True  # False: measured on a busy machine, used once and measured again next time


def machine_key(cpu_name: str | None, cores_logical: int | None, ram_total_mib: float | None) -> str:
    """What the figure depends on: a new CPU or more RAM (more channels) is a new measurement."""
    ram_gib = round((ram_total_mib or 0.0) / 1024)
    return f"{cpu_name or 'unknown CPU'}|{cores_logical or 0} threads|{ram_gib} GiB"


def probe_bytes(available_mib: float | None = None) -> int:
    """The probe's array size: :data:`PROBE_BYTES`, at most a quarter of the free RAM (at least
    64 MiB), so the probe never pushes a small machine into swap."""
    if available_mib is None or available_mib <= 0:
        return PROBE_BYTES
    return max(MIN_PROBE_BYTES, min(PROBE_BYTES, int(available_mib * 2**20 / 4)))


def measure_ram_read_gbps(n_bytes: int = PROBE_BYTES, passes: int = PROBE_PASSES, threads: int = 1) -> float:
    """System-RAM read bandwidth in GB/s: ``threads`` threads each summing a slice of an ``n_bytes``
    array at the same time, best of ``passes``."""
    import numpy as np

    values = np.ones(max(1, n_bytes // 8), dtype=np.float64)  # writing it maps every page first
    slices = np.array_split(values, max(1, threads))
    values.sum()  # one pass unmeasured: the first read may still fault pages in
    best = float("inf")
    for _ in range(max(1, passes)):
        if len(slices) == 1:
            start = time.perf_counter()
            values.sum()
        else:
            workers = [threading.Thread(target=part.sum, daemon=True) for part in slices]
            start = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        best = min(best, time.perf_counter() - start)
    return float(values.nbytes / max(best, 1e-9) / 1e9)


def machine_busy() -> bool:
    """True when the last minute's load average is at least :data:`BUSY_LOAD_PER_CPU` per logical
    CPU (other programs take the cores the probe needs); False when the system does not say."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows: no load average
        return False
    return load >= BUSY_LOAD_PER_CPU * (os.cpu_count() or 1)


def cache_path(cache_dir: Path | None = None) -> Path:
    """Where the measurement is kept: ``<user cache>/rigfit/ram-bandwidth.json``."""
    if cache_dir is None:
        import platformdirs

        cache_dir = Path(platformdirs.user_cache_dir("rigfit", appauthor=False))
    return cache_dir / CACHE_FILE


def load_cached(machine: str, cache_dir: Path | None = None) -> BandwidthMeasurement | None:
    """The kept measurement for ``machine``; None when there is none (or it is for another machine,
    or the file cannot be read: it is measured again then)."""
    path = cache_path(cache_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != CACHE_VERSION or data.get("machine") != machine:
            return None
        gbps = float(data["gbps"])
        if not 0.1 <= gbps <= 10_000.0:
            return None
        return BandwidthMeasurement(
            gbps=gbps,
            machine=machine,
            measured_at=str(data.get("measured_at", "")),
            probe_mib=int(data.get("probe_mib", 0)),
            passes=int(data.get("passes", 0)),
            threads=int(data.get("threads", 1)),
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def store(measurement: BandwidthMeasurement, cache_dir: Path | None = None) -> None:
    """Keep a measurement (a cache that cannot be written only means measuring again next time)."""
    path = cache_path(cache_dir)
    data = {
        "version": CACHE_VERSION,
        "machine": measurement.machine,
        "gbps": round(measurement.gbps, 2),
        "measured_at": measurement.measured_at,
        "probe_mib": measurement.probe_mib,
        "passes": measurement.passes,
        "threads": measurement.threads,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.info("cannot keep the RAM bandwidth measurement in %s: %s", path, exc)


def ram_bandwidth(
    machine: str,
    available_mib: float | None = None,
    *,
    threads: int = 1,
    measure: bool = True,
    cache_dir: Path | None = None,
    busy: Callable[[], bool] | None = None,
) -> BandwidthMeasurement | None:
    """The kept measurement for this machine, or (with ``measure``) a new one, kept for next time
    unless the machine was busy (``busy``, default :func:`machine_busy`, asked before and after the
    probe): then it is used this once and measured again next time.

    Blocks for about a second when it measures: call it off the GUI thread.
    """
    cached = load_cached(machine, cache_dir)
    if cached is not None or not measure:
        return cached
    is_busy = busy or machine_busy
    n_bytes = probe_bytes(available_mib)
    was_busy = is_busy()
    try:
        gbps = measure_ram_read_gbps(n_bytes, PROBE_PASSES, threads)
    except MemoryError:
        return None
    keep = not (was_busy or is_busy())
    result = BandwidthMeasurement(
        gbps=gbps,
        machine=machine,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        probe_mib=n_bytes >> 20,
        passes=PROBE_PASSES,
        threads=threads,
        kept=keep,
    )
    if keep:
        store(result, cache_dir)
    else:
        log.info("RAM read %.1f GB/s measured on a busy machine: used, not kept", gbps)
    return result


__all__ = [
    "CACHE_FILE",
    "PROBE_BYTES",
    "PROBE_PASSES",
    "BandwidthMeasurement",
    "cache_path",
    "load_cached",
    "machine_busy",
    "machine_key",
    "measure_ram_read_gbps",
    "probe_bytes",
    "ram_bandwidth",
    "store",
]
