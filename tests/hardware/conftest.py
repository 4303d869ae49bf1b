"""Fixtures for the hardware tests: fake NVML scenarios, an empty sysfs, a fixed host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.rig import Host, Rig
from app.hardware.nvml import NvmlApi, load_fake
from app.hardware.probe import detect_rig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"
HOST = Host(
    cpu_name="Test CPU", cores_physical=8, cores_logical=16, ram_total_mib=65536.0, ram_available_mib=60000.0
)


def scenario(name: str) -> str:
    """A built-in scenario name, or the path of a test-only fixture (``tests/fixtures/nvml``)."""
    path = FIXTURES / f"{name}.json"
    return str(path) if path.is_file() else name


@pytest.fixture
def empty_sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    (root / "bus" / "pci" / "devices").mkdir(parents=True)
    return root


@pytest.fixture
def fake() -> Callable[[str], NvmlApi]:
    return lambda name: load_fake(scenario(name))


@pytest.fixture
def detect(empty_sysfs: Path) -> Callable[[str], Rig]:
    """Detect a rig from a scenario, with no other GPUs on the (fake) PCI bus and a fixed host."""

    def run(name: str) -> Rig:
        return detect_rig(backend=load_fake(scenario(name)), sysfs_root=empty_sysfs, host=HOST)

    return run
