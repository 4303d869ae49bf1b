"""Host facts: CPU name from /proc/cpuinfo, cores and RAM from psutil."""

from __future__ import annotations

from pathlib import Path

from app.hardware.host import cpu_name, detect_host


def test_cpu_name_is_the_model_name_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD Ryzen 9  7950X 16-Core Processor\n"
    )
    assert cpu_name(info) == "AMD Ryzen 9 7950X 16-Core Processor"


def test_cpu_name_without_cpuinfo_falls_back_to_the_platform(tmp_path: Path) -> None:
    name = cpu_name(tmp_path / "missing")
    assert name is None or isinstance(name, str)


def test_detect_host_reports_cores_and_ram() -> None:
    host = detect_host()
    assert host.cores_logical is not None and host.cores_logical >= 1
    assert host.ram_total_mib is not None and host.ram_available_mib is not None
    assert 0 < host.ram_available_mib <= host.ram_total_mib
