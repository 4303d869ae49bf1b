"""The host computer: CPU model and cores, RAM total and available (psutil), RAM read bandwidth (a
probe kept on disk, :mod:`app.hardware.membw`).

The planner needs these for layers and buffers left in system memory. Nothing here raises: a field
that cannot be read is ``None``.
"""

from __future__ import annotations

import platform
from pathlib import Path

from app.core.rig import Host

_MIB = 2**20


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's marketing name: ``model name`` from /proc/cpuinfo on Linux, else what platform says."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                # "model name" on x86; "Model"/"Hardware" name the board on ARM, "cpu" on POWER.
                if key.strip().lower() in ("model name", "cpu model") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    name = platform.processor() or platform.machine()
    return name or None


# The flags that decide which weights llama.cpp's CPU backend repacks (app.core.memory).
_INTERESTING_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vnni", "f16c", "fma")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The CPU's SIMD flags that matter to llama.cpp, from /proc/cpuinfo; ``()`` when unknown."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip().lower() == "flags":
                    present = set(value.split())
                    return tuple(f for f in _INTERESTING_FLAGS if f in present)
    except OSError:
        pass
    return ()


def detect_host(measure_bandwidth: bool = True) -> Host:
    """This computer's CPU and RAM, with its RAM read bandwidth (:mod:`app.hardware.membw`): the
    figure kept from an earlier run, or, the first time on a machine and with ``measure_bandwidth``,
    a probe of about a second. Call it off the GUI thread."""
    import psutil

    try:
        physical = psutil.cpu_count(logical=False)
        logical = psutil.cpu_count(logical=True)
    except Exception:  # psutil raises platform-specific errors; a count is optional
        physical = logical = None
    try:
        memory = psutil.virtual_memory()
        total_mib: float | None = memory.total / _MIB
        available_mib: float | None = memory.available / _MIB
    except Exception:
        total_mib = available_mib = None
    name = cpu_name()
    from app.hardware.membw import machine_key, ram_bandwidth

    bandwidth = ram_bandwidth(
        machine_key(name, logical, total_mib),
        available_mib,
        threads=physical or logical or 1,  # as llama.cpp decodes: one thread per physical core
        measure=measure_bandwidth,
    )
    return Host(
        cpu_name=name,
        cores_physical=physical,
        cores_logical=logical,
        ram_total_mib=total_mib,
        ram_available_mib=available_mib,
        ram_bandwidth_gbps=round(bandwidth.gbps, 1) if bandwidth is not None else None,
        cpu_flags=cpu_flags(),
    )
