"""`rigfit detect [--json]`: the JSON contract for every scenario, the table, the exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.hardware.nvml import builtin_scenarios
from tests.ram_bandwidth import TEST_RAM_BANDWIDTH_GBPS

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "nvml"
SCENARIOS = [*builtin_scenarios(), *(str(p) for p in sorted(FIXTURES.glob("*.json")))]
PCIE_KEYS = {"gen", "width", "max_gen", "max_width"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    sysfs = tmp_path / "sys" / "bus" / "pci" / "devices"
    sysfs.mkdir(parents=True)
    monkeypatch.setenv("RIGFIT_SYSFS_ROOT", str(tmp_path / "sys"))
    return monkeypatch


def _detect_json(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["detect", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _assert_contract(data: dict[str, Any]) -> None:
    assert {"status", "driver", "gpus", "topology", "other_gpus"} <= set(data)
    assert isinstance(data["status"], str) and data["status"]
    n = len(data["gpus"])
    for gpu in data["gpus"]:
        assert {
            "index",
            "name",
            "vram_total_mib",
            "vram_free_mib",
            "bandwidth_gbps",
            "pcie",
            "nvlink",
        } <= set(gpu)
        assert set(gpu["pcie"]) >= PCIE_KEYS
        assert {"links", "peers"} <= set(gpu["nvlink"])
        assert isinstance(gpu["nvlink"]["peers"], list)
    assert len(data["topology"]) == n and all(len(row) == n for row in data["topology"])
    assert all(data["topology"][i][i] == "X" for i in range(n))
    json.dumps(data)  # plain JSON types only


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: Path(s).stem)
def test_json_has_the_contract_keys_for_every_scenario(
    scenario: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("RIGFIT_FAKE_NVML", scenario)
    _assert_contract(_detect_json(capsys))


def test_json_for_two_nvlinked_3090s(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("RIGFIT_FAKE_NVML", "2x3090-nvlink")
    data = _detect_json(capsys)
    assert data["status_code"] == "ok" and data["driver"] == "550.127.05" and data["cuda"] == "12.4"
    assert data["topology"] == [["X", "NV4"], ["NV4", "X"]]
    assert data["p2p"] == [["X", "OK"], ["OK", "X"]]
    gpu = data["gpus"][0]
    assert gpu["vram_total_mib"] == 24576 and gpu["bandwidth_gbps"] == 936.1
    assert {k: gpu["pcie"][k] for k in PCIE_KEYS} == {
        "gen": 1,
        "width": 16,
        "max_gen": 4,
        "max_width": 16,
    }
    assert gpu["nvlink"]["links"] == 4 and gpu["nvlink"]["peer_gpus"] == [1]
    assert {p["remote_gpu"] for p in gpu["nvlink"]["peers"]} == {1}
    assert gpu["compute_capability"] == "8.6" and gpu["catalog_id"] == "rtx-3090"


def test_json_carries_the_lane_warning(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("RIGFIT_FAKE_NVML", "3090+3060-x4")
    data = _detect_json(capsys)
    assert data["gpus"][1]["pcie"]["slot_limited"] is True
    assert [(a["code"], a["gpu"]) for a in data["advice"] if a["level"] == "warning"] == [
        ("pcie-narrow-slot", 1)
    ]


@pytest.mark.parametrize(
    ("scenario", "code"), [("no-driver", "no-driver"), ("no-library", "no-library"), ("zero-gpus", "no-gpus")]
)
def test_no_gpu_scenarios_print_a_status_and_exit_0(
    scenario: str, code: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("RIGFIT_FAKE_NVML", scenario)
    data = _detect_json(capsys)
    assert data["status_code"] == code and data["gpus"] == [] and data["topology"] == []
    # The host's RAM read bandwidth (kept for this machine by tests/conftest.py), which CPU speeds use.
    assert data["host"]["ram_bandwidth_gbps"] == TEST_RAM_BANDWIDTH_GBPS


def test_require_gpu_exits_1_without_a_usable_gpu(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("RIGFIT_FAKE_NVML", "no-driver")
    assert main(["detect", "--require-gpu"]) == 1
    env.setenv("RIGFIT_FAKE_NVML", "h200")
    assert main(["detect", "--require-gpu"]) == 0


def test_human_output_is_a_table_with_topology_and_advice(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("RIGFIT_FAKE_NVML", "3090+3060-x4")
    assert main(["detect"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "2 NVIDIA GPUs detected (driver 550.127.05, CUDA 12.4)"
    header = next(line for line in lines if line.startswith("#"))
    assert header.split() == [
        "#",
        "GPU",
        "VRAM",
        "total",
        "free",
        "bandwidth",
        "PCIe",
        "NVLink",
        "power",
        "temp",
    ]
    assert any(
        "NVIDIA GeForce RTX 3060" in line and "Gen3 x4 (card supports Gen4 x16)" in line for line in lines
    )
    assert "  GPU0  X     PHB" in out and "  GPU1  CNS   X" in out
    assert "[warning] GPU 1 (NVIDIA GeForce RTX 3060) gets Gen3 x4" in out
    assert f"RAM read {TEST_RAM_BANDWIDTH_GBPS:.1f} GB/s" in next(x for x in lines if x.startswith("Host: "))


def test_planned_rig_in_the_same_form(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = _detect_json(capsys, "--rig", "RTX 4090 + RTX 4090@x4")
    assert data["source"] == "planned" and data["status_code"] == "planned"
    assert data["advice"][0]["code"] == "pcie-narrow-slot"


def test_rig_file_option(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        'name = "pair"\nnvlink = [[0, 1]]\n[[gpu]]\ncatalog = "rtx-3090"\n[[gpu]]\ncatalog = "rtx-3090"\n'
    )
    data = _detect_json(capsys, "--rig-file", str(path))
    assert data["name"] == "pair" and data["topology"] == [["X", "NV4"], ["NV4", "X"]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["detect", "--rig", "RTX 3095"], "rigfit: unknown GPU 'RTX 3095'; did you mean RTX 3090"),
        (
            ["detect", "--rig-file", "/nonexistent/rig.toml"],
            "rigfit: rig file not found: /nonexistent/rig.toml",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == err.strip().splitlines()[0]
    assert err.startswith(message)


def test_broken_fake_scenario_is_exit_2(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"devices": [{"temp": "ERR Melted"}]}')
    env.setenv("RIGFIT_FAKE_NVML", str(bad))
    assert main(["detect", "--json"]) == 2
    assert "unknown NVML error 'ERR Melted'" in capsys.readouterr().err


def test_list_scenarios(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--list-scenarios"]) == 0
    out = capsys.readouterr().out
    assert "  2x3090-nvlink" in out and "RIGFIT_FAKE_NVML" in out


def test_console_script_on_this_machine_prints_the_shape(tmp_path: Path) -> None:
    """No fake: whatever this machine has (CI: no GPU, no NVML library), the shape is the same."""
    env = {k: v for k, v in os.environ.items() if k != "RIGFIT_FAKE_NVML"}
    out = subprocess.run(
        [sys.executable, "-m", "app", "detect", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    _assert_contract(data)
    assert data["status_code"] in {
        "ok",
        "no-nvml",
        "no-library",
        "no-driver",
        "no-gpus",
        "gpu-lost",
        "nvml-error",
    }
