"""`rigfit plan`: the JSON contract, the text report, GGUF files, the detected rig, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.core.catalog import catalog_spec
from app.core.placement import plan
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression
from tests.synth_gguf import SynthShape, write_llama_gguf

TOP_KEYS = {
    "model",
    "quant",
    "ctx",
    "split_mode",
    "tensor_split",
    "devices",
    "host",
    "fits",
    "status",
    "recommended_split_mode",
    "tok_s",
    "advice",
    "commands",
}
DEVICE_KEYS = {
    "name",
    "layers",
    "weights_mib",
    "kv_mib",
    "compute_mib",
    "overhead_mib",
    "total_mib",
    "capacity_mib",
    "fits",
}


@pytest.fixture
def no_sysfs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    (tmp_path / "sys" / "bus" / "pci" / "devices").mkdir(parents=True)
    monkeypatch.setenv("RIGFIT_SYSFS_ROOT", str(tmp_path / "sys"))
    return monkeypatch


def _plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["plan", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["plan", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_json_has_the_contract_keys_and_matches_the_planner(capsys: pytest.CaptureFixture[str]) -> None:
    data = _plan_json(capsys, "--model", "llama-3.3-70b", "--quant", "IQ2_XS", "--rig", "RTX 3090 + RTX 3060")
    assert set(data) >= TOP_KEYS
    assert (data["model"], data["quant"], data["ctx"], data["split_mode"]) == (
        "llama-3.3-70b",
        "IQ2_XS",
        8192,
        "layer",
    )
    assert len(data["devices"]) == 2 and all(set(d) >= DEVICE_KEYS for d in data["devices"])
    assert {"weights_mib", "kv_mib", "compute_mib", "total_mib"} <= set(data["host"])
    assert {"decode", "prompt"} <= set(data["tok_s"]) and data["tok_s"]["decode"] > 0
    assert {"llama-server", "ollama", "vllm", "exllamav2"} <= set(data["commands"])
    assert all({"code", "level", "message"} <= set(a) for a in data["advice"])
    assert data["status"] == "fits" and data["fits"] is True
    assert data["recommended_split_mode"] == "layer"
    rig = parse_rig_expression("RTX 3090 + RTX 3060")
    p = plan(rig, catalog_spec("llama-3.3-70b", "IQ2_XS"), Settings())
    for got, want in zip(data["devices"], p.devices, strict=True):
        assert got["layers"] == want.layers
        assert got["total_mib"] == pytest.approx(want.total_mib, abs=0.01)
    assert sum(data["tensor_split"]) == pytest.approx(1.0)
    json.dumps(data)


def test_split_presets_optimisers_and_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    base = ("--model", "llama-3.3-70b", "--quant", "IQ2_XS", "--rig", "RTX 3090 + RTX 3060")
    even = _plan_json(capsys, *base, "--split", "even")
    assert [d["layers"] for d in even["devices"]] == [41, 39]
    ratios = _plan_json(capsys, *base, "--split", "3,1")
    assert ratios["tensor_split"] == [0.75, 0.25]
    best = _plan_json(capsys, *base, "--split", "max-ctx", "--ctx", "32768")
    assert best["status"] in ("fits", "tight")
    assert any("largest context" in n for n in best["notes"])


def test_a_gguf_file_takes_its_quant_from_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = write_llama_gguf(
        tmp_path / "tiny.gguf",
        SynthShape(n_layer=4, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=512, weight_type="Q8_0"),
    )
    data = _plan_json(
        capsys, "--model", str(written.path), "--quant", "Q4_K_M", "--rig", "RTX 3060", "--ctx", "2048"
    )
    assert data["quant"] == "Q8_0"
    assert any("ignored" in n for n in data["notes"])
    assert str(written.path) in data["commands"]["llama-server"]


def test_the_text_report_shows_bars_devices_and_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--model", "llama-3.1-8b", "--quant", "Q4_K_M", "--rig", "2x RTX 3090"]) == 0
    out = capsys.readouterr().out
    assert "FITS" in out and "GPU 0" in out and "GPU 1" in out
    assert "[█" in out and "░]" in out
    assert "llama-server -m llama-3.1-8b-Q4_K_M.gguf" in out
    assert "Advice:" in out and "decode" in out


def test_an_overflowing_gpu_shows_in_the_bar_and_the_status(capsys: pytest.CaptureFixture[str]) -> None:
    data = _plan_json(capsys, "--model", "llama-3.3-70b", "--quant", "Q4_K_M", "--rig", "RTX 4090")
    assert data["status"] == "offload" and data["fit_n_gpu_layers"] == 44
    assert data["devices"][0]["fits"] is False
    assert main(["plan", "--model", "llama-3.3-70b", "--quant", "Q4_K_M", "--rig", "RTX 4090"]) == 0
    assert "]!" in capsys.readouterr().out


def test_without_rig_the_detected_gpus_are_used(
    no_sysfs: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_sysfs.setenv("RIGFIT_FAKE_NVML", "2x3090-nvlink")
    data = _plan_json(capsys, "--model", "llama-3.1-8b", "--quant", "Q4_K_M")
    assert [d["name"] for d in data["devices"]] == ["NVIDIA GeForce RTX 3090"] * 2 or len(
        data["devices"]
    ) == 2


def test_without_rig_or_gpu_the_plan_is_for_the_cpu_and_says_so(
    no_sysfs: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_sysfs.setenv("RIGFIT_FAKE_NVML", "zero-gpus")
    data = _plan_json(capsys, "--model", "llama-3.2-1b", "--quant", "Q4_K_M", "--ctx", "4096")
    assert data["devices"] == [] and data["host"]["layers"] == 16
    assert data["notes"][0].startswith("no GPU here") and "--rig" in data["notes"][0]
    assert main(["plan", "--model", "llama-3.2-1b", "--quant", "Q4_K_M"]) == 0
    assert "CPU-only plan" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--model", "llama-9-9000b", "--rig", "RTX 3090"), "unknown model"),
        (("--model", "llama-3.1-8b", "--quant", "Q9_K", "--rig", "RTX 3090"), "unknown quantization"),
        (("--model", "llama-3.1-8b", "--rig", "RTX 9999"), "RTX 9999"),
        (("--model", "llama-3.1-8b", "--rig", "RTX 3090", "--split", "1,1"), "1 GPU"),
        (("--model", "llama-3.1-8b", "--rig", "RTX 3090", "--split", "a,b"), "not a number"),
        (("--model", "llama-3.1-8b", "--rig", "RTX 3090", "--ctx", "0"), "context"),
        (
            (
                "--model",
                "llama-3.1-8b",
                "--rig",
                "2x RTX 3090",
                "--split-mode",
                "tensor",
                "--flash-attn",
                "off",
            ),
            "flash",
        ),
        (("--model", "missing.gguf", "--rig", "RTX 3090"), "not found"),
        (
            ("--model", "llama-3.1-8b", "--rig", "2x RTX 3090", "--split", "max-ctx", "--split-mode", "row"),
            "layer split",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], needle: str
) -> None:
    assert needle in _error(capsys, *args)


def test_json_carries_the_plans_problems_with_their_codes(capsys: pytest.CaptureFixture[str]) -> None:
    row = _plan_json(capsys, "--model", "llama-3.1-8b", "--rig", "2x RTX 3090", "--split-mode", "row")
    problem = next(p for p in row["problems"] if p["code"] == "row-split-unavailable")
    assert problem["severity"] == "error" and problem["concerns"] == ["split_mode"]
    assert problem["message"] in row["notes"] and row["status"] == "no"
    big = _plan_json(capsys, "--model", "llama-3.3-70b", "--quant", "Q8_0", "--rig", "RTX 3060")
    over = [p for p in big["problems"] if p["code"] == "gpu-over-capacity"]
    assert over and over[0]["gpu"] == 0 and over[0]["severity"] == "error"
    fine = _plan_json(capsys, "--model", "llama-3.1-8b", "--rig", "2x RTX 3090", "--ctx", "4096")
    assert fine["problems"] == [] and fine["status"] == "fits"
