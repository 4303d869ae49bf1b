"""`python -m app.hardware.record` writes a scenario that replays as the same rig."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.hardware.nvml import load_fake
from app.hardware.nvml_fake import FakeNvml, validate_scenario
from app.hardware.probe import detect_rig
from app.hardware.record import main, record

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"


@pytest.mark.parametrize(
    "name", ["h200", "rtx4090", "2x3090-nvlink", "3090+3060-x4", "4xh100-nvswitch", "zero-gpus", "no-driver"]
)
def test_a_recording_replays_as_the_same_rig(name: str, tmp_path: Path) -> None:
    data = record(load_fake(name), keep_uuids=True)
    validate_scenario(data)
    original = detect_rig(backend=load_fake(name), sysfs_root=tmp_path)
    replayed = detect_rig(backend=FakeNvml(data), sysfs_root=tmp_path)  # type: ignore[arg-type]
    assert replayed.gpus == original.gpus
    assert (replayed.topology, replayed.p2p, replayed.status) == (
        original.topology,
        original.p2p,
        original.status,
    )


def test_functions_an_old_driver_lacks_are_recorded_as_missing(tmp_path: Path) -> None:
    data = record(load_fake(str(FIXTURES / "old-driver.json")))
    assert {"nvmlDeviceGetTemperatureV", "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetMemoryBusWidth"} <= set(
        data["missing"]
    )
    assert data["devices"][0]["temp"] == 36  # from the older Temperature call
    assert "mem_v2" not in data["devices"][0]


def test_uuids_are_blanked_unless_kept() -> None:
    data = record(load_fake("rtx4090"))
    assert data["devices"][0]["uuid"] == "GPU-00000000-0000-0000-0000-000000000000"
    assert record(load_fake("rtx4090"), keep_uuids=True)["devices"][0]["uuid"].startswith("GPU-4090")


def test_errors_are_recorded_as_err_strings() -> None:
    data = record(load_fake("rtx4090"))
    assert data["devices"][0]["fan"].startswith("ERR NVMLError_NotSupported")
    assert record(load_fake("no-library"))["init"].startswith("ERR NVMLError_LibraryNotFound")


def test_command_line_writes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RIGFIT_FAKE_NVML", "2x3090-nvlink")
    out = tmp_path / "rec.json"
    assert main(["-o", str(out)]) == 0
    assert len(json.loads(out.read_text())["devices"]) == 2
    assert "recorded 2 GPU(s)" in capsys.readouterr().err
