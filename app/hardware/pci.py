"""PCI bus ids as NVML, sysfs and recordings write them, in one form.

NVML reports ``00000000:01:00.0`` (8-digit domain, upper case), sysfs names the device
``0000:01:00.0``; the probe, the sysfs scan, the fake NVML and ``rigfit detect`` compare them.
"""

from __future__ import annotations


def normalize_bus_id(bus_id: str | bytes | None) -> str:
    """``00000000:01:00.0`` and ``0000:01:00.0`` -> ``0000:01:00.0`` (lower case, 4-digit domain)."""
    if bus_id is None:
        return ""
    text = bus_id.decode(errors="replace") if isinstance(bus_id, bytes) else str(bus_id)
    text = text.strip().lower()
    parts = text.split(":")
    if len(parts) == 3:
        domain = parts[0][-4:].rjust(4, "0")
        return f"{domain}:{parts[1]}:{parts[2]}"
    if len(parts) == 2:  # no domain
        return f"0000:{parts[0]}:{parts[1]}"
    return text


def same_bus_id(a: str | bytes | None, b: str | bytes | None) -> bool:
    """Whether two bus ids name the same device, whatever their spelling."""
    return normalize_bus_id(a) == normalize_bus_id(b)
