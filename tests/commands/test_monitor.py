"""`rigfit monitor`: a line per sample, JSON lines, alerts, no-GPU and bad-input exits, Ctrl+C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "nvml"


def _telemetry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rigfit-telemetry")]


def _run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], scenario: str, *args: str
) -> tuple[int, str, str]:
    fixture = FIXTURES / f"{scenario}.json"
    monkeypatch.setenv("RIGFIT_FAKE_NVML", str(fixture) if fixture.is_file() else scenario)
    code = main(["monitor", *args])
    out, err = capsys.readouterr()
    assert not _telemetry_threads()  # the command always stops its threads
    return code, out, err


def test_text_mode_prints_a_header_and_a_line_per_sample(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(monkeypatch, capsys, "3090+3060-x4", "--interval", "0.1", "--count", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "Monitoring GPU 0 NVIDIA GeForce RTX 3090, GPU 1 NVIDIA GeForce RTX 3060 every 0.1 s (Ctrl+C to stop)."
    )
    assert len(lines) == 4
    sample = lines[1]
    assert "GPU0 41°C 32/350W 3% 0.2/24.0GiB Gen1x16 tx/rx 0.3/0.2MiB/s" in sample
    assert "  |  GPU1 35°C 13/170W 0% 0.0/12.0GiB Gen1x4" in sample


def test_json_lines_are_one_object_per_sample_with_null_for_what_the_gpu_does_not_say(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        monkeypatch, capsys, "telemetry-unsupported", "--interval", "0.1", "--count", "2", "--json-lines"
    )
    assert code == 0
    objects = [json.loads(line) for line in out.splitlines()]
    assert len(objects) == 2
    first = objects[0]
    assert {"time", "unix_time", "seq", "gpus", "alerts", "events"} <= set(first)
    gpu = first["gpus"][0]
    assert {
        "index",
        "name",
        "lost",
        "vram_used_mib",
        "vram_total_mib",
        "temperature_c",
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
        "clock_events",
        "fan_pct",
        "slowdown_temp_c",
    } <= set(gpu)
    assert gpu["name"] == "NVIDIA GeForce RTX 4090" and gpu["temperature_c"] == 36.0
    assert gpu["power_w"] is None and gpu["fan_pct"] is None and gpu["clock_events"] is None
    assert [o["seq"] for o in objects] == [1, 2]


def test_a_lost_gpu_is_reported_once_and_the_other_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(monkeypatch, capsys, "telemetry-lost-midrun", "--interval", "0.1", "--count", "8")
    assert code == 0
    assert sum("was lost" in line for line in out.splitlines()) == 1
    last = out.splitlines()[-1]
    assert "GPU1 lost" in last and "GPU0 " in last and "°C" in last


def test_alerts_are_in_the_json_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        monkeypatch, capsys, "telemetry-lost-midrun", "--interval", "0.1", "--count", "8", "--json-lines"
    )
    assert code == 0
    last = json.loads(out.splitlines()[-1])
    assert {"code": "gpu-lost", "gpu": 1, "level": "error"}.items() <= last["alerts"][0].items()
    assert last["gpus"][1]["lost"] is True


@pytest.mark.parametrize(
    ("scenario", "words"),
    [("no-driver", "driver is not loaded"), ("zero-gpus", "sees no GPU"), ("no-library", "libnvidia-ml")],
)
def test_no_gpu_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], scenario: str, words: str
) -> None:
    code, out, err = _run(monkeypatch, capsys, scenario, "--count", "1")
    assert code == 2 and out == ""
    assert err.startswith("rigfit: No NVIDIA GPU to monitor:") and words in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--interval", "0.05"], "between 0.1 and 2 seconds"),
        (["--interval", "3"], "between 0.1 and 2 seconds"),
        (["--count", "0"], "--count must be 1 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    code, _, err = _run(monkeypatch, capsys, "rtx4090", *args)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is a POSIX test")
def test_ctrl_c_ends_cleanly() -> None:
    env = dict(os.environ, RIGFIT_FAKE_NVML="2x3090-inference", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "monitor", "--interval", "0.1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        first = proc.stdout.readline()
        assert header.startswith("Monitoring GPU 0") and "GPU0" in first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
